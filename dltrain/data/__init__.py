"""The data registry: ``load_source(settings)`` loads a dataset by name, ``prepare`` fits its
preprocessing on the training rows and returns tensors plus the DataSpec models are sized from.

Each module of this package registers its loaders with ``@register_dataset(name, kind=...)``;
the modules are imported on the first lookup."""

from __future__ import annotations

from dltrain.data.spec import INPUT_KINDS, DataSpec, Prepared, Source, Split
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
    """Load the dataset named by ``settings.name`` (a DataSettings from dltrain.config)."""
    return DATASETS[settings.name](settings)


def prepare(source: Source, train_index, val_index=None, *, preprocessor=None) -> Prepared:
    """Fit preprocessing on the rows in ``train_index`` only and turn every split into tensors;
    ``preprocessor``: one fitted already (a resumed run's own), applied as it is."""
    import numpy as np
    import torch

    from dltrain.data.split import take

    train_index = np.asarray(train_index)
    if preprocessor is None:
        preprocessor = source.make_preprocessor()
        preprocessor.fit(take(source.features, train_index), source.target[train_index])

    target_mean, target_std = 0.0, 1.0
    if source.task == "regression" and source.standardize_target:
        train_target = np.asarray(source.target[train_index], dtype=np.float64)
        target_mean = float(train_target.mean())
        target_std = float(train_target.std()) or 1.0

    def split(features, target) -> Split:
        x = preprocessor.transform(features)
        if source.task == "regression":
            y = torch.as_tensor((np.asarray(target, dtype=np.float64) - target_mean) / target_std,
                                dtype=torch.float32)
        else:
            y = torch.as_tensor(np.asarray(target), dtype=torch.long)
        return Split(x, y)

    train = split(take(source.features, train_index), source.target[train_index])
    # Training-batch augmentation (random crops, flips), when the preprocessor offers one.
    train.augment = getattr(preprocessor, "augment", None)
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
        target_mean=target_mean,
        target_std=target_std,
    )
    return Prepared(spec=spec, train=train, val=val, test=test, preprocessor=preprocessor)


__all__ = ["DATASETS", "DataSpec", "Prepared", "Source", "Split", "load_source", "prepare",
           "register_dataset"]
