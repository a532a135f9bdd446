"""The data registry: ``load_source(settings)`` loads a dataset by name, ``prepare`` fits its
preprocessing on the training rows and returns tensors plus the DataSpec models are sized from."""

from __future__ import annotations

from importlib import import_module

from dltrain.data.spec import DataSpec, Prepared, Source, Split

# name -> "module:function"; each loader takes the data settings and returns a Source.
LOADERS = {
    "linear_toy": "dltrain.data.synthetic:load_linear_toy",
    "synthetic_linear": "dltrain.data.synthetic:load_synthetic_linear",
    "digits": "dltrain.data.bundled:load_bundled",
    "iris": "dltrain.data.bundled:load_bundled",
    "wine": "dltrain.data.bundled:load_bundled",
    "breast_cancer": "dltrain.data.bundled:load_bundled",
    "diabetes": "dltrain.data.bundled:load_bundled",
    "csv": "dltrain.data.tabular:load_csv",
    "digits_images": "dltrain.data.vision:load_digits_images",
    "mnist": "dltrain.data.vision:load_torchvision",
    "fashion_mnist": "dltrain.data.vision:load_torchvision",
    "cifar10": "dltrain.data.vision:load_torchvision",
    "image_folder": "dltrain.data.vision:load_image_folder",
    "text_csv": "dltrain.data.text:load_text_csv",
    "time_series": "dltrain.data.sequence:load_time_series",
}


def load_source(settings) -> Source:
    """Load the dataset named by ``settings.name`` (a DataSettings from dltrain.config)."""
    module_name, function_name = LOADERS[settings.name].split(":")
    loader = getattr(import_module(module_name), function_name)
    return loader(settings)


def prepare(source: Source, train_index, val_index=None) -> Prepared:
    """Fit preprocessing on the rows in ``train_index`` only and turn every split into tensors."""
    import numpy as np
    import torch

    from dltrain.data.split import take

    train_index = np.asarray(train_index)
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


__all__ = ["DataSpec", "Prepared", "Source", "Split", "LOADERS", "load_source", "prepare"]
