"""The config layer: compose Hydra configs from conf/ (and recipes/), read them into validated
settings, explain mistakes in one sentence. Commands import what they need from here."""

from dltrain.config.compose import (
    VERSION_BASE,
    apply_overrides,
    check_overrides,
    compose,
    compose_with_hydra,
    override_keys,
    parse_overrides,
    to_yaml,
)
from dltrain.config.explain import explain_hydra_error, missing_plugin
from dltrain.config.groups import GROUP_TITLES, GROUPS, config_dir, group_options, option_settings
from dltrain.config.settings import (
    CV_STRATEGIES,
    PRECISIONS,
    CVSettings,
    DataSettings,
    LandscapeSettings,
    LoggerSettings,
    MlflowSettings,
    NamedSettings,
    OptimizerSettings,
    Settings,
    TensorBoardSettings,
    TrainerSettings,
    TuneSettings,
    read_cv_settings,
    read_landscape_settings,
    read_logger_settings,
    read_settings,
    read_tune_settings,
    upgrade_saved,
)

__all__ = [
    "CV_STRATEGIES", "CVSettings", "DataSettings", "GROUPS", "LandscapeSettings", "GROUP_TITLES", "LoggerSettings",
    "MlflowSettings", "NamedSettings", "OptimizerSettings", "PRECISIONS", "Settings", "TensorBoardSettings",
    "TrainerSettings", "TuneSettings", "VERSION_BASE",
    "check_overrides", "compose", "compose_with_hydra", "config_dir", "explain_hydra_error", "group_options",
    "missing_plugin", "option_settings", "override_keys", "parse_overrides", "read_cv_settings", "read_landscape_settings",
    "read_logger_settings", "read_settings", "read_tune_settings", "apply_overrides", "to_yaml", "upgrade_saved",
]
