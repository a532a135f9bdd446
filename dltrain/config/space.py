"""A search space (``tune.space``) in the syntax of Hydra's Optuna sweeper, read with Hydra's own
override parser, and the samplers that draw its points: Sobol, random, or Optuna's TPE. A point
is a list of overrides (``optimizer.lr=0.0123``), the same words ``-m`` would give a job."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dltrain.errors import DltrainError

SAMPLERS = ("sobol", "random", "tpe")


@dataclass(frozen=True)
class Dimension:
    """One setting of the space: ``fixed`` (one value for every point), ``float`` (an interval,
    on a log scale with ``log``) or ``choice`` (``choices``: each the text of an override value)."""

    key: str
    kind: str
    text: str  # the expression as written
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[str, ...] = ()

    def value(self, u: float) -> str:
        """The value at ``u`` in [0, 1) of this dimension, as an override's text."""
        if self.kind == "fixed":
            return self.choices[0]
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.log:
            number = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            number = self.low + u * (self.high - self.low)
        return f"{min(max(float(f'{number:.4g}'), self.low), self.high):.4g}"  # as the recipe states it


def parse_space(space: dict[str, str]) -> list[Dimension]:
    """The dimensions of ``space`` (setting -> expression), or one sentence for an entry Hydra's
    grammar cannot read or that cannot be searched."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep, Transformer
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    dimensions = []
    for key, expression in space.items():
        text = str(expression).strip() if not isinstance(expression, list) else str(expression)
        if key.split(".")[0].lstrip("+~") in ("hydra", "tune", "resume"):
            raise DltrainError(f"tune.space cannot search {key}; search the settings of a run (optimizer.lr, "
                               f"model.hidden_sizes, ...).")
        try:
            override = parser.parse_override(f"{key}={text}")
        except HydraException as error:
            raise DltrainError(f"tune.space entry {key}: {text!r} is not an Optuna-sweeper expression such as "
                               f"tag(log, interval(1e-4, 3e-1)) or choice(a, b) "
                               f"({str(error).strip().splitlines()[0]}).") from None
        if not override.is_sweep_override():
            dimensions.append(Dimension(key, "fixed", text, choices=(override.get_value_element_as_str(),)))
        elif override.is_interval_sweep():
            sweep: IntervalSweep = override.value()
            low, high, log = float(sweep.start), float(sweep.end), "log" in sweep.tags
            if not low < high or (log and low <= 0):
                raise DltrainError(f"tune.space entry {key}: {text} needs LOW < HIGH"
                                   f"{' and LOW above 0 on a log scale' if log else ''}.")
            dimensions.append(Dimension(key, "float", text, low, high, log))
        else:  # choice(...), a,b,c or range(...): its values as override texts
            choices = tuple(str(v) for v in override.sweep_iterator(transformer=Transformer.encode))
            if not choices:
                raise DltrainError(f"tune.space entry {key}: {text} has no value to choose.")
            dimensions.append(Dimension(key, "choice", text, choices=choices))
    return dimensions


def searched(dimensions: list[Dimension]) -> list[Dimension]:
    return [d for d in dimensions if d.kind != "fixed"]


class Sampler:
    """Draws points of ``dimensions``: ``ask(n)`` gives n points (each a list of overrides),
    ``tell(scores)`` reports the scores of the points asked, in order (TPE learns from them)."""

    def __init__(self, dimensions: list[Dimension], kind: str, seed: int, minimize: bool):
        self.dimensions, self.kind, self.seed, self.minimize = dimensions, kind, seed, minimize
        self.drawn = 0
        self._asked: list = []  # TPE's trials of the points asked and not yet told, in order
        if kind == "sobol":
            from torch.quasirandom import SobolEngine

            self.sobol = SobolEngine(max(len(searched(dimensions)), 1), scramble=True, seed=seed)
        elif kind == "random":
            import numpy as np

            self.random = np.random.default_rng(seed)
        else:
            self.study = _tpe_study(seed, minimize)

    def ask(self, count: int) -> list[list[str]]:
        free = searched(self.dimensions)
        if self.kind == "tpe":
            return [self._ask_tpe(free) for _ in range(count)]
        units = (self.sobol.draw(count).tolist() if self.kind == "sobol"
                 else self.random.random((count, max(len(free), 1))).tolist())
        return [self._point({d.key: d.value(u) for d, u in zip(free, row)}) for row in units]

    def tell(self, scores: list[float]) -> None:
        if self.kind != "tpe":
            return
        trials, self._asked = self._asked[:len(scores)], self._asked[len(scores):]
        for trial, score in zip(trials, scores):
            if math.isfinite(score):
                self.study.tell(trial, score)
            else:
                self.study.tell(trial, state=_optuna().trial.TrialState.FAIL)

    def _point(self, values: dict[str, str]) -> list[str]:
        return [f"{d.key}={values.get(d.key, d.choices[0] if d.kind == 'fixed' else '')}"
                for d in self.dimensions]

    def _ask_tpe(self, free: list[Dimension]) -> list[str]:
        optuna = _optuna()
        distributions = {}
        for d in free:
            if d.kind == "choice":
                distributions[d.key] = optuna.distributions.CategoricalDistribution(d.choices)
            elif d.log:
                distributions[d.key] = optuna.distributions.LogUniformDistribution(d.low, d.high)
            else:
                distributions[d.key] = optuna.distributions.UniformDistribution(d.low, d.high)
        trial = self.study.ask(distributions)
        values = {d.key: (trial.params[d.key] if d.kind == "choice" else f"{trial.params[d.key]:.4g}")
                  for d in free}
        point = self._point(values)
        self._asked.append(trial)
        return point


def _optuna():
    try:
        import optuna
    except ImportError:
        raise DltrainError("tune.sampler=tpe needs Optuna: pip install 'dltrain[search]' (or use "
                           "tune.sampler=sobol or random).") from None
    return optuna


def _tpe_study(seed: int, minimize: bool):
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="minimize" if minimize else "maximize",
                               sampler=optuna.samplers.TPESampler(seed=seed))
