"""What a dataset is, as the model and trainer see it: DataSpec, Split, Source, Prepared."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Protocol

TASKS = ("regression", "binary", "multiclass")
# What a model reads (DataSpec.kind), as a sentence names it.
INPUT_KINDS = {
    "tabular": "tabular data (rows of features)",
    "image": "image data",
    "sequence": "sequence data",
    "tokens": "text (token) data",
}


@dataclass(frozen=True)
class DataSpec:
    """Shapes and meaning of the prepared data; models are sized from this, never by hand."""

    task: str  # regression | binary | multiclass
    input_shape: tuple[int, ...]  # (features,) for tabular; (channels, height, width) for images
    kind: str = "tabular"  # tabular | image | sequence | tokens
    num_classes: int = 0  # 0 for regression
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    vocab_size: int = 0
    # Regression targets are trained as (y - mean) / std, of log y for target_transform=log
    # (dltrain.data.target); metrics and predictions undo it.
    target_mean: float = 0.0
    target_std: float = 1.0
    target_transform: str = "none"

    @property
    def in_features(self) -> int:
        return prod(self.input_shape)


@dataclass
class Split:
    """One split of prepared tensors (x already preprocessed, y encoded)."""

    x: Any  # torch.Tensor, a tuple of tensors passed as model(*x) (e.g. tokens, lengths), or uint8 Pixels
    y: Any  # torch.Tensor: float (regression) or long class indices
    # Applied to each training batch on the device (data.augment); None for val/test.
    augment: Callable | None = None

    def __len__(self) -> int:
        return len(self.y)


class Preprocessor(Protocol):
    """Fitted on the training part only, then applied to every split. A run saves it as data
    (dltrain.data.preprocessing names each kind), so it exports and rebuilds its fitted state."""

    def fit(self, features: Any, target: Any) -> "Preprocessor": ...

    def transform(self, features: Any) -> Any: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def state(self) -> tuple[dict, dict]: ...  # (JSON-able fields, numpy arrays by name)

    @classmethod
    def from_state(cls, state: Any) -> "Preprocessor": ...  # state: a preprocessing.Fields reader


@dataclass
class Source:
    """A dataset as loaded, before any statistic is fitted: k-fold and the train/val split index
    into it, and each split fits its own preprocessor on its own training rows."""

    features: Any  # pandas DataFrame, numpy array or tensor, indexed by row
    target: Any  # numpy array: float for regression, int class index for classification
    task: str
    make_preprocessor: Callable[[], Preprocessor]
    kind: str = "tabular"
    class_names: tuple[str, ...] = ()
    test_features: Any = None
    test_target: Any = None
    # How a regression target is trained: none | standardize | log (data.target_transform,
    # set by load_source from the data's settings).
    target_transform: str = "none"
    notes: list[str] = field(default_factory=list)
    # Rows in time order (overlapping windows of a series): validation takes the last rows,
    # since a shuffled split would train on windows that overlap the validation ones.
    ordered: bool = False
    # One value per row, for group k-fold: rows sharing a value never straddle a fold boundary.
    groups: Any = None
    # How a data file was read (data.header, data.target, data.task as chosen: plain values),
    # saved with the run so that eval and predict read new data the same way.
    reading: dict = field(default_factory=dict)
    # Applied to each training batch on the device before normalization (data.augment on images).
    augment: Callable | None = None

    def __len__(self) -> int:
        return len(self.target)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.task != "regression" else 0


@dataclass
class Prepared:
    """Everything the trainer consumes: spec plus train / val / test splits."""

    spec: DataSpec
    train: Split
    val: Split | None
    test: Split | None
    preprocessor: Any
    target: Any = None  # the fitted TargetTransform of a regression target (dltrain.data.target)
    reading: dict = field(default_factory=dict)  # Source.reading: how the data file was read
