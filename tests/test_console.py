"""Console output that fits the terminal: epoch rows at 80 and 120 columns (headers abbreviated,
the least important columns left out and named, no number cut), values that are not finite
flagged, the run's Result (test_* rows, notes, "1 epoch"), the cross-validation table without a
cut header or std, and the run log that takes what the console prints but no progress bar."""

from __future__ import annotations

import math
import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from dltrain.commands import cv_report
from dltrain.console import EpochProgress, EpochTable, RunConsole, plural
from dltrain.train.population import FitResult, print_summary, run_notes

REGRESSION = ["epoch", "train_loss", "train_mse", "train_mae", "train_r2", "train_log_rmse", "val_loss",
              "val_mse", "val_mae", "val_r2", "val_log_rmse", "lr", "seconds"]
PRIORITY = ["epoch", "val_loss", "train_loss", "val_mse", "val_mae", "val_r2", "val_log_rmse", "lr",
            "seconds", "train_mse", "train_mae", "train_r2", "train_log_rmse"]
ROW = {"epoch": 12, "train_loss": 0.0393, "train_mse": 1.462e9, "train_mae": -12345.6789,
       "train_r2": 0.9607, "train_log_rmse": 0.1148, "val_loss": 0.0294, "val_mse": 1.092e9,
       "val_mae": 27106.1191, "val_r2": -3.1e4, "val_log_rmse": 0.0731, "lr": 0.001, "seconds": 1234.5678}


def printed(width: int, rows: list[dict], columns=REGRESSION, priority=PRIORITY) -> list[str]:
    out = StringIO()
    table = EpochTable(columns, Console(file=out, width=width), priority=priority)
    for row in rows:
        table.row(row)
    return out.getvalue().splitlines()


def numbers(line: str) -> list[float]:
    return [float(word) for word in line.split()]


@pytest.mark.parametrize("width", [80, 120])
def test_epoch_rows_fit_the_width_without_cutting_a_number(width):
    lines = printed(width, [ROW])
    header, row, note = lines[-2], lines[-1], " ".join(" ".join(lines[:-2]).split())
    assert all(len(line) <= width for line in lines)
    names = header.split()
    shown = [c for c in PRIORITY if c.replace("train_", "trn_").replace("log_rmse", "lrmse").replace(
        "seconds", "sec") in names]
    # the most important columns stay, each value whole (a wider one in fewer digits)
    assert shown[:4] == ["epoch", "val_loss", "train_loss", "val_mse"]
    for column, value in zip([c for c in REGRESSION if c in shown], numbers(row)):
        assert value == pytest.approx(ROW[column], rel=1e-3), column
    if width == 80:
        assert "lr" not in shown and note.startswith("Not shown at 80 columns: train_mse, train_mae")
    else:
        assert {"lr", "seconds", "train_mse"} <= set(shown) and len(shown) < len(REGRESSION)


def test_a_wide_console_shows_every_column_by_its_full_name():
    header, row = printed(200, [ROW])
    assert header.split() == REGRESSION and len(numbers(row)) == len(REGRESSION)


def test_a_validation_loss_that_is_not_finite_is_flagged_in_its_row():
    rows = printed(80, [{**ROW, "val_loss": math.nan}, {**ROW, "epoch": 13, "val_loss": math.inf}])
    assert rows[-2].split()[2] == "nan(!)" and rows[-1].split()[2] == "inf(!)"  # epoch, train_loss, val_loss
    notes = run_notes([{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": math.nan},
                       {"epoch": 3, "val_loss": math.inf}])
    assert notes == ["val_loss was nan or inf in 2 epochs of 3 (first in epoch 2): the model's outputs on "
                     "the validation rows were not finite numbers there (weights that diverge, or inputs "
                     "far outside the training rows')."]


def result(**changes) -> FitResult:
    row = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_r2": -0.25, "lr": 0.001, "seconds": 0.1}
    fields = dict(run_dir=Path("outputs/run"), task="regression", monitor="val_loss", best_epoch=1,
                  best=row, final=row, test={"loss": 0.3, "r2": 0.75}, epochs_run=1,
                  stopped_early=False, seconds=0.5, model_summary=None, notes=run_notes([row]))
    return FitResult(**{**fields, **changes})


def test_the_result_labels_test_metrics_test_and_says_1_epoch_and_a_negative_r2():
    out = StringIO()
    print_summary(result(), Console(file=out, width=80))
    text = out.getvalue()
    rows = {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("│")
            for cells in [[c.strip() for c in line.strip("│").split("│")]]}
    assert rows["test_loss"] == ["0.3000", ""] and rows["test_r2"] == ["0.7500", ""]
    assert rows["val_loss"] == ["0.4000", "0.4000"]  # no test value beside a val_ metric
    assert "1 epoch in 0.5 s" in text and "1 epochs" not in text
    assert "note: val_r2 stayed below 0 (at best -0.2500)" in " ".join(text.split())
    assert plural(1, "fold") == "1 fold" and plural(3, "fold") == "3 folds"


def cv_summary() -> dict:
    names = ["train_loss", "train_mse", "train_mae", "train_r2", "val_loss", "val_mse", "val_mae", "val_r2"]
    rows = [{"fold": i, "repeat": 0, "train_size": 1168, "val_size": 292, "epochs": 100,
             **{n: (1.5e9 + i * 1e8 if "mse" in n else 31234.5 + i if "mae" in n else 0.9 - i / 100)
                for n in names}} for i in range(5)]
    mean = {n: sum(r[n] for r in rows) / 5 for n in names}
    std = {n: 1.414e8 if "mse" in n else 1.4142 for n in names}
    return {"folds": rows, "mean": mean, "std": std, "strategy": "kfold", "k": 5, "repeats": 1,
            "shuffle": False, "seed": 0, "model": "linear", "data": "csv",
            "objective": {"metric": "val_mse", "mean": mean["val_mse"], "std": std["val_mse"]},
            "out_of_fold": {"file": "oof_predictions.csv", "rows": 1460, "mse": 1.6e9},
            "test_ensemble": None, "refit": None, "samples": 1460}


@pytest.mark.parametrize("width", [80, 120])
def test_the_cv_table_cuts_no_header_and_no_std(width):
    out = StringIO()
    cv_report.print_summary(cv_summary(), Path("outputs/cv"), out=Console(file=out, width=width))
    text = out.getvalue()
    assert "…" not in text and all(len(line) <= width for line in text.splitlines())
    assert "fold_4" in text and "± 1.414e+08" in text and re.search(r"\bmse\b", text)
    assert "1168/292" in text and "100 epochs" in text
    if width == 80:  # what did not fit is named, the objective stays
        assert "Not shown at 80 columns: train_" in " ".join(text.split())


def test_the_run_log_takes_what_is_printed_but_no_progress_bar(tmp_path):
    terminal, log = StringIO(), StringIO()
    out = RunConsole(file=terminal, width=80, force_terminal=True, color_system="standard")
    with out.logging_to(log):
        with EpochProgress(True, out) as progress:
            progress.start_epoch(1, 10)
            for _ in range(10):
                progress.advance()
            out.print("[bold]epoch[/bold] row")
        out.print("the end")
    out.print("after the run")
    assert "\x1b[" in terminal.getvalue()  # the terminal got its colours and the live bar
    assert log.getvalue() == "epoch row\nthe end\n"
    muted, fold_log = out.muted_copy(), StringIO()
    with pytest.raises(ValueError), muted.logging_to(fold_log):
        muted.print("a fold's row")
        raise ValueError("boom")
    assert fold_log.getvalue() == "a fold's row\nError: ValueError: boom\n"
    assert "a fold's row" not in terminal.getvalue()


@pytest.mark.parametrize("width", [80, 48])
def test_a_small_models_weights_end_its_row_or_go_beneath(width):
    out = StringIO()
    table = EpochTable(["epoch", "train_loss", "lr"], Console(file=out, width=width))
    table.row({"epoch": 1, "train_loss": 0.25, "lr": 0.1}, note="w = [1.9876], b = [0.0123]")
    lines = out.getvalue().splitlines()
    row = [line for line in lines if line.split()[:1] == ["1"]]
    assert all(len(line) <= width for line in lines)
    if width == 80:  # 5 + 10 + 9 columns and their gaps take 28, the note 26 more
        assert row[0].endswith("0.1000  w = [1.9876], b = [0.0123]")
    else:
        assert row[0].endswith("0.1000") and lines[-1] == "       w = [1.9876], b = [0.0123]"
