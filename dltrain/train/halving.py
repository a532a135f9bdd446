"""Successive halving: the epochs at which a tune's rungs end, and which points go on after one."""

from __future__ import annotations

import math


def rung_ends(epochs: int, rungs: int, eta: int, min_epochs: int) -> list[int]:
    """The epochs at which the rungs end: epochs / eta^(rungs-1), ..., epochs / eta, epochs
    (rounded, never before ``min_epochs``, each once)."""
    ends = {min(epochs, max(min_epochs, round(epochs / eta ** (rungs - 1 - rung)))) for rung in range(rungs)}
    return sorted(ends | {epochs})


def keep_count(count: int, eta: int) -> int:
    """How many of ``count`` points go on after a rung: floor(count / eta), at least one."""
    return max(1, count // eta)


def survivors(scores: list[float], eta: int, mode: str) -> list[int]:
    """The indices of the best ``keep_count`` of ``scores`` (``mode`` min or max; a score that is
    not a finite number ranks last), in their original order."""
    def rank(index: int):
        score = scores[index]
        if not math.isfinite(score):
            return (1, 0.0)
        return (0, score if mode == "min" else -score)

    best = sorted(range(len(scores)), key=rank)[:keep_count(len(scores), eta)]
    return sorted(best)
