"""Mistakes explained: a Hydra or OmegaConf error turned into one sentence that names the bad
override and what would be valid, with a did-you-mean for a mistyped key."""

from __future__ import annotations

import difflib
import re

from dltrain.config.groups import (
    MULTI_GROUPS,
    SETTING_GROUPS,
    default_choices,
    group_options,
    option_settings,
    options_settings,
    top_level_settings,
)
from dltrain.models.custom import CUSTOM

_PLUGINS = {  # hydra/<group>=<option> -> the pip command that installs the plugin holding it
    ("sweeper", "optuna"): "pip install 'dltrain[search]' (or pip install hydra-optuna-sweeper)",
    ("launcher", "submitit_slurm"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "submitit_local"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "slurm"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "joblib"): "pip install hydra-joblib-launcher",
}


# Keys an older dltrain read -> the sentence that says what replaced them (a run folder's saved
# config is upgraded instead: dltrain.config.settings.upgrade_saved).
REPLACED = {
    "data.standardize_target": "data.standardize_target was replaced by data.target_transform: set "
                               "data.target_transform=standardize, none or log.",
    "data.random_crop": "data.random_crop was replaced by an entry of data.augment: set "
                        "'data.augment=[{name:RandomCrop,padding:4}]' (with any other operations).",
    "data.horizontal_flip": "data.horizontal_flip was replaced by an entry of data.augment: set "
                            "data.augment=[RandomHorizontalFlip] (with any other operations).",
}


def missing_plugin(message: str) -> str | None:
    """The sentence for a Hydra error about an unknown hydra/launcher or hydra/sweeper option:
    for one a plugin provides that is not installed (a recipe such as search_mlp_digits selects
    the optuna sweeper), the pip command that installs it; else the valid options."""
    match = re.search(r"Could not find 'hydra/(launcher|sweeper)/([\w.-]+)'(?: Available options in "
                      r"'hydra/\w+': (.*?) Config search path)?", message)
    if match is None:
        return None
    group, option, available = match.groups()
    if (group, option) in _PLUGINS:
        return (f"hydra/{group}={option} needs a Hydra plugin that is not installed; "
                f"install it with: {_PLUGINS[group, option]}.")
    valid = ", ".join((available or "basic").split())
    return f"Unknown hydra/{group} '{option}'; valid options are: {valid}."


def explain_hydra_error(error: Exception, cfg=None) -> str:
    """One sentence for an error Hydra raised while composing the shell's overrides; ``cfg``, the
    config composed without the override at fault, tells which options' keys to suggest."""
    message = " ".join(str(error).split())
    hint = missing_plugin(message)  # hydra/sweeper=optuna, hydra/launcher=submitit_slurm, ...
    if hint:
        return hint
    match = re.search(r"input_line='([^']*)'", message)
    if match:
        reason = message.split(" : ")[0].split(": Override(")[0]
        return f"The override '{match.group(1)}' is not valid: {reason}."
    match = re.search(r"Could not override '([^']+)'", message)
    if match:
        return no_such_setting(match.group(1), "override", cfg)
    match = re.search(r"Could not (?:append to config|delete from config)\. (.+?) is not in", message)
    match = match or re.search(r"Could not delete from config\. '([^']+)' does not exist", message)
    if match:
        return no_such_setting(match.group(1), "delete", cfg)
    match = re.search(r"Could not append to config\. An item is already at '([^']+)'", message)
    if match:
        key = match.group(1)
        return f"{key} is already a setting; change it with {key}=VALUE (without +)."
    if "Ambiguous value for argument" in message or "sweep" in message.lower():
        return f"{message} (Comma-separated values run a sweep: add -m.)"
    return message


def did_you_mean(typed: str, known: list[str]) -> str | None:
    """The known key closest to a typed one among its neighbours (trainer.epoch: epochs), or one
    with the same last part at another depth (trainer.patience: early_stopping.patience)."""
    parent, _, last = typed.rpartition(".")
    neighbours = {key.rpartition(".")[2]: key for key in known if key.rpartition(".")[0] == parent}
    matches = difflib.get_close_matches(last, list(neighbours), n=1, cutoff=0.6)
    if matches:
        return neighbours[matches[0]]
    return next((key for key in known if key.rpartition(".")[2] == last), None)


def _leaves(settings: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, item in settings.items():
        if isinstance(item, dict) and item:
            keys += _leaves(item, f"{prefix}{key}.")
        elif key != "name":
            keys.append(f"{prefix}{key}")
    return keys


def _level(settings: dict, key: str) -> list[str]:
    """The keys beside ``key`` (early_stopping.foo: early_stopping.patience, ...)."""
    parent = key.rpartition(".")[0]
    for part in parent.split(".") if parent else ():
        settings = settings.get(part) if isinstance(settings.get(part), dict) else {}
    return [f"{parent}.{name}" if parent else name for name in settings if name != "name"]


def unknown_setting(group: str | None, option: str | None, key: str, settings: dict,
                    groups: tuple[str, ...] = SETTING_GROUPS) -> str:
    """The sentence for a key no option reads: ``key`` under ``group``=``option`` whose YAML
    defines ``settings`` (group None: a top-level key; settings are config.yaml's own)."""
    if f"{group}.{key}" in REPLACED:
        return REPLACED[f"{group}.{key}"]
    if group is None:
        match = did_you_mean(key, [*settings, *groups])
        head = f"There is no top-level setting '{key}'"
        if match:
            return f"{head}; did you mean {match}?"
        return f"{head}; the top-level settings are {', '.join(settings)} and the groups {', '.join(groups)}."
    match = did_you_mean(key, _leaves(settings))
    head = f"{group}={option} has no setting '{key}'"
    if match:
        return f"{head}; did you mean {group}.{match}?"
    # The top of a group of several options holds only their names: list the settings under them.
    names = _leaves(settings) if group in MULTI_GROUPS and "." not in key else _level(settings, key)
    return f"{head}; its settings are: {', '.join(names) or 'none'}."


def no_such_setting(key: str, verb: str, cfg=None) -> str:
    """'trainer.epoch=2' (Hydra: "Could not override"): the key that was meant, or the keys there
    are, of the option cfg selects (config.yaml's default option without cfg)."""
    if key.lstrip("+~") in REPLACED:
        return REPLACED[key.lstrip("+~")]
    head = f"There is no setting '{key}' to {verb}"
    group, _, rest = key.partition(".")
    if group == "hydra":
        return f"{head}."
    if group in MULTI_GROUPS and rest:
        chosen = _options(cfg, group)
        option = rest.partition(".")[0]
        if option in group_options(group) and option not in chosen:
            together = ",".join([*chosen, option])
            return (f"{head}: {group}.{option} settings apply when {option} is among the {group} options "
                    f"chosen; choose it too, as in {group}=[{together}].")
        settings = options_settings(group, chosen)
        match = did_you_mean(rest, _leaves(settings))
        if match:
            return f"{head}; did you mean {group}.{match}?"
        return f"{head}; the settings of the {group} options chosen are: {', '.join(_leaves(settings)) or 'none'}."
    if group in SETTING_GROUPS and rest:
        option = _option(cfg, group)
        if (group, option) == ("model", CUSTOM) and verb == "override":
            return (f"{key} is no setting of model=custom's YAML: pass an argument of your model's "
                    f"constructor with a +, as +{key}=VALUE.")
        settings = option_settings(group, option)
        match = did_you_mean(rest, _leaves(settings))
        if match:
            return f"{head}; did you mean {group}.{match}?"
        names = _level(settings, rest)
        return f"{head}; the settings of {group}={option} are: {', '.join(names) or 'none'}."
    top = top_level_settings()
    match = did_you_mean(group, [*top, *SETTING_GROUPS])
    if match:
        return f"{head}; did you mean {match}?"
    return f"{head}; the top-level settings are {', '.join(top)} and the groups {', '.join(SETTING_GROUPS)}."


def _options(cfg, group: str) -> list[str]:
    """The options cfg holds for a group of which several can be chosen, else config.yaml's default."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, group, default=None) if cfg is not None else None
    if not OmegaConf.is_dict(node):
        default = default_choices()[group]
        return list(default) if isinstance(default, (list, tuple)) else [default]
    return [str(key) for key in node.keys() if key in group_options(group)]


def _option(cfg, group: str) -> str:
    """The option cfg holds for a group (the name its settings carry), else config.yaml's default."""
    name = None
    if cfg is not None:
        from omegaconf import OmegaConf

        try:
            name = OmegaConf.select(cfg, f"{group}.name", default=None)
        except Exception:  # an unreadable name: suggest from the default option
            name = None
    return name if isinstance(name, str) and name in group_options(group) else default_choices()[group]
