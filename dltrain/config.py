"""Compose Hydra configs from conf/ (and recipes/), validate them, explain errors in one sentence.

Everything downstream receives plain, checked values from here: ``read_settings(cfg)``
turns a composed DictConfig into small dataclasses, so the trainer never parses config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dltrain.checks import _first_line, check_keywords, value  # noqa: F401 (re-exported)
from dltrain.errors import DltrainError

GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "regularization", "trainer", "logger", "cv",
          "recipe")
GROUP_TITLES = {
    "data": "datasets",
    "model": "models",
    "loss": "losses",
    "optimizer": "optimizers",
    "scheduler": "learning-rate schedulers",
    "regularization": "regularization",
    "trainer": "trainer presets",
    "logger": "TensorBoard logging (logger=none turns it off)",
    "cv": "cross-validation for dltrain cv (k=N sets the number of folds)",
    "recipe": "recipes (complete presets)",
}
VERSION_BASE = "1.3"


def config_dir() -> Path:
    """The folder holding config.yaml and the groups: inside the package when installed from
    a wheel, the repository's conf/ for an editable install or a source checkout."""
    package_dir = Path(__file__).resolve().parent
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


# --------------------------------------------------------------------------- composing


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
        raise DltrainError(_explain_hydra_error(error)) from None
    if validate:
        read_settings(cfg)
    return cfg


def _explain_hydra_error(error: Exception) -> str:
    message = " ".join(str(error).split())
    from dltrain.sweep import missing_plugin

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


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class TrainerSettings:
    device: str = "auto"
    epochs: int = 20
    seed: int = 0
    monitor: str = "loss"
    mode: str = "auto"
    grad_clip: float = 0.0
    patience: int = 0
    min_delta: float = 0.0
    progress: bool = True
    checkpoint_every_seconds: float = 10.0
    precision: str = "auto"  # auto | 32 | bf16 | fp16
    compile: bool = False
    compile_backend: str = "inductor"
    channels_last: str = "auto"  # auto | true | false
    cudnn_benchmark: bool = True
    device_data_max_mb: float = 2048.0
    strategy: str = "auto"  # auto | ddp: data-parallel processes (see dltrain.distributed)
    devices: int | str = "auto"  # processes on this machine: a number, or auto
    threads: int | str = "auto"  # torch's intra-op CPU threads: a number, or auto (dltrain.train.threads)


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
class LoggerSettings:
    """What lands in TensorBoard (``name`` none writes nothing)."""

    name: str = "tensorboard"
    log_every_n_steps: int = 0
    graph: bool = False
    histograms_every_n_epochs: int = 0
    figures: bool = True
    max_images: int = 16

    @property
    def enabled(self) -> bool:
        return self.name != "none"


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


def _options(cfg, group: str, skip: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from omegaconf.errors import OmegaConfBaseException

    try:
        node = OmegaConf.select(cfg, group, default=None)
        if node is None:
            return {}
        container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as error:
        raise DltrainError(f"{group} could not be read: {_first_line(error)}.") from None
    if not isinstance(container, dict):
        raise DltrainError(f"{group} must be a group of settings, got {container!r}.")
    return {k: v for k, v in container.items() if k not in skip}


def _name(cfg, group: str, registry_group: str | None = None) -> str:
    name = value(cfg, f"{group}.name", str)
    options = group_options(registry_group or group)
    if name not in options:
        raise DltrainError(f"{group}.name '{name}' is unknown; valid options are: {', '.join(options)}.")
    return name


PRECISIONS = ("auto", "32", "bf16", "fp16")


def _choice(cfg, key: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting typed as a word or a number (precision=32, channels_last=true): compared as text."""
    from omegaconf import OmegaConf

    raw = OmegaConf.select(cfg, key, default=default)
    text = str(raw).lower() if isinstance(raw, (bool, int, float, str)) and raw is not None else None
    if text not in choices:
        raise DltrainError(f"{key} must be one of {', '.join(choices)}; got {raw!r}.")
    return text


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _devices(cfg) -> int | str:
    """trainer.devices: auto, or how many processes (one per GPU, or CPU processes) to train with."""
    from omegaconf import OmegaConf

    raw = OmegaConf.select(cfg, "trainer.devices", default="auto")
    if raw is None or raw == "auto":
        return "auto"
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise DltrainError(f"trainer.devices must be auto or a number of processes of at least 1, got {raw!r}.")
    return raw


def _threads(cfg) -> int | str:
    """trainer.threads: auto, or how many intra-op CPU threads torch uses."""
    from omegaconf import OmegaConf

    raw = OmegaConf.select(cfg, "trainer.threads", default="auto")
    if raw is None or raw == "auto":
        return "auto"
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise DltrainError(f"trainer.threads must be auto or a whole number of at least 1, got {raw!r}.")
    return raw


def read_settings(cfg) -> Settings:
    """Validate a composed config and return it as plain settings (DltrainError if it is wrong)."""
    trainer = TrainerSettings(
        device=value(cfg, "trainer.device", str, "auto"),
        epochs=value(cfg, "trainer.epochs", int, minimum=1),
        seed=value(cfg, "trainer.seed", int, 0),
        monitor=value(cfg, "trainer.monitor", str, "loss"),
        mode=value(cfg, "trainer.mode", str, "auto", choices=("auto", "min", "max")),
        grad_clip=value(cfg, "trainer.grad_clip", float, 0.0, minimum=0),
        patience=value(cfg, "trainer.early_stopping.patience", int, 0, minimum=0),
        min_delta=value(cfg, "trainer.early_stopping.min_delta", float, 0.0, minimum=0),
        progress=value(cfg, "trainer.progress", bool, True),
        checkpoint_every_seconds=value(cfg, "trainer.checkpoint_every_seconds", float, 10.0, minimum=0),
        precision=_choice(cfg, "trainer.precision", "auto", PRECISIONS),
        compile=value(cfg, "trainer.compile", bool, False),
        compile_backend=value(cfg, "trainer.compile_backend", str, "inductor"),
        channels_last=_choice(cfg, "trainer.channels_last", "auto", ("auto", "true", "false")),
        cudnn_benchmark=value(cfg, "trainer.cudnn_benchmark", bool, True),
        device_data_max_mb=value(cfg, "trainer.device_data_max_mb", float, 2048.0, minimum=0),
        strategy=value(cfg, "trainer.strategy", str, "auto", choices=("auto", "ddp")),
        devices=_devices(cfg),
        threads=_threads(cfg),
    )
    if not _DEVICE.match(trainer.device):
        raise DltrainError(
            f"trainer.device must be auto, cpu, cuda, cuda:N or mps; got {trainer.device!r}."
        )
    data = DataSettings(
        name=_name(cfg, "data"),
        batch_size=value(cfg, "data.batch_size", int, minimum=0),
        val_fraction=value(cfg, "data.val_fraction", float, 0.2, minimum=0.0, below=1.0),
        shuffle=value(cfg, "data.shuffle", bool, True),
        options=_options(cfg, "data", skip=("name", "batch_size", "val_fraction", "shuffle")),
    )
    optimizer = OptimizerSettings(
        name=_name(cfg, "optimizer"),
        lr=value(cfg, "optimizer.lr", float, above=0),
        options=_options(cfg, "optimizer", skip=("name", "lr")),
    )
    regularization = NamedSettings(_name(cfg, "regularization"), _options(cfg, "regularization"))
    for key in ("weight_decay", "l1"):
        if key in regularization.options:
            value(cfg, f"regularization.{key}", float, minimum=0)
    return Settings(
        data=data,
        model=NamedSettings(_name(cfg, "model"), _options(cfg, "model")),
        loss=NamedSettings(_name(cfg, "loss"), _options(cfg, "loss")),
        optimizer=optimizer,
        scheduler=NamedSettings(_name(cfg, "scheduler"), _options(cfg, "scheduler")),
        regularization=regularization,
        trainer=trainer,
        logger=read_logger_settings(cfg),
    )


def read_logger_settings(cfg) -> LoggerSettings:
    """The logger group; a config without one (composed by hand) logs to TensorBoard by default."""
    name = value(cfg, "logger.name", str, "tensorboard")
    options = group_options("logger")
    if name not in options:
        raise DltrainError(f"logger.name '{name}' is unknown; valid options are: {', '.join(options)}.")
    if name == "none":
        return LoggerSettings(name="none")
    return LoggerSettings(
        name=name,
        log_every_n_steps=value(cfg, "logger.log_every_n_steps", int, 0, minimum=0),
        graph=value(cfg, "logger.graph", bool, False),
        histograms_every_n_epochs=value(cfg, "logger.histograms_every_n_epochs", int, 0, minimum=0),
        figures=value(cfg, "logger.figures", bool, True),
        max_images=value(cfg, "logger.max_images", int, 16, minimum=1),
    )


CV_STRATEGIES = ("auto", "kfold", "stratified", "group", "repeated")


@dataclass(frozen=True)
class CVSettings:
    """``dltrain cv``: k folds split by ``strategy`` (auto = stratified for classes, kfold for
    regression, group when group_column is set); ``fold`` runs one fold alone."""

    k: int = 5
    strategy: str = "auto"
    shuffle: bool = True
    seed: int = 0
    repeats: int = 1  # folds are k * repeats for strategy=repeated
    group_column: str | None = None
    fold: int | None = None
    refit: bool = False
    vectorize: str = "auto"  # auto | true | false: train the folds at once (train/vectorized.py)

    @property
    def fold_count(self) -> int:
        return self.k * self.repeats


def read_cv_settings(cfg) -> CVSettings:
    """Validate k and the cv group (the data-dependent checks happen when the folds are planned)."""
    from omegaconf import OmegaConf

    k = value(cfg, "k", int, 5, minimum=2)
    strategy = value(cfg, "cv.strategy", str, "auto", choices=CV_STRATEGIES)
    shuffle = value(cfg, "cv.shuffle", bool, True)
    seed = value(cfg, "cv.seed", int, 0, minimum=0)
    repeats = value(cfg, "cv.repeats", int, 3, minimum=1)
    group_column = OmegaConf.select(cfg, "cv.group_column", default=None)
    if isinstance(group_column, int) and not isinstance(group_column, bool):
        group_column = str(group_column)  # a column of a CSV without header is named "0", "1", ...
    group_column = value(OmegaConf.create({"cv": {"group_column": group_column}}),
                         "cv.group_column", str, None)
    refit = value(cfg, "cv.refit", bool, False)
    vectorize = OmegaConf.select(cfg, "cv.vectorize", default="auto")
    if isinstance(vectorize, bool):  # YAML reads true/false as booleans
        vectorize = "true" if vectorize else "false"
    if vectorize not in ("auto", "true", "false"):
        raise DltrainError(f"cv.vectorize must be auto, true or false, got {vectorize!r}.")
    if strategy == "group" and group_column is None:
        raise DltrainError("cv.strategy=group needs cv.group_column=COLUMN, the column whose "
                           "values must never be split across folds (a patient, a site, a user).")
    if group_column is not None and strategy not in ("auto", "group"):
        raise DltrainError(f"cv.group_column is used only by cv.strategy=group (or auto), but "
                           f"cv.strategy={strategy}; drop cv.group_column or set cv.strategy=group.")
    if strategy == "repeated" and not shuffle:
        raise DltrainError("cv.strategy=repeated reshuffles the rows for every repeat, so it "
                           "cannot run with cv.shuffle=false; use cv.strategy=kfold for contiguous folds.")
    if strategy != "repeated":
        repeats = 1
    settings = CVSettings(k=k, strategy=strategy, shuffle=shuffle, seed=seed, repeats=repeats,
                          group_column=group_column, refit=refit, vectorize=vectorize)
    fold = value(cfg, "cv.fold", int, None)
    if fold is not None and not 0 <= fold < settings.fold_count:
        raise DltrainError(f"cv.fold={fold} is out of range for {settings.fold_count} folds; use "
                           f"0 to {settings.fold_count - 1}, or cv.fold=null for all of them.")
    return replace(settings, fold=fold)


def to_yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=False)
