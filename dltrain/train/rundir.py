"""The run-folder writer: a run's (or a fold's, or a member's) metrics.json from ``running`` to
``finished``, ``failed`` or ``interrupted``, its checkpoints best.pt and last.pt (and, with
trainer.save_top_k=K above 1, the K best epochs' as ``best-epoch=E-MONITOR=VALUE.pt``) with the
one checkpoint payload, and its fitted preprocessing. Every file is written atomically (checkpoint.py).
A data-parallel rank other than 0 gets a folder object that writes nothing."""

from __future__ import annotations

import errno
import math
import os
from contextlib import suppress
from pathlib import Path

from dltrain.data.preprocessing import save_preprocessing
from dltrain.files import remove_file, write_json
from dltrain.train.checkpoint import CheckpointWriter, save_checkpoint

METRICS = "metrics.json"
INIT = "init.pt"  # the weights before the first step (dltrain landscape interpolates from them)
TRAJECTORY = "trajectory.json"  # a tracked model's parameters after every optimizer step (Member.trajectory)
TOP_GLOB = "best-epoch=*.pt"  # the top-k checkpoints' names (top_name)


def top_name(epoch: int, monitor: str, value: float) -> str:
    """The file name of a top-k checkpoint: ``best-epoch=3-val_loss=0.1234.pt``."""
    return f"best-epoch={epoch}-{monitor}={value:.4f}.pt"


class RunFolder:
    """``config``: the composed config as plain data (saved in every checkpoint); ``spec``: the
    DataSpec as a dict; ``record``: what metrics.json starts with (task, monitor, model, data);
    ``resumed``: the folder already holds the run's preprocessing, which stays as it is;
    ``save_top_k``: above 1, the checkpoints of the K best epochs by ``record``'s monitor and mode
    are kept besides best.pt, each written when it enters the K best and deleted when it leaves."""

    def __init__(self, path: Path, *, config: dict, spec: dict, record: dict, every_seconds: float,
                 writes: bool = True, resumed: bool = False, save_top_k: int = 1):
        self.path = Path(path)
        self.config, self.spec = config, spec
        self.record = {"status": "running", **record}
        self.writes = writes
        self.resumed = resumed
        self.member = None
        self.save_top_k = save_top_k
        self.top: list[tuple[float, int]] = []  # (value, epoch) of the kept top-k epochs, best first
        self._identity = None  # the folder's (device, inode) once open: gone or replaced, no more writes
        self.writer = CheckpointWriter(self.path, every_seconds, self._payload, on_write=self._written)

    def open(self, member) -> None:
        """Bind the member whose state the checkpoints hold; write its preprocessing (a fresh
        run's) and the running status (after a resume was checked: a failed one changes nothing)."""
        self.member = member
        if self.writes:
            self.path.mkdir(parents=True, exist_ok=True)
            self._identity = _identity(self.path)
            # The fitted preprocessing travels with the run: eval, predict and resume apply it,
            # never refit it; so does how the data file was read, which eval and predict repeat.
            if not self.resumed:
                save_preprocessing(self.path, member.data.preprocessor, member.data.target,
                                   member.data.reading)
                save_checkpoint(self.path / INIT, self._payload(0, {}, False))
            self._open_top(member.rows)
            self._write()

    def _open_top(self, rows: list[dict]) -> None:
        """The top-k epochs among those trained before a resume, and only their files kept: one
        written after the last.pt resumed from, or beyond a new save_top_k, goes."""
        self.top = []
        if self.save_top_k > 1:
            for row in rows:
                self._rank(row["epoch"], row, write=False)
        wanted = {top_name(epoch, self.record["monitor"], value) for value, epoch in self.top}
        for entry in self.path.glob(TOP_GLOB):
            if entry.name not in wanted and (entry.is_file() or entry.is_symlink()):
                remove_file(entry)

    def _rank(self, epoch: int, row: dict, *, write: bool = True) -> None:
        """Keep this epoch's checkpoint when its monitored value is among the K best so far (ties:
        the earlier epoch stays ahead); the one it pushes out of the K best goes."""
        monitor = self.record["monitor"]
        value = row[monitor]
        if not math.isfinite(value):
            return
        better = (lambda a, b: a < b) if self.record["mode"] == "min" else (lambda a, b: a > b)
        place = next((i for i, (kept, _) in enumerate(self.top) if better(value, kept)), len(self.top))
        if place >= self.save_top_k:
            return
        self.top.insert(place, (value, epoch))
        if write:
            self.writer.keep(top_name(epoch, monitor, value), epoch, row)
        if len(self.top) > self.save_top_k:
            old_value, old_epoch = self.top.pop()
            if write:
                self.writer.drop(top_name(old_epoch, monitor, old_value))

    def _payload(self, epoch: int, row: dict, with_training_state: bool) -> dict:
        member = self.member
        payload = {"model": member.model.state_dict(), "epoch": epoch, "metrics": row,
                   "config": self.config, "spec": self.spec}
        if with_training_state:
            scheduler = member.schedule.scheduler
            payload["optimizer"] = member.optimizer.state_dict()
            payload["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            payload["trainer"] = member.state_dict()
        return payload

    def _written(self, epoch: int, row: dict) -> None:
        # metrics.json stays small while running: the whole history is written once, at the end.
        self.record.update(epochs_run=epoch, final=row, best_epoch=self.member.stopping.best_epoch)
        self._write()
        self._write_trajectory()
        if self.member.logger is not None:
            self.member.logger.flush()

    def _write(self) -> None:
        if self.writes:
            self._check_present()
            write_json(self.path / METRICS, self.record)

    def _write_trajectory(self) -> None:
        """trajectory.json: the path last.pt's state holds (so a resume goes on with the same one):
        the names of the parameters and their values at the start and after every optimizer step."""
        trajectory = self.member.trajectory if self.member is not None else None
        if self.writes and trajectory:
            names = [name for name, _ in self.member.model.named_parameters()]
            write_json(self.path / TRAJECTORY, {"parameters": names, "steps": trajectory})

    def _check_present(self) -> None:
        """A run folder deleted or moved while the run trains is an error, not a folder to make
        again (write_atomic would make a new one, holding only what is written from then on)."""
        if self._identity is not None and _identity(self.path) != self._identity:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path))

    # ------------------------------------------------------------------ checkpoints

    def best(self, epoch: int, row: dict) -> None:
        if self.writes:
            self.writer.best(epoch, row)

    def last(self, epoch: int, row: dict) -> None:
        """Every epoch's end: its place among the top-k, then last.pt (written when it is time)."""
        if self.writes:
            self._check_present()
            if self.save_top_k > 1:
                self._rank(epoch, row)
            self.writer.last(epoch, row)

    def flush(self, include_last: bool = True) -> None:
        if self.writes:
            self._check_present()
            self.writer.flush(include_last)

    # ------------------------------------------------------------------ how the run ended

    def interrupted(self) -> None:
        """A stop request: last.pt holds the position inside the interrupted epoch."""
        self.flush()
        self.record.update(status="interrupted", history=self.member.rows)
        self._write()

    def failed(self, message: str, *, status: str = "failed") -> None:
        """A failed epoch's live weights are not worth keeping; the best snapshot still is. Both
        written where the disk still allows it (what failed may be the disk itself), so the
        status never stays ``running`` for a reason this process can write down."""
        if self.member is None or self.record["status"] != "running":
            return  # never opened, or settled already (an inner block told why)
        with suppress(OSError):
            self.flush(include_last=False)
        self.record.update(status=status, error=message, history=self.member.rows)
        with suppress(OSError):
            self._write()

    def finished(self, result) -> None:
        self.record.update(status="finished", best_epoch=result.best_epoch, best=result.best,
                           final=result.final, test=result.test, epochs_run=result.epochs_run,
                           stopped_early=result.stopped_early, seconds=result.seconds,
                           model_summary=result.model_summary, notes=result.notes, history=self.member.rows)
        self._write()
        self._write_trajectory()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
