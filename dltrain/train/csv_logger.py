"""logger=csv: ``metrics.csv`` in a run folder (each fold's, the refit's), one row per epoch and
one column per value of metrics.json's history rows (epoch, train_loss, val_accuracy, ..., lr,
seconds), for pandas.read_csv or a spreadsheet.

The file is readable whenever it exists: a row is appended in one write, and a column that first
appears after the header was written (or a file that is not a plain file of its own, such as a
link planted in a shared folder) makes the whole file be written anew, atomically, with the
column for every row (empty where a row lacks it)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dltrain.files import append_text, write_atomic
from dltrain.train.loggers import Logger

METRICS_CSV = "metrics.csv"


class CsvLogger(Logger):
    def __init__(self, folder: Path):
        self.path = Path(folder) / METRICS_CSV
        self.columns: list[str] = []
        self.rows: list[dict] = []

    def start(self, model, optimizer, data, device, first_epoch: int = 1, history=()) -> None:
        """A resumed run's file holds the epochs of its checkpoint, no more: a killed run may
        have logged epochs after it, which are trained again."""
        self.rows = [dict(row) for row in history]
        self.columns = []
        for row in self.rows:
            self.columns += [key for key in row if key not in self.columns]
        if self.rows:
            self._write_all()
        else:
            self.path.unlink(missing_ok=True)

    def epoch_end(self, epoch: int, row: dict) -> None:
        self.rows.append(dict(row))
        new = [key for key in row if key not in self.columns]
        if new or not append_text(self.path, _lines([row], self.columns)):
            self.columns += new
            self._write_all()

    def _write_all(self) -> None:
        write_atomic(self.path, _lines([self.columns], None) + _lines(self.rows, self.columns))


def _lines(rows: list, columns: list[str] | None) -> str:
    """CSV text for ``rows`` (lists as they are; dicts by ``columns``, empty where one lacks a
    key). Numbers keep every digit: Python writes a float as the shortest text that reads back
    as the same float."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        writer.writerow(row if columns is None else [row.get(key, "") for key in columns])
    return text.getvalue()
