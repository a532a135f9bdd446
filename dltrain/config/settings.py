"""Settings: a composed config checked against the options it selects and turned into small
dataclasses, so that everything downstream receives plain, checked values.

Every setting's default lives in one place, the YAML of its option under conf/ (config.yaml for
the top-level ones): the keys an option's YAML defines are the keys it reads, any other key is
refused, and a key deleted with ``~key`` gets its option's default back. The constraints on the
settings the code reads are declared once, in RULES, and checked by one function."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dltrain.checks import _first_line, value
from dltrain.config.explain import unknown_setting
from dltrain.config.groups import (
    FREE_FORM,
    MULTI_GROUPS,
    SETTING_GROUPS,
    default_choices,
    group_options,
    option_settings,
    options_settings,
    top_level_settings,
)
from dltrain.errors import DltrainError
from dltrain.models.custom import CUSTOM, TARGET, check_settings, plain_settings
from dltrain.models.init import INITS

PRECISIONS = ("auto", "32", "bf16", "fp16")
CV_STRATEGIES = ("auto", "kfold", "stratified", "group", "repeated")

# Kinds beyond int, float, bool and str:
WORD = "word"  # a word or a number, compared as lower-case text (precision=32, channels_last=true)
COUNT = "count"  # auto, or a whole number
LABEL = "label"  # a column: a name, or a number naming a column of a CSV without header ("0", ...)
AMOUNT = "amount"  # auto, or a finite number above ``above``


@dataclass(frozen=True)
class Rule:
    """What one setting must be: ``key`` (under its group) read as ``kind`` within its bounds.
    ``message`` replaces the usual sentence for a value outside them ({key} and {raw} filled)."""

    key: str
    kind: Any
    minimum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple | None = None
    pattern: str | None = None
    nullable: bool = False
    message: str | None = None

    @property
    def field(self) -> str:
        return self.key.rsplit(".", 1)[-1]


# The settings the code reads, per group ("" is config.yaml's top level). Their values and defaults
# are in conf/; a rule applies to an option whose YAML defines its key.
RULES: dict[str, tuple[Rule, ...]] = {
    "": (
        Rule("k", int, minimum=2),
    ),
    "trainer": (
        Rule("device", str, pattern=r"(auto|cpu|mps|cuda(:\d+)?)",
             message="{key} must be auto, cpu, cuda, cuda:N or mps; got {raw!r}."),
        Rule("epochs", int, minimum=1),
        Rule("seed", int, minimum=0, below=2**32),  # what numpy and scikit-learn accept
        Rule("monitor", str),
        Rule("mode", str, choices=("auto", "min", "max")),
        Rule("accumulate_grad_batches", int, minimum=1),
        Rule("grad_clip", float, minimum=0),
        Rule("lr_find", bool),
        Rule("deterministic", bool),
        Rule("early_stopping.patience", int, minimum=0),
        Rule("early_stopping.min_delta", float, minimum=0),
        Rule("progress", bool),
        Rule("checkpoint_every_seconds", float, minimum=0),
        Rule("save_top_k", int, minimum=1),
        Rule("plot", bool),
        Rule("ensemble", int, minimum=1),
        Rule("precision", WORD, choices=PRECISIONS),
        Rule("compile", bool),
        Rule("compile_backend", str),
        Rule("channels_last", WORD, choices=("auto", "true", "false")),
        Rule("cudnn_benchmark", WORD, choices=("auto", "true", "false")),
        Rule("device_data_max_mb", float, minimum=0),
        Rule("strategy", str, choices=("auto", "ddp")),
        Rule("devices", COUNT, minimum=1,
             message="{key} must be auto or a number of processes of at least 1, got {raw!r}."),
        Rule("threads", COUNT, minimum=1,
             message="{key} must be auto or a whole number of at least 1, got {raw!r}."),
    ),
    "data": (
        Rule("batch_size", int, minimum=0),
        Rule("val_fraction", float, minimum=0.0, below=1.0),
        Rule("shuffle", bool),
    ),
    "optimizer": (
        Rule("lr", float, above=0),
    ),
    "model": (  # every built-in model's initialisation (dltrain/models/init.py)
        Rule("init", str, choices=INITS),
        Rule("init_std", float, above=0),
        Rule("init_range", float, above=0),
    ),
    "regularization": (
        Rule("weight_decay", float, minimum=0),
        Rule("l1", float, minimum=0),
    ),
    "logger": (  # each logger's settings under its own name (config/groups.py MULTI_GROUPS)
        Rule("tensorboard.log_every_n_steps", int, minimum=0),
        Rule("tensorboard.graph", bool),
        Rule("tensorboard.histograms_every_n_epochs", int, minimum=0),
        Rule("tensorboard.figures", bool),
        Rule("tensorboard.max_images", int, minimum=1),
        Rule("mlflow.tracking_uri", str, pattern=r"\S+",
             message="{key} must be a tracking URI such as sqlite:///outputs/mlflow.db; got {raw!r}."),
        Rule("mlflow.experiment", str, pattern=r".*\S.*",
             message="{key} must name an MLflow experiment; got {raw!r}."),
        Rule("mlflow.checkpoint", bool),
    ),
    "cv": (
        Rule("strategy", str, choices=CV_STRATEGIES),
        Rule("shuffle", bool),
        Rule("seed", int, minimum=0, below=2**32),
        Rule("repeats", int, minimum=1),
        Rule("group_column", LABEL, nullable=True),
        Rule("fold", int, nullable=True),
        Rule("refit", bool),
        Rule("vectorize", WORD, choices=("auto", "true", "false"),
             message="{key} must be auto, true or false, got {raw!r}."),
    ),
    "landscape": (
        Rule("grid", COUNT, minimum=3,
             message="{key} must be auto or a whole number of points along each axis of at least 3, got {raw!r}."),
        Rule("span", AMOUNT, above=0,
             message="{key} must be auto or a positive number (how far each axis reaches either side), got {raw!r}."),
        Rule("rows", int, minimum=1),
        Rule("seed", int, minimum=0, below=2**32),
    ),
    "tune": (
        Rule("points", int, minimum=1),
        Rule("seconds", float, above=0, nullable=True),
        Rule("sampler", str, choices=("sobol", "random", "tpe")),
        Rule("seed", int, minimum=0, below=2**32),
        Rule("rungs", int, minimum=1),
        Rule("eta", int, minimum=2),
        Rule("min_epochs", int, minimum=1),
        Rule("metric", str),
        Rule("batches", int, minimum=1),
        Rule("k", int, minimum=2),
    ),
}


def check(cfg, key: str, rule: Rule) -> Any:
    """The one validator: ``key`` of cfg read as ``rule`` says, or one sentence naming it."""
    if rule.kind in (int, float, bool, str):
        default = (None,) if rule.nullable else ()
        result = value(cfg, key, rule.kind, *default, minimum=rule.minimum, above=rule.above,
                       below=rule.below, choices=rule.choices)
        if rule.pattern and result is not None and not re.fullmatch(rule.pattern, result):
            raise DltrainError(rule.message.format(key=key, raw=result))
        return result
    raw = _raw(cfg, key)
    if rule.kind == WORD:  # YAML reads true and 32 as a boolean and a number: compare as text
        text = str(raw).lower() if isinstance(raw, (bool, int, float, str)) else None
        if text in rule.choices:
            return text
        sentence = rule.message or "{key} must be one of " + ", ".join(rule.choices) + "; got {raw!r}."
        raise DltrainError(sentence.format(key=key, raw=raw))
    if rule.kind == COUNT:
        if raw is None or raw == "auto":
            return "auto"
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < rule.minimum:
            raise DltrainError(rule.message.format(key=key, raw=raw))
        return raw
    if rule.kind == AMOUNT:
        if raw is None or raw == "auto":
            return "auto"
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw <= rule.above:
            raise DltrainError(rule.message.format(key=key, raw=raw))
        return float(raw)
    if rule.kind == LABEL:
        if raw is None and rule.nullable:
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(raw)
        if not isinstance(raw, str):
            raise DltrainError(f"{key} must be a string, got {raw!r}.")
        return raw
    raise TypeError(f"unknown kind {rule.kind!r} for {key}")


def _raw(cfg, key: str) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=True)
    except MissingMandatoryValue:
        raise DltrainError(f"{key} is required: set it with {key}=VALUE.") from None
    except OmegaConfBaseException as error:
        raise DltrainError(f"{key} could not be read: {_first_line(error)}.") from None


def _defines(settings: dict, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(settings, dict) or part not in settings:
            return False
        settings = settings[part]
    return True


def _rules(group: str, settings: dict) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES.get(group, ()) if _defines(settings, rule.key))


@lru_cache(maxsize=None)
def default_setting(group: str, key: str) -> Any:
    """A setting's default, read from the YAML of the option config.yaml selects for its group:
    what the settings dataclasses hold when made by hand (tests, the Python API)."""
    from omegaconf import OmegaConf

    rule = next(rule for rule in RULES[group] if rule.key == key)
    if not group:
        return check(OmegaConf.create(top_level_settings()), key, rule)
    # An option of a group chosen several at once holds its settings under its own name.
    option = key.split(".", 1)[0] if group in MULTI_GROUPS else default_choices()[group]
    settings = option_settings(group, option)
    return check(OmegaConf.create({group: settings}), f"{group}.{key}", rule)


def _default(group: str, key: str):
    return field(default_factory=lambda: default_setting(group, key))


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class TrainerSettings:
    device: str = _default("trainer", "device")
    epochs: int = _default("trainer", "epochs")
    seed: int = _default("trainer", "seed")
    monitor: str = _default("trainer", "monitor")
    mode: str = _default("trainer", "mode")
    accumulate_grad_batches: int = _default("trainer", "accumulate_grad_batches")  # batches per optimizer step
    grad_clip: float = _default("trainer", "grad_clip")
    lr_find: bool = _default("trainer", "lr_find")  # train with the range test's suggested lr
    deterministic: bool = _default("trainer", "deterministic")  # train/determinism.py
    patience: int = _default("trainer", "early_stopping.patience")
    min_delta: float = _default("trainer", "early_stopping.min_delta")
    progress: bool = _default("trainer", "progress")
    checkpoint_every_seconds: float = _default("trainer", "checkpoint_every_seconds")
    save_top_k: int = _default("trainer", "save_top_k")  # best.pt, and the K best epochs' checkpoints when above 1
    plot: bool = _default("trainer", "plot")  # curves.png (dltrain plot) at the end of a fit or cv
    ensemble: int = _default("trainer", "ensemble")  # fit: seeds trained at once, best.pt their ensemble
    precision: str = _default("trainer", "precision")  # auto | 32 | bf16 | fp16
    compile: bool = _default("trainer", "compile")
    compile_backend: str = _default("trainer", "compile_backend")
    channels_last: str = _default("trainer", "channels_last")  # auto | true | false
    cudnn_benchmark: str = _default("trainer", "cudnn_benchmark")  # auto (on unless deterministic) | true | false
    device_data_max_mb: float = _default("trainer", "device_data_max_mb")
    strategy: str = _default("trainer", "strategy")  # auto | ddp: data-parallel processes (see dltrain.train.parallel)
    devices: int | str = _default("trainer", "devices")  # processes on this machine: a number, or auto
    threads: int | str = _default("trainer", "threads")  # torch's intra-op CPU threads (train/threads.py)


@dataclass(frozen=True)
class OptimizerSettings:
    name: str
    lr: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NamedSettings:
    """A registry entry chosen by name with its keyword settings (model, loss, scheduler, ...)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSettings:
    name: str
    batch_size: int
    val_fraction: float
    shuffle: bool
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorBoardSettings:
    """What lands in a run's TensorBoard events (logger=tensorboard)."""

    log_every_n_steps: int = _default("logger", "tensorboard.log_every_n_steps")
    graph: bool = _default("logger", "tensorboard.graph")
    histograms_every_n_epochs: int = _default("logger", "tensorboard.histograms_every_n_epochs")
    figures: bool = _default("logger", "tensorboard.figures")
    max_images: int = _default("logger", "tensorboard.max_images")


@dataclass(frozen=True)
class MlflowSettings:
    """Where a run's MLflow run goes (logger=mlflow)."""

    tracking_uri: str = _default("logger", "mlflow.tracking_uri")
    experiment: str = _default("logger", "mlflow.experiment")
    checkpoint: bool = _default("logger", "mlflow.checkpoint")  # best.pt as an artifact


def _chosen_by_default(logger: str) -> bool:
    return logger in _as_list(default_choices()["logger"])


def _as_list(choice) -> list:
    return list(choice) if isinstance(choice, (list, tuple)) else [choice]


@dataclass(frozen=True)
class LoggerSettings:
    """The loggers a run reports to, each with its settings (None or False: not chosen; all of
    them so with logger=none). The defaults: config.yaml's choice."""

    tensorboard: TensorBoardSettings | None = field(
        default_factory=lambda: TensorBoardSettings() if _chosen_by_default("tensorboard") else None)
    csv: bool = field(default_factory=lambda: _chosen_by_default("csv"))  # metrics.csv in the run folder
    mlflow: MlflowSettings | None = field(
        default_factory=lambda: MlflowSettings() if _chosen_by_default("mlflow") else None)

    @property
    def names(self) -> tuple[str, ...]:
        """The loggers chosen, by their option names."""
        return tuple(name for name, chosen in (("tensorboard", self.tensorboard), ("csv", self.csv),
                                               ("mlflow", self.mlflow)) if chosen)


@dataclass(frozen=True)
class Settings:
    data: DataSettings
    model: NamedSettings
    loss: NamedSettings
    optimizer: OptimizerSettings
    scheduler: NamedSettings
    regularization: NamedSettings
    trainer: TrainerSettings
    logger: LoggerSettings = field(default_factory=LoggerSettings)


@dataclass(frozen=True)
class CVSettings:
    """``dltrain cv``: k folds split by ``strategy`` (auto = stratified for classes, kfold for
    regression, group when group_column is set); ``fold`` runs one fold alone."""

    k: int = _default("", "k")
    strategy: str = _default("cv", "strategy")
    shuffle: bool = _default("cv", "shuffle")
    seed: int = _default("cv", "seed")
    repeats: int = _default("cv", "repeats")  # folds are k * repeats for strategy=repeated
    group_column: str | None = _default("cv", "group_column")
    fold: int | None = _default("cv", "fold")
    refit: bool = _default("cv", "refit")
    vectorize: str = _default("cv", "vectorize")  # auto | true | false: train the folds at once (a stacked population, train/engine.py)

    def __post_init__(self):
        if self.strategy != "repeated":  # only repeated k-fold repeats
            object.__setattr__(self, "repeats", 1)

    @property
    def fold_count(self) -> int:
        return self.k * self.repeats


@dataclass(frozen=True)
class LandscapeSettings:
    """``dltrain landscape``: a grid of ``grid`` points per axis reaching ``span`` either side of
    its centre (auto: see conf/landscape/default.yaml), the loss measured on ``rows`` training
    rows drawn with ``seed`` (which also draws the random directions)."""

    grid: int | str = _default("landscape", "grid")
    span: float | str = _default("landscape", "span")
    rows: int = _default("landscape", "rows")
    seed: int = _default("landscape", "seed")


@dataclass(frozen=True)
class TuneSettings:
    """``dltrain tune``: ``space`` (setting -> Optuna-sweeper expression, the regression entries
    merged in for a regression), ``points`` sampled by ``sampler``, successive halving."""

    space: dict[str, str]
    regression_space: dict[str, str]
    points: int = _default("tune", "points")
    seconds: float | None = _default("tune", "seconds")
    sampler: str = _default("tune", "sampler")
    seed: int = _default("tune", "seed")
    rungs: int = _default("tune", "rungs")
    eta: int = _default("tune", "eta")
    min_epochs: int = _default("tune", "min_epochs")
    metric: str = _default("tune", "metric")
    batches: int = _default("tune", "batches")
    k: int = _default("tune", "k")


# --------------------------------------------------------------------------- reading


def selected_option(cfg, group: str) -> str:
    """The option whose YAML holds a group's settings: the name they carry (every option names
    itself), or config.yaml's default for a group the config lacks (deleted with ~group)."""
    from omegaconf import OmegaConf

    node = cfg._get_node(group) if group in cfg.keys() else None
    if node is None or not OmegaConf.is_dict(node) or "name" not in node.keys():
        return default_choices()[group]
    name = value(cfg, f"{group}.name", str)
    options = group_options(group)
    if name not in options:
        raise DltrainError(f"{group}.name '{name}' is unknown; valid options are: {', '.join(options)}.")
    return name


def selected_options(cfg, group: str) -> list[str]:
    """The options chosen of a group of which several can be (MULTI_GROUPS): the names its node
    holds (none for logger=none), or config.yaml's default for a group the config lacks. A name
    that is no option is not one of them: check_keys refuses it."""
    from omegaconf import OmegaConf

    node = cfg._get_node(group) if group in cfg.keys() else None
    if node is None or node._is_none() or not OmegaConf.is_dict(node):
        return _as_list(default_choices()[group])
    options = group_options(group)
    return [str(key) for key in node.keys() if key in options]


def option_label(cfg, group: str) -> str:
    """The option a group holds as the shell chooses it: mlp, none, [tensorboard,csv]."""
    if group not in MULTI_GROUPS:
        return selected_option(cfg, group)
    chosen = selected_options(cfg, group)
    return "none" if not chosen else chosen[0] if len(chosen) == 1 else f"[{','.join(chosen)}]"


def _group_settings(cfg, group: str) -> dict:
    """The settings the option(s) a group holds define, with their defaults."""
    if group in MULTI_GROUPS:
        return options_settings(group, selected_options(cfg, group))
    return option_settings(group, selected_option(cfg, group))


def _older_logger(cfg) -> None:
    """A config saved before loggers could be combined (a run folder's .hydra/config.yaml, a
    checkpoint's config) named its one logger with ``logger.name`` beside that logger's settings;
    today each chosen logger holds its settings under its own name (``logger.tensorboard``)."""
    from omegaconf import OmegaConf

    node = cfg._get_node("logger") if "logger" in cfg.keys() else None
    if node is None or not OmegaConf.is_dict(node) or not isinstance(node.get("name"), str):
        return
    settings = OmegaConf.to_container(node, resolve=False)
    name = settings.pop("name")
    cfg["logger"] = {} if name == "none" else {name: settings}


def upgrade_saved(config: dict) -> dict:
    """A run folder's saved config (plain data) from an older dltrain, in today's keys: its
    ``data.standardize_target`` true or false is ``data.target_transform`` standardize or none;
    its ``data.random_crop`` (padding) and ``data.horizontal_flip`` are entries of ``data.augment``;
    a saved ``data.cache_dir`` gives way to the default."""
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict) and "standardize_target" in data:
        data = dict(data)
        standardized = data.pop("standardize_target")
        data.setdefault("target_transform", "standardize" if standardized is True else "none")
        config = {**config, "data": data}
    if isinstance(data, dict) and ("random_crop" in data or "horizontal_flip" in data):
        data = dict(data)
        padding, flip = data.pop("random_crop", 0), data.pop("horizontal_flip", False)
        augment = [{"name": "RandomCrop", "padding": padding}] if padding else []
        augment += ["RandomHorizontalFlip"] if flip is True else []
        data.setdefault("augment", augment)
        config = {**config, "data": data}
    if isinstance(data, dict) and data.get("cache_dir") is not None:
        # A run folder may be anyone's: the folder the decoded images are written to is this
        # user's choice (the default, or data.cache_dir=... given now), never the saved one.
        config = {**config, "data": {k: v for k, v in data.items() if k != "cache_dir"}}
    return config


def with_defaults(cfg):
    """A copy of cfg with every setting its options define that it lacks (one deleted with
    ``~key``) back at the option's default; one sentence for a group that is not a group."""
    from omegaconf import OmegaConf, open_dict, read_write

    cfg = copy.deepcopy(cfg)
    with read_write(cfg), open_dict(cfg):
        _fill(cfg, top_level_settings())
        _older_logger(cfg)
        for group in SETTING_GROUPS:
            settings = _group_settings(cfg, group)
            if group not in cfg.keys() or cfg._get_node(group)._is_none():
                cfg[group] = settings
                continue
            node = cfg._get_node(group)
            if not OmegaConf.is_dict(node):
                raise DltrainError(f"{group} must be a group of settings such as {group}.name=..., "
                                   f"got {OmegaConf.to_container(cfg, resolve=False)[group]!r}.")
            _fill(node, settings, group)
    return cfg


def _fill(node, settings: dict, group: str = "") -> None:
    from omegaconf import OmegaConf

    for key, default in settings.items():
        if key not in node.keys():
            node[key] = copy.deepcopy(default)
        elif (isinstance(default, dict) and OmegaConf.is_dict(node._get_node(key))
              and (group, key) not in FREE_FORM):  # a search space's entries stay as given
            _fill(node._get_node(key), default)


def check_keys(cfg) -> None:
    """Refuse every key no option reads (a typo, or +key=VALUE), with a did-you-mean; the
    hydra node is Hydra's own."""
    from omegaconf import OmegaConf

    top = top_level_settings()
    for key in cfg.keys():
        if key not in top and key not in SETTING_GROUPS and key != "hydra":
            raise DltrainError(unknown_setting(None, None, str(key), top, SETTING_GROUPS))
    for group in SETTING_GROUPS:
        node = cfg._get_node(group)
        if OmegaConf.is_dict(node):
            if group == "model" and selected_option(cfg, group) == CUSTOM:
                continue  # its keys are its class's arguments, checked against its signature (_model)
            settings = _group_settings(cfg, group)
            _check_node(node, settings, group, option_label(cfg, group), "", settings)


def _check_node(node, settings: dict, group: str, option: str, prefix: str, whole: dict) -> None:
    from omegaconf import OmegaConf

    for key in node.keys():
        if key not in settings:
            raise DltrainError(unknown_setting(group, option, f"{prefix}{key}", whole))
        if (group, f"{prefix}{key}") in FREE_FORM:
            if not OmegaConf.is_dict(node._get_node(key)) and not node._get_node(key)._is_none():
                raise DltrainError(f"{group}.{prefix}{key} must map settings to search expressions such as "
                                   f"optimizer.lr: tag(log, interval(1e-4, 3e-1)).")
            continue
        if isinstance(settings[key], dict) and OmegaConf.is_dict(node._get_node(key)):
            _check_node(node._get_node(key), settings[key], group, option, f"{prefix}{key}.", whole)


def checked(cfg):
    """cfg with its options' defaults restored, once every group names a known option and every
    key is one its option reads."""
    cfg = with_defaults(cfg)
    check_keys(cfg)
    return cfg


def _read(cfg, group: str) -> dict[str, Any]:
    """The group's settings that RULES declare, checked, by their dataclass field names."""
    settings = option_settings(group, selected_option(cfg, group)) if group else top_level_settings()
    prefix = f"{group}." if group else ""
    return {rule.field: check(cfg, prefix + rule.key, rule) for rule in _rules(group, settings)}


def _options(cfg, group: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The option's own keyword settings (those the code it selects takes), resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        container = OmegaConf.to_container(cfg[group], resolve=True)
    except OmegaConfBaseException as error:
        raise DltrainError(f"{group} could not be read: {_first_line(error)}.") from None
    return {k: v for k, v in container.items() if k != "name" and k not in skip}


def _named(cfg, group: str) -> NamedSettings:
    _read(cfg, group)
    return NamedSettings(selected_option(cfg, group), _options(cfg, group))


def read_settings(cfg) -> Settings:
    """Validate a composed config and return it as plain settings (DltrainError if it is wrong)."""
    cfg = checked(cfg)
    data = _read(cfg, "data")
    optimizer = _read(cfg, "optimizer")
    trainer = _read(cfg, "trainer")
    if selected_option(cfg, "optimizer") == "closed_form":  # dltrain.train.optim.ClosedForm
        trainer["epochs"] = 1  # the solution, then one epoch that measures it
    return Settings(
        trainer=_trainer(trainer),
        data=DataSettings(name=selected_option(cfg, "data"), **data, options=_options(cfg, "data", tuple(data))),
        optimizer=OptimizerSettings(name=selected_option(cfg, "optimizer"), **optimizer,
                                    options=_options(cfg, "optimizer", tuple(optimizer))),
        regularization=_named(cfg, "regularization"),
        model=_model(cfg),
        loss=_named(cfg, "loss"),
        scheduler=_named(cfg, "scheduler"),
        logger=_logger(cfg),
    )


def _trainer(settings: dict) -> TrainerSettings:
    trainer = TrainerSettings(**settings)
    if trainer.deterministic and trainer.cudnn_benchmark == "true":
        raise DltrainError("trainer.deterministic=true cannot run with trainer.cudnn_benchmark=true, with which "
                           "cuDNN picks convolution algorithms by timing them (a choice that can differ from "
                           "run to run); use trainer.cudnn_benchmark=auto (off when deterministic) or false.")
    return trainer


def _model(cfg) -> NamedSettings:
    """The model group; for model=custom its settings as given (plain values only, never resolved:
    an interpolation is refused), checked against the signature of the class it names."""
    from omegaconf import OmegaConf

    if selected_option(cfg, "model") != CUSTOM:
        return _named(cfg, "model")
    given = OmegaConf.to_container(cfg.model, resolve=False)
    options = plain_settings(given)
    check_settings(given[TARGET], options)
    return NamedSettings(CUSTOM, {TARGET: given[TARGET], **options})


def read_logger_settings(cfg) -> LoggerSettings:
    """The logger group; a config without one (composed by hand) gets config.yaml's default."""
    return _logger(checked(cfg))


def _logger(cfg) -> LoggerSettings:
    chosen = selected_options(cfg, "logger")

    def settings_of(logger: str) -> dict[str, Any]:
        return {rule.field: check(cfg, f"logger.{rule.key}", rule) for rule in RULES["logger"]
                if rule.key.startswith(f"{logger}.")}

    return LoggerSettings(
        tensorboard=TensorBoardSettings(**settings_of("tensorboard")) if "tensorboard" in chosen else None,
        csv="csv" in chosen,
        mlflow=MlflowSettings(**settings_of("mlflow")) if "mlflow" in chosen else None,
    )


def read_landscape_settings(cfg) -> LandscapeSettings:
    """Validate the landscape group (dltrain landscape's options)."""
    return LandscapeSettings(**_read(checked(cfg), "landscape"))


def read_tune_settings(cfg) -> TuneSettings:
    """Validate the tune group; its spaces as {setting: expression} (nested entries flattened to
    dotted names, which win over a dotted entry of the same name; null entries left out)."""
    from omegaconf import OmegaConf

    cfg = checked(cfg)
    spaces = {}
    for name in ("space", "regression_space"):
        node = cfg.tune.get(name)
        entries = {} if node is None else _flat(OmegaConf.to_container(node, resolve=True))
        spaces[name] = {key: entry for key, entry in entries.items() if entry is not None}
    return TuneSettings(**spaces, **_read(cfg, "tune"))


def _flat(entries: dict, prefix: str = "") -> dict:
    flat, nested = {}, {}
    for key, entry in entries.items():
        if isinstance(entry, dict):
            nested.update(_flat(entry, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = entry
    return {**flat, **nested}


def read_cv_settings(cfg) -> CVSettings:
    """Validate k and the cv group (the data-dependent checks happen when the folds are planned)."""
    cfg = checked(cfg)
    settings = CVSettings(**_read(cfg, ""), **_read(cfg, "cv"))
    strategy, group_column = settings.strategy, settings.group_column
    if strategy == "group" and group_column is None:
        raise DltrainError("cv.strategy=group needs cv.group_column=COLUMN, the column whose "
                           "values must never be split across folds (a patient, a site, a user).")
    if group_column is not None and strategy not in ("auto", "group"):
        raise DltrainError(f"cv.group_column is used only by cv.strategy=group (or auto), but "
                           f"cv.strategy={strategy}; drop cv.group_column or set cv.strategy=group.")
    if strategy == "repeated" and not settings.shuffle:
        raise DltrainError("cv.strategy=repeated reshuffles the rows for every repeat, so it "
                           "cannot run with cv.shuffle=false; use cv.strategy=kfold for contiguous folds.")
    fold = settings.fold
    if fold is not None and not 0 <= fold < settings.fold_count:
        raise DltrainError(f"cv.fold={fold} is out of range for {settings.fold_count} folds; use "
                           f"0 to {settings.fold_count - 1}, or cv.fold=null for all of them.")
    return settings
