"""Hydra's run machinery around a task: one unique run folder per run (or per sweep job), the
composed config and the overrides saved in its .hydra/, one writer per run folder (its lock, held
while the task runs), and a run that fails, whatever failed, never left looking finished or running."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from contextlib import ExitStack, suppress
from datetime import datetime
from pathlib import Path
from typing import Callable

from dltrain.config import VERSION_BASE, config_dir
from dltrain.errors import DltrainError, environment_sentence, failure_sentence, note_run_folder
from dltrain.files import RunLock, locked_by_someone, read_json_object, remove_links, write_json
from dltrain.train.parallel import secondary_rank, shared


def objective_value(result) -> float | None:
    """The float a sweeper optimises, from a task's result: a fit's monitored metric at its best
    epoch, a cross-validation's mean (run_cv already returns it)."""
    if result is None or isinstance(result, (int, float)):
        return None if result is None else float(result)
    if isinstance(result, dict):  # a cv summary
        return float(result["objective"]["mean"])
    return float(result.best[result.monitor])


# What Hydra writes into a job's folder (and a sweep's) with a plain open(), which would follow a
# link planted there; dltrain's own files go through dltrain.files, which replaces links.
_HYDRA_WRITES = (".hydra", ".hydra/*.yaml", "*.log", "multirun.yaml")
# A folder holding any of these is a run (or a cross-validation) already.
_RUN_FILES = ("metrics.json", "last.pt", "best.pt", "cv_summary.json", ".hydra")


def check_run_dir(overrides: list[str]) -> None:
    """``hydra.run.dir=`` as the user typed it (dltrain's own use of the key, for resume, folds
    and data-parallel ranks, comes later): refused when empty, or when it names a folder that
    already holds a run, which a second run would overwrite and mix with its own. Rank 0 of a
    data-parallel fit checks for every rank (the others may see the folder it just made)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") != "hydra.run.dir":
            continue
        folder = value.strip().strip("'\"").strip()
        if not folder:
            raise DltrainError(f"{override!r} names no folder; give a new folder for the run (hydra.run.dir="
                               f"outputs/NAME), or leave it out for a fresh one under outputs/.")
        path = Path(folder).expanduser()
        if path.is_dir() and (locked_by_someone(path) or any((path / name).exists() for name in _RUN_FILES)):
            raise DltrainError(f"hydra.run.dir={folder} is an existing run folder, which a new run would "
                               f"overwrite; continue it with resume={folder} alone, or give a new folder.")
        refusal = _cannot_make(path)
        if refusal is not None:
            raise DltrainError(f"hydra.run.dir={folder} cannot be made: {refusal}; give a folder you can write to.")


def _cannot_make(folder: Path) -> str | None:
    """Why no run folder can be made at ``folder`` (None when one can): tried as Hydra would, with
    a folder made and removed at once in its nearest existing parent (only the file system
    knows: /proc refuses even root, a read-only mount refuses everyone)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".dltrain-probe-"))
    except OSError as error:
        return f"{existing} refuses a new folder ({error.strerror or error})"
    return None


def _literal_folder(overrides: list[str], key: str) -> Path | None:
    """The folder ``key=FOLDER`` names when it is a plain path (no interpolation) that exists."""
    for override in reversed(overrides):
        if override.startswith(f"{key}="):
            text = override.split("=", 1)[1].strip().strip("'\"")
            path = Path(text).expanduser() if text and "${" not in text else None
            return path if path is not None and path.is_dir() else None
    return None


def run_folder_overrides(overrides: list[str]) -> list[str]:
    """hydra.run.dir / hydra.sweep.dir under outputs/, unique even for runs started in the same
    second (a random suffix), unless the user set them. The ranks of a data-parallel fit all take
    rank 0's folder, and only rank 0 writes .hydra/ and the job log there."""
    stamp = shared(datetime.now().strftime("%Y-%m-%d/%H-%M-%S") + "_" + secrets.token_hex(3))
    extra = []
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        extra.append(f"hydra.run.dir=outputs/{stamp}")
    if not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        # Absolute: a launcher's workers (joblib's reused processes, SLURM jobs) may start
        # elsewhere than this process's working folder.
        folder = str(Path.cwd() / "outputs" / "multirun" / stamp)
        plain = re.fullmatch(r"[\w./-]+", folder)
        extra.append(f"hydra.sweep.dir={folder if plain else repr(folder)}")
    if secondary_rank():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    return extra


def launch(task: Callable, overrides: list[str], *, multirun: bool = False, sweep: bool = False):
    """Run ``task(cfg, run_dir)`` under Hydra (``-m`` sweeps when multirun); return its result
    (a list of results for a sweep). A DltrainError in the task is raised here after its run
    folder is removed (nothing trained yet) or marked failed. ``sweep``: the jobs are the points
    of a user's sweep (dltrain fit/cv -m): each returns its monitored value as a float to Hydra
    (what a sweeper such as Optuna optimises), and a failed point is not raised but stays as a
    folder marked failed with its reason, for the sweep's ranked table."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    results, errors = [], []

    def job(cfg):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        with ExitStack() as held:
            try:
                if not secondary_rank():  # rank 0 is a data-parallel fit's one writer
                    held.enter_context(RunLock(run_dir))
            except DltrainError as error:  # another process writes this folder: leave it as it is
                errors.append(error)
                return None
            try:
                result = task(cfg, run_dir)
                results.append(result)
                if sweep:
                    return objective_value(result)
                return result  # Hydra keeps it as the job's return value: what a sweeper optimises
            except DltrainError as error:
                errors.append(error)
                settle_failed(run_dir, "failed", str(error), keep=sweep)
            except KeyboardInterrupt:
                settle_failed(run_dir, "interrupted", "interrupted by the user")
                raise
            except Exception as error:  # the machine (a full disk, ...) or a bug: a sweep stops too
                # A bug's folder stays, for its config and traceback; the machine's sentence says all.
                settle_failed(run_dir, "failed", failure_sentence(error),
                              keep=sweep or environment_sentence(error) is None)
                note_run_folder(error, run_dir)
                raise _Escaped(error) from None

    main = hydra.main(config_path=str(config_dir()), config_name="config", version_base=VERSION_BASE)(job)
    argv = ["dltrain", *(["--multirun"] if multirun else []), *overrides, *run_folder_overrides(overrides)]
    saved_argv, saved_full_error = sys.argv, os.environ.get(_FULL_ERROR)
    sys.argv = argv
    # Hydra prints an error in its own machinery (making the run folder, writing .hydra/) as a
    # traceback and exits; with this set it raises it, for the command line's one sentence.
    os.environ[_FULL_ERROR] = "1"
    logs_before = set(logging.getLogger().handlers)
    try:
        with ExitStack() as held:
            if not secondary_rank():
                _open_existing(overrides, multirun, held)
            main()
    except _Escaped as escaped:
        raise escaped.error from None
    finally:
        _close_job_logs(logs_before)
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop(_FULL_ERROR, None)
        else:
            os.environ[_FULL_ERROR] = saved_full_error
    if errors and not sweep and (not multirun or not results):
        raise errors[0]
    return results if multirun else results[0]


_FULL_ERROR = "HYDRA_FULL_ERROR"


def _close_job_logs(before: set) -> None:
    """Close the file handlers Hydra's job logging left on the root logger (each job's
    dltrain.log): Hydra never removes them, so whatever this process logged after the run (a later
    in-process command, a test, TensorBoard's event reader) would land in a finished run's log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in before and isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


class _Escaped(BaseException):
    """An error of a job carried past Hydra's job runner, which keeps an Exception to raise once
    every job of a sweep ran: a full disk or a bug stops the sweep at once."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def _open_existing(overrides: list[str], multirun: bool, held: ExitStack) -> None:
    """A run folder that exists already (a cross-validation's, whose folds a launcher runs): take
    its lock before Hydra writes a byte there (another process training it refuses this one),
    and unlink links planted where Hydra writes, in it and in its jobs' folders (a sweep's)."""
    folder = _literal_folder(overrides, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    if folder is None:
        return
    if not multirun:  # a sweep's folder is held by whoever owns it (dltrain cv); its jobs lock their own
        held.enter_context(RunLock(folder))
    remove_links(folder, _HYDRA_WRITES)
    if multirun:
        for job_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            remove_links(job_folder, _HYDRA_WRITES)


def settle_failed(run_dir: Path, status: str, message: str, *, keep: bool = False) -> None:
    """Remove a run folder where nothing was trained (no checkpoint in it, nor in a fold
    sub-folder of a cross-validation) unless ``keep``; otherwise record why the run ended (rank
    0's job in a data-parallel fit)."""
    if secondary_rank():
        return
    metrics_path = run_dir / "metrics.json"
    if not keep and not any(run_dir.glob("**/last.pt")) and not any(run_dir.glob("**/best.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)
        parent = run_dir.parent
        with suppress(OSError):
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
        return
    if not run_dir.is_dir():  # deleted meanwhile: nothing to tell, nowhere to write it
        return
    record = read_json_object(metrics_path) or {}
    record.update(status=status, error=message)
    with suppress(OSError):  # where the disk still allows it: what failed may be the disk itself
        write_json(metrics_path, record)


def check_fold_launch(hydra, overrides: list[str]) -> bool:
    """``dltrain cv`` hands its folds to Hydra's sweeper and launcher as a sweep over cv.fold
    (``hydra``: the composed config's hydra node): refuse a search sweeper (a recipe such as
    search_mlp_digits selects Optuna, which would sample the folds like a parameter) and a SLURM
    launcher on a machine without SLURM. True when the launcher is Hydra's basic one (the folds
    then run in this process, composed once)."""
    from omegaconf import OmegaConf

    target = str(OmegaConf.select(hydra, "sweeper._target_", default="") or "")
    if target and not target.endswith("BasicSweeper"):
        typed = " ".join(overrides)
        raise DltrainError(f"This config searches with a sweeper ({target.rsplit('.', 1)[-1]}), which needs -m: "
                           f"dltrain cv -m {typed} runs the search, each trial a whole cross-validation.")
    check_slurm(hydra)
    launcher = str(OmegaConf.select(hydra, "launcher._target_", default="") or "")
    return not launcher or launcher.endswith("BasicLauncher")


def check_slurm(hydra) -> None:
    """The SLURM launcher submits with sbatch and srun: without them it could only fail later."""
    import shutil

    from omegaconf import OmegaConf

    target = str(OmegaConf.select(hydra, "launcher._target_", default="") or "")
    if target.endswith("SlurmLauncher") and shutil.which("srun") is None:
        raise DltrainError("hydra/launcher=slurm submits SLURM jobs, but this machine has no srun; run "
                           "the command on the cluster's login node, or try hydra/launcher=submitit_local here.")
