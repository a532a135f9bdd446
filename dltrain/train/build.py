"""``build(settings, spec)``: the one place a run's objective, model, optimizer and schedule are
built from its settings and the data's spec (fit, cv folds, population members, eval, predict)."""

from __future__ import annotations

from dataclasses import dataclass

from dltrain.errors import DltrainError
from dltrain.models import create_model
from dltrain.train.ensemble import Ensemble
from dltrain.train.metrics import check_monitor, monitor_mode
from dltrain.train.objective import build_objective
from dltrain.train.optim import CLOSED_FORM, build_optimizer, build_schedule, closed_form_refusal


@dataclass
class Parts:
    objective: object
    model: object
    optimizer: object = None  # None when built for inference (eval, predict)
    regularizer: object = None
    schedule: object = None


def refuse_ensemble(trainer, where: str) -> None:
    """One sentence when ``trainer.ensemble`` asks for seeds anywhere but dltrain fit (``where``:
    the command that refuses it, before it writes anything)."""
    if trainer.ensemble > 1:
        raise DltrainError(f"trainer.ensemble={trainer.ensemble} is for dltrain fit, which trains the seeds as "
                           f"members of their own; {where} use trainer.ensemble=1.")


def build(settings, spec, *, steps_per_epoch: int = 1, training: bool = True, train_targets=None) -> Parts:
    """``settings``: the validated Settings; ``spec``: the DataSpec the model is sized from;
    ``steps_per_epoch``: for schedules that step every batch (onecycle); ``train_targets``: the
    training rows' encoded targets, for class weights counted from them (loss.class_weights=auto)."""
    objective = build_objective(settings.loss.name, settings.loss.options, spec,
                                train_targets if training else None)
    model = create_model(settings.model.name, spec, objective.output_size, **settings.model.options)
    if training:  # dltrain fit trains the seeds as members of their own, never through here
        refuse_ensemble(settings.trainer, "here")
    if settings.trainer.ensemble > 1:  # a seed ensemble's run, for eval, predict and export
        model = Ensemble([model, *(create_model(settings.model.name, spec, objective.output_size,
                                                **settings.model.options)
                                   for _ in range(settings.trainer.ensemble - 1))],
                         objective.task, objective.output_size, objective.target)
    if not training:
        return Parts(objective, model)
    trainer = settings.trainer
    check_monitor(trainer.monitor, spec.task)
    if settings.optimizer.name == CLOSED_FORM:
        refusal = closed_form_refusal(settings.model.name, objective.loss_name, settings.regularization.name)
        if refusal:
            raise DltrainError(refusal)
        if trainer.lr_find:
            raise DltrainError("optimizer=closed_form takes no steps, so it has no learning rate to find; "
                               "drop trainer.lr_find=true.")
    optimizer, regularizer = build_optimizer(model, settings.optimizer, settings.regularization)
    schedule = build_schedule(optimizer, settings.scheduler, epochs=trainer.epochs,
                              steps_per_epoch=steps_per_epoch,
                              mode=monitor_mode(trainer.monitor, trainer.mode))
    return Parts(objective, model, optimizer, regularizer, schedule)
