"""``resume=RUN`` (``dltrain fit``) and ``resume=CV_DIR`` (``dltrain cv``): which folder, and the
config it goes on with. A run folder may come from someone else, so nothing in it reaches Hydra:
the run is rebuilt from its saved, composed config, read as plain data (no ``hydra`` section, no
``_target_`` but model=custom's class path, no interpolation) and validated like a typed one;
the saved override strings are never replayed. Only settings that cannot change what the run has learned so far may change
(RESUMABLE), and every check happens before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

from dltrain.config import apply_overrides, parse_overrides, read_cv_settings, read_settings, upgrade_saved
from dltrain.config.settings import default_setting
from dltrain.console import console, plural
from dltrain.errors import DltrainError
from dltrain.files import locked_by_someone, read_json_object
from dltrain.models.custom import CUSTOM, TARGET
from dltrain.train.optim import SCHEDULERS

# What a resume may change: each key and every key under it (``logger``: the loggers chosen and
# their settings). Everything else is what the run was trained with.
RESUMABLE = (
    "trainer.epochs",  # more epochs (a finished run trains on), never fewer than trained
    "trainer.early_stopping.patience",
    "trainer.checkpoint_every_seconds",
    "trainer.save_top_k",  # which checkpoints are kept, not what is learned
    "trainer.progress",
    "trainer.device",  # results are exact on the device the run trained on
    "trainer.devices",
    "trainer.strategy",
    "logger",
)
CONFIG = Path(".hydra") / "config.yaml"
_MAX_CONFIG_BYTES = 1 << 20  # a saved config is a few kilobytes
_MAX_CONFIG_NODES = 100_000  # YAML aliases could make a small file a huge tree
_MAX_CONFIG_DEPTH = 50  # dltrain's own configs nest three deep


def split_resume(overrides: list[str]) -> tuple[str | None, list[str]]:
    """The ``resume=`` target (the last one given; None without one, or for resume=null) and the
    other overrides. ``+resume=`` and ``++resume=`` are the same request; ``~resume`` is none."""
    target, rest = None, []
    for override in overrides:
        key, equals, value = override.partition("=")
        if key.lstrip("+~") != "resume":
            rest.append(override)
        elif key.startswith("~"):
            target = None
        elif equals:
            target = value.strip() if value.strip() not in ("", "null") else None
    return target, rest


def allowed_keys() -> str:
    return ", ".join(RESUMABLE[:-1]) + f" and {RESUMABLE[-1]} settings"


# --------------------------------------------------------------------------- which folder


def cv_holding(folder: Path) -> Path | None:
    """The cross-validation folder that ``folder`` is a fold (or the refit) of, or None."""
    parent = Path(folder).parent
    return parent if is_cv_folder(parent) else None


def is_cv_folder(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / "cv_summary.json").is_file() or any(folder.glob("fold_*/.hydra"))


def _refuse_folds(target: str, folder: Path) -> None:
    cv_dir = cv_holding(folder)
    if cv_dir is not None:
        raise DltrainError(f"resume={target}: {str(folder)!r} is part of the cross-validation {str(cv_dir)!r}; "
                           f"resume the whole cross-validation with dltrain cv resume={cv_dir}.")


def fit_folder(target: str) -> Path:
    """The run folder that ``dltrain fit resume=TARGET`` continues (TARGET a folder, or last)."""
    if target == "last":
        return last_run(Path("outputs"))
    folder = Path(target).expanduser()
    _refuse_folds(target, folder)
    if is_cv_folder(folder):
        raise DltrainError(f"resume={target}: {str(folder)!r} is a cross-validation; resume it with "
                           f"dltrain cv resume={folder}.")
    if not (folder / CONFIG).is_file() or not (folder / "last.pt").is_file():
        raise DltrainError(f"resume={target}: {str(folder)!r} is not a run folder with a last.pt checkpoint; "
                           f"give a folder under outputs/ (or resume=last).")
    return folder.resolve()


def last_run(root: Path) -> Path:
    """``resume=last``: the run under ``root`` whose last.pt is newest, leaving out the folds of
    cross-validations and the runs another process is training."""
    found = []
    for checkpoint in root.glob("**/last.pt"):
        try:
            found.append((checkpoint.stat().st_mtime, checkpoint.parent))
        except OSError:  # a dangling link
            continue
    newer_cv = None
    for _, folder in sorted(found, key=lambda pair: pair[0], reverse=True):
        if not (folder / CONFIG).is_file():
            continue
        cv_dir = cv_holding(folder)
        if cv_dir is not None:
            newer_cv = newer_cv or cv_dir
            continue
        if locked_by_someone(folder):
            continue
        if newer_cv is not None:
            console.print(f"[yellow]note:[/yellow] resume=last leaves out the newer cross-validation "
                          f"{newer_cv}; resume it with dltrain cv resume={newer_cv}.")
        return folder.resolve()
    unless = (f" (the newest checkpoint is in the cross-validation {newer_cv}: resume it with "
              f"dltrain cv resume={newer_cv})" if newer_cv is not None else "")
    raise DltrainError(f"resume=last found no run with a last.pt under {root}/ that no other dltrain "
                       f"process is training{unless}; give resume=RUN_DIR.")


def cv_folder(target: str) -> Path:
    """The cross-validation folder that ``dltrain cv resume=TARGET`` continues."""
    folder = Path(target).expanduser()
    _refuse_folds(target, folder)
    if not any(folder.glob(f"fold_*/{CONFIG}")):
        raise DltrainError(f"resume={target}: {str(folder)!r} is not a cross-validation folder "
                           f"(no fold_N/.hydra in it); give the folder dltrain cv printed.")
    return folder.resolve()


def refuse_in_use(target: str, folders) -> None:
    """One sentence when another process trains one of ``folders``: the early, read-only probe,
    before the data is loaded (the lock itself is taken when training starts). Ranks other than 0
    of a data-parallel resume skip it: rank 0 may hold the lock already."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    busy = next((f for f in folders if locked_by_someone(f)), None)
    if busy is not None:
        raise DltrainError(f"resume={target}: {str(busy)!r} is being trained by another dltrain process; "
                           f"wait for it to finish (or stop it) and resume then.")


# --------------------------------------------------------------------------- which config


def resumed_config(target: str, folder: Path, saved: Path, overrides: list[str], *, cv: bool = False):
    """The config to resume with: the run's saved one (``saved``), checked as untrusted data and
    validated, with ``overrides`` applied when every one is RESUMABLE, and ``resume`` set to
    ``folder``. One sentence for anything else, before anything is written."""
    from omegaconf import OmegaConf, open_dict

    cfg = OmegaConf.create(upgrade_saved(_read_saved(target, saved)))
    with open_dict(cfg):
        cfg["resume"] = None
        if cv and saved.parent.parent != folder:  # a fold's config: the whole cross-validation
            OmegaConf.update(cfg, "cv.fold", None, force_add=True)
    try:
        before = _validated(cfg, cv)
    except DltrainError as error:
        raise DltrainError(f"resume={target}: the saved config {str(saved)!r} is not one dltrain can run "
                           f"({str(error).rstrip('.')}).") from None
    keys = []
    for override in parse_overrides(overrides):
        key = override.key_or_group
        keys.append(key)
        if override.package or not any(key == k or key.startswith(f"{k}.") for k in RESUMABLE):
            raise DltrainError(f"resume={target} cannot change {key} (a resumed run keeps what it was "
                               f"trained with; only {allowed_keys()} may change); start a new run to change it.")
    _own_tracking_uri(cfg, keys)
    cfg = apply_overrides(cfg, overrides)
    after = _validated(cfg, cv)
    epochs = after.trainer.epochs
    if epochs != before.trainer.epochs and SCHEDULERS[after.scheduler.name].fitted_to_epochs:
        raise DltrainError(f"resume={target} cannot change trainer.epochs to {epochs}: scheduler="
                           f"{after.scheduler.name} spreads its curve over the "
                           f"{plural(before.trainer.epochs, 'epoch')} the run started with; start a new run "
                           f"for {plural(epochs, 'epoch')}.")
    with open_dict(cfg):
        cfg["resume"] = str(folder)
    return cfg


def _own_tracking_uri(cfg, keys: list[str]) -> None:
    """MLflow writes wherever logger.mlflow.tracking_uri points, outside the run folder, so a saved
    one is the folder's word only: a resume logs to the default URI, or to the one it is given."""
    from omegaconf import OmegaConf
    from rich.markup import escape

    saved = OmegaConf.select(cfg, "logger.mlflow.tracking_uri", default=None)
    default = default_setting("logger", "mlflow.tracking_uri")
    if saved is None or saved == default:
        return
    cfg.logger.mlflow.tracking_uri = default
    if not {"logger", "logger.mlflow", "logger.mlflow.tracking_uri"} & set(keys):
        console.print(f"[yellow]note:[/yellow] resume logs to MLflow at {default}, not at the saved "
                      f"{escape(str(saved))} (a run folder does not choose where dltrain writes outside it); "
                      f"give logger.mlflow.tracking_uri=URI to log there.")


def _validated(cfg, cv: bool):
    settings = read_settings(cfg)
    if cv:
        read_cv_settings(cfg)
    return settings


def _read_saved(target: str, path: Path) -> dict:
    import yaml

    def refuse(why: str):
        return DltrainError(f"resume={target}: the saved config {str(path)!r} {why}; a run folder's config "
                            f"holds plain settings only (dltrain writes it so).")

    try:
        if path.is_symlink() or path.stat().st_size > _MAX_CONFIG_BYTES:
            raise refuse("is a link or too large to be a dltrain config")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        raise refuse(f"cannot be read ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise refuse("is not a mapping of settings")
    if "hydra" in data:
        raise refuse("has a hydra section, which only Hydra's own run writes")
    budget = [_MAX_CONFIG_NODES]

    def check(node, where: str, depth: int = 0) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_CONFIG_DEPTH:
            raise refuse("is too large to be a dltrain config")
        if isinstance(node, dict):
            for key, value in node.items():
                name = f"{where}.{key}" if where else str(key)
                if not isinstance(key, str):
                    raise refuse(f"has a key {key!r} that is not a name")
                if key.startswith("_") and key.endswith("_") and not _names_custom_class(where, node, key):
                    raise refuse(f"has {name}, a key Hydra would instantiate or act on")
                check(value, name, depth + 1)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                check(value, f"{where}[{index}]", depth + 1)
        elif isinstance(node, str):
            if "${" in node:
                raise refuse(f"sets {where} to an interpolation ({node[:40]!r})")
        elif node is not None and not isinstance(node, (bool, int, float)):
            raise refuse(f"sets {where} to a {type(node).__name__}")

    check(data, "")
    return data


def _names_custom_class(where: str, node: dict, key: str) -> bool:
    """model._target_ of model=custom: the one such key a run's config holds, a class path (read as
    data; dltrain.models.custom imports it under its trust rule, never from the run folder)."""
    return where == "model" and key == TARGET and node.get("name") == CUSTOM


# --------------------------------------------------------------------------- what is left to do


def nothing_left(folder: Path, trainer) -> str | None:
    """Why resuming ``folder`` with these TrainerSettings would train (or conclude) nothing, or
    None when it goes on: its metrics.json says it finished and no epoch is left, trainer.epochs
    reached or early stopping under the patience now set. Fewer epochs than it finished is one
    sentence."""
    try:
        record = read_json_object(Path(folder) / "metrics.json") or {}
        finished = record.get("status") == "finished"
        trained, best_epoch = int(record["epochs_run"]), int(record["best_epoch"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # not finished as far as can be told: resume reads its checkpoint
    if not finished:
        return None
    if trainer.epochs < trained:
        raise fewer_epochs(folder, trainer.epochs, trained)
    if trainer.patience and trained - best_epoch >= trainer.patience:
        return (f"stopped early after {plural(trained, 'epoch')}, {trained - best_epoch} without improvement (a larger "
                f"trainer.early_stopping.patience, or 0, trains it on)")
    if trained >= trainer.epochs:
        return f"has finished its {plural(trained, 'epoch')} (a larger trainer.epochs trains it on)"
    return None


def fewer_epochs(folder: Path, epochs: int, trained: int) -> DltrainError:
    return DltrainError(f"trainer.epochs={epochs} is fewer than the {plural(trained, 'epoch')} {str(folder)!r} has "
                        f"trained (or started); resume it with trainer.epochs={trained} or more.")
