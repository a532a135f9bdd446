"""Optimizers, learning-rate schedulers and regularization (weight decay and L1 on weights only),
each a registry whose entries say what the trainer needs to know about them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dltrain.checks import check_keywords
from dltrain.errors import DltrainError
from dltrain.registry import Registry

# name -> torch.optim class, called as cls(param_groups, lr=..., **settings)
OPTIMIZERS = Registry("optimizer")
for _name, _class in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                      ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop),
                      ("adagrad", torch.optim.Adagrad)):
    OPTIMIZERS.add(_name, _class)

# optimizer=closed_form is no torch optimizer: linear regression's least-squares solution, solved
# once before the one epoch that measures it (ClosedForm).
CLOSED_FORM = "closed_form"

# name -> penalties(**settings) -> Penalties
REGULARIZATION = Registry("regularization", {
    "weight_decay": False,  # decays weights through the optimizer's param groups
    "l1": False,            # adds l1 * sum(|w|) to the loss
})

# name -> make(ScheduleContext, **settings) -> torch scheduler or None
SCHEDULERS = Registry("scheduler", {
    "per_batch": False,     # steps after every batch, not every epoch
    "needs_metric": False,  # step() takes the monitored value
    "fitted_to_epochs": False,  # its curve spans trainer.epochs: a different count changes every lr
})


@dataclass(frozen=True)
class Penalties:
    """How strongly weights are penalised: ``weight_decay`` (L2, through the optimizer) and
    ``l1`` (added to the loss)."""

    weight_decay: float = 0.0
    l1: float = 0.0


@REGULARIZATION.register("none")
def _no_penalty() -> Penalties:
    return Penalties()


@REGULARIZATION.register("l2", weight_decay=True)
def _l2(weight_decay: float = 0.0) -> Penalties:
    return Penalties(weight_decay=float(weight_decay))


@REGULARIZATION.register("l1", l1=True)
def _l1(l1: float = 0.0) -> Penalties:
    return Penalties(l1=float(l1))


@REGULARIZATION.register("elastic", weight_decay=True, l1=True)
def _elastic(weight_decay: float = 0.0, l1: float = 0.0) -> Penalties:
    return Penalties(weight_decay=float(weight_decay), l1=float(l1))


@dataclass
class Regularizer:
    """The L1 part of regularization: ``penalty()`` is added to the loss each step."""

    l1: float = 0.0
    weights: list = field(default_factory=list)

    def penalty(self):
        return self.l1 * sum(w.abs().sum() for w in self.weights)


def weights_and_others(model) -> tuple[list, list]:
    """Weight matrices and kernels (decayed) apart from biases and norm parameters (not decayed)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return decay, no_decay


class ClosedForm(torch.optim.Optimizer):
    """optimizer=closed_form for model=linear and loss=mse: ``solve`` sets the weights to the
    least-squares solution on the training rows (torch.linalg.lstsq, in float64); with
    regularization=l2, ridge regression with the bias unpenalised, the minimum of the same
    objective SGD with that weight decay descends (mean squared error + weight_decay/2 * |w|²).
    Its ``step`` changes nothing, so the one epoch that follows measures the solution."""

    def __init__(self, layer, weight_decay: float = 0.0):
        super().__init__(list(layer.parameters()), {"lr": 0.0})
        self.layer, self.weight_decay = layer, float(weight_decay)

    def step(self, closure=None):
        return None

    @torch.no_grad()
    def solve(self, x: torch.Tensor, y: torch.Tensor) -> None:
        weight, bias = self.layer.weight, self.layer.bias
        rows = len(x)
        inputs = x.reshape(rows, -1).detach().to("cpu", torch.float64)
        targets = y.reshape(rows, -1).detach().to("cpu", torch.float64)
        design = torch.cat([inputs, torch.ones(rows, 1, dtype=torch.float64)], dim=1)
        if self.weight_decay:
            # Extra rows sqrt(λ)·I (λ = rows * weight_decay / 2) penalise the weights, not the bias.
            features = inputs.shape[1]
            penalty = torch.zeros(features, features + 1, dtype=torch.float64)
            penalty[:, :features] = torch.eye(features, dtype=torch.float64) * (rows * self.weight_decay / 2) ** 0.5
            design = torch.cat([design, penalty])
            targets = torch.cat([targets, torch.zeros(features, targets.shape[1], dtype=torch.float64)])
        solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution  # rank-deficient too
        weight.copy_(solution[:-1].T.to(weight))
        bias.copy_(solution[-1].to(bias))


def closed_form_refusal(model: str, loss: str, regularization: str) -> str | None:
    """Why optimizer=closed_form cannot train this (None when it can)."""
    if model != "linear" or loss != "mse":
        return (f"optimizer=closed_form solves linear regression's least squares, so it needs model=linear "
                f"and loss=mse, not model={model} with loss={loss}; use a gradient optimizer such as optimizer=sgd.")
    if regularization not in ("none", "l2"):
        return (f"optimizer=closed_form has a closed form for regularization=none or l2 (ridge), not "
                f"regularization={regularization}; use optimizer=sgd for an L1 penalty.")
    return None


def build_optimizer(model, settings, regularization) -> tuple[torch.optim.Optimizer, Regularizer]:
    """``settings``: OptimizerSettings; ``regularization``: NamedSettings (none, l2, l1, elastic)."""
    if settings.name == CLOSED_FORM:
        return ClosedForm(model.linear, **regularization.options), Regularizer()
    cls = OPTIMIZERS[settings.name].constructor
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.options.items()}
    if "weight_decay" in options:
        raise DltrainError("Set weight decay with regularization=l2 regularization.weight_decay=VALUE "
                           "(it then spares biases and norm parameters), not optimizer.weight_decay.")
    check_keywords(cls, options, f"optimizer={settings.name}", "optimizer")
    penalty = REGULARIZATION[regularization.name]
    check_keywords(penalty.constructor, regularization.options,
                   f"regularization={regularization.name}", "regularization")
    penalties = penalty(**regularization.options)
    decay, no_decay = weights_and_others(model)
    if penalties.weight_decay:
        groups = [{"params": decay, "weight_decay": penalties.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:  # one group: one fused update per step instead of two
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    try:
        optimizer = cls(groups, lr=settings.lr, **options)
    except (ValueError, TypeError, IndexError) as error:
        raise DltrainError(f"optimizer={settings.name} rejected its settings: {error}.") from None
    return optimizer, Regularizer(l1=penalties.l1, weights=decay if penalties.l1 else [])


@dataclass(frozen=True)
class ScheduleContext:
    """What a scheduler is fitted to: the optimizer and the run's length and direction."""

    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    mode: str  # min | max, of the monitored value


# The context is positional-only, so that the settings check lists only the real settings.
@SCHEDULERS.register("none")
def _constant(run: ScheduleContext, /) -> None:
    return None


@SCHEDULERS.register("step")
def _step(run: ScheduleContext, /, step_size: int = 10, gamma: float = 0.1):
    # torch takes both as they come, then divides by a step_size of 0 at the first epoch's end
    if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
        raise DltrainError(f"scheduler.step_size must be a whole number of epochs of at least 1, got {step_size!r}.")
    if gamma <= 0:
        raise DltrainError(f"scheduler.gamma must be greater than 0 (the factor the lr is multiplied by "
                           f"every step_size epochs, such as 0.1), got {gamma!r}.")
    return torch.optim.lr_scheduler.StepLR(run.optimizer, step_size, gamma)


@SCHEDULERS.register("cosine", fitted_to_epochs=True)
def _cosine(run: ScheduleContext, /, eta_min: float = 0.0):
    return torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, run.epochs, eta_min)


@SCHEDULERS.register("plateau", needs_metric=True)
def _plateau(run: ScheduleContext, /, factor: float = 0.1, patience: int = 5):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(run.optimizer, mode=run.mode, factor=factor,
                                                      patience=patience)


@SCHEDULERS.register("onecycle", per_batch=True, fitted_to_epochs=True)
def _onecycle(run: ScheduleContext, /, max_lr_factor: float = 10.0, pct_start: float = 0.3):
    return torch.optim.lr_scheduler.OneCycleLR(
        run.optimizer, max_lr=[g["lr"] * max_lr_factor for g in run.optimizer.param_groups],
        total_steps=run.epochs * run.steps_per_epoch, pct_start=pct_start)


@dataclass
class Schedule:
    """A scheduler and when it steps: after every batch (onecycle) or every epoch (the rest)."""

    scheduler: object = None
    per_batch: bool = False
    needs_metric: bool = False

    def after_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def after_epoch(self, monitored_value: float) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(monitored_value)
        else:
            self.scheduler.step()


def build_schedule(optimizer, settings, *, epochs: int, steps_per_epoch: int, mode: str) -> Schedule:
    """``settings``: NamedSettings for the scheduler group."""
    entry = SCHEDULERS[settings.name]
    options = dict(settings.options)
    check_keywords(entry.constructor, options, f"scheduler={settings.name}", "scheduler")
    try:
        scheduler = entry(ScheduleContext(optimizer, epochs, steps_per_epoch, mode), **options)
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise DltrainError(f"scheduler={settings.name} rejected its settings: {error}.") from None
    return Schedule(scheduler, per_batch=entry.per_batch, needs_metric=entry.needs_metric)
