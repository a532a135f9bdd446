"""Using a trained model: ``dltrain eval`` (metrics on a split) and ``dltrain predict`` (new
inputs to a CSV), with the preprocessing saved by the run, never refitted."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from dltrain.commands.resume import cv_holding
from dltrain.config import read_settings, upgrade_saved
from dltrain.data import load_source
from dltrain.data.preprocessing import load_saved_run
from dltrain.data.split import take, train_val_indices
from dltrain.data.tabular import PARQUET_SUFFIXES, read_parquet_file
from dltrain.data.target import TargetTransform
from dltrain.errors import DltrainError
from dltrain.files import RunLock, write_csv, write_json
from dltrain.models.custom import reading_run
from dltrain.train.build import Parts, build
from dltrain.train.checkpoint import check_weights, load_checkpoint, planned_shapes, saved_config, saved_spec
from dltrain.train.device import resolve_device
from dltrain.train.population import for_inference
from dltrain.train.predictions import prediction_frame


@dataclass
class TrainedRun:
    run_dir: Path
    checkpoint: Path
    cfg: object  # DictConfig of the run (with any overrides applied)
    spec: object  # DataSpec
    model: object
    objective: object
    preprocessor: object
    reading: dict  # how the run read its data file (header, target, task), from its preprocessing


def load_run(target: str, overrides: list[str] = ()) -> TrainedRun:
    """A run folder (its best.pt, else last.pt) or a checkpoint file, ready to evaluate (the class
    of a custom model it names is never imported from that folder: reading_run)."""
    path = Path(target).expanduser()
    folder = path if path.is_dir() else path.parent
    with reading_run(folder), reading_run(cv_holding(folder) or folder):  # a fold's: its cv's too
        return _load_run(target, overrides)


def _load_run(target: str, overrides: list[str]) -> TrainedRun:
    from omegaconf import OmegaConf

    path = Path(target).expanduser()
    if path.is_dir():
        checkpoint = next((path / n for n in ("best.pt", "last.pt") if (path / n).is_file()), None)
        if checkpoint is None:
            raise DltrainError(f"{target!r} holds no best.pt or last.pt; give a run folder under outputs/ or a checkpoint file.")
    elif path.is_file():
        checkpoint = path
    else:
        raise DltrainError(f"{target!r} does not exist; give a run folder under outputs/ or a checkpoint file.")
    state = load_checkpoint(checkpoint)
    if not {"model", "config", "spec"} <= set(state):
        raise DltrainError(f"The checkpoint {str(checkpoint)!r} is not a dltrain checkpoint (it lacks model, config or spec).")
    config = upgrade_saved(saved_config(state, checkpoint))
    if isinstance(config.get("data"), dict) and "download" in config["data"]:
        # A run's config never downloads (into a folder it names): data.download=true does, when typed.
        config = {**config, "data": {**config["data"], "download": False}}
    cfg = apply_overrides(OmegaConf.create(config), overrides)
    settings = read_settings(cfg)
    spec = saved_spec(state, checkpoint)
    # The sizes come from the checkpoint: the model they make must fit its weights before it takes memory.
    shapes = planned_shapes(lambda: build(settings, spec, training=False).model, checkpoint)
    check_weights(state["model"], shapes, checkpoint, f"model={settings.model.name}",
                  "evaluate it with the settings it was trained with")
    parts = build(settings, spec, training=False)
    objective, model = parts.objective, parts.model
    model.load_state_dict(state["model"])
    saved = load_saved_run(checkpoint.parent)  # data only: a run folder may be anyone's
    preprocessor = saved.preprocessor
    if tuple(preprocessor.input_shape) != spec.input_shape:
        raise DltrainError(f"The saved preprocessing beside {str(checkpoint)!r} makes inputs of shape "
                           f"{tuple(preprocessor.input_shape)}, but the checkpoint's model reads "
                           f"{spec.input_shape}; use the run folder the checkpoint was trained in.")
    return TrainedRun(checkpoint.parent, checkpoint, cfg, spec, model, objective, preprocessor, saved.reading)


def apply_overrides(cfg, overrides: list[str]):
    """``group=option`` swaps in that group's YAML; ``key=value`` sets a value (Hydra's grammar)."""
    from dltrain.config import apply_overrides as apply_to_composed

    return apply_to_composed(cfg, overrides)


def _encoded_targets(targets, class_names, spec):
    """Targets in the trained model's class indices (transformed as in training for regression)."""
    import numpy as np

    if spec.task == "regression":
        return TargetTransform.of(spec).encode(targets)
    if tuple(class_names) == tuple(spec.class_names):
        return np.asarray(targets)
    unknown = [c for c in class_names if c not in spec.class_names]
    if unknown:
        raise DltrainError(
            f"The data has class {unknown[0]!r}, which the model never saw; it knows: {', '.join(spec.class_names)}."
        )
    lookup = np.asarray([spec.class_names.index(c) for c in class_names])
    return lookup[np.asarray(targets)]


def _as_trained(data, run, overrides):
    """The data settings as the run read its data at fit time, for every one the data has and the
    command line does not set: ``data.header`` and ``data.target`` as found then, ``data.task``
    as the model's (a regression model's target is numbers, even when a few whole ones would read
    as classes; a column of words is refused in one sentence). A run from before these were
    saved has its task in its checkpoint, and its config's header and target."""
    from dataclasses import replace

    typed = {o.lstrip("+~").partition("=")[0] for o in overrides}
    trained = {**run.reading, "task": run.spec.task}
    options = {**data.options, **{key: value for key, value in trained.items()
                                  if key in data.options and f"data.{key}" not in typed}}
    return replace(data, options=options)


def evaluate_run(target: str, overrides: list[str], out) -> dict:
    import numpy as np
    import torch


    run = load_run(target, overrides)
    settings = read_settings(run.cfg)
    source = load_source(_as_trained(settings.data, run, overrides))
    if source.test_features is not None:
        split, features = "test", source.test_features
        encoded = _encoded_targets(source.test_target, source.class_names, run.spec)
    elif any(o.lstrip("+").startswith("data") for o in overrides):
        split, features = "all", source.features
        encoded = _encoded_targets(source.target, source.class_names, run.spec)
    else:
        _, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
        if len(val_index) == 0:
            raise DltrainError("This run's data has no test split and no validation rows; give a data config to evaluate on, e.g. data.path=NEW.csv.")
        split, features = "validation", take(source.features, val_index)
        encoded = _encoded_targets(source.target, source.class_names, run.spec)[val_index]
    device = resolve_device(settings.trainer.device)
    x = _model_inputs(run, features)
    dtype = torch.float32 if run.spec.task == "regression" else torch.long
    y = torch.as_tensor(np.array(encoded), dtype=dtype)
    metrics = _inference(run, settings, device).evaluate(x, y)
    record = {"checkpoint": str(run.checkpoint), "split": split, "rows": int(len(y)),
              "overrides": list(overrides), "metrics": metrics}
    saved = run.run_dir / eval_file(settings.data, other_data=split == "all")
    from rich.table import Table

    from dltrain.console import fmt

    out.print(f"Evaluating {run.checkpoint} on the {split} rows ({len(y)}).", soft_wrap=True)
    table = Table(title="eval", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, fmt(value))
    out.print(table)  # before saving: a folder that cannot be written still shows the metrics
    with RunLock(run.run_dir):  # the run folder has one writer at a time: not while it trains
        write_json(saved, record)
    out.print(f"Saved to {saved}")
    return record


def eval_file(data, *, other_data: bool) -> str:
    """eval.json for the run's own data; eval-<data>.json for other data (named by its file's
    stem, else by the dataset's name), so evaluating on several never overwrites one another."""
    import re

    if not other_data:
        return "eval.json"
    path = data.options.get("path")
    label = data.name
    if isinstance(path, str) and path not in ("", "???"):
        label = Path(path).name.removesuffix(".gz").removesuffix(".csv") or label
    label = re.sub(r"[^\w.-]+", "_", label).lstrip(".")[:80] or "data"
    return f"eval-{label}.json"


# ------------------------------------------------------------------------------ predict


def _read_input_csv(path: Path, header: bool):
    """input=FILE (a CSV, or a Parquet file) as a table with at least one row, or one sentence
    saying why not."""
    import pandas as pd

    if path.is_dir():
        raise DltrainError(f"input={str(path)!r} is a folder; this model predicts for the rows of a CSV file.")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame = read_parquet_file(path)
        if frame.empty:
            raise DltrainError(f"input={str(path)!r} has no rows to predict for.")
        return frame
    try:
        frame = pd.read_csv(path, header=0 if header else None)
    except UnicodeDecodeError as error:
        raise DltrainError(f"input={str(path)!r} is not UTF-8 text (it holds the byte "
                           f"{error.object[error.start]:#04x}); save it as UTF-8 and try again.") from None
    except pd.errors.EmptyDataError:
        raise DltrainError(f"input={str(path)!r} is empty; give a CSV with a header and one row per input.") from None
    except (pd.errors.ParserError, OSError) as error:
        raise DltrainError(f"Could not read {str(path)!r} as CSV: {str(error).strip().splitlines()[0]}") from None
    if frame.empty:
        raise DltrainError(f"input={str(path)!r} has no rows to predict for, only "
                           f"{'a header' if header else 'blank lines'}.")
    return frame


def _read_table(path: Path, run):
    header = _header(run)
    frame = _read_input_csv(path, header)
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    needed = [str(c) for c in run.preprocessor.columns]
    missing = [c for c in needed if c not in map(str, frame.columns)]
    if missing:
        raise DltrainError(
            f"{str(path)!r} lacks the column {missing[0]!r} the model was trained on; it needs: {', '.join(needed)}."
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame[needed], [str(i) for i in range(len(frame))]


def _read_images(path: Path, spec):
    from dltrain.data.vision import IMAGE_SUFFIXES, read_images

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        files = [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    if not files:
        raise DltrainError(f"No images in {str(path)!r}; give a folder of images or a text file listing one image path per line.")
    channels, height, width = spec.input_shape if len(spec.input_shape) == 3 else (1, *spec.input_shape)
    return read_images(files, height, width, channels), [str(f) for f in files]


def _header(run) -> bool:
    """Whether the run's data file had a header row, as found at fit time (data.header=auto), or
    as its config says for a run from before that was saved."""
    header = run.reading.get("header", run.cfg.data.get("header", True))
    return header if isinstance(header, bool) else True


def _read_texts(path: Path, run):
    import numpy as np

    frame = _read_input_csv(path, _header(run))
    column = run.cfg.data.get("text_column", 0)
    if isinstance(column, str) and column in frame.columns:
        texts = frame[column]
    else:
        texts = frame.iloc[:, 0]
    return np.asarray(texts.fillna("").astype(str).tolist(), dtype=object), [str(i) for i in range(len(frame))]


def predict_run(target: str, input_path: str, output_path: str | None, out) -> Path:
    run = load_run(target)
    path = Path(input_path).expanduser()
    if not path.exists():
        raise DltrainError(f"input={input_path!r} does not exist; give a CSV file (tabular or text models) or a folder of images.")
    kind = run.spec.kind
    if kind == "tabular":
        features, names = _read_table(path, run)
    elif kind == "image" or getattr(run.preprocessor, "as_sequence", False):
        features, names = _read_images(path, run.spec if kind == "image" else _image_spec(run))
    elif kind == "tokens":
        features, names = _read_texts(path, run)
    else:
        raise DltrainError(f"dltrain predict reads tables, images and texts; this model was trained on {kind} data.")
    settings = read_settings(run.cfg)
    device = resolve_device(settings.trainer.device)
    scores = _inference(run, settings, device).predict_scores(_model_inputs(run, features)).numpy()
    table = prediction_frame(run.spec.task, run.spec.class_names, scores, keys=names, key="input")
    destination = Path(output_path).expanduser() if output_path else run.run_dir / "predictions.csv"
    if destination.is_dir():
        raise DltrainError(f"output={output_path} is a folder; give a file to write, such as "
                           f"output={destination / 'predictions.csv'}.")
    # One writer in a run folder at a time (the folder of the file: the file may be a planted link).
    inside = destination.parent.resolve().is_relative_to(run.run_dir.resolve())
    try:
        with RunLock(run.run_dir) if inside else nullcontext():
            write_csv(destination, table)
    except OSError as error:
        if output_path is None:  # the run's own folder: what the machine refused, not a mistake
            raise
        raise DltrainError(f"output={output_path} cannot be written ({error.strerror or error}); give a "
                           f"file in a folder you can write to.") from None
    out.print(f"{len(table)} predictions written to {destination}")
    return destination


def _model_inputs(run, features):
    """The preprocessed inputs, once they have the shape the checkpoint's model was sized for (a
    checkpoint beside another run's preprocessing would otherwise fail inside the model)."""
    import torch

    x = run.preprocessor.transform(features)
    if isinstance(x, torch.Tensor) and tuple(x.shape[1:]) != tuple(run.spec.input_shape):
        raise DltrainError(
            f"The preprocessing beside {str(run.checkpoint)!r} makes inputs shaped {tuple(x.shape[1:])}, but its "
            f"model takes {tuple(run.spec.input_shape)}; the checkpoint and the preprocessing come from different runs."
        )
    return x


def _inference(run, settings, device):
    return for_inference(Parts(run.objective, run.model), settings.trainer, device)


def _image_spec(run):
    """An image model trained on rows-as-sequence: read images at the trained size."""
    from dataclasses import replace

    channels, height, width = run.preprocessor.image_shape
    return replace(run.spec, input_shape=(channels, height, width))
