"""Checkpoint files: written atomically (dltrain.files), read with weights_only."""

from __future__ import annotations

from pathlib import Path

import torch

from dltrain.errors import DltrainError
from dltrain.files import write_atomic


def save_checkpoint(path: Path, payload: dict) -> None:
    write_atomic(Path(path), lambda stream: torch.save(payload, stream))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DltrainError(f"No checkpoint at {str(path)!r}.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file fails in many ways inside torch
        raise DltrainError(f"The checkpoint {str(path)!r} cannot be read ({type(error).__name__}); it is corrupted or not a dltrain checkpoint.") from None


class CheckpointWriter:
    """Writes best.pt and last.pt at most every ``every_seconds`` (and always on ``flush``):
    short epochs would otherwise spend more time writing files than training. The best
    weights are snapshotted in memory when they improve, so a late write is still exact."""

    def __init__(self, run_dir: Path, every_seconds: float, make_payload, on_write=None):
        import time

        self.run_dir = Path(run_dir)
        self.every_seconds = every_seconds
        self.make_payload = make_payload  # (epoch, row, with_training_state) -> dict
        self.on_write = on_write
        self._clock = time.monotonic
        self._last_write = self._clock()
        self._pending_best = None
        self._last_epoch = None

    def best(self, epoch: int, row: dict) -> None:
        payload = self.make_payload(epoch, row, False)
        payload["model"] = {k: v.detach().clone() for k, v in payload["model"].items()}
        self._pending_best = payload

    def last(self, epoch: int, row: dict) -> None:
        self._last_epoch = (epoch, row)
        if self._clock() - self._last_write >= self.every_seconds:
            self.flush()

    def flush(self, include_last: bool = True) -> None:
        """Write what is pending; ``include_last=False`` after a failed epoch, whose live
        weights are not worth keeping (the best snapshot still is)."""
        if self._pending_best is not None:
            save_checkpoint(self.run_dir / "best.pt", self._pending_best)
            self._pending_best = None
        if include_last:
            epoch, row = self._last_epoch or (0, {})  # epoch 0: stopped inside the first epoch
            save_checkpoint(self.run_dir / "last.pt", self.make_payload(epoch, row, True))
            if self.on_write is not None:
                self.on_write(epoch, row)
        self._last_write = self._clock()
