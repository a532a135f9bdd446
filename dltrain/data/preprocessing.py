"""A run's fitted preprocessing, saved in its folder beside the checkpoints and read back by
resume (and eval and predict), which apply it and never refit it."""

from __future__ import annotations

from pathlib import Path

from dltrain.errors import DltrainError
from dltrain.files import write_atomic

PREPROCESSOR = "preprocessor.pkl"


def save_preprocessing(folder: Path, preprocessor) -> None:
    import pickle

    write_atomic(Path(folder) / PREPROCESSOR,
                 lambda stream: pickle.dump(preprocessor, stream, protocol=pickle.HIGHEST_PROTOCOL))


def load_preprocessing(folder: Path):
    """The preprocessing saved in ``folder``, or one sentence when there is none."""
    import pickle

    path = Path(folder) / PREPROCESSOR
    if not path.is_file():
        raise DltrainError(f"No {PREPROCESSOR} in {str(folder)!r}; the run's saved preprocessing is "
                           f"needed to continue it (give the folder dltrain wrote).")
    with path.open("rb") as stream:
        return pickle.load(stream)
