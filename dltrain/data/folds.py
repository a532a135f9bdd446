"""Cross-validation folds: scikit-learn's splitters plan every fold's training and validation
rows (k-fold, stratified, group, repeated), and any request the data cannot satisfy is one
sentence before a fold runs."""

from __future__ import annotations

from dataclasses import dataclass

from dltrain.data import load_source
from dltrain.data.tabular import with_group_column
from dltrain.errors import DltrainError


@dataclass(frozen=True)
class Fold:
    index: int  # 0 .. k * repeats - 1: the fold_{index} folder
    repeat: int
    train_index: object  # sorted row indices (numpy)
    val_index: object


def resolve_strategy(cv, task: str) -> str:
    """``auto``: group when a group column is set, stratified for classes, kfold for regression."""
    if cv.strategy != "auto":
        return cv.strategy
    if cv.group_column is not None:
        return "group"
    return "kfold" if task == "regression" else "stratified"


def load_cv_source(settings, cv):
    """The raw dataset, with the group column (if any) moved out of the features."""
    source = load_source(settings.data)
    if cv.group_column is not None:
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
