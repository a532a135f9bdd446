"""``dltrain migrate RUN --trust``: the one place dltrain unpickles. An older dltrain saved a run's
fitted preprocessing as ``preprocessor.pkl``; this re-saves it as data (preprocessing.json and
.npz, dltrain.data.preprocessing) in RUN and every run folder below it, then removes the pickle.
Reading a pickle runs whatever code it holds, so it happens only when the user vouches for RUN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dltrain.data.preprocessing import ARRAYS, FILE, KINDS, LEGACY_PICKLE, load_preprocessing, save_preprocessing
from dltrain.data.tabular import TabularPreprocessor
from dltrain.errors import DltrainError
from dltrain.files import RunLock


def migrate(target: str, trust: bool, out) -> list[Path]:
    """Convert every preprocessor.pkl under ``target``; returns the run folders converted."""
    if not trust:
        raise DltrainError(
            f"dltrain migrate reads {LEGACY_PICKLE} files, and reading a pickle runs whatever code the "
            f"file holds; pass --trust only for run folders you made yourself or whose source you vouch for.")
    root = Path(target).expanduser()
    if not root.is_dir():
        raise DltrainError(f"{target!r} is not a folder; give a run folder, a cv folder or a folder of runs "
                           f"such as outputs/, and dltrain migrate converts every {LEGACY_PICKLE} in it.")
    converted = []
    for path in _legacy_pickles(root):
        if path.is_symlink():  # the user vouched for the folder, not for wherever a link points
            out.print(f"Skipped {path}: a symbolic link, not a file of the run.", soft_wrap=True)
            continue
        folder = path.parent
        with RunLock(folder):
            save_preprocessing(folder, _upgrade(_unpickle(path), path))
            load_preprocessing(folder)  # what eval, predict and resume will read: refuse now if not
            path.unlink()
        written = FILE + (f" and {ARRAYS}" if (folder / ARRAYS).is_file() else "")
        out.print(f"Converted {path} to {written}.", soft_wrap=True)
        converted.append(folder)
    if converted:
        out.print(f"{len(converted)} run folder(s) converted; eval, predict and resume now read them as data.")
    else:
        out.print(f"No {LEGACY_PICKLE} under {root}; nothing to convert.", soft_wrap=True)
    return converted


def _legacy_pickles(root: Path) -> list[Path]:
    """preprocessor.pkl in ``root`` and every folder below it (a cv folder's fold_N/ and refit/,
    or every run of outputs/), without following links to folders."""
    found = []
    for folder, folders, files in os.walk(root):
        folders.sort()
        if LEGACY_PICKLE in files:
            found.append(Path(folder) / LEGACY_PICKLE)
    return found


def _unpickle(path: Path):
    import pickle

    try:
        with path.open("rb") as stream:
            return pickle.load(stream)
    except Exception as error:  # a damaged pickle, or one naming a class this environment lacks
        reason = (str(error).strip().splitlines() or [""])[0][:120]
        raise DltrainError(f"{str(path)!r} cannot be unpickled ({type(error).__name__}: {reason}); it is damaged "
                           f"or needs the library versions it was written with.") from None


def _upgrade(legacy, path: Path):
    """The preprocessor a pickle held, in today's form. The tabular one kept a fitted scikit-learn
    ColumnTransformer; the others kept the same attributes then as now."""
    if isinstance(legacy, TabularPreprocessor) and "_transformer" in vars(legacy):
        return _from_column_transformer(legacy)
    if type(legacy) in KINDS.values():
        try:
            legacy.state()
        except (AttributeError, TypeError, ValueError) as error:
            raise DltrainError(f"{str(path)!r} holds a {type(legacy).__name__} of a form dltrain does not "
                               f"know ({type(error).__name__}: {error}).") from None
        return legacy
    raise DltrainError(f"{str(path)!r} holds a {type(legacy).__module__}.{type(legacy).__qualname__}, not "
                       f"dltrain's fitted preprocessing; nothing was converted from it.")


def _from_column_transformer(legacy) -> TabularPreprocessor:
    """What an older dltrain's TabularPreprocessor fitted: StandardScaler then a constant-0
    SimpleImputer (standardized) or a mean SimpleImputer on the numeric columns, and a
    OneHotEncoder on the others."""
    transformer = legacy._transformer
    selected = {name: [str(c) for c in columns] for name, _, columns in transformer.transformers_}
    numeric, categorical = selected.get("numeric", []), selected.get("categorical", [])
    fitted = transformer.named_transformers_
    mean, scale, empty = np.zeros(len(numeric)), np.ones(len(numeric)) if legacy.standardize else None, []
    if numeric and legacy.standardize:
        scaler = fitted["numeric"].steps[0][1]
        missing = np.isnan(scaler.mean_)
        empty = [c for c, m in zip(numeric, missing) if m]
        mean, scale = np.where(missing, 0.0, scaler.mean_), np.where(missing, 1.0, scaler.scale_)
    elif numeric:
        mean = fitted["numeric"].statistics_
    categories = {}
    if categorical:
        categories = dict(zip(categorical, ([str(v) for v in c] for c in fitted["categorical"].categories_)))
    return TabularPreprocessor(standardize=legacy.standardize).restore(
        [str(c) for c in legacy.columns], categories, mean, scale, empty)
