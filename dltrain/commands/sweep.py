"""Sweeps (``dltrain fit -m`` / ``dltrain cv -m``): check the points up front, run them as Hydra
jobs with whichever launcher and sweeper the config names, then rank them by the monitored metric
in one table, saved as sweep.json and sweep.csv in the sweep folder. The ranking reads each job's
own folder (metrics.json, cv_summary.json), so it works for launchers that run the jobs in other
processes or on other machines (joblib, submitit) as well as in this one."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from dltrain.commands.cv import run_cv
from dltrain.commands.fit import refuse_data_parallel, run_fit
from dltrain.commands.launch import check_slurm, launch, run_folder_overrides
from dltrain.commands.resume import split_resume
from dltrain.console import console, fmt
from dltrain.errors import DltrainError, run_folder_of
from dltrain.files import write_atomic, write_json
from dltrain.commands.runs import _read_json, _read_yaml  # run folders are read as dltrain runs reads them

SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
OPTUNA_RESULTS = "optimization_results.yaml"  # written by hydra-optuna-sweeper in the sweep folder
_MAX_CHECKED_POINTS = 256  # beyond this many grid points only the first one is composed up front


@dataclass
class Point:
    """One job of a sweep, as read back from its folder."""

    job: int
    folder: str  # relative to the sweep folder
    swept: dict  # the swept overrides of this job: key -> value as typed
    overrides: list  # every override of this job
    status: str  # finished | failed | interrupted | running | unknown
    value: float | None  # fit: the monitored metric at its best epoch; cv: its mean over folds
    std: float | None = None  # cv: the std over folds
    test: float | None = None  # the same metric on the test split (cv: mean over folds)
    epochs: int | None = None
    seconds: float | None = None
    error: str | None = None
    monitor: str | None = None
    mode: str | None = None
    rank: int | None = None
    extra: dict = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- running


def run_sweep(kind: str, overrides: list[str], *, out=console) -> list[Point]:
    """``dltrain fit -m`` / ``dltrain cv -m``: every point in its own folder under one sweep
    folder, then the ranked table. Exits with a sentence when every point failed."""
    refuse_data_parallel(f"dltrain {kind} -m", overrides)
    if split_resume(overrides)[0] is not None:
        raise DltrainError(f"dltrain {kind} -m cannot resume: resume= goes on with one run in its own folder; "
                           f"drop -m (dltrain {kind} resume=...).")
    overrides, sweep_dir = with_sweep_dir(overrides)
    check_points(overrides)
    # A launcher may run the points in other processes (joblib pickles the task): a partial of
    # module functions travels, a closure over this process's console would not.
    task = partial(run_point, run_cv if kind == "cv" else run_fit, frozenset(_fixed_keys(overrides)))
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's storage imports it, chattily
    try:
        launch(task, overrides, multirun=True, sweep=True)
    except (Exception, SystemExit) as error:
        # A sweeper may give up when no point finished (Optuna: "No trials are completed yet"):
        # then the points' own reasons are the story; anything else is a bug, shown as it is, and
        # so is what stopped a point itself (a full disk, a bug: it stopped the whole sweep).
        if run_folder_of(error) is not None:
            raise
        if any(p.status == "finished" for p in collect(sweep_dir, kind, overrides)):
            raise
        if not collect(sweep_dir, kind, overrides):
            raise
    points = report(sweep_dir, kind, overrides, out=out)
    if not points:
        raise DltrainError(f"The sweep ran no job; nothing is in {sweep_dir}.")
    if not any(p.status == "finished" for p in points):
        first = next((p for p in points if p.error), points[0])
        raise DltrainError(f"Every point of the sweep failed; the first: {first.error or first.status}")
    return points


def run_point(task, fixed: frozenset, cfg, run_dir: Path):
    """A sweep's job: ``task`` (run_fit or run_cv) on one point, saying at once when the point
    fails (not only in the table at the end), with its swept settings (``fixed``: the keys
    every point shares)."""
    try:
        return task(cfg, run_dir)
    except DltrainError as error:
        from hydra.core.hydra_config import HydraConfig

        swept = [o for o in HydraConfig.get().overrides.task if o.partition("=")[0] not in fixed]
        console.print(f"[red]Point {Path(run_dir).name} failed[/red] ({' '.join(swept) or 'no swept setting'}): "
                      f"{error}")
        raise


def with_sweep_dir(overrides: list[str]) -> tuple[list[str], Path]:
    """The overrides with ``hydra.sweep.dir`` set (a new unique folder under outputs/multirun
    unless the user gave one), and that folder."""
    given = [o for o in overrides if o.startswith("hydra.sweep.dir=")]
    if given:
        text = given[-1].split("=", 1)[1].strip("'\"")
        if "${" in text:
            raise DltrainError(f"hydra.sweep.dir={text} must be a plain folder for the sweep's ranked "
                               f"table; leave out interpolations such as ${{now:...}}.")
        return overrides, Path(text)
    extra = next(o for o in run_folder_overrides([]) if o.startswith("hydra.sweep.dir="))
    return [*overrides, extra], Path(extra.split("=", 1)[1].strip("'\""))


def _points(overrides: list[str]) -> list[list[str]]:
    """The grid of a basic sweep (comma lists, range()), as lists of overrides; a sweep only a
    sweeper can expand (interval(), tags) is left out of the grid."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        first_line = str(error).strip().splitlines()[0]
        raise DltrainError(f"Could not read the override: {first_line}") from None
    axes = []
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes.append([f"{key}={override.get_value_element_as_str()}"])
        elif override.is_discrete_sweep():
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    grid = []
    for point in itertools.product(*axes):
        grid.append(list(point))
        if len(grid) >= _MAX_CHECKED_POINTS:
            break
    return grid


def check_points(overrides: list[str]) -> None:
    """Compose every point of the sweep before any runs: a mistake Hydra would stop the sweep on
    (an unknown key or option, a plugin not installed) is one sentence now; a setting that
    fails validation in every point too; a point that alone is invalid runs and is listed as
    failed. An Optuna direction that contradicts the monitored metric is refused."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from dltrain.config import VERSION_BASE, check_overrides, config_dir, read_settings

    check_overrides(overrides)
    grid = _points(overrides)
    invalid, monitors = [], set()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
        for number, point in enumerate(grid):
            try:
                cfg = hydra_compose(config_name="config", overrides=point, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError) as error:
                raise DltrainError(_explain(error, point)) from None
            try:
                settings = read_settings(cfg)
            except DltrainError as error:
                invalid.append(error)
                continue
            monitors.add((settings.trainer.monitor, settings.trainer.mode))
            if number == 0:
                _check_direction(cfg, settings)
                check_slurm(cfg.hydra)
    if invalid and len(invalid) == len(grid):
        raise invalid[0]
    if len(monitors) > 1:
        raise DltrainError("A sweep ranks its points by one metric, but trainer.monitor (or trainer.mode) "
                           "differs between them; sweep other settings with one trainer.monitor.")


def _explain(error: Exception, point: list[str]) -> str:
    from dltrain.config import explain_hydra_error

    return explain_hydra_error(error)


def _check_direction(cfg, settings) -> None:
    """Optuna maximises or minimises what a trial returns, the monitored metric: both must agree."""
    from omegaconf import OmegaConf

    from dltrain.train.metrics import monitor_mode

    target = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if "optuna" not in target.lower():
        return
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default="minimize")
    direction = str(getattr(direction, "name", direction)).lower()
    mode = monitor_mode(settings.trainer.monitor, settings.trainer.mode)
    wanted = "minimize" if mode == "min" else "maximize"
    if direction != wanted:
        raise DltrainError(
            f"hydra.sweeper.direction is {direction}, but trainer.monitor={settings.trainer.monitor} "
            f"is better when {'lower' if mode == 'min' else 'higher'}; set hydra.sweeper.direction={wanted}."
        )


# --------------------------------------------------------------------------- reading back


def _fixed_keys(overrides: list[str]) -> set[str]:
    """Keys the user typed with one value: the same in every job, so not a column of the table."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.get_key_element() for o in parsed if not o.is_sweep_override()}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def collect(sweep_dir: Path, kind: str, overrides: list[str]) -> list[Point]:
    """Every job folder of the sweep (those with .hydra/), read back in job order."""
    sweep_dir = Path(sweep_dir)
    fixed = _fixed_keys(overrides)
    points = []
    folders = [p.parent for p in sweep_dir.glob("*/.hydra")] if sweep_dir.is_dir() else []
    for folder in folders:
        hydra = _read_yaml(folder / ".hydra" / "hydra.yaml") or {}
        job = ((hydra.get("hydra") or {}).get("job") or {}).get("num")
        job_overrides = [str(o) for o in _read_yaml(folder / ".hydra" / "overrides.yaml") or []]
        swept = {}
        for override in job_overrides:
            key, _, value = override.partition("=")
            if key not in fixed:
                swept[key] = value
        point = Point(job=int(job) if job is not None else len(points), folder=folder.name,
                      swept=swept, overrides=job_overrides, status="unknown", value=None)
        (_read_cv_point if kind == "cv" else _read_fit_point)(folder, point)
        points.append(point)
    return sorted(points, key=lambda p: p.job)


def _read_fit_point(folder: Path, point: Point) -> None:
    metrics = _read_json(folder / "metrics.json")
    point.status = metrics.get("status", "unknown")
    point.monitor, point.mode = metrics.get("monitor"), metrics.get("mode")
    point.error = metrics.get("error")
    point.epochs, point.seconds = metrics.get("epochs_run"), _number(metrics.get("seconds"))
    if point.status == "finished" and point.monitor:
        point.value = _number((metrics.get("best") or {}).get(point.monitor))
        name = point.monitor.split("_", 1)[1]
        point.test = _number((metrics.get("test") or {}).get(name))


def _read_cv_point(folder: Path, point: Point) -> None:
    summary = _read_json(folder / "cv_summary.json")
    own = _read_json(folder / "metrics.json")  # written only when the whole CV failed
    if not summary:
        point.status, point.error = own.get("status", "unknown"), own.get("error")
        return
    objective = summary.get("objective") or {}
    point.status = summary.get("status", "unknown")
    point.monitor, point.mode = objective.get("metric"), objective.get("mode")
    point.value, point.std = _number(objective.get("mean")), _number(objective.get("std"))
    name = (point.monitor or "_").split("_", 1)[1]
    point.test = _number((summary.get("mean") or {}).get(f"test_{name}"))
    epochs = [row.get("epochs") for row in summary.get("folds") or [] if row.get("epochs") is not None]
    point.epochs = max(epochs) if epochs else None
    point.seconds = _number(summary.get("seconds"))
    point.extra = {"folds": len(summary.get("folds") or [])}


def rank(points: list[Point]) -> list[Point]:
    """Finished points best first (by their monitored metric and its mode), then the rest in job
    order; a NaN value ranks last among the finished."""
    done = [p for p in points if p.status == "finished" and p.value is not None]
    mode = next((p.mode for p in done if p.mode), "min")

    def key(point: Point):
        if math.isnan(point.value):
            return (1, 0.0, point.job)
        return (0, point.value if mode == "min" else -point.value, point.job)

    ranked = sorted(done, key=key)
    for number, point in enumerate(ranked, start=1):
        point.rank = number
    return ranked + [p for p in points if p not in done]


# --------------------------------------------------------------------------- reporting


def report(sweep_dir: Path, kind: str, overrides: list[str], *, out=console) -> list[Point]:
    """Read, rank, save (sweep.json, sweep.csv) and print the sweep's table."""
    points = rank(collect(sweep_dir, kind, overrides))
    if not points:
        return points
    optuna = _read_yaml(Path(sweep_dir) / OPTUNA_RESULTS)
    write(sweep_dir, kind, points, optuna)
    out.print(table(sweep_dir, kind, points))
    if isinstance(optuna, dict) and "best_value" in optuna:
        params = ", ".join(f"{k}={v}" for k, v in (optuna.get("best_params") or {}).items())
        out.print(f"Optuna's best trial: {fmt(_number(optuna['best_value']))}"
                  + (f" with {params}" if params else "") + f" ({OPTUNA_RESULTS}).", soft_wrap=True)
    failed = [p for p in points if p.status != "finished"]
    if failed:
        out.print(f"[yellow]{len(failed)} of {len(points)} points did not finish; the table gives "
                  f"each reason.[/yellow]", soft_wrap=True)
    out.print(f"Sweep folder: {sweep_dir} (ranking in {SWEEP_JSON} and {SWEEP_CSV})", soft_wrap=True)
    return points


def write(sweep_dir: Path, kind: str, points: list[Point], optuna) -> None:
    import csv
    import io


    finished = [p for p in points if p.rank is not None]
    monitor = next((p.monitor for p in finished if p.monitor), None)
    mode = next((p.mode for p in finished if p.mode), None)
    rows = []
    for p in points:
        row = asdict(p)
        row.pop("extra")
        row.update(p.extra)
        rows.append(row)
    write_json(Path(sweep_dir) / SWEEP_JSON, {
        "command": kind, "monitor": monitor, "mode": mode,
        "ranked_by": f"mean {monitor} over folds" if kind == "cv" else f"{monitor} at its best epoch",
        "points": rows, "optuna": optuna if isinstance(optuna, dict) else None,
    })
    keys = list(dict.fromkeys(k for p in points for k in p.swept))
    columns = ["rank", "job", "status", *keys, "value", *(["std"] if kind == "cv" else []), "test",
               "epochs", "seconds", "folder", "error"]
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, fieldnames=columns)
    writer.writeheader()
    for p in points:
        writer.writerow({"rank": p.rank, "job": p.job, "status": p.status,
                         **{k: p.swept.get(k) for k in keys}, "value": p.value,
                         **({"std": p.std} if kind == "cv" else {}), "test": p.test,
                         "epochs": p.epochs, "seconds": p.seconds, "folder": p.folder,
                         "error": p.error})
    write_atomic(Path(sweep_dir) / SWEEP_CSV, stream.getvalue())


def table(sweep_dir: Path, kind: str, points: list[Point]):
    """The ranked table. Cells never wrap (each column is at least as wide as its widest
    value); headers and a failed point's reason fold instead, so it fits 80 columns."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from dltrain.commands.runs import duration

    finished = [p for p in points if p.rank is not None]
    monitor = next((p.monitor for p in finished if p.monitor), "the monitored metric")
    mode = next((p.mode for p in finished if p.mode), "min")
    order = "lowest first" if mode == "min" else "highest first"
    what = f"mean {monitor} over folds" if kind == "cv" else f"{monitor} at its best epoch"
    result = Table(title=f"Sweep of {len(points)} {'cross-validations' if kind == 'cv' else 'runs'}, "
                         f"ranked by {what} ({order})", title_justify="left", header_style="bold",
                   box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    keys = list(dict.fromkeys(k for p in points for k in p.swept))
    last = [key.rsplit(".", 1)[-1] for key in keys]  # lr, not optimizer.lr, when that is unambiguous
    show_test = any(p.test is not None for p in points)
    rows = []
    for p in points:
        if p.rank is not None:
            value = Text(fmt(p.value) + (f" ± {fmt(p.std)}" if kind == "cv" else ""),
                         style="bold green" if p.rank == 1 else "")
            folder = Text(p.folder)
        else:
            value = Text(p.status, style="red")
            folder = Text.assemble(p.folder, "\n", (p.error or f"status {p.status}", "red"))
        rows.append([Text(str(p.rank) if p.rank is not None else "-"),
                     *(Text(_short(p.swept.get(k, ""))) for k in keys), value,
                     *([Text(fmt(p.test))] if show_test else []),
                     Text("-" if p.epochs is None else str(p.epochs)), Text(duration(p.seconds)), folder])
    name = monitor.split("_", 1)[-1]
    headers = [("rank", "right"),
               *((short if last.count(short) == 1 else key, "left") for key, short in zip(keys, last)),
               (f"{monitor}\nmean ± std" if kind == "cv" else monitor, "right"),
               *([(f"test_{name}" + ("\nmean" if kind == "cv" else ""), "right")] if show_test else []),
               ("epochs", "right"), ("time", "right"), ("run folder", "left")]
    for column, (header, justify) in enumerate(headers):
        widest = max(len(row[column].plain.split("\n")[0]) for row in rows)
        swept = 0 < column <= len(keys)  # their headers may fold down to their values' width
        folds = swept or column in (0, len(headers) - 1)  # as may rank and the folder (a failure's reason)
        result.add_column(header, justify=justify, overflow="fold", no_wrap=not folds, min_width=widest)
    for row in rows:
        result.add_row(*row)
    return result


def _short(text: str) -> str:
    """A sampled float (Optuna's 0.004430375245218269) shown with 4 significant digits; the
    exact value stays in sweep.json and sweep.csv."""
    try:
        number = float(text)
    except ValueError:
        return text
    if "." not in text and "e" not in text.lower():
        return text  # an integer, as typed
    short = f"{number:.4g}"
    return short if len(short) < len(text) else text
