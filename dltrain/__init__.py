"""dltrain: configuration-driven deep-learning training from the shell.

The Python API mirrors the command line: ``dltrain.fit("model=mlp", "trainer.epochs=5")``
runs exactly what ``dltrain fit model=mlp trainer.epochs=5`` runs and returns its result.
"""

__version__ = "0.1.0"


def compose(*overrides: str):
    """The composed, validated config for these overrides (what ``dltrain config`` prints)."""
    from dltrain.config import compose as _compose

    return _compose(list(overrides))


def fit(*overrides: str):
    """Train as ``dltrain fit OVERRIDES`` does, in a new run folder; returns the FitResult."""
    from dltrain.commands.fit import fit as run

    return run(list(overrides))


def cv(*overrides: str):
    """Cross-validate as ``dltrain cv OVERRIDES`` does; returns the summary (cv_summary.json)."""
    from dltrain.commands.cv import cv as run

    return run(list(overrides))
