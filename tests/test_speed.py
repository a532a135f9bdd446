"""The speed settings (trainer.precision, compile, channels_last, device_data_max_mb) change how
the steps run, never what they compute beyond the stated tolerances."""

from __future__ import annotations

import pytest

from conftest import read_metrics, run_folders

QUICK = ["trainer.epochs=2", "trainer.progress=false", "logger=none"]


def _final(cli, *overrides: str) -> dict:
    result = cli("fit", *QUICK, *overrides)
    assert result.exit_code == 0, result.output
    return read_metrics(run_folders()[-1])["final"]


@pytest.mark.slow
def test_streamed_batches_equal_device_resident_ones(cli):
    """device_data_max_mb=0 keeps the splits in host memory and sends each batch over: on the
    CPU the very same numbers as the resident path."""
    resident = _final(cli, "data=iris")
    streamed = _final(cli, "data=iris", "trainer.device_data_max_mb=0")
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert streamed[key] == resident[key]


@pytest.mark.slow
def test_bf16_autocast_trains_close_to_float32(cli):
    full = _final(cli, "data=iris", "model=mlp")
    mixed = _final(cli, "data=iris", "model=mlp", "trainer.precision=bf16")
    # bfloat16 keeps 8 bits of mantissa: the losses agree to about 1e-2 after two epochs
    assert abs(mixed["train_loss"] - full["train_loss"]) < 0.05
    assert abs(mixed["val_loss"] - full["val_loss"]) < 0.05


@pytest.mark.slow
def test_channels_last_gives_the_same_convolutions(cli):
    plain = _final(cli, "data=digits_images", "model=cnn", "trainer.epochs=1")
    last = _final(cli, "data=digits_images", "model=cnn", "trainer.epochs=1", "trainer.channels_last=true")
    assert abs(last["train_loss"] - plain["train_loss"]) < 1e-4
    assert abs(last["val_loss"] - plain["val_loss"]) < 1e-4


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_weights(cli, tmp_path):
    """torch.compile wraps the model for the steps; the checkpoint still holds the model's own
    parameter names, so eval loads it. (The eager backend traces without building kernels.)"""
    import torch

    plain = _final(cli, "data=iris")
    compiled = _final(cli, "data=iris", "trainer.compile=true", "trainer.compile_backend=eager")
    assert abs(compiled["val_loss"] - plain["val_loss"]) < 1e-5
    run = run_folders()[-1]
    keys = torch.load(run / "best.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("_orig_mod") for k in keys)
    assert cli("eval", str(run)).exit_code == 0


@pytest.mark.parametrize("override, message", [
    ("trainer.precision=fp16", "trainer.precision=fp16 needs a GPU"),
    ("trainer.precision=half", "trainer.precision must be one of auto, 32, bf16, fp16"),
    ("trainer.channels_last=maybe", "trainer.channels_last must be one of auto, true, false"),
    ("trainer.compile_backend=nope", "failed to set up torch.compile"),
])
def test_bad_speed_settings_are_one_sentence(cli, override, message):
    extra = ["trainer.compile=true"] if "backend" in override else []
    result = cli("fit", *QUICK, "data=iris", *extra, override)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert run_folders() == []
