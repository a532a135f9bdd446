"""The data registry: ``load_source(settings)`` loads a dataset by name, ``prepare`` fits its
preprocessing on the training rows and returns tensors plus the DataSpec models are sized from.

Each module of this package registers its loaders with ``@register_dataset(name, kind=...)``;
the modules are imported on the first lookup."""

from __future__ import annotations

from dltrain.data.spec import INPUT_KINDS, DataSpec, Prepared, Source, Split
from dltrain.data.target import TARGET_TRANSFORMS, TargetTransform
from dltrain.errors import DltrainError
from dltrain.registry import REQUIRED, Registry

# name -> loader(settings) -> Source
DATASETS = Registry("data", {
    "kind": REQUIRED,      # the input kind it yields: tabular, image, sequence or tokens
    "as_sequence": False,  # whether data.as_sequence=true reads it as sequences (of image rows)
}, package=__name__)


def register_dataset(*names: str, kind: str, as_sequence: bool = False):
    """Decorator: register a loader ``load(settings) -> Source`` under each of ``names``."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"dataset {names} declares the unknown input kind {kind!r}; "
                         f"input kinds are {tuple(INPUT_KINDS)}")
    return DATASETS.register(*names, kind=kind, as_sequence=bool(as_sequence))


def load_source(settings) -> Source:
    """Load the dataset named by ``settings.name`` (a DataSettings from dltrain.config), with
    the target transform its settings ask for when the target is a regression one."""
    source = DATASETS[settings.name](settings)
    transform = settings.options.get("target_transform", "none")  # the key regression options have
    if transform not in TARGET_TRANSFORMS:
        raise DltrainError(f"data.target_transform must be one of {', '.join(TARGET_TRANSFORMS)}; "
                           f"got {transform!r}.")
    if source.task == "regression":
        source.target_transform = transform
    return source


def prepare(source: Source, train_index, val_index=None, *, preprocessor=None, target=None) -> Prepared:
    """Fit preprocessing (of the features, and of a regression target) on the rows in
    ``train_index`` only and turn every split into tensors; with ``preprocessor`` and ``target``
    (already fitted, such as a run's saved ones) apply them instead of fitting."""
    import numpy as np
    import torch

    from dltrain.data.split import take

    train_index = np.asarray(train_index)
    if preprocessor is None:
        preprocessor = source.make_preprocessor()
        preprocessor.fit(take(source.features, train_index), source.target[train_index])
    elif type(preprocessor) is not type(source.make_preprocessor()):
        raise DltrainError(f"The saved preprocessing is a {type(preprocessor).__name__}, but this data "
                           f"needs a {type(source.make_preprocessor()).__name__}; use the data the run "
                           f"was trained on.")

    if source.task != "regression":
        target = None
    elif target is None:
        target = TargetTransform.fit(source.target_transform, source.target[train_index])

    def split(features, values) -> Split:
        x = preprocessor.transform(features)
        if target is not None:
            y = torch.as_tensor(target.encode(values), dtype=torch.float32)
        else:
            y = torch.as_tensor(np.asarray(values), dtype=torch.long)
        return Split(x, y)

    train = split(take(source.features, train_index), source.target[train_index])
    train.augment = source.augment  # data.augment, on training batches only
    val = None
    if val_index is not None and len(val_index):
        val_index = np.asarray(val_index)
        val = split(take(source.features, val_index), source.target[val_index])
    test = None
    if source.test_features is not None:
        test = split(source.test_features, source.test_target)
    spec = DataSpec(
        task=source.task,
        input_shape=tuple(preprocessor.input_shape),
        kind=source.kind,
        num_classes=source.num_classes,
        class_names=tuple(source.class_names),
        feature_names=tuple(getattr(preprocessor, "feature_names", ())),
        vocab_size=int(getattr(preprocessor, "vocab_size", 0)),
        **({"target_mean": target.mean, "target_std": target.std, "target_transform": target.kind}
           if target is not None else {}),
    )
    return Prepared(spec=spec, train=train, val=val, test=test, preprocessor=preprocessor, target=target,
                    reading=dict(source.reading))


__all__ = ["DATASETS", "DataSpec", "Prepared", "Source", "Split", "load_source", "prepare",
           "register_dataset"]
