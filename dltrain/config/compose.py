"""Composing: Hydra composes config.yaml with the shell's overrides (read by Hydra's own
grammar, the one override parser), and the result is validated before anything runs."""

from __future__ import annotations

import re

from dltrain.config.explain import explain_hydra_error
from dltrain.config.groups import (GROUPS, MULTI_GROUPS, config_dir, group_options, option_settings,
                                   options_settings)
from dltrain.config.settings import read_settings, with_defaults
from dltrain.errors import DltrainError

VERSION_BASE = "1.3"


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's Override objects for the shell's words, or one sentence for one it cannot read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as error:
        first_line = str(error).strip().splitlines()[0]
        raise DltrainError(f"Could not read the override: {first_line}") from None


def is_recipe_file(value) -> bool:
    """A recipe= value that names a YAML file (best_recipe.yaml, runs/x.yaml), not a recipe."""
    return isinstance(value, str) and (value.endswith((".yaml", ".yml")) or "/" in value)


def expand_recipe_file(overrides: list[str]) -> list[str]:
    """``recipe=PATH`` (a recipe file, such as a tune's best_recipe.yaml, outside recipes/) as
    the overrides it stands for, placed first so that the rest of the command line wins: each
    ``override /GROUP: OPTION`` of its defaults list as GROUP=OPTION, each setting as KEY=VALUE.
    The file is read as YAML data (safe_load), never run; hydra keys are refused."""
    import yaml

    expanded, rest = [], []
    for word in overrides:
        key, _, path = word.partition("=")
        if key.lstrip("+") != "recipe" or not is_recipe_file(path.strip("'\"")):
            rest.append(word)
            continue
        path = path.strip("'\"")
        try:
            recipe = yaml.safe_load(open(path, encoding="utf-8"))
        except OSError as error:
            raise DltrainError(f"recipe={path} cannot be read ({error.strerror}); give a recipe file's path "
                               f"or the name of one in recipes/.") from None
        except yaml.YAMLError as error:
            raise DltrainError(f"recipe={path} is not YAML: {str(error).splitlines()[0]}.") from None
        if not isinstance(recipe, dict):
            raise DltrainError(f"recipe={path} holds no settings; a recipe is a YAML mapping of settings.")
        for entry in recipe.pop("defaults", None) or []:
            for group, option in (entry.items() if isinstance(entry, dict) else ()):
                expanded.append(f"{str(group).removeprefix('override').strip().lstrip('/')}={option}")
        for key, value in _leaves(recipe):
            if key.split(".")[0] == "hydra":
                raise DltrainError(f"recipe={path} sets {key}; a recipe file sets training settings only.")
            expanded.append(f"{key}={_override_value(value)}")
    return [*expanded, *rest]


def _leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _override_value(value) -> str:
    """A plain value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_override_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w\-/.]*", text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text  # a plain word reads back as itself (auto, mse, relu): as a user types it
    return "'" + text.replace("'", "\\'") + "'"


def override_keys(overrides: list[str]) -> list[str]:
    """The key (or group) each override sets, as Hydra reads it: hydra.run.dir, +cv.fold, ..."""
    return [override.key_or_group for override in parse_overrides(overrides)]


def check_overrides(overrides: list[str]) -> None:
    """Parse overrides with Hydra's own grammar and check group choices, so that a typo is one
    sentence before anything runs."""
    for override in parse_overrides(overrides):
        group = override.key_or_group
        if group not in GROUPS or override.is_delete() or override.package:
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is None and group == "recipe":
                continue
            chosen_options(group, value, override.input_line)


def chosen_options(group: str, value, word: str) -> list[str]:
    """The options an override's value chooses of a group (several, as a list, for MULTI_GROUPS:
    logger=[tensorboard,csv]), or one sentence for one that is not an option."""
    options = group_options(group)
    if isinstance(value, list) and group not in MULTI_GROUPS:
        raise DltrainError(f"'{word}' chooses several {group} options, but a run has one {group}; "
                           f"to train each in turn, sweep them with -m: {group}={','.join(map(str, value))}.")
    if isinstance(value, list) and not value:
        raise DltrainError(f"'{word}' chooses no {group}; choose none with {group}=none, or one or more "
                           f"of: {', '.join(options)}.")
    chosen = [str(item) for item in (value if isinstance(value, list) else [value])]
    for option in chosen:
        if option not in options:
            raise DltrainError(f"Unknown {group} '{option}'; valid options are: {', '.join(options)}.")
    return chosen


def compose(overrides: list[str], *, validate: bool = True):
    """Compose config.yaml with these overrides, as ``dltrain fit`` would, and validate it. A key
    deleted with ``~key`` comes back with its option's default."""
    overrides = expand_recipe_file(overrides)
    check_overrides(overrides)
    cfg = with_defaults(_hydra_compose(overrides))
    if validate:
        read_settings(cfg)
    return cfg


def compose_with_hydra(overrides: list[str]):
    """``compose`` and Hydra's own settings (launcher, sweeper, run folders) from the same single
    composition: (the validated config, its ``hydra`` node)."""
    from omegaconf import open_dict

    overrides = expand_recipe_file(overrides)
    check_overrides(overrides)
    cfg = _hydra_compose(overrides, return_hydra_config=True)
    hydra = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    cfg = with_defaults(cfg)
    read_settings(cfg)
    return cfg, hydra


def _hydra_compose(overrides: list[str], *, explain: bool = True, return_hydra_config: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
            return hydra_compose(config_name="config", overrides=overrides,
                                 return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError) as error:
        # Composition only reads configs and overrides: whatever fails here, the overrides caused.
        if not explain:
            raise
        raise DltrainError(explain_hydra_error(error, _composed_without(overrides, error))) from None


def _composed_without(overrides: list[str], error: Exception):
    """For a key Hydra could not override or delete, the config composed without it (whose
    options tell which key was meant), or None."""
    match = re.search(r"Could not (?:override|delete from config)\W+(?:The value of )?'?([\w.]+)",
                      " ".join(str(error).split()))
    if match is None:
        return None
    rest = [o for o, key in zip(overrides, override_keys(overrides)) if key != match.group(1)]
    try:
        return _hydra_compose(rest, explain=False)
    except Exception:  # noqa: BLE001 - the suggestion then comes from the default options
        return None


def apply_overrides(cfg, overrides: list[str]):
    """Overrides on a config that is already composed (a trained run's, for eval and predict),
    read with Hydra's grammar: ``group=option`` swaps in that option's settings, ``key=value``
    sets a value and ``~key`` restores its option's default; validation then refuses unknown keys."""
    from omegaconf import OmegaConf, open_dict

    for override in parse_overrides(overrides):
        key = override.key_or_group
        word = override.input_line
        if override.is_sweep_override():
            raise DltrainError(f"'{word}' is a sweep; give one value per setting here.")
        if key == "recipe" or key.startswith("hydra"):
            raise DltrainError(f"'{word}' cannot change a trained run; give its settings one by one.")
        with open_dict(cfg):
            if override.is_delete():
                _delete(cfg, key)
            elif key in GROUPS:
                chosen = chosen_options(key, override.value(), word)
                cfg[key] = (options_settings(key, chosen) if key in MULTI_GROUPS
                            else option_settings(key, chosen[0]))
            else:
                OmegaConf.update(cfg, key, override.value(), force_add=True)
    return with_defaults(cfg)


def _delete(cfg, key: str) -> None:
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if node is None or not hasattr(node, "keys") or leaf not in node.keys():
        raise DltrainError(f"There is no setting '{key}' to delete.")
    del node[leaf]


def to_yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=False)
