"""The report of a cross-validation: the finished fold folders aggregated into per-fold metrics
with mean and std (cv_summary.json/.csv), out-of-fold predictions, the test ensemble, and the
console's summary table. A finished fold's files may have been edited since (a resumed
cross-validation keeps its finished folds): each is checked before it is used."""

from __future__ import annotations

from pathlib import Path

from dltrain.console import console, fmt, plural
from dltrain.data.folds import resolve_strategy
from dltrain.errors import DltrainError
from dltrain.files import json_number, read_json_object, write_csv, write_json
from dltrain.train.metrics import compute, monitor_mode
from dltrain.train.predictions import prediction_frame, read_predictions, scores_of

FOLD_INFO = "fold.json"
VAL_PREDICTIONS = "val_predictions.csv"
TEST_PREDICTIONS = "test_predictions.csv"
SUMMARY_JSON = "cv_summary.json"
SUMMARY_CSV = "cv_summary.csv"
OOF_PREDICTIONS = "oof_predictions.csv"
FINAL_MODEL = "final.pt"
_NOT_METRICS = ("fold", "repeat", "train_size", "val_size", "epochs")


def fold_folder(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"fold_{index}"


def write_fold_files(run_dir: Path, source, fold, seed: int, result) -> None:
    """fold.json and the fold's validation (and test) predictions, beside its metrics.json."""
    import numpy as np

    write_json(run_dir / FOLD_INFO, {
        "fold": fold.index, "repeat": fold.repeat, "seed": seed, "task": source.task,
        "class_names": list(source.class_names), "train_size": len(fold.train_index),
        "val_size": len(fold.val_index),
    })
    write_csv(run_dir / VAL_PREDICTIONS, prediction_frame(
        source.task, source.class_names, result.val_scores, keys=fold.val_index,
        target=source.target[fold.val_index]))
    if result.test_scores is not None:
        write_csv(run_dir / TEST_PREDICTIONS, prediction_frame(
            source.task, source.class_names, result.test_scores, keys=np.arange(len(source.test_target)),
            target=np.asarray(source.test_target)))


def objective_key(settings) -> str:
    return f"val_{settings.trainer.monitor}"



def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _numbers(record) -> dict | None:
    """A metrics row (name -> number) as floats, or None when it is not one."""
    if not isinstance(record, dict):
        return None
    numbers = {key: json_number(value) for key, value in record.items()}
    return numbers if all(isinstance(k, str) for k in numbers) and None not in numbers.values() else None


def fold_record(folder: Path) -> tuple[dict, dict]:
    """A finished fold's metrics.json and fold.json, checked (one sentence for what is wrong):
    {"epochs_run", "final", "test"} and {"repeat", "train_size", "val_size"}."""
    metrics, info = read_json_object(folder / "metrics.json"), read_json_object(folder / FOLD_INFO)
    problem = None
    if metrics is None or info is None:
        problem = f"its {'metrics.json' if metrics is None else FOLD_INFO} is missing or not a JSON object"
    elif not _count(metrics.get("epochs_run")):
        problem = f"epochs_run in its metrics.json is {metrics.get('epochs_run')!r}, not a number of epochs"
    elif _numbers(metrics.get("final")) is None:
        problem = "final in its metrics.json is not a row of metrics (names and numbers)"
    elif metrics.get("test") is not None and _numbers(metrics["test"]) is None:
        problem = "test in its metrics.json is not a row of metrics (names and numbers)"
    elif any(_count(info.get(key)) is None for key in ("repeat", "train_size", "val_size")):
        problem = f"its {FOLD_INFO} lacks a whole number for repeat, train_size or val_size"
    if problem:
        raise DltrainError(f"The finished fold {str(folder)!r} cannot be aggregated: {problem}; "
                           f"delete that folder to train the fold again.")
    record = {"epochs_run": metrics["epochs_run"], "final": _numbers(metrics["final"]),
              "test": None if metrics.get("test") is None else _numbers(metrics["test"])}
    return record, info


def _fold_predictions(path: Path, source):
    """A fold's prediction file, checked to be what prediction_frame wrote for this data."""
    import pandas as pd

    try:
        frame = read_predictions(path)
        scores_of(frame, source.task, source.class_names)
        keys = pd.to_numeric(frame["index"], errors="raise") if "index" in frame.columns else None
    except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DltrainError(f"The fold predictions {str(path)!r} cannot be read ({type(error).__name__}); "
                           f"delete that fold's folder to train the fold again.") from None
    if keys is None or {"fold", "repeat"} & set(frame.columns):
        raise DltrainError(f"The fold predictions {str(path)!r} are not what a fold writes (an index "
                           f"column, no fold or repeat column); delete that fold's folder to train the fold again.")
    return frame


def aggregate(run_dir: Path, selected: list[int], settings, cv, source) -> dict:
    """Per-fold metrics of the last epoch (the model the out-of-fold predictions come from:
    picking each fold's best epoch on its own validation rows would flatter the estimate),
    their mean and std, out-of-fold predictions and the test ensemble."""
    import numpy as np
    import pandas as pd

    rows, predictions, test_frames = [], [], []
    for index in selected:
        folder = fold_folder(run_dir, index)
        metrics, info = fold_record(folder)
        row = {"fold": index, "repeat": info["repeat"], "train_size": info["train_size"],
               "val_size": info["val_size"], "epochs": metrics["epochs_run"]}
        row.update({k: v for k, v in metrics["final"].items() if k not in ("epoch", "lr", "seconds")})
        row.update({f"test_{k}": v for k, v in (metrics.get("test") or {}).items()})
        rows.append(row)
        frame = _fold_predictions(folder / VAL_PREDICTIONS, source)
        frame.insert(1, "fold", index)
        if cv.repeats > 1:
            frame.insert(2, "repeat", info["repeat"])
        predictions.append(frame)
        if (folder / TEST_PREDICTIONS).exists():
            test_frames.append(_fold_predictions(folder / TEST_PREDICTIONS, source))

    names = [k for k in rows[0] if k not in _NOT_METRICS]
    for row in rows[1:]:
        missing = [name for name in names if name not in row]
        if missing:
            raise DltrainError(f"The finished fold {str(fold_folder(run_dir, row['fold']))!r} has no "
                               f"{missing[0]} in its metrics.json, which fold_{rows[0]['fold']} has; delete "
                               f"that folder to train the fold again.")
    mean = {name: float(np.mean([row[name] for row in rows])) for name in names}
    std = {name: float(np.std([row[name] for row in rows])) for name in names}
    oof = pd.concat(predictions, ignore_index=True)
    oof = oof.sort_values(["repeat", "index"] if cv.repeats > 1 else ["index"], kind="stable")
    write_csv(run_dir / OOF_PREDICTIONS, oof)
    scores, targets = scores_of(oof, source.task, source.class_names)
    columns = ["fold", *(["repeat"] if cv.repeats > 1 else []), "train_size", "val_size", "epochs", *names]
    table = pd.DataFrame(rows)[columns]
    table = pd.concat([table, pd.DataFrame([{"fold": "mean", **mean}, {"fold": "std", **std}])],
                      ignore_index=True)[columns]
    write_csv(run_dir / SUMMARY_CSV, table)

    key = objective_key(settings)
    ensemble = None
    if len(test_frames) == len(selected) and test_frames:
        stacked = [scores_of(frame, source.task, source.class_names) for frame in test_frames]
        ensemble_scores = np.mean([s for s, _ in stacked], axis=0)
        ensemble = {"models": len(stacked), **compute(source.task, ensemble_scores, stacked[0][1])}
    return {
        "data": settings.data.name, "model": settings.model.name, "task": source.task,
        "k": cv.k, "strategy": resolve_strategy(cv, source.task), "shuffle": cv.shuffle,
        "seed": cv.seed, "repeats": cv.repeats, "group_column": cv.group_column,
        "fold_count": cv.fold_count, "folds_run": list(selected), "samples": len(source),
        "objective": {"metric": key, "mode": monitor_mode(settings.trainer.monitor, settings.trainer.mode),
                      "mean": mean.get(key), "std": std.get(key)},
        "folds": rows, "mean": mean, "std": std,
        "out_of_fold": {"file": OOF_PREDICTIONS, "rows": len(oof),
                        **compute(source.task, scores, targets)},
        "test_ensemble": ensemble,
        "refit": None,
    }


def print_summary(summary: dict, run_dir: Path, out=console) -> None:
    """The fold table (every metric per fold, then mean ± std), fitted to the console's width
    without cutting a header or a number: when the metrics do not all fit, the training ones go
    first, then the others least important first (the objective stays), named below the table."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows, mean, std = summary["folds"], summary["mean"], summary["std"]
    names = list(mean)
    shuffle = f"shuffled, seed {summary['seed']}" if summary["shuffle"] else "contiguous"
    title = (f"Cross-validation: {summary['strategy']}, k={summary['k']}"
             + (f" x {summary['repeats']} repeats" if summary["repeats"] > 1 else "")
             + f" ({shuffle}), {summary['model']} on {summary['data']}")
    epochs = sorted({row["epochs"] for row in rows})
    if len(epochs) == 1:
        title += f", {plural(epochs[0], 'epoch')}"
    # Each column as (header, cells): a header of two lines ("val" over "accuracy"), a cell per
    # fold, then the mean (in bold) over its std.
    fixed = [("fold", [f"fold_{row['fold']}" for row in rows] + ["[bold]mean[/bold]\n± std"]),
             ("rows\ntrain/val", [f"{row['train_size']}/{row['val_size']}" for row in rows] + [""])]
    if len(epochs) > 1:  # early stopping ended folds at different epochs
        fixed.append(("epochs", [str(row["epochs"]) for row in rows] + [""]))
    metrics = {name: (name.replace("_", "\n", 1), [fmt(row[name]) for row in rows]
                      + [f"[bold]{fmt(mean[name])}[/bold]\n± {fmt(std[name])}"]) for name in names}
    objective = summary["objective"]["metric"]
    priority = [objective, *(n for n in names if n.startswith("val_")), *(n for n in names if n.startswith("test_")),
                *names]
    priority = list(dict.fromkeys(n for n in priority if n in metrics))
    shown = list(names)

    def width(column) -> int:
        header, cells = column
        return max(len(line) for text in (header, *cells) for line in Text.from_markup(text).plain.split("\n"))

    def total() -> int:  # each column and the one space after it
        return sum(width(c) + 1 for c in fixed) + sum(width(metrics[n]) + 1 for n in shown)

    while total() > out.width and len(shown) > 1:
        shown.remove(next(n for n in reversed(priority) if n in shown and n != objective))
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    columns = [*fixed, *(metrics[n] for n in shown)]
    for number, column in enumerate(columns):
        table.add_column(column[0], justify="left" if number == 0 else "right", no_wrap=True,
                         min_width=width(column))
    for index in range(len(rows) + 1):
        if index == len(rows):
            table.add_section()
        table.add_row(*(column[1][index] for column in columns))
    out.print(table)
    left_out = [n for n in names if n not in shown]
    if left_out:
        out.print(f"[dim]Not shown at {out.width} columns: {', '.join(left_out)} (all are in "
                  f"{SUMMARY_CSV}).[/dim]")
    oof = summary["out_of_fold"]
    pooled = ", ".join(f"{k} {fmt(v)}" for k, v in oof.items() if k not in ("file", "rows"))
    out.print(f"Out-of-fold predictions for {oof['rows']} rows in {oof['file']} (pooled: {pooled}).")
    if summary["test_ensemble"]:
        ensemble = summary["test_ensemble"]
        scores = ", ".join(f"{k} {fmt(v)}" for k, v in ensemble.items() if k != "models")
        out.print(f"Test split, average of the {ensemble['models']} fold models: {scores}.")
    if summary["refit"]:
        out.print(f"Refit on all {summary['samples']} rows: {summary['refit']['folder']}/, "
                  f"final model {summary['refit']['final_model']}.")
    if mean.get("val_r2") is not None and mean["val_r2"] < 0:
        out.print(f"[yellow]note:[/yellow] the mean val_r2 is below 0 ({fmt(mean['val_r2'])}): the models "
                  f"predict their validation rows worse than the rows' mean would; look at the features, "
                  f"optimizer.lr and data.target_transform (standardize suits a target of any scale).")
    objective = summary["objective"]
    out.print(f"Mean {objective['metric']} over {plural(len(rows), 'fold')}: {fmt(objective['mean'])} ± "
              f"{fmt(objective['std'])}. Run folder: {run_dir}")
