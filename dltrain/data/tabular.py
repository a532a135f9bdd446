"""Tables: CSV files (pandas) and the preprocessing every tabular dataset shares
(mean imputation, one-hot categories with a missing-value category, standardization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dltrain.data import register_dataset
from dltrain.data.spec import TASKS, Source
from dltrain.errors import DltrainError

MISSING_CATEGORY = "nan"  # pandas get_dummies(dummy_na=True) names the column <col>_nan too


class TabularPreprocessor:
    """Numeric columns: standardized (statistics of the training rows, missing values ignored)
    with missing values then set to 0, i.e. to the training mean; without standardization,
    missing values take the training mean. Other columns: one-hot, missing values as a category
    of their own, categories unseen in training encoded as all zeros."""

    def __init__(self, standardize: bool = True):
        self.standardize = standardize
        self._transformer = None
        self.columns: list = []
        self.feature_names: list[str] = []

    def fit(self, features: pd.DataFrame, target=None) -> "TabularPreprocessor":
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        self.columns = list(features.columns)  # what predict must find in new data
        numeric = [c for c in features.columns if _is_numeric(features[c])]
        categorical = [c for c in features.columns if c not in numeric]
        if self.standardize:
            numeric_steps = make_pipeline(
                StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0,
                                                keep_empty_features=True))
        else:
            numeric_steps = SimpleImputer(strategy="mean", keep_empty_features=True)
        self._transformer = ColumnTransformer(
            [
                ("numeric", numeric_steps, numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                              dtype=np.float32), categorical),
            ],
            verbose_feature_names_out=False,
        )
        self._transformer.fit(_categories_as_text(features, categorical))
        self._categorical = categorical
        self.feature_names = [str(n) for n in self._transformer.get_feature_names_out()]
        return self

    def transform(self, features: pd.DataFrame):
        import torch

        values = self._transformer.transform(_categories_as_text(features, self._categorical))
        return torch.as_tensor(np.asarray(values, dtype=np.float32))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.feature_names),)


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
    if task == "auto":
        task = _infer_task(target, numeric)
    if task == "regression":
        if not numeric:
            example = target.dropna().astype(str).iloc[0] if target.notna().any() else ""
            raise DltrainError(
                f"The target column '{name}' is not numeric (for example {example!r}), so it "
                f"cannot be a regression target; set data.task=multiclass or pick a numeric column."
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


def _infer_task(target: pd.Series, numeric: bool) -> str:
    if not numeric:
        return "binary" if target.nunique() == 2 else "multiclass"
    values = target.to_numpy(dtype=np.float64)
    unique = np.unique(values)
    if np.all(np.mod(unique, 1) == 0) and len(unique) <= 20 and len(unique) < len(values) / 2:
        return "binary" if len(unique) == 2 else "multiclass"
    return "regression"


def frame_source(features: pd.DataFrame, target: pd.Series, options: dict, *, task="auto",
                 target_name="target") -> Source:
    """A Source over a DataFrame of features and a target column (rows without a target dropped)."""
    keep = target.notna().to_numpy()
    notes = []
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows whose target '{target_name}' is missing")
        features, target = features[keep].reset_index(drop=True), target[keep].reset_index(drop=True)
    if len(target) == 0:
        raise DltrainError("The dataset is empty: it has no rows with a target to train on.")
    if features.shape[1] == 0:
        raise DltrainError("The dataset has no feature columns besides the target.")
    codes, task, class_names = encode_target(target, task, target_name)
    standardize = bool(options.get("standardize", True))
    return Source(
        features=features.reset_index(drop=True),
        target=codes,
        task=task,
        class_names=class_names,
        make_preprocessor=lambda: TabularPreprocessor(standardize=standardize),
        standardize_target=bool(options.get("standardize_target", False)),
        notes=notes,
    )


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
    """The CSV at ``data.path`` (.csv or .csv.gz; ``data.header`` says whether the first row names
    the columns) and that header flag, with one sentence for every way reading it can fail."""
    file = Path(str(options["path"])).expanduser()
    if not file.is_file():
        raise DltrainError(f"The CSV file {str(file)!r} does not exist; set data.path to an existing .csv or .csv.gz file.")
    header = options.get("header", True)
    if not isinstance(header, bool):
        raise DltrainError(f"data.header must be true or false, got {header!r}.")
    try:
        frame = pd.read_csv(file, header=0 if header else None, **read_options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DltrainError(f"Could not read {str(file)!r} as CSV: {first_line}") from None
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DltrainError(f"The CSV file {str(file)!r} has no data rows.")
    return frame, header


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
        raise DltrainError("data=csv needs a file: set data.path=FILE.csv (or .csv.gz).")
    frame, _ = read_csv_file(options)
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
                        target_name=str(target_name))
