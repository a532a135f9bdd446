"""The config groups on disk: where conf/ is, the options of each group and their one-line
descriptions. The bottom of the config layer: composing and reading settings both use it."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "regularization", "trainer", "logger", "cv",
          "landscape", "tune", "recipe")
SETTING_GROUPS = tuple(group for group in GROUPS if group != "recipe")  # a recipe only sets the others
# Groups of which several options can be chosen at once (logger=[tensorboard,csv], Hydra's list of
# options): each option keeps its settings under its own name (logger.tensorboard.graph), and the
# options chosen are the names the group's node holds (logger=none: an empty node).
MULTI_GROUPS = ("logger",)
GROUP_TITLES = {
    "data": "datasets",
    "model": "models",
    "loss": "losses",
    "optimizer": "optimizers",
    "scheduler": "learning-rate schedulers",
    "regularization": "regularization",
    "trainer": "trainer presets",
    "logger": "loggers (several at once: logger=[tensorboard,csv]; logger=none: none)",
    "cv": "cross-validation for dltrain cv (k=N sets the number of folds)",
    "landscape": "the loss-landscape grid of dltrain landscape (landscape.grid=N, landscape.span=X)",
    "tune": "hyperparameter search for dltrain tune (tune.space, successive halving)",
    "recipe": "recipes (complete presets)",
}
# Settings holding free-form entries (a search space's setting names), not keys of their own.
FREE_FORM = (("tune", "space"), ("tune", "regression_space"))


def config_dir() -> Path:
    """The folder holding config.yaml and the groups: inside the package when installed from
    a wheel, the repository's conf/ for an editable install or a source checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "conf", package_dir.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"dltrain's configs are missing: no conf/config.yaml next to {package_dir}")


@lru_cache(maxsize=None)
def group_options(group: str) -> dict[str, str]:
    """The options of a config group, each with the one-line description its YAML starts with."""
    folder = config_dir() / group
    options = {}
    for path in sorted(folder.glob("*.yaml")):
        options[path.stem] = _description(path)
    return options


def _description(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and not text.lstrip("# ").startswith("@package"):
            return text.lstrip("# ").strip()
    return ""


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def option_settings(group: str, option: str) -> dict:
    """The settings an option defines (its own YAML over the options its defaults list names),
    as plain values: the keys that option reads, and the one place each key's default lives."""
    return copy.deepcopy(_option_settings(group, option))


@lru_cache(maxsize=None)
def _option_settings(group: str, option: str) -> dict:
    own = dict(_load(config_dir() / group / f"{option}.yaml"))
    entries = own.pop("defaults", None) or []
    if "_self_" not in entries:
        entries = [*entries, "_self_"]
    settings: dict = {}
    for entry in entries:
        settings = merged(settings, own if entry == "_self_" else _option_settings(group, entry))
    return settings


def options_settings(group: str, options) -> dict:
    """The settings of several options of a group chosen at once (MULTI_GROUPS), merged."""
    settings: dict = {}
    for option in options:
        settings = merged(settings, _option_settings(group, option))
    return copy.deepcopy(settings)


def merged(base: dict, top: dict) -> dict:
    """``top`` over ``base``, nested groups of settings merged key by key (lists replaced)."""
    result = dict(base)
    for key, item in top.items():
        if isinstance(item, dict) and isinstance(result.get(key), dict):
            item = merged(result[key], item)
        result[key] = item
    return result


@lru_cache(maxsize=None)
def default_choices() -> dict[str, str]:
    """The option config.yaml's defaults list selects for each group (data: digits, ...)."""
    choices = {}
    for entry in _load(config_dir() / "config.yaml").get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                if option is not None:
                    choices[group] = option
    return choices


def top_level_settings() -> dict:
    """The settings config.yaml itself defines at the top (resume, k), with their defaults."""
    return {key: copy.deepcopy(item) for key, item in _load(config_dir() / "config.yaml").items()
            if key not in ("defaults", "hydra")}
