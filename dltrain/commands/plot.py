"""``dltrain plot RUN [RUN...]`` and ``trainer.plot=true``: training curves as a PNG (curves.png),
read from what run folders already hold: metrics.json's history (or metrics.csv while a run with
logger=csv trains), the per-step loss from the TensorBoard events where it was logged, the
labels from .hydra/overrides.yaml. Everything read is data (JSON, CSV, YAML safe_load,
protobuf events); a value of the wrong type is left out, never run.

Smoothing is TensorBoard's: an exponential moving average, debiased (each point divided by
1 - weight**n, n the finite points so far), so the first points are not pulled toward zero."""

from __future__ import annotations

import csv
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dltrain.commands.resume import CONFIG, is_cv_folder
from dltrain.console import console
from dltrain.errors import DltrainError
from dltrain.files import RunLock, json_number, read_json_object, write_atomic
from dltrain.train.csv_logger import METRICS_CSV
from dltrain.train.rundir import METRICS
from dltrain.train.tensorboard import events_folder

PNG = "curves.png"
FOLDER = Path("outputs") / "plot"
SMOOTHING = 0.6  # TensorBoard's default weight
STEP_TAG = "step/loss_train"
_FOLD = re.compile(r"^fold_(\d+)$")
_LARGEST_FILE = 64 << 20  # a history or overrides file dltrain writes is far smaller
_NOT_METRICS = {"epoch", "lr", "seconds"}


@dataclass
class Curves:
    """One run's series: ``epochs`` rows (dicts of numbers) and per-step losses (step, value)."""

    folder: Path
    rows: list = field(default_factory=list)
    monitor: str | None = None
    steps: list = field(default_factory=list)
    overrides: list = field(default_factory=list)
    folds: list = field(default_factory=list)  # a cross-validation's folds, each Curves
    label: str = ""


def smooth(values, weight: float) -> list[float]:
    """TensorBoard's smoothing: a debiased exponential moving average with ``weight`` (0: the
    values as they are). A value that is not finite is kept as it is and does not count."""
    result, last, count = [], 0.0, 0
    for value in values:
        value = float(value)
        if not math.isfinite(value):
            result.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        result.append(last / (1 - weight ** count) if weight < 1 else last)
    return result


def plot(words: list[str], out=console) -> Path:
    """Run ``dltrain plot WORDS``; the PNG written."""
    folders, options = [], {}
    for word in words:
        key, equals, value = word.partition("=")
        if equals and key in ("smoothing", "output") and not Path(word).exists():
            options[key] = value
        else:
            folders.append(word)
    if not folders:
        raise DltrainError("dltrain plot needs at least one run folder (or cv folder): dltrain plot RUN [RUN...].")
    smoothing = _smoothing(options.get("smoothing", str(SMOOTHING)))
    runs = [read_curves(_run_folder(word)) for word in folders]
    if options.get("output"):
        destination = Path(options["output"]).expanduser()
        if destination.is_dir():
            raise DltrainError(f"output={options['output']} is a folder; give a file to write, such as "
                               f"output={destination / PNG}.")
    elif len(runs) == 1:
        destination = runs[0].folder / PNG
    else:
        destination = FOLDER / (datetime.now().strftime("%Y-%m-%d/%H-%M-%S") + "_" + secrets.token_hex(3)) / PNG
    png = draw(runs, smoothing)
    inside = next((run.folder for run in runs if destination.parent.resolve() == run.folder.resolve()), None)
    if inside is not None:
        with RunLock(inside):  # one writer in a run folder: not while it trains
            write_atomic(destination, png)
    else:
        write_atomic(destination, png)
    out.print(f"Training curves of {len(runs)} run{'s' if len(runs) > 1 else ''} (smoothing {smoothing:g}): "
              f"{destination}")
    return destination


def write_curves(folder: Path, out=console) -> Path:
    """trainer.plot=true: curves.png of a finished fit or cross-validation in its own folder."""
    destination = Path(folder) / PNG
    write_atomic(destination, draw([read_curves(Path(folder))], SMOOTHING))
    out.print(f"Training curves: {destination}")
    return destination


def _smoothing(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not 0 <= weight < 1:
        raise DltrainError(f"smoothing must be a number from 0 (the raw curves) up to, not including, 1; got {text!r}.")
    return weight


def _run_folder(word: str) -> Path:
    folder = Path(word).expanduser()
    if not folder.is_dir() or not ((folder / METRICS).is_file() or is_cv_folder(folder)):
        raise DltrainError(f"{word!r} is not a run folder (one with a {METRICS}) or a cross-validation folder; "
                           f"give folders that dltrain fit or dltrain cv printed (dltrain runs lists them).")
    return folder


# ------------------------------------------------------------------------------ reading


def read_curves(folder: Path) -> Curves:
    """What a run folder (or each fold of a cv folder) holds of its curves."""
    folder = Path(folder)
    if is_cv_folder(folder):
        folds = sorted((p for p in folder.iterdir() if p.is_dir() and _FOLD.match(p.name)),
                       key=lambda p: int(_FOLD.match(p.name).group(1)))
        curves = Curves(folder, folds=[read_curves(fold) for fold in folds if (fold / METRICS).is_file()])
        curves.monitor = next((fold.monitor for fold in curves.folds if fold.monitor), None)
        curves.rows = _mean_rows([fold.rows for fold in curves.folds])
        own = _overrides(folder / ".hydra" / "overrides.yaml")
        if own is None and curves.folds:  # the folds' overrides, less the cv.fold each adds
            own = [o for o in curves.folds[0].overrides if not o.startswith("cv.fold=")]
        curves.overrides = own or []
        if not curves.folds:
            raise DltrainError(f"The cross-validation {str(folder)!r} has no fold with a {METRICS} yet.")
        return curves
    record = read_json_object(folder / METRICS) or {}
    rows = _rows(record.get("history"))
    if not rows:  # a run still training writes its history at the end; logger=csv has it meanwhile
        rows = _csv_rows(folder / METRICS_CSV)
    if not rows and isinstance(record.get("final"), dict):
        rows = _rows([record["final"]])
    monitor = record.get("monitor") if isinstance(record.get("monitor"), str) else None
    return Curves(folder, rows, monitor, _step_losses(folder), _overrides(folder / ".hydra" / "overrides.yaml") or [])



def _rows(history) -> list[dict]:
    """Epoch rows as numbers, in epoch order; anything else left out."""
    if not isinstance(history, list):
        return []
    rows = []
    for row in history:
        if isinstance(row, dict) and json_number(row.get("epoch")) is not None:
            rows.append({str(k): json_number(v) for k, v in row.items() if json_number(v) is not None})
    return sorted(rows, key=lambda row: row["epoch"])


def _csv_rows(path: Path) -> list[dict]:
    try:
        if not path.is_file() or path.stat().st_size > _LARGEST_FILE:
            return []
        with path.open(newline="", encoding="utf-8") as stream:
            table = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    rows = []
    for row in table:
        parsed = {}
        for key, text in row.items():
            try:
                parsed[str(key)] = float(text)
            except (TypeError, ValueError):
                continue
        rows.append(parsed)
    return _rows(rows)


def _mean_rows(histories: list[list[dict]]) -> list[dict]:
    """Each epoch's values averaged over the folds that reached it (as the cv_mean run does)."""
    rows, epoch = [], 1
    while True:
        reached = [next((r for r in history if r["epoch"] == epoch), None) for history in histories]
        reached = [row for row in reached if row is not None]
        if not reached:
            return rows
        keys = [k for k in reached[0] if all(k in row for row in reached)]
        rows.append({k: sum(row[k] for row in reached) / len(reached) for k in keys})
        epoch += 1


def _yaml(path: Path):
    import yaml

    try:
        if not path.is_file() or path.stat().st_size > _LARGEST_FILE:
            return None
        return yaml.safe_load(path.read_bytes())
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return None


def _overrides(path: Path) -> list[str] | None:
    value = _yaml(path)
    return value if isinstance(value, list) and all(isinstance(word, str) for word in value) else None


def _step_losses(folder: Path) -> list[tuple[int, float]]:
    """The per-step training loss logged to TensorBoard (logger.tensorboard.log_every_n_steps
    above 0, as the run's saved config says), as (step, loss) in step order; the last value of a
    step logged twice (a resumed run) wins."""
    config = _yaml(folder / CONFIG)
    every = config.get("logger", {}).get("tensorboard", {}) if isinstance(config, dict) else {}
    every = every.get("log_every_n_steps") if isinstance(every, dict) else None
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        return []
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    points = {}
    where = events_folder(folder)
    for path in sorted(where.glob("events.out.tfevents.*")) if where.is_dir() else []:
        try:
            for event in LegacyEventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == STEP_TAG and value.HasField("simple_value"):
                        points[int(event.step)] = float(value.simple_value)
        except Exception:  # noqa: BLE001 - a truncated or foreign events file: what was read stays
            continue
    return sorted(points.items())


# ------------------------------------------------------------------------------ drawing


def labels(runs: list[Curves]) -> list[str]:
    """Each run's label: the overrides that set it apart from the others (all of its own for one
    run), else its folder's name."""
    common = set.intersection(*(set(run.overrides) for run in runs)) if len(runs) > 1 else set()
    result = []
    for run in runs:
        own = [o for o in run.overrides if o not in common]
        name = " ".join(own) or run.folder.name
        result.append(name + (f" ({len(run.folds)} folds)" if run.folds else ""))
    return result


def _metric(run: Curves) -> str | None:
    """The metric drawn beside the loss: the monitored one, or (monitoring the loss) the first
    other metric the rows hold."""
    if run.monitor and run.monitor.split("_", 1)[-1] != "loss":
        return run.monitor.split("_", 1)[-1]
    keys = [k.split("_", 1)[1] for k in (run.rows[0] if run.rows else {}) if k.startswith(("train_", "val_"))]
    return next((k for k in keys if k != "loss"), None)


def draw(runs: list[Curves], smoothing: float) -> bytes:
    """The PNG: the loss per epoch, the metric per epoch and (where logged) the per-step loss;
    each run one colour, validation solid, training dashed, smoothed over the faint raw curve."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = labels(runs)
    metric = next((m for m in map(_metric, runs) if m), None)
    stepped = any(run.steps for run in runs)
    panels = ["loss", *([metric] if metric else []), *(["step"] if stepped else [])]
    figure = Figure(figsize=(5.2 * len(panels), 4.4), dpi=100, layout="constrained")
    axes = dict(zip(panels, figure.subplots(1, len(panels), squeeze=False)[0]))
    single = len(runs) == 1
    title = f"{names[0]}" if single else f"{len(runs)} runs"
    figure.suptitle(f"{title}  (EMA smoothing {smoothing:g}, raw curves faint)", fontsize=10)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, name, colour in zip(runs, names, colours):
        for panel in panels[:2 if metric else 1]:
            key = "loss" if panel == "loss" else metric
            for split, style in (("val", "-"), ("train", "--")):
                label = f"{split}" if single else f"{name}: {split}"
                colour = {"val": "C1", "train": "C0"}[split] if single else colour
                for fold in run.folds:  # each fold thin and faint, the mean over them drawn as a run
                    _series(axes[panel], fold.rows, f"{split}_{key}", None, colour, style, 0, fold=True)
                _series(axes[panel], run.rows, f"{split}_{key}", label + (" (mean of folds)" if run.folds else ""),
                        colour, style, smoothing)
        if stepped and run.steps:
            steps, values = zip(*run.steps)
            _line(axes["step"], list(steps), list(values), name if not single else "train (per step)", colour, "-",
                  smoothing)
    for panel, ax in axes.items():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
        ax.set_xlabel("optimizer step" if panel == "step" else "epoch")
        ax.set_ylabel("training loss per step" if panel == "step" else panel)
        ax.set_title({"loss": "loss per epoch", "step": "loss per step"}.get(panel, f"{panel} per epoch"), fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    stream = io.BytesIO()
    FigureCanvasAgg(figure).print_png(stream)
    return stream.getvalue()


def _series(ax, rows: list[dict], key: str, label, colour: str, style: str, smoothing: float, fold: bool = False):
    points = [(row["epoch"], row[key]) for row in rows if key in row]
    if not points:
        return
    epochs, values = zip(*points)
    if fold:
        ax.plot(epochs, values, style, color=colour, linewidth=0.8, alpha=0.3)
        return
    _line(ax, list(epochs), list(values), label, colour, style, smoothing)


def _line(ax, xs, values, label, colour: str, style: str, smoothing: float) -> None:
    """The smoothed curve over the raw one, drawn faint (only the raw one, full, for smoothing 0)."""
    marker = "." if len(xs) == 1 else None
    if smoothing > 0:
        ax.plot(xs, values, style, color=colour, linewidth=1, alpha=0.25, marker=marker)
        ax.plot(xs, smooth(values, smoothing), style, color=colour, linewidth=2, label=label, marker=marker)
    else:
        ax.plot(xs, values, style, color=colour, linewidth=1.8, label=label, marker=marker)
