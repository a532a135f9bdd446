"""k-fold cross-validation (``dltrain cv``): plan the folds with scikit-learn's splitters, train each
fold as its own Hydra job (a fresh model; preprocessing fitted on the fold's training rows only),
then aggregate the finished fold folders into a table, cv_summary.json/.csv and out-of-fold
predictions, with the test ensemble and an optional refit on all the data.

(The module is not called ``cv`` so that it never shadows the ``dltrain.cv()`` API function.)"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from dltrain.console import console, fmt
from dltrain.errors import DltrainError

FOLD_INFO = "fold.json"
VAL_PREDICTIONS = "val_predictions.csv"
TEST_PREDICTIONS = "test_predictions.csv"
SUMMARY_JSON = "cv_summary.json"
SUMMARY_CSV = "cv_summary.csv"
OOF_PREDICTIONS = "oof_predictions.csv"
FINAL_MODEL = "final.pt"
_NOT_METRICS = ("fold", "repeat", "train_size", "val_size", "epochs")


@dataclass(frozen=True)
class Fold:
    index: int  # 0 .. k * repeats - 1: the fold_{index} folder
    repeat: int
    train_index: object  # sorted row indices (numpy)
    val_index: object


def fold_folder(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"fold_{index}"


# --------------------------------------------------------------------------- planning


def resolve_strategy(cv, task: str) -> str:
    """``auto``: group when a group column is set, stratified for classes, kfold for regression."""
    if cv.strategy != "auto":
        return cv.strategy
    if cv.group_column is not None:
        return "group"
    return "kfold" if task == "regression" else "stratified"


def load_cv_source(settings, cv):
    """The raw dataset, with the group column (if any) moved out of the features."""
    from dltrain.data import load_source

    source = load_source(settings.data)
    if cv.group_column is not None:
        from dltrain.data.tabular import with_group_column

        source = with_group_column(source, cv.group_column)
    return source


def plan_folds(source, cv, data_name: str = "") -> list[Fold]:
    """Every fold's train and validation rows; any request the data cannot satisfy is one
    sentence here, before a fold runs."""
    import numpy as np
    from sklearn import model_selection

    n, k = len(source), cv.k
    strategy = resolve_strategy(cv, source.task)
    label = f"data={data_name}" if data_name else "the data"
    if k > n:
        raise DltrainError(f"k={k} is more than the {n} samples of {label}; use k from 2 to {n}.")
    if strategy == "stratified" and source.task == "regression":
        raise DltrainError("cv.strategy=stratified keeps class ratios, but this data is a regression "
                           "target; use cv.strategy=kfold (or auto).")
    stratify = source.task != "regression" and strategy in ("stratified", "repeated")
    if stratify:
        counts = np.bincount(np.asarray(source.target, dtype=np.int64), minlength=source.num_classes)
        smallest = int(counts.argmin())
        if counts[smallest] < k:
            name = source.class_names[smallest] if source.class_names else str(smallest)
            raise DltrainError(
                f"cv.strategy={strategy} puts every class in every fold, but class {name!r} has only "
                f"{counts[smallest]} samples, fewer than k={k}; lower k to at most "
                f"{max(int(counts[smallest]), 2)} or use cv.strategy=kfold."
            )
    random_state = cv.seed if cv.shuffle else None
    groups = None
    if strategy == "kfold":
        splitter = model_selection.KFold(k, shuffle=cv.shuffle, random_state=random_state)
    elif strategy == "stratified":
        splitter = model_selection.StratifiedKFold(k, shuffle=cv.shuffle, random_state=random_state)
    elif strategy == "group":
        if source.groups is None:
            raise DltrainError("cv.strategy=group needs cv.group_column=COLUMN, the column whose "
                               "values must never be split across folds.")
        groups = np.asarray(source.groups)
        distinct = len(np.unique(groups.astype(str)))
        if distinct < k:
            raise DltrainError(
                f"cv.group_column {cv.group_column!r} has {distinct} distinct groups, fewer than k={k}; "
                f"lower k to at most {distinct} or choose a column with more groups."
            )
        splitter = model_selection.GroupKFold(k, shuffle=cv.shuffle, random_state=random_state)
    else:  # repeated: a new shuffle for every repeat
        repeated = model_selection.RepeatedStratifiedKFold if stratify else model_selection.RepeatedKFold
        splitter = repeated(n_splits=k, n_repeats=cv.repeats, random_state=cv.seed)
    rows = np.arange(n)
    labels = np.asarray(source.target) if stratify else None
    return [Fold(i, i // k, np.sort(train), np.sort(val))
            for i, (train, val) in enumerate(splitter.split(rows, labels, groups))]


# --------------------------------------------------------------------------- one fold


def fold_seed(settings, fold: Fold) -> int:
    """Each fold's model starts from its own seed, the same whether it runs alone or with the rest."""
    return settings.trainer.seed + fold.index


def train_fold(cfg, settings, source, fold: Fold, fold_count: int, run_dir: Path, *, out=console):
    """Train fold ``fold`` in ``run_dir`` (its fold_N folder) and write its predictions there."""
    from dltrain.run import train_split

    seed = fold_seed(settings, fold)
    # dltrain cv resume=CV_DIR: an unfinished fold goes on from its own last.pt
    resume_from = run_dir / "last.pt" if cfg.get("resume") and (run_dir / "last.pt").exists() else None
    result = train_split(cfg, settings, source, fold.train_index, fold.val_index, run_dir, out=out,
                         seed=seed, title=f"dltrain cv  fold_{fold.index} ({fold.index + 1} of {fold_count})",
                         resume_from=resume_from)
    write_fold_files(run_dir, source, fold, seed, result)
    return result


def write_fold_files(run_dir: Path, source, fold: Fold, seed: int, result) -> None:
    """fold.json and the fold's validation (and test) predictions, beside its metrics.json."""
    from dltrain.train.checkpoint import write_json

    write_json(run_dir / FOLD_INFO, {
        "fold": fold.index, "repeat": fold.repeat, "seed": seed, "task": source.task,
        "class_names": list(source.class_names), "train_size": len(fold.train_index),
        "val_size": len(fold.val_index),
    })
    _prediction_frame(source.task, source.class_names, fold.val_index, source.target[fold.val_index],
                      result.val_scores).to_csv(run_dir / VAL_PREDICTIONS, index=False)
    if result.test_scores is not None:
        import numpy as np

        _prediction_frame(source.task, source.class_names, np.arange(len(source.test_target)),
                          np.asarray(source.test_target), result.test_scores
                          ).to_csv(run_dir / TEST_PREDICTIONS, index=False)


def run_fold_job(cfg, run_dir: Path) -> float:
    """Hydra task for one fold (``cv.fold=N``): every job re-plans the same folds from the same
    data and seed, so folds can run in any process or on any machine."""
    from dltrain.config import read_cv_settings, read_settings

    settings, cv = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, cv)
    folds = plan_folds(source, cv, settings.data.name)
    try:
        result = train_fold(cfg, settings, source, folds[cv.fold], len(folds), run_dir)
    except DltrainError as error:
        failure = DltrainError(f"Fold {cv.fold} of the cross-validation failed: {error}")
        # The launcher may run this job in another process: leave the sentence where the
        # aggregating process finds it, even when the fold folder itself is removed.
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _error_note(run_dir).write_text(str(failure))
        raise failure from None
    return result.final.get(objective_key(settings))


def run_vectorized_job(cfg, run_dir: Path) -> None:
    """Hydra task for ``cv.vectorize``: every fold at once in this process (train/vectorized.py),
    each fold folder with a .hydra/ of its own as a fold job would have (config with its cv.fold,
    the overrides), for ``dltrain runs`` and ``resume``."""
    import yaml
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from dltrain.config import read_cv_settings, read_settings
    from dltrain.train.vectorized import train_folds

    settings, cv = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, cv)
    folds = plan_folds(source, cv, settings.data.name)
    task_overrides = list(HydraConfig.get().overrides.task)
    for fold in folds:
        hydra_dir = fold_folder(run_dir, fold.index) / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        OmegaConf.update(fold_cfg, "cv.fold", fold.index, force_add=True)
        (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(fold_cfg))
        (hydra_dir / "overrides.yaml").write_text(
            yaml.safe_dump([*task_overrides, f"cv.fold={fold.index}"], default_flow_style=False))
    train_folds(cfg, settings, source, folds, len(folds), run_dir)


# --------------------------------------------------------------------------- whole runs


def run_cv(cfg, run_dir: Path) -> float:
    """Hydra task for a whole cross-validation in one job (``dltrain cv -m``: each sweep job is a
    cross-validation); returns the mean validation metric, for a sweeper to optimise."""
    return cross_validate(cfg, run_dir)["objective"]["mean"]


def cross_validate(cfg, run_dir: Path, *, out=console, source=None) -> dict:
    """Run the folds one after another in this process, then aggregate; returns the summary."""
    from dltrain.config import read_cv_settings, read_settings

    started = time.perf_counter()
    settings, cv = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, cv) if source is None else source
    folds = plan_folds(source, cv, settings.data.name)
    selected = folds if cv.fold is None else [folds[cv.fold]]
    from dltrain.train.vectorized import train_folds, use_vectorized

    if use_vectorized(cfg, settings, cv, source, selected, out=out):  # cv.vectorize
        train_folds(cfg, settings, source, selected, len(folds), run_dir, out=out)
    else:
        for fold in selected:
            train_fold(cfg, settings, source, fold, len(folds), fold_folder(run_dir, fold.index), out=out)
    return finish(cfg, settings, cv, source, [f.index for f in selected], run_dir, out=out,
                  started=started)


def launch_cv(overrides: list[str], *, multirun: bool = False) -> dict | list:
    """``dltrain cv``: check everything up front, hand the folds to Hydra's launcher as a sweep over
    ``cv.fold`` (one after another in this process with the default launcher, in parallel with
    ``hydra/launcher=joblib``), then aggregate the finished fold folders. With ``multirun`` every
    sweep job is a whole cross-validation instead; returns the summary (a list of means for -m)."""
    from dltrain.config import compose, read_cv_settings, read_settings
    from dltrain.launch import launch

    if multirun:
        return launch(run_cv, overrides, multirun=True)
    started = time.perf_counter()
    overrides = _resume_overrides(overrides)
    cfg = compose(overrides)
    from dltrain.sweep import check_fold_launch

    check_fold_launch(overrides)  # the folds go to Hydra's sweeper and launcher
    settings, cv = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, cv)
    folds = plan_folds(source, cv, settings.data.name)
    selected = [f.index for f in folds] if cv.fold is None else [cv.fold]
    run_dir = _run_dir(overrides)
    to_run = selected
    if cfg.get("resume"):  # finished folds stay as they are
        to_run = [i for i in selected if _status(fold_folder(run_dir, i)) != "finished"]
        console.print(f"Resuming {run_dir}: folds {', '.join(map(str, to_run)) or 'none'} to run, "
                      f"{len(selected) - len(to_run)} finished.")
    for index in to_run:  # a failure noted by an earlier run in the same folder is stale
        _error_note(fold_folder(run_dir, index)).unlink(missing_ok=True)
    if not to_run:
        return finish(cfg, settings, cv, source, selected, run_dir, started=started)
    own = ("cv.fold=", "+cv.fold=", "++cv.fold=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=")
    from dltrain.train.vectorized import use_vectorized

    if use_vectorized(cfg, settings, cv, source, [folds[i] for i in to_run]):  # cv.vectorize
        # One job in the cross-validation's folder (its .hydra/ there) trains every fold at once.
        launch(run_vectorized_job, [o for o in overrides if not o.startswith(own)]
               + [f"hydra.run.dir={_quoted(str(run_dir))}"])
        _check_finished(run_dir, selected)
        return finish(cfg, settings, cv, source, selected, run_dir, started=started)
    job_overrides = [o for o in overrides if not o.startswith(own)] + [
        f"cv.fold={','.join(map(str, to_run))}",
        f"hydra.sweep.dir={_quoted(str(run_dir))}",
        "hydra.sweep.subdir=fold_${cv.fold}",
    ]
    launch(run_fold_job, job_overrides, multirun=True)
    _check_finished(run_dir, selected)
    return finish(cfg, settings, cv, source, selected, run_dir, started=started)


def _status(fold_dir: Path) -> str:
    metrics = fold_dir / "metrics.json"
    return json.loads(metrics.read_text()).get("status", "") if metrics.exists() else ""


def _resume_overrides(overrides: list[str]) -> list[str]:
    """``resume=CV_DIR``: the cross-validation's own overrides (read from a fold's .hydra), then
    the new ones, in the same folder; unfinished folds then go on from their last.pt."""
    import yaml

    requested = [o for o in overrides if o.startswith("resume=")]
    if not requested:
        return overrides
    target = requested[-1].split("=", 1)[1].strip()
    run_dir = Path(target).expanduser()
    saved = sorted(run_dir.glob("fold_*/.hydra/overrides.yaml"))
    if not saved:
        raise DltrainError(f"resume={target}: {str(run_dir)!r} is not a cross-validation folder "
                           f"(no fold_N/.hydra in it); give the folder dltrain cv printed.")
    own = ("cv.fold=", "resume=", "hydra.")
    kept = [o for o in yaml.safe_load(saved[0].read_text()) or [] if not o.startswith(own)]
    new = [o for o in overrides if not o.startswith(("resume=", "hydra.run.dir=", "hydra.sweep.dir="))]
    run_dir = run_dir.resolve()
    return [*kept, *new, f"resume={run_dir}", f"hydra.run.dir={_quoted(str(run_dir))}"]


def _run_dir(overrides: list[str]) -> Path:
    """The cross-validation's folder, absolute so that launcher processes in any working
    directory agree on it: hydra.run.dir (or hydra.sweep.dir) when given, else a new one."""
    from dltrain.launch import run_folder_overrides

    for prefix in ("hydra.run.dir=", "hydra.sweep.dir="):
        for override in overrides:
            if override.startswith(prefix):
                return Path(override[len(prefix):].strip("'\"")).resolve()
    fresh = next(o for o in run_folder_overrides([]) if o.startswith("hydra.run.dir="))
    return Path(fresh.split("=", 1)[1]).resolve()


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_note(fold_dir: Path) -> Path:
    return fold_dir.parent / f"{fold_dir.name}.error"


def _check_finished(run_dir: Path, selected: list[int]) -> None:
    for index in selected:
        folder = fold_folder(run_dir, index)
        metrics = folder / "metrics.json"
        record = json.loads(metrics.read_text()) if metrics.exists() else {}
        if record.get("status") == "finished":
            continue
        note = _error_note(folder)
        if note.exists():
            raise DltrainError(note.read_text())
        raise DltrainError(f"Fold {index} of the cross-validation did not finish "
                           f"(status {record.get('status', 'unknown')}); see {folder}.")


# --------------------------------------------------------------------------- aggregation


def objective_key(settings) -> str:
    return f"val_{settings.trainer.monitor}"


def finish(cfg, settings, cv, source, selected: list[int], run_dir: Path, *, out=console,
           started: float | None = None) -> dict:
    """Aggregate the finished fold folders, refit when asked, write and print the summary."""
    summary = aggregate(run_dir, selected, settings, cv, source)
    from dltrain.tb import write_cv_mean  # TensorBoard: the fold-averaged curves as run cv_mean

    mean_run = write_cv_mean(cfg, settings, [fold_folder(run_dir, i) for i in selected], run_dir)
    summary["tensorboard_mean_run"] = mean_run.name if mean_run is not None else None
    if cv.refit and cv.fold is None:
        summary["refit"] = refit(cfg, settings, source, run_dir, out=out)
    summary["seconds"] = None if started is None else time.perf_counter() - started
    summary["status"] = "finished"
    from dltrain.train.checkpoint import write_json

    write_json(run_dir / SUMMARY_JSON, summary)
    print_summary(summary, run_dir, out)
    return summary


def aggregate(run_dir: Path, selected: list[int], settings, cv, source) -> dict:
    """Per-fold metrics of the last epoch (the model the out-of-fold predictions come from:
    picking each fold's best epoch on its own validation rows would flatter the estimate),
    their mean and std, out-of-fold predictions and the test ensemble."""
    import numpy as np
    import pandas as pd

    from dltrain.train.metrics import compute, monitor_mode

    rows, predictions, test_frames = [], [], []
    for index in selected:
        folder = fold_folder(run_dir, index)
        metrics = json.loads((folder / "metrics.json").read_text())
        info = json.loads((folder / FOLD_INFO).read_text())
        row = {"fold": index, "repeat": info["repeat"], "train_size": info["train_size"],
               "val_size": info["val_size"], "epochs": metrics["epochs_run"]}
        row.update({k: v for k, v in metrics["final"].items() if k not in ("epoch", "lr", "seconds")})
        row.update({f"test_{k}": v for k, v in (metrics.get("test") or {}).items()})
        rows.append(row)
        frame = _read_predictions(folder / VAL_PREDICTIONS)
        frame.insert(1, "fold", index)
        if cv.repeats > 1:
            frame.insert(2, "repeat", info["repeat"])
        predictions.append(frame)
        if (folder / TEST_PREDICTIONS).exists():
            test_frames.append(_read_predictions(folder / TEST_PREDICTIONS))

    names = [k for k in rows[0] if k not in _NOT_METRICS]
    mean = {name: float(np.mean([row[name] for row in rows])) for name in names}
    std = {name: float(np.std([row[name] for row in rows])) for name in names}
    oof = pd.concat(predictions, ignore_index=True)
    oof = oof.sort_values(["repeat", "index"] if cv.repeats > 1 else ["index"], kind="stable")
    oof.to_csv(run_dir / OOF_PREDICTIONS, index=False)
    scores, targets = _scores(oof, source.task, source.class_names)
    columns = ["fold", *(["repeat"] if cv.repeats > 1 else []), "train_size", "val_size", "epochs", *names]
    table = pd.DataFrame(rows)[columns]
    table = pd.concat([table, pd.DataFrame([{"fold": "mean", **mean}, {"fold": "std", **std}])],
                      ignore_index=True)[columns]
    table.to_csv(run_dir / SUMMARY_CSV, index=False)

    key = objective_key(settings)
    ensemble = None
    if len(test_frames) == len(selected) and test_frames:
        stacked = [_scores(frame, source.task, source.class_names) for frame in test_frames]
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


def refit(cfg, settings, source, run_dir: Path, *, out=console) -> dict:
    """Train once on every row with the same settings (the textbook's last step before
    predicting new data); its last weights become the run's final.pt."""
    import shutil

    import numpy as np

    from dltrain.run import train_split

    folder = Path(run_dir) / "refit"
    result = train_split(cfg, settings, source, np.arange(len(source)), np.arange(0), folder,
                         out=out, seed=settings.trainer.seed, title="dltrain cv  refit on all data")
    shutil.copyfile(folder / "last.pt", Path(run_dir) / FINAL_MODEL)
    return {"folder": "refit", "final_model": FINAL_MODEL, "epochs": result.epochs_run,
            "final": {k: v for k, v in result.final.items() if k not in ("epoch", "lr", "seconds")},
            "test": result.test}


def print_summary(summary: dict, run_dir: Path, out=console) -> None:
    from rich.table import Table

    rows, mean, std = summary["folds"], summary["mean"], summary["std"]
    names = list(mean)
    shuffle = f"shuffled, seed {summary['seed']}" if summary["shuffle"] else "contiguous"
    title = (f"Cross-validation: {summary['strategy']}, k={summary['k']}"
             + (f" x {summary['repeats']} repeats" if summary["repeats"] > 1 else "")
             + f" ({shuffle}), {summary['model']} on {summary['data']}")
    epochs = sorted({row["epochs"] for row in rows})
    if len(epochs) == 1:
        title += f", {epochs[0]} epochs"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("fold", no_wrap=True)
    table.add_column("rows\ntrain/val", justify="right", no_wrap=True)
    if len(epochs) > 1:  # early stopping ended folds at different epochs
        table.add_column("epochs", justify="right", no_wrap=True)
    for name in names:  # train_loss -> "train" over "loss": narrow columns for many metrics
        table.add_column(name.replace("_", "\n", 1), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(f"fold_{row['fold']}", f"{row['train_size']}/{row['val_size']}",
                      *([str(row["epochs"])] if len(epochs) > 1 else []),
                      *(fmt(row[name]) for name in names))
    table.add_section()
    table.add_row("[bold]mean[/bold]\n± std", "", *([""] if len(epochs) > 1 else []),
                  *(f"[bold]{fmt(mean[name])}[/bold]\n± {fmt(std[name])}" for name in names))
    out.print(table)
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
    objective = summary["objective"]
    out.print(f"Mean {objective['metric']} over {len(rows)} folds: {fmt(objective['mean'])} ± "
              f"{fmt(objective['std'])}. Run folder: {run_dir}")


# --------------------------------------------------------------------------- prediction files


def _prediction_frame(task: str, class_names, index, target, scores):
    """index, target, then the prediction (regression) or the predicted class and every class's
    probability, with classes by name."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"index": np.asarray(index)})
    if task == "regression":
        frame["target"] = np.asarray(target, dtype=np.float64)
        frame["prediction"] = np.asarray(scores, dtype=np.float64)
        return frame
    scores = np.asarray(scores, dtype=np.float64)
    if task == "binary":
        probabilities = np.column_stack([1 - scores, scores])
        predicted = (scores >= 0.5).astype(np.int64)
    else:
        probabilities, predicted = scores, scores.argmax(axis=1)
    frame["target"] = [class_names[c] for c in np.asarray(target, dtype=np.int64)]
    frame["predicted"] = [class_names[c] for c in predicted]
    for j, name in enumerate(class_names):
        frame[f"prob_{name}"] = probabilities[:, j]
    return frame


def _read_predictions(path: Path):
    import pandas as pd

    return pd.read_csv(path, dtype={"target": object, "predicted": object}, keep_default_na=False)


def _scores(frame, task: str, class_names):
    """(scores, encoded targets) back from a prediction frame, as metrics.compute takes them."""
    import numpy as np

    if task == "regression":
        return (frame["prediction"].to_numpy(dtype=np.float64),
                frame["target"].to_numpy(dtype=np.float64))
    lookup = {name: i for i, name in enumerate(class_names)}
    targets = np.array([lookup[str(t)] for t in frame["target"]], dtype=np.int64)
    if task == "binary":
        return frame[f"prob_{class_names[1]}"].to_numpy(dtype=np.float64), targets
    return frame[[f"prob_{name}" for name in class_names]].to_numpy(dtype=np.float64), targets
