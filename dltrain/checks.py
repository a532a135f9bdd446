"""Checks of user-given values that every layer shares: a setting read as the right kind, and
keyword settings checked against the signature of what they configure. Each failure is one
sentence naming the key and what would be valid."""

from __future__ import annotations

from typing import Any

from dltrain.errors import DltrainError

_MISSING = object()
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def value(cfg, key: str, kind: type, default: Any = _MISSING, *, minimum=None, above=None,
          below=None, choices=None) -> Any:
    """Read ``key`` from cfg as ``kind``; raise one sentence naming the key when it does not fit."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        raw = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
    except MissingMandatoryValue:
        raise DltrainError(f"{key} is required: set it with {key}=VALUE.") from None
    except OmegaConfBaseException as error:
        raise DltrainError(f"{key} could not be read: {_first_line(error)}.") from None
    if raw is _MISSING or raw is None:
        if default is _MISSING:
            raise DltrainError(f"{key} is missing: set it with {key}=VALUE.")
        return default
    ok = isinstance(raw, kind) and not (kind is not bool and isinstance(raw, bool))
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw, ok = float(raw), True
    if not ok:
        raise DltrainError(f"{key} must be {_KINDS[kind]}, got {raw!r}.")
    if choices is not None and raw not in choices:
        raise DltrainError(f"{key} must be one of {', '.join(map(str, choices))}; got {raw!r}.")
    if minimum is not None and raw < minimum:
        raise DltrainError(f"{key} must be at least {minimum}, got {raw!r}.")
    if above is not None and raw <= above:
        raise DltrainError(f"{key} must be greater than {above}, got {raw!r}.")
    if below is not None and raw >= below:
        raise DltrainError(f"{key} must be less than {below}, got {raw!r}.")
    return raw


def check_keywords(function, options: dict, label: str, group: str) -> None:
    """Refuse settings ``function`` does not take, and numbers or booleans of the wrong kind
    (judged by the parameter's default), naming the key: ``label`` is e.g. "scheduler=step"."""
    import inspect

    parameters = {name: p for name, p in inspect.signature(function).parameters.items()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key, given in options.items():
        if key not in parameters:
            names = ", ".join(n for n in parameters if n not in ("spec", "output_size", "params"))
            raise DltrainError(f"{label} has no setting '{key}'; its settings are: {names or 'none'}.")
        default = parameters[key].default
        if isinstance(default, bool):
            if not isinstance(given, bool):
                raise DltrainError(f"{group}.{key} must be true or false, got {given!r}.")
        elif isinstance(default, (int, float)):
            if isinstance(given, bool) or not isinstance(given, (int, float)):
                raise DltrainError(f"{group}.{key} must be a number, got {given!r}.")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__


def seed_option(options: dict, key: str = "data.seed") -> int:
    """A seed among an option's keyword settings (``options``, such as a generated dataset's),
    checked as trainer.seed is: what numpy and scikit-learn accept."""
    seed = options.get(key.rsplit(".", 1)[-1], 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DltrainError(f"{key} must be an integer, got {seed!r}.")
    if seed < 0:
        raise DltrainError(f"{key} must be at least 0, got {seed!r}.")
    if seed >= 2**32:
        raise DltrainError(f"{key} must be less than {2**32}, got {seed!r}.")
    return seed
