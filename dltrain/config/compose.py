"""Composing: Hydra composes config.yaml with the shell's overrides (parsed by Hydra's own
grammar), and the result is validated before anything runs."""

from __future__ import annotations

from dltrain.config.explain import explain_hydra_error
from dltrain.config.groups import GROUPS, group_options, config_dir
from dltrain.config.settings import read_settings
from dltrain.errors import DltrainError

VERSION_BASE = "1.3"


def check_overrides(overrides: list[str]) -> None:
    """Parse overrides with Hydra's own grammar and check group choices, so that a typo is one
    sentence before anything runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        first_line = str(error).strip().splitlines()[0]
        raise DltrainError(f"Could not read the override: {first_line}") from None
    for override in parsed:
        group = override.key_or_group
        if group not in GROUPS or override.is_delete() or override.package:
            continue
        if override.is_sweep_override():
            values = [str(v) for v in override.sweep_iterator()]
        else:
            values = [override.value()]
        options = group_options(group)
        for value in values:
            if value is None and group == "recipe":
                continue
            if str(value) not in options:
                raise DltrainError(
                    f"Unknown {group} '{value}'; valid options are: {', '.join(options)}."
                )


def compose(overrides: list[str], *, validate: bool = True):
    """Compose config.yaml with these overrides, as ``dltrain fit`` would, and validate it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError) as error:
        # Composition only reads configs and overrides: whatever fails here, the overrides caused.
        raise DltrainError(explain_hydra_error(error)) from None
    if validate:
        read_settings(cfg)
    return cfg


def to_yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=False)
