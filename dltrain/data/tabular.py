"""Tables: CSV and Parquet files (pandas; pyarrow for Parquet), read once per process, the rule
``data.task=auto`` reads a target by, and the preprocessing every tabular dataset shares (mean
imputation, one-hot categories with a missing-value category, standardization)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from dltrain.data import register_dataset
from dltrain.data.spec import TASKS, Source
from dltrain.errors import DltrainError

MISSING_CATEGORY = "nan"  # pandas get_dummies(dummy_na=True) names the column <col>_nan too
# data.task=auto: the most distinct non-negative integers a target may hold to be read as classes.
MAX_AUTO_CLASSES = 20
TASK_RULE = (f"integers of 2 distinct values are binary, 3 to {MAX_AUTO_CLASSES} distinct non-negative "
             f"integers (at most one per two rows) multiclass, other numbers regression, words classes")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_POLYNOMIAL_DEGREE = 30  # x^30/30! of a standardized feature: room enough, and still finite


class TabularPreprocessor:
    """Numeric columns: standardized (statistics of the training rows, missing values ignored)
    with missing values then set to 0, i.e. to the training mean; without standardization,
    missing values take the training mean. Other columns: one-hot, missing values as a category
    of their own, categories unseen in training encoded as all zeros.

    ``fit`` measures the statistics (with scikit-learn's scaler and imputer, so they are
    scikit-learn's to the last bit); ``transform`` applies them from this object's plain fitted
    state, the same state ``state()`` exports and ``from_state`` rebuilds, so a preprocessor
    read back from a run folder transforms exactly as the one fitted in training."""

    def __init__(self, standardize: bool = True, polynomial_degree: int = 1):
        self.standardize = standardize
        # Each numeric column x (standardized or not, missing values filled) becomes x, x²/2!, ...,
        # x^d/d!: the textbook's polynomial features, the factorials keeping large powers in range.
        self.polynomial_degree = polynomial_degree
        self.columns: list[str] = []  # what new data must have, in the training data's order
        self.categories: dict[str, list[str]] = {}  # categorical column -> its one-hot categories
        self.mean = np.zeros(0)  # per numeric column: the training mean (the imputed value)
        self.scale: np.ndarray | None = None  # per numeric column, when standardized
        self.empty: list[str] = []  # numeric columns without a value in training: read as 0 when standardized

    def fit(self, features: pd.DataFrame, target=None) -> "TabularPreprocessor":
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import StandardScaler

        frame = _named_by_text(features)
        columns = list(frame.columns)
        categorical = [c for c in columns if not _is_numeric(frame[c])]
        numeric = [c for c in columns if c not in categorical]
        values = _numbers(frame, numeric)
        mean, scale, empty = np.zeros(len(numeric)), np.ones(len(numeric)) if self.standardize else None, []
        if numeric and self.standardize:
            scaler = StandardScaler().fit(values)
            missing = np.isnan(scaler.mean_)  # no value at all in the training rows
            empty = [c for c, m in zip(numeric, missing) if m]
            mean = np.where(missing, 0.0, scaler.mean_)
            scale = np.where(missing, 1.0, scaler.scale_)
        elif numeric:
            mean = SimpleImputer(strategy="mean", keep_empty_features=True).fit(values).statistics_
        text = _categories_as_text(frame, categorical)
        # scikit-learn's OneHotEncoder orders string categories the same way: sorted(set(values)).
        categories = {c: sorted(set(text[c].tolist())) for c in categorical}
        return self.restore(columns, categories, mean, scale, empty)

    def restore(self, columns, categories: dict, mean, scale=None, empty=()) -> "TabularPreprocessor":
        """Set the fitted state: ``columns`` in order, ``categories`` of the categorical ones,
        ``mean`` (and ``scale`` when standardized) of the numeric ones in order, and the names of
        the numeric columns that had no value in training."""
        self.columns = [str(c) for c in columns]
        self.categories = {c: [str(v) for v in categories[c]] for c in self.columns if c in categories}
        numeric = self.numeric
        self.mean = np.asarray(mean, dtype=np.float64).reshape(len(numeric))
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64).reshape(len(numeric))
        self.empty = [c for c in numeric if c in set(empty)]
        return self

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.columns if c not in self.categories]

    @property
    def feature_names(self) -> list[str]:
        """The model's inputs in order: the numeric columns (each followed by its powers
        <column>^i/i! up to polynomial_degree), then each category as <column>_<category>."""
        numeric = [c if i == 1 else f"{c}^{i}/{i}!" for c in self.numeric for i in range(1, self.polynomial_degree + 1)]
        return numeric + [f"{c}_{v}" for c, values in self.categories.items() for v in values]

    def transform(self, features: pd.DataFrame):
        import torch

        frame = _named_by_text(features)
        lacking = [c for c in self.columns if c not in frame.columns]
        if lacking:
            raise DltrainError(f"The data lacks the column {lacking[0]!r} the model was trained on; "
                               f"it needs: {', '.join(self.columns)}.")
        numeric = self.numeric
        values = _numbers(frame, numeric)
        missing = np.isnan(values)
        if self.standardize:
            values = (values - self.mean) / self.scale
            values[missing] = 0.0
            values[:, [numeric.index(c) for c in self.empty]] = 0.0
        else:
            values = np.where(missing, self.mean, values)
        if self.polynomial_degree > 1:
            from math import factorial

            powers = [values ** i / factorial(i) for i in range(1, self.polynomial_degree + 1)]
            values = np.stack(powers, axis=2).reshape(len(frame), -1)  # per column: x, x²/2!, ...
        blocks = [values.astype(np.float32)]
        text = _categories_as_text(frame, list(self.categories))
        rows = np.arange(len(frame))
        for column, categories in self.categories.items():
            codes = pd.Index(categories).get_indexer(text[column].to_numpy(dtype=object))
            block = np.zeros((len(frame), len(categories)), dtype=np.float32)
            known = codes >= 0  # an unseen category stays all zeros
            block[rows[known], codes[known]] = 1.0
            blocks.append(block)
        return torch.as_tensor(np.concatenate(blocks, axis=1))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.feature_names),)

    def state(self) -> tuple[dict, dict]:
        """The fitted state as data: (JSON-able settings and columns, numpy arrays by name)."""
        columns = []
        for name in self.columns:
            if name in self.categories:
                columns.append({"name": name, "type": "categorical", "categories": self.categories[name]})
            elif name in self.empty and self.standardize:
                columns.append({"name": name, "type": "numeric", "empty": True})
            else:
                columns.append({"name": name, "type": "numeric"})
        arrays = {"mean": self.mean}
        if self.standardize:
            arrays["scale"] = self.scale
        state = {"standardize": self.standardize, "columns": columns}
        if self.polynomial_degree > 1:  # a file without it: degree 1, as before the setting existed
            state["polynomial_degree"] = self.polynomial_degree
        return state, arrays

    @classmethod
    def from_state(cls, state) -> "TabularPreprocessor":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader, which refuses
        anything that is not what ``state()`` writes)."""
        degree = (state.integer("polynomial_degree", minimum=1, maximum=MAX_POLYNOMIAL_DEGREE)
                  if state.has("polynomial_degree") else 1)
        preprocessor = cls(standardize=state.boolean("standardize"), polynomial_degree=degree)
        columns, categories, empty = [], {}, []
        for index, column in enumerate(state.objects("columns")):
            name = column.text("name")
            if name in columns:
                state.invalid(f"columns[{index}].name", "a name no other column has", name)
            if column.text("type", choices=("numeric", "categorical")) == "categorical":
                categories[name] = column.texts("categories", unique=True)
            elif preprocessor.standardize and column.boolean("empty", default=False):
                empty.append(name)
            columns.append(name)
        if not columns:
            state.invalid("columns", "a list of one or more columns", [])
        count = len(columns) - len(categories)
        mean = state.array("mean", count)
        scale = state.array("scale", count, positive=True) if preprocessor.standardize else None
        return preprocessor.restore(columns, categories, mean, scale, empty)


def _named_by_text(features: pd.DataFrame) -> pd.DataFrame:
    """The frame with its column names as text (as predict reads a CSV), each name once."""
    names = [str(c) for c in features.columns]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DltrainError(f"The data has two columns named {twice!r}; give every column its own name.")
    return features.set_axis(names, axis=1)


def _numbers(frame: pd.DataFrame, numeric: list[str]) -> np.ndarray:
    """The numeric columns as float64 (missing values as NaN), one sentence for text or infinity."""
    try:
        values = frame[numeric].astype("float64").to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        for column in numeric:
            parsed = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][parsed.isna() & frame[column].notna()]
            if len(bad):
                raise DltrainError(f"The column {column!r} holds {bad.iloc[0]!r}, which is not a number; "
                                   f"it was numeric in training, so give numbers or leave cells empty.") from None
        raise
    if np.isinf(values).any():
        column = numeric[int(np.isinf(values).any(axis=0).argmax())]
        raise DltrainError(f"The column {column!r} holds an infinite value; give finite numbers or leave the cell empty.")
    return values.reshape(len(frame), len(numeric))


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _categories_as_text(features: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categories as plain Python strings (pandas 2 `object` and pandas 3 `str` alike), with
    missing values as their own category."""
    if not categorical:
        return features
    features = features.copy()
    block = features[categorical].astype(object)  # one frame operation, not one per column
    features[categorical] = block.where(block.notna(), MISSING_CATEGORY).astype(str)
    return features


def encode_target(target: pd.Series, task: str, name: str) -> tuple[np.ndarray, str, tuple]:
    """Encode a target column for its task (inferred when task is 'auto')."""
    if task not in ("auto", *TASKS):
        raise DltrainError(f"data.task must be auto, {', '.join(TASKS)}; got {task!r}.")
    numeric = _is_numeric(target)
    if numeric and np.isinf(target.to_numpy(dtype=np.float64)).any():  # else a diverging loss, blamed on the lr
        raise DltrainError(f"The target column '{name}' holds an infinite value; give finite numbers, "
                           f"or leave the cell empty to drop the row.")
    if task == "auto":
        task = infer_task(target, numeric)
    if task == "regression":
        if not numeric:
            example = target.dropna().astype(str).iloc[0] if target.notna().any() else ""
            raise DltrainError(
                f"The target column '{name}' is not numeric (for example {example!r}), so it "
                f"cannot be a regression target; pick a numeric column, or to train a classifier set "
                f"data.task=multiclass."
            )
        return target.to_numpy(dtype=np.float64), task, ()
    classes = sorted(target.unique().tolist(), key=lambda v: (str(type(v)), v))
    if task == "binary" and len(classes) != 2:
        raise DltrainError(
            f"data.task=binary needs exactly 2 classes in '{name}', found {len(classes)}; "
            f"use data.task=multiclass."
        )
    if len(classes) < 2:
        raise DltrainError(f"The target column '{name}' has only one class; a classifier needs two or more.")
    if task == "multiclass" and len(classes) == 2:
        task = "binary"
    lookup = {value: i for i, value in enumerate(classes)}
    codes = target.map(lookup).to_numpy(dtype=np.int64)
    return codes, task, tuple(_class_name(c) for c in classes)


def _class_name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def infer_task(target: pd.Series, numeric: bool | None = None) -> str:
    """The task ``data.task=auto`` reads off a target column (without missing values), by the rule
    TASK_RULE states: the one place it is decided, for every dataset whose task is not fixed."""
    if numeric is None:
        numeric = _is_numeric(target)
    if not numeric:
        return "binary" if target.nunique() == 2 else "multiclass"
    unique = np.unique(target.to_numpy(dtype=np.float64))
    integers = bool(np.all(np.mod(unique, 1) == 0))
    if integers and len(unique) == 2:
        return "binary"
    # Classes recur: a few prices or years, each seen once, are numbers to regress on.
    if integers and 3 <= len(unique) <= min(MAX_AUTO_CLASSES, len(target) // 2) and unique.min() >= 0:
        return "multiclass"
    return "regression"


def task_note(name: str, task: str) -> str:
    """What the banner says of a task ``data.task=auto`` chose."""
    return f"task {task} read off the target '{name}' by data.task=auto: {TASK_RULE}"


def frame_source(features: pd.DataFrame, target: pd.Series, options: dict, *, task="auto",
                 target_name="target", notes=(), reading=None) -> Source:
    """A Source over a DataFrame of features and a target column (rows without a target dropped).
    ``notes``: what reading the file found; ``reading``: how it was read (data.header,
    data.target), saved with the run with the task chosen here, for eval and predict."""
    keep = target.notna().to_numpy()
    notes = list(notes)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows whose target '{target_name}' is missing")
        features, target = features[keep].reset_index(drop=True), target[keep].reset_index(drop=True)
    if len(target) == 0:
        raise DltrainError("The dataset is empty: it has no rows with a target to train on.")
    if features.shape[1] == 0:
        raise DltrainError("The dataset has no feature columns besides the target.")
    codes, chosen, class_names = encode_target(target, task, target_name)
    if task == "auto":
        notes.append(task_note(target_name, chosen))
    standardize = bool(options.get("standardize", True))
    degree = polynomial_degree(options)
    return Source(
        features=features.reset_index(drop=True),
        target=codes,
        task=chosen,
        class_names=class_names,
        make_preprocessor=lambda: TabularPreprocessor(standardize=standardize, polynomial_degree=degree),
        notes=notes,
        reading={**(reading or {}), "task": chosen} if reading is not None else {},
    )


def polynomial_degree(options: dict) -> int:
    """``data.polynomial_degree``: 1 (the features as they are) up to MAX_POLYNOMIAL_DEGREE."""
    degree = options.get("polynomial_degree", 1)
    if isinstance(degree, bool) or not isinstance(degree, int) or not 1 <= degree <= MAX_POLYNOMIAL_DEGREE:
        raise DltrainError(f"data.polynomial_degree must be a whole number from 1 (the features as they are) "
                           f"to {MAX_POLYNOMIAL_DEGREE}, got {degree!r}.")
    return degree


def with_group_column(source: Source, column: str) -> Source:
    """The source with ``column`` moved out of the features into ``source.groups``, for group
    k-fold (a grouping id is not a feature to learn from)."""
    from dataclasses import replace

    features = source.features
    if not isinstance(features, pd.DataFrame):
        raise DltrainError(f"cv.group_column={column!r} needs tabular data with named columns "
                           f"(such as data=csv); this dataset has no columns.")
    names = [str(c) for c in features.columns]
    if column not in names:
        raise DltrainError(f"cv.group_column {column!r} is not a feature column of the data; "
                           f"columns are: {', '.join(names)}.")
    name = features.columns[names.index(column)]
    groups = features[name]
    if groups.isna().any():
        raise DltrainError(f"cv.group_column {column!r} is missing in {int(groups.isna().sum())} "
                           f"rows; every row needs a group, so fill them or choose another column.")
    if features.shape[1] == 1:
        raise DltrainError(f"cv.group_column {column!r} is the only feature column, so nothing "
                           f"would be left to learn from.")
    return replace(source, features=features.drop(columns=[name]), groups=groups.to_numpy())


def read_csv_file(options: dict, **read_options) -> tuple[pd.DataFrame, bool]:
    """The table at ``data.path`` and whether its first row named the columns: a CSV (.csv,
    .csv.gz; ``data.header`` true, false or auto, see ``_read_csv``) or a Parquet file (.parquet,
    whose columns always have names), with one sentence for every way reading it can fail. A file
    is read once per process for the same options, while its size and modification time stay
    (the folds of a cv, the points of a sweep); each call gets its own copy of the table."""
    file = Path(str(options["path"])).expanduser()
    if file.is_dir():
        raise DltrainError(f"data.path {str(file)!r} is a folder; set it to a .csv, .csv.gz or .parquet file.")
    parquet = file.suffix.lower() in PARQUET_SUFFIXES
    if not file.is_file():
        raise DltrainError(f"The {'Parquet' if parquet else 'CSV'} file {str(file)!r} does not exist; set "
                           f"data.path to an existing .csv, .csv.gz or .parquet file.")
    header = options.get("header", "auto")
    if not (isinstance(header, bool) or header == "auto"):
        raise DltrainError(f"data.header must be auto, true or false, got {header!r}.")
    if parquet and header is False:
        raise DltrainError(f"data.header=false is for CSV files, but {str(file)!r} is a Parquet file, whose "
                           f"columns always have names; leave data.header at auto.")
    status = file.stat()
    key = (str(file.resolve()), status.st_size, status.st_mtime_ns, header,
           tuple(sorted((name, repr(value)) for name, value in read_options.items())))
    if key in _TABLES:
        _TABLES.move_to_end(key)
    else:
        _TABLES[key] = ((read_parquet_file(file, **read_options), True) if parquet
                        else _read_csv(file, header, **read_options))
        while len(_TABLES) > _TABLES_KEPT:
            _TABLES.popitem(last=False)
    frame, header = _TABLES[key]
    if frame.empty:
        raise DltrainError(f"The {'Parquet' if parquet else 'CSV'} file {str(file)!r} has no data rows.")
    return _copy(frame), header


# The tables read in this process, newest last: (path, size, mtime, header, options) -> (frame, header).
_TABLES: OrderedDict = OrderedDict()
_TABLES_KEPT = 4


def _copy(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a kept table that its caller may change: shallow under copy-on-write (pandas 3, or
    2 with it turned on), which copies a column only when it is written; else a deep one."""
    try:
        lazy = int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True
    except (KeyError, ValueError):  # no such option: a pandas without copy-on-write
        lazy = False
    return frame.copy(deep=not lazy)


def _read_csv(file: Path, header, **read_options) -> tuple[pd.DataFrame, bool]:
    """The CSV and whether its first row is a header: ``header`` true or false says so; ``auto``
    reads a first row whose fields all parse as numbers as data when the rows below are all
    numbers too (the columns are then named 0..N-1), and as the header otherwise."""
    try:
        if header == "auto":
            first = pd.read_csv(file, header=None, nrows=1, dtype=str)
            header = not _all_numbers(first)
            frame = pd.read_csv(file, header=0 if header else None, **read_options)
            if not header and not _all_numbers(frame.iloc[1:]):
                header = True  # numbers above words: the first row names the columns
                frame = pd.read_csv(file, header=0, **read_options)
        else:
            frame = pd.read_csv(file, header=0 if header else None, **read_options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DltrainError(f"Could not read {str(file)!r} as CSV: {first_line}") from None
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    return frame, bool(header)


def _all_numbers(frame: pd.DataFrame) -> bool:
    """Whether every field of ``frame`` that is not empty parses as a number (and one does)."""
    seen = False
    for column in frame.columns:
        values = frame[column]
        if _is_numeric(values):  # pandas parsed the whole column as numbers
            seen = seen or bool(values.notna().any())
            continue
        if pd.api.types.is_bool_dtype(values):
            return False
        present = values.notna() & (values.astype(str).str.strip() != "")
        if pd.to_numeric(values[present], errors="coerce").isna().any():
            return False
        seen = seen or bool(present.any())
    return seen


def read_parquet_file(file: Path, **read_options) -> pd.DataFrame:
    """A Parquet file (with pyarrow) as a table whose columns are named by text; its index, if
    pandas stored one, is left out. ``dtype=str`` (text_csv's option): every value as text,
    missing ones as empty text, as a CSV read with ``keep_default_na=False`` gives them."""
    try:
        import pyarrow
    except ImportError:
        raise DltrainError(f"{str(file)!r} is a Parquet file, which dltrain reads with pyarrow; install it "
                           f"with: pip install 'dltrain[parquet]' (or pip install pyarrow).") from None
    try:
        frame = pd.read_parquet(file, engine="pyarrow")
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DltrainError(f"Could not read {str(file)!r} as Parquet: {first_line}") from None
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    if read_options.get("dtype") is str:
        frame = frame.apply(lambda column: column.map(lambda v: "" if pd.isna(v) else str(v)).astype(object))
    return frame


def header_notes(options: dict, header: bool, frame: pd.DataFrame) -> list[str]:
    """What the banner says when ``data.header=auto`` found no header row."""
    if options.get("header", "auto") != "auto" or header:
        return []
    return [f"no header row found: columns named 0..{frame.shape[1] - 1} (the first row is numbers, as are "
            f"the rows below; data.header=true if it names the columns)"]


def pick_column(frame: pd.DataFrame, key, setting: str):
    """The column ``data.<setting>`` names: a column name, or a 0-based index (-1: the last)."""
    columns = list(frame.columns)
    if isinstance(key, int) and not isinstance(key, bool):
        if -len(columns) <= key < len(columns):
            return columns[key]
        raise DltrainError(
            f"data.{setting}={key} is out of range for {len(columns)} columns; use an index from "
            f"0 to {len(columns) - 1} (or -1 for the last) or a column name."
        )
    if str(key) in map(str, columns):
        return columns[[str(c) for c in columns].index(str(key))]
    raise DltrainError(
        f"data.{setting} {key!r} is not a column of the CSV; columns are: {', '.join(map(str, columns))}."
    )


@register_dataset("csv", kind="tabular")
def load_csv(settings) -> Source:
    options = settings.options
    path = options.get("path")
    if not path or path == "???":
        raise DltrainError("data=csv needs a file: set data.path=FILE.csv (or .csv.gz, .parquet).")
    frame, header = read_csv_file(options)
    target_name = pick_column(frame, options.get("target", -1), "target")
    drop = [str(c) for c in options.get("drop_columns", []) or []]
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DltrainError(
            f"data.drop_columns names {unknown[0]!r}, which is not a column; columns are: "
            f"{', '.join(map(str, frame.columns))}."
        )
    features = frame.drop(columns=[target_name, *drop])
    return frame_source(features, frame[target_name], options, task=options.get("task", "auto"),
                        target_name=str(target_name), notes=header_notes(options, header, frame),
                        reading={"header": header, "target": str(target_name)})
