"""The loss registry. Each module of this package registers its losses with
``@register_loss(name, tasks=..., output_size=...)`` on a function that takes the loss's settings
and returns a criterion ``criterion(outputs, targets)``; the modules load on the first lookup."""

from __future__ import annotations

from dltrain.data.spec import TASKS
from dltrain.registry import REQUIRED, Registry

LOSSES = Registry("loss", {
    "tasks": REQUIRED,        # the targets it serves: regression, binary, multiclass
    # The model outputs it needs: 1 (a value or a logit), or "num_classes" (a logit per class).
    "output_size": REQUIRED,
    "default_for": (),        # the tasks for which loss=auto picks it
}, package=__name__)


def register_loss(name: str, *, tasks: tuple[str, ...], output_size: int | str,
                  default_for: tuple[str, ...] = ()):
    """Decorator: register a function ``make(**settings) -> criterion`` as loss ``name``."""
    if not tasks or any(t not in TASKS for t in (*tasks, *default_for)) or not set(default_for) <= set(tasks):
        raise ValueError(f"loss '{name}' declares tasks {tasks} / default_for {default_for}; "
                         f"tasks are {TASKS}")
    if output_size not in (1, "num_classes"):
        raise ValueError(f"loss '{name}': output_size must be 1 or 'num_classes', got {output_size!r}")
    return LOSSES.register(name, tasks=tuple(tasks), output_size=output_size,
                           default_for=tuple(default_for))
