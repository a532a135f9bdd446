"""``dltrain lr-find OVERRIDES``: the learning-rate range test (train/lr_find.py) on the training
rows fit would train on, its suggestion printed and its curve saved under outputs/lr_find/; and
``trainer.lr_find=true``, which runs it at the start of a fit (each fold's, in cv) and trains
with its suggestion."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from pathlib import Path

from dltrain.config import compose, read_settings
from dltrain.console import console
from dltrain.data import load_source
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.train.determinism import deterministic
from dltrain.train.device import resolve_device
from dltrain.train.lr_find import END_LR, JSON, PNG, START_LR, STEPS, find_lr, read_suggestion, save_finding
from dltrain.train.optim import CLOSED_FORM

FOLDER = Path("outputs") / "lr_find"


def lr_find(overrides: list[str], out=console):
    """Run the range test as ``dltrain lr-find OVERRIDES`` does; (the finding, its folder)."""
    cfg = compose(overrides)
    settings = read_settings(cfg)
    if settings.optimizer.name == CLOSED_FORM:
        raise DltrainError("optimizer=closed_form solves least squares without steps, so it has no learning "
                           "rate to find; run dltrain lr-find with a gradient optimizer (optimizer=sgd, adam, ...).")
    source = load_source(settings.data)
    train_index, _ = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    device = resolve_device(settings.trainer.device)
    out.print(f"[bold]dltrain lr-find[/bold]  model={settings.model.name} data={settings.data.name} "
              f"({len(train_index)} training rows) optimizer={settings.optimizer.name} device={device}: "
              f"lr from {START_LR:g} to {END_LR:g} over {STEPS} steps")
    with deterministic(settings.trainer):  # the curve fit would see with trainer.deterministic
        finding = find_lr(settings, source, train_index, seed=settings.trainer.seed, device=device)
    folder = FOLDER / (datetime.now().strftime("%Y-%m-%d/%H-%M-%S") + "_" + secrets.token_hex(3))
    save_finding(folder, finding, f"model={settings.model.name} data={settings.data.name} "
                                  f"optimizer={settings.optimizer.name}")
    out.print(describe(finding))
    out.print(f"Suggested optimizer.lr={finding.suggestion:.3g}; the curve is in {folder / PNG}, its "
              f"values in {folder / JSON}.")
    out.print(f"Train with it: dltrain fit {' '.join([*overrides, f'optimizer.lr={finding.suggestion:.3g}'])} "
              f"(or trainer.lr_find=true, which finds it at the start of each fit)")
    return finding, folder


def describe(finding) -> str:
    """One line on how the test went."""
    ended = (f"the loss diverged at lr {finding.lrs[-1]:.3g} after {len(finding.lrs)} steps"
             if finding.diverged else f"all {len(finding.lrs)} steps ran, up to lr {finding.lrs[-1]:.3g}")
    return (f"Range test: {ended}; the smoothed loss fell fastest at lr {finding.suggestion:.3g} "
            f"(from {finding.smoothed[0]:.4g} to a lowest {min(finding.smoothed):.4g}).")


def found_lr(cfg, settings, source, train_index, folder: Path, *, seed: int, device, resume: bool,
             data_parallel: bool, main: bool = True, out=console):
    """``trainer.lr_find=true`` at the start of a fit or fold in ``folder``: the range test on its
    training rows (seeded like its model), its files in ``folder``; a resumed run's recorded value
    instead, never a new test. (cfg and settings with that optimizer.lr, the value)."""
    from omegaconf import OmegaConf

    if data_parallel:
        raise DltrainError("trainer.lr_find=true runs in one process: find the lr with dltrain lr-find, "
                           "then train data-parallel with optimizer.lr=VALUE.")
    if resume:
        lr = read_suggestion(folder)
        out.print(f"lr-find: training on with the learning rate it found at the start, optimizer.lr={lr:.3g}.")
    else:
        finding = find_lr(settings, source, train_index, seed=seed, device=device)
        lr = finding.suggestion
        if main:
            save_finding(folder, finding, f"model={settings.model.name} data={settings.data.name} "
                                          f"optimizer={settings.optimizer.name}")
        out.print(f"lr-find: {describe(finding)} Training with optimizer.lr={lr:.3g} (was "
                  f"{settings.optimizer.lr:g}); the curve is in {folder / PNG}.")
    found = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.update(found, "optimizer.lr", lr)
    settings = dataclasses.replace(settings, optimizer=dataclasses.replace(settings.optimizer, lr=lr))
    return found, settings, lr
