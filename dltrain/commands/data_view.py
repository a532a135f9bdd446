"""``dltrain data OVERRIDES``: what the model will see, prepared exactly as fit prepares it (the
same loader, split and preprocessing, fitted on the training rows): rows per split, the task,
the classes and their counts, the input shape and the features after preprocessing, and the
first rows of the preprocessed training table; for images a grid of samples saved as a PNG under
outputs/data/, for text the vocabulary and a few examples as tokens. Trains nothing."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dltrain.config import compose, read_settings
from dltrain.console import console, fmt
from dltrain.data import load_source, prepare
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.files import write_atomic
from dltrain.train.staging import to_device

FOLDER = Path("outputs") / "data"
PNG = "samples.png"
SHOWN_NAMES = 24  # of many features (digits' 64 pixels) the first names, the rest counted
COLUMN_WIDTH = 12  # a table column's characters: a wide table shows as many as the terminal fits
SAMPLES = 16  # images in the grid
EXAMPLES = 3  # texts shown as tokens


@dataclass
class DataView:
    name: str
    kind: str
    task: str
    splits: dict  # split -> rows
    input_shape: tuple
    features: tuple  # the model's inputs by name, after preprocessing (tabular)
    class_counts: dict = field(default_factory=dict)  # split -> {class: rows}
    target_summary: dict = field(default_factory=dict)  # split -> (mean, std, min, max) of a regression target
    table: object = None  # pandas DataFrame: the first rows of the preprocessed training table
    vocab_size: int = 0
    examples: list = field(default_factory=list)  # (text, tokens, ids) of the first training texts
    png: Path | None = None
    notes: list = field(default_factory=list)


def view(overrides: list[str], rows: int = 5) -> DataView:
    """Prepare the data as ``dltrain fit OVERRIDES`` would and describe it."""
    import numpy as np

    if rows < 0:
        raise DltrainError(f"--rows must be 0 or more, got {rows}.")
    settings = read_settings(compose(overrides))
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    data = prepare(source, train_index, val_index)
    spec = data.spec
    splits = {"train": data.train, "val": data.val, "test": data.test}
    splits = {name: split for name, split in splits.items() if split is not None}
    result = DataView(settings.data.name, spec.kind, spec.task, {name: len(s) for name, s in splits.items()},
                      tuple(spec.input_shape), tuple(spec.feature_names), notes=list(source.notes))
    for name, split in splits.items():
        y = split.y.numpy()
        if spec.task == "regression":
            values = data.target.decode(y) if data.target is not None else y
            result.target_summary[name] = (float(np.mean(values)), float(np.std(values)),
                                           float(np.min(values)), float(np.max(values)))
        else:
            counts = np.bincount(y.astype(np.int64), minlength=spec.num_classes)
            result.class_counts[name] = {spec.class_names[c]: int(n) for c, n in enumerate(counts)}
    if spec.kind == "tabular" and rows:
        result.table = _table(data, rows)
    if spec.kind == "image" and len(data.train):
        result.png = _sample_grid(data, settings.data.name)
    if spec.vocab_size:
        result.vocab_size = spec.vocab_size
        result.examples = _token_examples(source, train_index, data.preprocessor)
    return result


def _table(data, rows: int):
    """The first training rows as the model gets them, with the target as the data names it."""
    import pandas as pd

    spec = data.spec
    frame = pd.DataFrame(data.train.x[:rows].numpy(), columns=list(spec.feature_names) or None)
    y = data.train.y[:rows].numpy()
    if spec.task == "regression":
        frame["target"] = data.target.decode(y) if data.target is not None else y
    else:
        frame["target"] = [spec.class_names[int(c)] for c in y]
    return frame


def _sample_grid(data, name: str) -> Path:
    """The first training images, captioned with their class (or target), as a PNG."""
    import io

    from PIL import Image

    from dltrain.train.figures import image_grid

    spec = data.spec
    count = min(SAMPLES, len(data.train))
    images = to_device(data.train.x[:count], "cpu").numpy()  # images: uint8 Pixels, as the model reads them
    if images.ndim == 3:  # images read as sequences of rows (as_sequence=true): one channel
        images = images[:, None]
    y = data.train.y[:count].numpy()
    if spec.task == "regression":
        values = data.target.decode(y) if data.target is not None else y
        captions = [fmt(float(v)) for v in values]
    else:
        captions = [spec.class_names[int(c)] for c in y]
    picture = image_grid(images, captions, title=f"data={name}: the first {count} training images")
    stream = io.BytesIO()
    Image.fromarray(picture).save(stream, format="PNG")
    path = FOLDER / (datetime.now().strftime("%Y-%m-%d/%H-%M-%S") + "_" + secrets.token_hex(3)) / PNG
    write_atomic(path, stream.getvalue())
    return path


def _token_examples(source, train_index, preprocessor) -> list[tuple[str, list[str], list[int]]]:
    """The first training texts: each as written, as its tokens (unknown ones as <unk>) and ids."""
    from dltrain.data.split import take

    texts = take(source.features, train_index[:EXAMPLES])
    words = sorted(preprocessor.vocabulary, key=preprocessor.vocabulary.__getitem__)
    examples = []
    for text in list(texts):
        ids = preprocessor.encode(str(text))
        examples.append((str(text), [words[i] for i in ids], ids))
    return examples


def print_view(result: DataView, out=console) -> None:
    from rich.markup import escape
    from rich.table import Table

    sizes = " / ".join(f"{rows:,} {name}" for name, rows in result.splits.items())
    out.print(f"[bold]data={result.name}[/bold]  {result.kind}, {result.task}: {sizes} rows; "
              f"input shape ({', '.join(map(str, result.input_shape))})")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    if result.class_counts:
        table = Table(title="classes (rows per split)", title_justify="left", header_style="bold")
        table.add_column("class", no_wrap=True)
        for split in result.class_counts:
            table.add_column(split, justify="right", no_wrap=True)
        for name in next(iter(result.class_counts.values())):
            table.add_row(escape(name), *(f"{counts[name]:,}" for counts in result.class_counts.values()))
        out.print(table)
    for split, (mean, std, low, high) in result.target_summary.items():
        out.print(f"target ({split}): mean {fmt(mean)}, std {fmt(std)}, from {fmt(low)} to {fmt(high)}")
    if result.features:
        names = ", ".join(result.features[:SHOWN_NAMES])
        more = len(result.features) - SHOWN_NAMES
        out.print(f"{len(result.features)} features after preprocessing: " + escape(names)
                  + (f", ... and {more} more" if more > 0 else ""))
    if result.table is not None:
        frame = result.table
        columns = list(frame.columns)
        fits = max(3, out.width // COLUMN_WIDTH)
        shown = columns[:fits - 1] + [columns[-1]] if len(columns) > fits else columns
        table = Table(title=f"the first {len(frame)} training rows, as the model gets them",
                      title_justify="left", header_style="bold")
        for column in shown:
            table.add_column(escape(str(column)), justify="right")
        for _, row in frame[shown].iterrows():
            table.add_row(*(escape(v) if isinstance(v, str) else f"{float(v):.6g}" for v in row))
        out.print(table)
        if len(shown) < len(columns):
            out.print(f"({len(columns) - len(shown)} more feature columns not shown)")
    if result.vocab_size:
        out.print(f"vocabulary: {result.vocab_size:,} tokens (with <pad> and <unk>), built on the training rows")
        for text, tokens, ids in result.examples:
            cut = " ..." if len(tokens) > 20 else ""
            out.print(f"  {escape(text[:100])}\n    tokens: {escape(' | '.join(tokens[:20]))}{cut}\n"
                      f"    ids:    {' '.join(map(str, ids[:20]))}{cut}")
    if result.png is not None:
        out.print(f"Sample images: {result.png}")


def data_view(overrides: list[str], rows: int = 5, out=console) -> DataView:
    result = view(overrides, rows)
    print_view(result, out)
    return result
