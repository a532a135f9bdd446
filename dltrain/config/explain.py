"""Mistakes explained: a Hydra or OmegaConf error turned into one sentence that names the bad
override and what would be valid, with a did-you-mean for a mistyped key."""

from __future__ import annotations

import re

_PLUGINS = {  # hydra/<group>=<option> -> the pip command that installs the plugin holding it
    ("sweeper", "optuna"): "pip install 'dltrain[search]' (or pip install hydra-optuna-sweeper)",
    ("launcher", "submitit_slurm"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "submitit_local"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "slurm"): "pip install 'dltrain[slurm]' (or pip install hydra-submitit-launcher)",
    ("launcher", "joblib"): "pip install hydra-joblib-launcher",
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


def explain_hydra_error(error: Exception) -> str:
    """One sentence for an error Hydra raised while composing the shell's overrides."""
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
        key = match.group(1)
        return f"There is no setting '{key}' to override; add a new key with +{key}=VALUE."
    match = re.search(r"Could not (?:append to config|delete from config)\. (.+?) is not in", message)
    if match:
        return f"There is no setting '{match.group(1)}' to delete."
    if "Ambiguous value for argument" in message or "sweep" in message.lower():
        return f"{message} (Comma-separated values run a sweep: add -m.)"
    return message
