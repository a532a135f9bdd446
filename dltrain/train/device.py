"""Choosing the device and seeding every random number generator."""

from __future__ import annotations

import random

import numpy as np
import torch

from dltrain.errors import DltrainError


def resolve_device(requested: str) -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU; a named device must be present."""
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available else torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DltrainError(f"trainer.device={requested} but no CUDA GPU is available; use trainer.device=auto or cpu.")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise DltrainError(
                f"trainer.device={requested} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}."
            )
    if requested == "mps" and not mps_available:
        raise DltrainError("trainer.device=mps but Apple's MPS is not available here; use trainer.device=auto or cpu.")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
