"""Past runs for ``dltrain runs``: find the fit runs and cross-validations under a folder and read
what each one was (when, command line, model, data, best monitored value, epochs, duration,
status) from its metrics.json, cv_summary.json and .hydra/ files; a run that says ``running``
while no process holds its lock was killed. Reads only; never imports torch. Those files may come
from anyone: each value is read as the type it should have, and one that is not (or a file that
cannot be read) shows as unknown, never as an error."""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from dltrain.errors import DltrainError
from dltrain.files import json_number, locked_by_someone, read_json_object

_FOLD = re.compile(r"^fold_(\d+)$")
_FOLD_ERROR = re.compile(r"^fold_(\d+)\.error$")
# Folders inside a run that are never runs of their own.
_SKIP = {".hydra", "cv_mean", "refit"}
_LARGEST_YAML = 1 << 20


@dataclass
class RunInfo:
    path: str  # the run folder, as found under the folder searched
    kind: str  # fit | cv | tune
    started: str  # ISO time, local
    status: str  # finished | failed | interrupted | running | killed | unknown
    command: str | None  # the command line that repeats the run (None: its overrides are unreadable)
    model: str | None
    data: str | None
    monitor: str | None  # e.g. val_loss
    best: float | None  # fit: the best epoch's value; cv: the mean over folds
    best_std: float | None  # cv: the std over folds
    epochs: int | None  # fit: epochs run; cv: the most epochs of any fold
    folds: int | None  # cv: folds with a folder
    seconds: float | None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def find_runs(root: Path) -> list[RunInfo]:
    """Every fit run and cross-validation under ``root`` (or ``root`` itself), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise DltrainError(f"There is no folder '{root}' with runs; run dltrain fit first, or pass "
                           f"the folder that holds your runs (dltrain runs PATH).")
    runs = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        kind = _kind(here, subfolders, files)
        if kind is not None:
            runs.append({"cv": _read_cv, "tune": _read_tune}.get(kind, _read_fit)(here))
            subfolders[:] = []  # a run's folds and refit belong to it
        else:
            subfolders[:] = sorted(s for s in subfolders if s not in _SKIP)
    for run in runs:
        try:
            run.path = str(Path(run.path).relative_to(root)) if Path(run.path) != root else str(root)
        except ValueError:
            pass
    return sorted(runs, key=lambda run: run.started, reverse=True)


def _kind(folder: Path, subfolders: list[str], files: list[str]) -> str | None:
    if "tune.json" in files:
        return "tune"
    if "cv_summary.json" in files or any(_FOLD_ERROR.match(f) for f in files):
        return "cv"
    if any(_FOLD.match(s) and (folder / s / "metrics.json").exists() for s in subfolders):
        return "cv"
    if "metrics.json" in files or ".hydra" in subfolders:
        return "fit"
    return None


def _read_json(path: Path) -> dict:
    return read_json_object(path) or {}


def _read_yaml(path: Path):
    """The YAML document in ``path`` (plain data: safe_load builds no objects), or None; a file
    larger than any .hydra file dltrain writes is not parsed (YAML is parsed in Python, slowly)."""
    import yaml

    try:  # a folder, a pipe or a device is never opened
        if not path.is_file() or path.stat().st_size > _LARGEST_YAML:
            return None
        return yaml.safe_load(path.read_bytes())
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return None


def _first_line(path: Path, limit: int = 4096) -> str | None:
    """The first line of a short text file (a fold's .error note), or None."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as stream:
            text = stream.read(limit).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    return text.splitlines()[0] if text else None


# Values as the type they should have, or None.


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}



def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(value) -> float | None:
    number = json_number(value)
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _overrides(value) -> list[str] | None:
    """Saved overrides: a list of words, or None."""
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        return None
    return value


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(timespec="seconds")


def _command(name: str, overrides: list[str] | None) -> str | None:
    if overrides is None:
        return None
    return " ".join(["dltrain", name, *(shlex.quote(w) for w in overrides)])


def _names(config) -> tuple[str | None, str | None]:
    config = _mapping(config)
    return _text(_mapping(config.get("model")).get("name")), _text(_mapping(config.get("data")).get("name"))


def _best(metrics: dict) -> float | None:
    """The monitored value of the best epoch, also for a run that stopped before the end."""
    monitor = _text(metrics.get("monitor"))
    if not monitor:
        return None
    row = _mapping(metrics.get("best"))
    if not row:
        history, best_epoch = metrics.get("history"), _count(metrics.get("best_epoch"))
        rows = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []
        row = next((r for r in rows if r.get("epoch") == best_epoch), None)
        final = _mapping(metrics.get("final"))
        if row is None and best_epoch and final.get("epoch") == best_epoch:
            row = final
    return json_number(_mapping(row).get(monitor))


def _epochs(metrics: dict) -> int | None:
    epochs = _count(metrics.get("epochs_run"))
    if epochs is not None:
        return epochs
    history = metrics.get("history")
    if isinstance(history, list) and history:
        return len(history)
    return _count(_mapping(metrics.get("final")).get("epoch"))


def _alive(status: str, folders: list[Path]) -> str:
    """``running`` only while a process holds the lock of one of ``folders`` (the operating
    system drops it when the process dies, even by SIGKILL); ``killed`` otherwise."""
    if status == "running" and not any(locked_by_someone(f) for f in folders):
        return "killed"
    return status


def _read_fit(folder: Path) -> RunInfo:
    metrics = _read_json(folder / "metrics.json") or _ensemble_metrics(folder)
    hydra_dir = folder / ".hydra"
    started = (_mtime(hydra_dir / "hydra.yaml") or _mtime(hydra_dir / "config.yaml")
               or _mtime(folder / "metrics.json") or _mtime(folder))
    ended = _mtime(folder / "metrics.json")
    model, data = _names(_read_yaml(hydra_dir / "config.yaml"))
    status = _alive(_text(metrics.get("status")) or "unknown", [folder])
    seconds = _seconds(metrics.get("seconds"))
    if seconds is None and ended is not None and status != "running":  # killed: until its last write
        seconds = max(ended - started, 0.0)
    return RunInfo(
        path=str(folder), kind="fit", started=_iso(started), status=status,
        command=_command("fit", _overrides(_read_yaml(hydra_dir / "overrides.yaml"))),
        model=_text(metrics.get("model")) or model, data=_text(metrics.get("data")) or data,
        monitor=_text(metrics.get("monitor")), best=_best(metrics), best_std=None,
        epochs=_epochs(metrics), folds=None, seconds=seconds, error=_text(metrics.get("error")),
    )


def _ensemble_metrics(folder: Path) -> dict:
    """A seed ensemble's (trainer.ensemble=N) ensemble.json read as a fit's metrics: its status and
    time, and as its best value the ensemble's on the validation rows, by the members' monitor."""
    ensemble = _read_json(folder / "ensemble.json")
    if not ensemble:
        return {}
    monitor = _text(_read_json(folder / "member_0" / "metrics.json").get("monitor"))
    value = json_number(_mapping(ensemble.get("ensemble_val")).get(monitor.removeprefix("val_"))) if monitor else None
    return {"status": ensemble.get("status"), "seconds": ensemble.get("seconds"),
            "monitor": monitor if value is not None else None, "best": {monitor: value} if value is not None else {}}


def _read_tune(folder: Path) -> RunInfo:
    """A ``dltrain tune`` folder: its best point's fold mean (± std) of the tune's metric."""
    tune = _read_json(folder / "tune.json")
    hydra_dir = folder / ".hydra"
    started = _mtime(hydra_dir / "config.yaml") or _mtime(folder)
    model, data = _names(_read_yaml(hydra_dir / "config.yaml"))
    metric = _text(tune.get("metric"))
    points = tune.get("points")
    best = _mapping(points[0]) if isinstance(points, list) and points else {}
    return RunInfo(
        path=str(folder), kind="tune", started=_iso(started), status=_alive(_text(tune.get("status")) or "unknown", [folder]),
        command=_command("tune", _overrides(_read_yaml(hydra_dir / "overrides.yaml"))), model=model, data=data,
        monitor=metric, best=json_number(best.get(f"{metric}_mean")) if metric else None,
        best_std=json_number(best.get(f"{metric}_std")) if metric else None, epochs=_count(best.get("epochs")),
        folds=_count(tune.get("folds")), seconds=_seconds(tune.get("seconds")),
    )


def _cv_overrides(folder: Path) -> list[str] | None:
    """What was typed after ``dltrain cv``: a fold sweep's task overrides without the cv.fold list
    dltrain adds (a single cv.fold=N the user typed stays), or a sweep job's own overrides (None:
    unreadable)."""
    own = folder / ".hydra" / "overrides.yaml"
    if own.exists():  # dltrain cv -m: each sweep job is a whole cross-validation
        return _overrides(_read_yaml(own))
    sweep = _mapping(_read_yaml(folder / "multirun.yaml"))
    task = _mapping(_mapping(sweep.get("hydra")).get("overrides")).get("task")
    task = [] if task is None else _overrides(task)
    return None if task is None else [o for o in task if not (o.startswith("cv.fold=") and "," in o)]


def _read_cv(folder: Path) -> RunInfo:
    summary = _read_json(folder / "cv_summary.json")
    fold_dirs = sorted((p for p in folder.iterdir() if p.is_dir() and _FOLD.match(p.name)),
                       key=lambda p: int(_FOLD.match(p.name).group(1)))
    fold_metrics = [_read_json(p / "metrics.json") for p in fold_dirs]
    errors = [p for p in folder.iterdir() if _FOLD_ERROR.match(p.name)]
    statuses = [_text(m.get("status")) or "unknown" for m in fold_metrics]
    if _text(summary.get("status")):
        status = summary["status"]
    elif "interrupted" in statuses:
        status = "interrupted"
    elif "failed" in statuses or errors:
        status = "failed"
    else:
        status = "running"
    status = _alive(status, [folder, *fold_dirs])  # a launcher's fold jobs hold their own folders
    error = next((_text(m.get("error")) for m in fold_metrics if _text(m.get("error"))), None)
    if error is None and errors:
        error = _first_line(errors[0])

    # A Hydra job's hydra.yaml, a launcher's multirun.yaml, or the .hydra/config.yaml that
    # dltrain cv writes when the folds train in its own process.
    starts = [_mtime(folder / ".hydra" / "hydra.yaml"), _mtime(folder / "multirun.yaml"),
              _mtime(folder / ".hydra" / "config.yaml"),
              *(_mtime(p / ".hydra" / name) for p in fold_dirs for name in ("hydra.yaml", "config.yaml"))]
    started = min((s for s in starts if s is not None), default=_mtime(folder))
    config = _read_yaml(folder / ".hydra" / "config.yaml")
    if config is None and fold_dirs:
        config = _read_yaml(fold_dirs[0] / ".hydra" / "config.yaml")
    model, data = _names(config)
    objective = _mapping(summary.get("objective"))
    epochs = [m for m in (_epochs(m) for m in fold_metrics) if m is not None]
    seconds = _seconds(summary.get("seconds"))
    if seconds is None and status != "running":
        ends = [_mtime(p / "metrics.json") for p in fold_dirs]
        ends = [e for e in ends if e is not None]
        seconds = max(max(ends) - started, 0.0) if ends else None
    monitor = _text(objective.get("metric")) or next(
        (_text(m.get("monitor")) for m in fold_metrics if _text(m.get("monitor"))), None)
    return RunInfo(
        path=str(folder), kind="cv", started=_iso(started), status=status,
        command=_command("cv", _cv_overrides(folder)),
        model=_text(summary.get("model")) or model, data=_text(summary.get("data")) or data,
        monitor=monitor, best=json_number(objective.get("mean")), best_std=json_number(objective.get("std")),
        epochs=max(epochs) if epochs else None, folds=len(fold_dirs), seconds=seconds, error=error,
    )


# --------------------------------------------------------------------------- showing


_STATUS_STYLE = {"finished": "green", "failed": "red", "interrupted": "yellow", "running": "cyan",
                 "killed": "magenta"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def table(runs: list[RunInfo], root: Path):
    """A rich table of runs, newest first; each row shows the command that repeats the run over
    its folder, so a narrow terminal wraps instead of hiding columns."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from dltrain.console import fmt

    result = Table(title=f"Runs under {escape(str(root))}, newest first", title_justify="left",
                   header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    result.add_column("started", no_wrap=True)
    result.add_column("status", no_wrap=True)
    result.add_column("model / data", overflow="fold")
    result.add_column("best", justify="right")
    result.add_column("epochs", justify="right")
    result.add_column("time", justify="right", no_wrap=True)
    result.add_column("command / folder", min_width=14, overflow="fold")
    for run in runs:
        best = Text("-")
        if run.best is not None:
            spread = f"\n± {fmt(run.best_std)}" if run.best_std is not None else ""
            best = Text.assemble(fmt(run.best), spread, "\n", (run.monitor or "", "dim"))
        epochs = "-" if run.epochs is None else str(run.epochs)
        if run.kind in ("cv", "tune"):
            epochs += f" × {run.folds}\nfolds"
        started = datetime.fromisoformat(run.started)
        result.add_row(
            Text.assemble(started.strftime("%Y-%m-%d"), "\n", started.strftime("%H:%M:%S")),
            Text(run.status, style=_STATUS_STYLE.get(run.status, "")),
            Text.assemble(run.model or "-", "\n", (run.data or "-", "dim")),
            best, epochs, duration(run.seconds),
            Text.assemble(run.command or "-", "\n", (run.path, "dim")),
        )
    return result
