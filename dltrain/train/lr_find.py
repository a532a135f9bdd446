"""The learning-rate range test (Smith 2015, run as fastai and Lightning run it): train from a
tiny learning rate that grows exponentially every step, smooth the loss, stop once it diverges,
and suggest the learning rate where the smoothed loss falls fastest. The model and optimizer
are left as they were. Also the files a finding is kept in: lr_find.json and lr_find.png."""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from dltrain.data import prepare
from dltrain.errors import DltrainError
from dltrain.files import read_json_object, write_atomic, write_json
from dltrain.train.build import build
from dltrain.train.device import seed_everything
from dltrain.train.engine import batch_size_for
from dltrain.train.member import forward
from dltrain.train.staging import augmented_inputs, length, rows

START_LR = 1e-7
END_LR = 10.0
STEPS = 100
SMOOTHING = 0.98  # the weight of the running average: fastai's and Lightning's
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its lowest value
SKIP_BEGIN, SKIP_END = 10, 1  # steps left out of the suggestion: the noisy start and the last one
# The descent's slope is measured across this many steps either side (0.4 of a decade at the
# defaults), not between neighbours: a wiggle of a noisy loss is then no steepest descent.
SLOPE_SPAN = 5
JSON, PNG = "lr_find.json", "lr_find.png"


@dataclass
class LrFinding:
    lrs: list = field(default_factory=list)  # the lr of each step taken
    losses: list = field(default_factory=list)  # each step's training loss
    smoothed: list = field(default_factory=list)  # its running average, bias-corrected
    suggestion: float | None = None
    index: int | None = None  # the step of the suggestion
    diverged: bool = False  # the test stopped before its last step: the loss diverged

    def to_dict(self) -> dict:
        return {"suggestion": self.suggestion, "index": self.index, "diverged": self.diverged,
                "start_lr": START_LR, "end_lr": END_LR, "steps": STEPS, "smoothing": SMOOTHING,
                "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed}


def range_test(parts, train, device, *, batch_size: int, seed: int, grad_clip: float = 0.0,
               start_lr: float = START_LR, end_lr: float = END_LR, steps: int = STEPS) -> LrFinding:
    """Run the range test with ``parts`` (from build: model, objective, optimizer, regularizer)
    on the training split ``train`` (inputs, targets, augment), batches of ``batch_size`` in an
    order drawn from ``seed``, on ``device``. The model's weights, buffers and mode, the
    optimizer's state and settings and the global random generators are restored afterwards."""
    import torch

    model, optimizer, objective, regularizer = parts.model, parts.optimizer, parts.objective, parts.regularizer
    weights = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    home = next(model.parameters()).device
    finding = LrFinding()
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            model.to(device).train()
            generator = torch.Generator().manual_seed(seed)
            n = length(train.x)
            size = batch_size_for(n, batch_size)
            order, position = torch.randperm(n, generator=generator), 0
            average = best = 0.0
            for step in range(steps):
                if position + size > n:  # a new pass over the rows, in a new order
                    order, position = torch.randperm(n, generator=generator), 0
                index = order[position:position + size]
                position += size
                inputs = augmented_inputs(rows(train.x, index), device, train.augment)
                targets = train.y[index].to(device)
                lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss = objective.loss(forward(model, inputs), targets)
                total = loss + regularizer.penalty() if regularizer is not None and regularizer.l1 else loss
                total.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    finding.diverged = step + 1 < steps
                    break
                average = SMOOTHING * average + (1 - SMOOTHING) * value
                smoothed = average / (1 - SMOOTHING ** (step + 1))
                finding.lrs.append(lr)
                finding.losses.append(value)
                finding.smoothed.append(smoothed)
                best = smoothed if step == 0 else min(best, smoothed)
                if step > 0 and smoothed > DIVERGED * best:
                    finding.diverged = step + 1 < steps
                    break
    finally:
        model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
        model.to(home).train(was_training)
    finding.index = steepest_descent(finding.lrs, finding.smoothed)
    finding.suggestion = finding.lrs[finding.index]
    return finding


def steepest_descent(lrs: list, smoothed: list) -> int:
    """The step where the smoothed loss falls fastest against log(lr) (its slope across
    SLOPE_SPAN steps either side) on its way down to its lowest value, leaving out the first
    SKIP_BEGIN steps and the last SKIP_END (as Lightning does). Past the lowest value the loss diverges; there it may fall again (a model whose
    weights blew up settles at predicting a constant), which is no lr to train with."""
    import numpy as np

    values = np.asarray(smoothed)
    end = min(len(values) - SKIP_END, int(np.argmin(values)) + 1) if len(values) else 0
    if end - SKIP_BEGIN < 2:
        raise DltrainError(
            f"The learning-rate range test found its lowest loss after {end} of {len(values)} steps, by lr "
            f"{lrs[max(end - 1, 0)] if lrs else START_LR:.3g}: too early to suggest a value (the loss never "
            f"fell); check the data for extreme values, the loss, or set data.batch_size larger.")
    where = np.log10(np.asarray(lrs))
    slopes = []
    for step in range(SKIP_BEGIN, end):
        low, high = max(SKIP_BEGIN, step - SLOPE_SPAN), min(end - 1, step + SLOPE_SPAN)
        slopes.append((values[high] - values[low]) / (where[high] - where[low]))
    return int(np.argmin(slopes)) + SKIP_BEGIN


def find_lr(settings, source, train_index, *, seed: int, device) -> LrFinding:
    """The range test for the model and optimizer ``settings`` describe, seeded ``seed``, on rows
    ``train_index`` of ``source`` (their preprocessing fitted on them), as a fit would start."""
    seed_everything(seed)
    data = prepare(source, train_index)
    parts = build(settings, data.spec, training=True)
    return range_test(parts, data.train, device, batch_size=settings.data.batch_size, seed=seed,
                      grad_clip=settings.trainer.grad_clip)


def save_finding(folder: Path, finding: LrFinding, title: str) -> None:
    """lr_find.json (the suggestion and the curve) and lr_find.png (the curve) in ``folder``."""
    write_json(Path(folder) / JSON, finding.to_dict())
    write_atomic(Path(folder) / PNG, plot(finding, title))


def read_suggestion(folder: Path) -> float:
    """The suggestion a run folder's lr_find.json holds (a resume trains on with it), checked."""
    saved = read_json_object(Path(folder) / JSON) or {}
    value = saved.get("suggestion")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise DltrainError(f"{str(Path(folder) / JSON)!r} holds no learning rate found for this run, which "
                           f"trainer.lr_find=true trains with; it is missing or corrupted: start a new run.")
    return float(value)


def plot(finding: LrFinding, title: str) -> bytes:
    """The curve as a PNG: each step's loss and the smoothed loss against lr (log scale), the
    suggestion marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(finding.lrs, finding.losses, color="0.75", linewidth=1, label="loss")
    axes.plot(finding.lrs, finding.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    axes.axvline(finding.suggestion, color="tab:red", linestyle="--",
                 label=f"suggestion {finding.suggestion:.3g} (steepest descent)")
    axes.plot([finding.suggestion], [finding.smoothed[finding.index]], "o", color="tab:red")
    axes.set_xscale("log")
    low = min(finding.smoothed)
    axes.set_ylim(bottom=min(low, min(finding.losses)) * 0.95 if low > 0 else None,
                  top=max(finding.smoothed[0], low) * 1.5 + 1e-12)
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.legend(loc="upper left")
    axes.grid(True, which="both", alpha=0.3)
    stream = io.BytesIO()
    FigureCanvasAgg(figure).print_png(stream)
    return stream.getvalue()
