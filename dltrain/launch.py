"""Hydra's run machinery around a task: one unique run folder per run (or per sweep job), the
composed config and the overrides saved in its .hydra/, and a run that fails on a user error
never left looking finished."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

from dltrain.errors import DltrainError


def run_folder_overrides(overrides: list[str]) -> list[str]:
    """hydra.run.dir / hydra.sweep.dir under outputs/, unique even for runs started in the same
    second (a random suffix), unless the user set them. The ranks of a data-parallel fit all take
    rank 0's folder, and only rank 0 writes .hydra/ and the job log there."""
    from dltrain.distributed import secondary_rank, shared

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

    from dltrain.config import VERSION_BASE, config_dir

    results, errors = [], []

    def job(cfg):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            result = task(cfg, run_dir)
            results.append(result)
            if sweep:
                from dltrain.sweep import objective_value

                return objective_value(result)
            return result  # Hydra keeps it as the job's return value: what a sweeper optimises
        except DltrainError as error:
            errors.append(error)
            if not cfg.get("resume"):  # a failed resume leaves the earlier run as it was
                _settle_failed(run_dir, "failed", str(error), keep=sweep)
        except KeyboardInterrupt:
            _settle_failed(run_dir, "interrupted", "interrupted by the user")
            raise

    main = hydra.main(config_path=str(config_dir()), config_name="config", version_base=VERSION_BASE)(job)
    argv = ["dltrain", *(["--multirun"] if multirun else []), *overrides, *run_folder_overrides(overrides)]
    saved_argv = sys.argv
    sys.argv = argv
    try:
        main()
    finally:
        sys.argv = saved_argv
    if errors and not sweep and (not multirun or not results):
        raise errors[0]
    return results if multirun else results[0]


def resume_overrides(overrides: list[str]) -> list[str]:
    """Turn ``resume=RUN_DIR`` (or ``resume=last``) into the run's own saved overrides, then the
    new ones, with Hydra pointed at the same folder so the run continues where it was."""
    import yaml

    requested = [o for o in overrides if o.startswith("resume=")]
    if not requested:
        return overrides
    target = requested[-1].split("=", 1)[1].strip()
    if target in ("", "null"):
        return [o for o in overrides if not o.startswith("resume=")]
    if target == "last":
        candidates = [p.parent for p in Path("outputs").glob("**/last.pt")
                      if (p.parent / ".hydra").is_dir()]
        if not candidates:
            raise DltrainError("resume=last found no run with a last.pt under outputs/; give resume=RUN_DIR.")
        run_dir = max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
    else:
        run_dir = Path(target).expanduser()
    saved_path = run_dir / ".hydra" / "overrides.yaml"
    if not saved_path.is_file() or not (run_dir / "last.pt").is_file():
        raise DltrainError(
            f"resume={target}: {str(run_dir)!r} is not a run folder with a last.pt checkpoint; "
            f"give a folder under outputs/ (or resume=last)."
        )
    saved = yaml.safe_load(saved_path.read_text()) or []
    run_dir = run_dir.resolve()
    keep = [o for o in saved if not o.startswith(("resume=", "hydra."))]
    new = [o for o in overrides if not o.startswith(("resume=", "hydra.run.dir="))]
    return [*keep, *new, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


def _settle_failed(run_dir: Path, status: str, message: str, *, keep: bool = False) -> None:
    """Remove a run folder where nothing was trained (no checkpoint in it, nor in a fold
    sub-folder of a cross-validation) unless ``keep``; otherwise record why the run ended (rank
    0's job in a data-parallel fit)."""
    from dltrain.distributed import secondary_rank

    if secondary_rank():
        return
    metrics_path = run_dir / "metrics.json"
    if not keep and not any(run_dir.glob("**/last.pt")) and not any(run_dir.glob("**/best.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)
        parent = run_dir.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
        return
    record = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    record.update(status=status, error=message)
    from dltrain.train.checkpoint import write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(metrics_path, record)


def launch_fit(overrides: list[str], *, multirun: bool = False):
    from dltrain.run import run_fit

    return launch(run_fit, overrides, multirun=multirun)
