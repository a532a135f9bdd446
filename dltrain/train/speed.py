"""What makes a step fast on the device at hand: mixed precision (autocast and, for fp16, a
GradScaler), channels_last convolutions, cuDNN autotuning and torch.compile, resolved once from
the trainer settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import torch

from dltrain.errors import DltrainError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Speed:
    precision: str  # 32 | bf16 | fp16, after auto was resolved
    channels_last: bool
    autocast: object  # a context-manager factory (nullcontext for 32)
    scaler: object | None  # torch.amp.GradScaler for fp16, else None

    def describe(self) -> str:
        parts = [f"precision={self.precision}"]
        if self.channels_last:
            parts.append("channels_last")
        return " ".join(parts)


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "32"
    if requested == "fp16" and device.type == "cpu":
        raise DltrainError("trainer.precision=fp16 needs a GPU (float16 on the CPU is slow and "
                           "unscaled); use trainer.precision=bf16 or 32 on the CPU.")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DltrainError("trainer.precision=bf16 needs a GPU that supports bfloat16 (Ampere or "
                           "newer); use trainer.precision=fp16 or 32 on this one.")
    if requested != "32" and device.type == "mps":
        raise DltrainError(f"trainer.precision={requested} is not supported on Apple MPS here; use "
                           f"trainer.precision=32.")
    return requested


def has_convolutions(model) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def configure(model, settings, device: torch.device) -> Speed:
    """Set the device's backends and return how each step should run. ``settings``: TrainerSettings."""
    precision = resolve_precision(settings.precision, device)
    channels_last = (settings.channels_last == "true"
                     or (settings.channels_last == "auto" and device.type == "cuda"
                         and has_convolutions(model)))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark == "true" or (
            settings.cudnn_benchmark == "auto" and not settings.deterministic)
    if precision == "32":
        autocast = contextlib.nullcontext
    else:
        autocast = partial(torch.autocast, device_type=device.type, dtype=DTYPES[precision])
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return Speed(precision=precision, channels_last=channels_last, autocast=autocast, scaler=scaler)


def compiled(model, settings):
    """The module the steps call: ``model`` itself, or its torch.compile wrapper (whose
    parameters are the model's own, so checkpoints keep saving ``model.state_dict()``)."""
    if not settings.compile:
        return model
    try:
        return torch.compile(model, backend=settings.compile_backend)
    except Exception as error:  # an unknown backend name, a platform without a compiler
        first = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise DltrainError(f"trainer.compile=true failed to set up torch.compile "
                           f"(backend {settings.compile_backend}): {first}; use trainer.compile=false.") from None
