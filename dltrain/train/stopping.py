"""Early stopping: the best value of the monitored metric, the epochs waited since it last
improved, and whether to stop; with its own state_dict, so a resumed run goes on exactly."""

from __future__ import annotations

import math


class EarlyStopping:
    """Tracks ``key`` (e.g. ``val_loss``) in ``mode`` (min or max); ``patience`` 0 never stops."""

    def __init__(self, key: str, mode: str, patience: int = 0, min_delta: float = 0.0):
        self.key, self.mode, self.patience, self.min_delta = key, mode, patience, min_delta
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best: dict | None = None  # the row of the best epoch
        self.waited = 0
        self.stopped = False

    def update(self, epoch: int, row: dict) -> bool:
        """Record an epoch's row; True when it is the best so far."""
        value, best = row[self.key], self.best_value
        improved = best is None or math.isnan(best) or (
            value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta)
        if improved:
            self.best_value, self.best_epoch, self.best, self.waited = value, epoch, row, 0
        else:
            self.waited += 1
        if self.patience and self.waited >= self.patience:
            self.stopped = True
        return improved

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "best": self.best,
                "waited": self.waited, "stopped": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a saved state under this tracker's own patience (a resume may change it):
        stopped when the epochs waited since the best one reach it."""
        for key in ("best_value", "best_epoch", "best", "waited"):
            setattr(self, key, state[key])
        self.stopped = bool(self.patience) and self.waited >= self.patience
