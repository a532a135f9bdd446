"""Images: torchvision's MNIST, Fashion-MNIST and CIFAR-10 from a local folder, a user's own
image folder (decoded once into a cache, dltrain/data/image_cache.py), and scikit-learn's 8x8
digits as images. Pixels stay uint8 (dltrain/data/pixels.py) until a batch is on the training
device, where it is augmented (data.augment, dltrain/data/augment.py) and normalized per channel;
with ``as_sequence`` each image is read as a sequence of rows (for recurrent models)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dltrain.data import augment as augmentation
from dltrain.data import register_dataset
from dltrain.data.image_cache import decode_into, open_or_build
from dltrain.data.pixels import Pixels
from dltrain.data.spec import Source
from dltrain.errors import DltrainError

# name -> (torchvision class, per-channel mean, per-channel std of the training set, expected files)
TORCHVISION = {
    "mnist": ("MNIST", (0.1307,), (0.3081,), "MNIST/raw/train-images-idx3-ubyte and the other 3 idx files"),
    "fashion_mnist": ("FashionMNIST", (0.2860,), (0.3530,),
                      "FashionMNIST/raw/train-images-idx3-ubyte and the other 3 idx files"),
    "cifar10": ("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"),
}

# Saved preprocessing naming a bigger image (or padding) is refused: one such image would take
# 64 MiB before it is even a float.
MAX_IMAGE_VALUES = 1 << 26
MAX_PADDING = 4096
MAX_WORKERS = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _pixels(features) -> Pixels:
    return features if isinstance(features, Pixels) else Pixels.of(features)


class ImagePreprocessor:
    """Normalizes each channel with ``mean`` and ``std`` (given, such as a dataset's published
    statistics, or measured on the training rows when None) of the pixels over ``scale``. With
    ``as_sequence`` an image (channels, height, width) becomes ``height`` steps of
    ``channels * width`` features. ``transform`` makes no float copy: it gives Pixels, which
    normalize each batch on its device."""

    def __init__(self, mean=None, std=None, *, as_sequence: bool = False, scale: float = 255.0):
        self.mean, self.std = mean, std
        self.as_sequence = as_sequence
        self.scale = scale
        self._shape: tuple[int, int, int] | None = None

    def fit(self, features, target=None) -> "ImagePreprocessor":
        features = _pixels(features)
        self._shape = tuple(features.shape[1:])
        if self.mean is None or self.std is None:
            self.mean, self.std = features.channel_statistics(self.scale)
        return self

    def transform(self, features) -> Pixels:
        return _pixels(features).normalized(self.mean, self.std, self.scale, self.as_sequence)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the training images, whatever view the model reads."""
        return self._shape

    @property
    def input_shape(self) -> tuple[int, ...]:
        channels, height, width = self._shape
        return (height, channels * width) if self.as_sequence else (channels, height, width)

    def state(self) -> tuple[dict, dict]:
        """The fitted state as data: (JSON-able image shape, per-channel mean and std, options; no arrays)."""
        return {"shape": list(self._shape), "scale": self.scale, "mean": list(self.mean),
                "std": list(self.std), "as_sequence": self.as_sequence}, {}

    @classmethod
    def from_state(cls, state) -> "ImagePreprocessor":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader)."""
        shape = state.integers("shape", count=3, minimum=1)
        if shape[0] * shape[1] * shape[2] > MAX_IMAGE_VALUES:
            state.invalid("shape", f"[channels, height, width] of at most {MAX_IMAGE_VALUES} values", shape)
        channels = shape[0]
        preprocessor = cls(state.numbers("mean", count=channels), state.numbers("std", count=channels, positive=True),
                           as_sequence=state.boolean("as_sequence"), scale=state.number("scale", positive=True))
        # An older dltrain saved its training augmentation here; data.augment holds it now.
        if state.has("random_crop"):
            state.integer("random_crop", minimum=0, maximum=MAX_PADDING)
        if state.has("horizontal_flip"):
            state.boolean("horizontal_flip")
        preprocessor._shape = tuple(shape)
        return preprocessor


def _view_options(options: dict) -> dict:
    as_sequence = options.get("as_sequence", False)
    if not isinstance(as_sequence, bool):
        raise DltrainError(f"data.as_sequence must be true or false, got {as_sequence!r}.")
    augment = augmentation.entries(options.get("augment"))
    if as_sequence and augment:
        raise DltrainError(
            "data.augment augments images, so it cannot be combined with data.as_sequence=true; set "
            "data.augment=[] there."
        )
    return {"as_sequence": as_sequence}


def _kind(view: dict) -> str:
    return "sequence" if view["as_sequence"] else "image"


def _augment(options: dict, image_shape):
    return augmentation.build(options.get("augment"), tuple(image_shape))


@register_dataset("digits_images", kind="image", as_sequence=True)
def load_digits_images(settings) -> Source:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0-16) as one-channel images."""
    from sklearn.datasets import load_digits

    view = _view_options(settings.options)
    bunch = load_digits()
    images = np.ascontiguousarray(bunch.images.astype(np.uint8)[:, None])  # grey levels 0-16
    return Source(
        features=Pixels.of(images),
        target=np.asarray(bunch.target, dtype=np.int64),
        task="multiclass",
        class_names=tuple(str(n) for n in bunch.target_names),
        kind=_kind(view),
        make_preprocessor=lambda: ImagePreprocessor(scale=16.0, **view),
        augment=_augment(settings.options, images.shape[1:]),
    )


@register_dataset("mnist", "fashion_mnist", "cifar10", kind="image", as_sequence=True)
def load_torchvision(settings) -> Source:
    """MNIST, Fashion-MNIST or CIFAR-10 from ``data.root`` (torchvision's folder layout); the
    official test set becomes the test split."""
    import torch
    import torchvision

    options = settings.options
    class_name, mean, std, files = TORCHVISION[settings.name]
    root = Path(str(options.get("root") or "data")).expanduser()
    download = options.get("download", False)
    if not isinstance(download, bool):
        raise DltrainError(f"data.download must be true or false, got {download!r}.")
    view = _view_options(options)
    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=download)
    except (RuntimeError, OSError) as error:
        text = str(error).strip()
        if isinstance(error, RuntimeError) and ("not found" in text.lower() or "corrupted" in text.lower()):
            raise DltrainError(
                f"data={settings.name} found no dataset files under data.root={str(root)!r}: put "
                f"torchvision's layout there ({files}), point data.root at that folder, or set "
                f"data.download=true to download it."
            ) from None
        if isinstance(error, OSError) or "download" in text.lower():  # no internet, a proxy, a full disk
            reason = (text.splitlines() or [type(error).__name__])[-1].strip("<> ")
            raise DltrainError(
                f"data={settings.name} could not be downloaded to {str(root)!r} ({reason}); copy the "
                f"files there in torchvision's layout ({files}) and keep data.download=false."
            ) from None
        raise

    def images(dataset):
        data = torch.as_tensor(np.asarray(dataset.data))
        if data.dim() == 3:  # MNIST-like: (N, H, W) grey
            return Pixels.of(data.unsqueeze(1).contiguous())
        return Pixels.of(data.permute(0, 3, 1, 2).contiguous())  # CIFAR: (N, H, W, C)

    def labels(dataset):
        return np.asarray(dataset.targets, dtype=np.int64)

    features = images(train)
    return Source(
        features=features,
        target=labels(train),
        task="multiclass",
        class_names=tuple(str(c) for c in train.classes),
        kind=_kind(view),
        test_features=images(test),
        test_target=labels(test),
        make_preprocessor=lambda: ImagePreprocessor(mean, std, **view),
        augment=_augment(options, features.shape[1:]),
    )


def read_images(files, height: int, width: int, channels: int, workers: int = 1):
    """Image files resized to height x width as a uint8 tensor (N, channels, height, width)."""
    import torch

    pixels = np.empty((len(files), channels, height, width), dtype=np.uint8)
    decode_into(pixels, files, height, width, channels, workers)
    return torch.from_numpy(pixels)


def _workers(options: dict) -> int:
    workers = options.get("workers", "auto")
    if workers in (None, "auto"):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise DltrainError(f"data.workers must be auto (one per core) or a number of decoding processes from 1 "
                           f"to {MAX_WORKERS}, got {workers!r}.")
    return workers


def _memory_max_mb(options: dict) -> float:
    limit = options.get("memory_max_mb", 4096)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise DltrainError(f"data.memory_max_mb must be a positive number of MiB (the decoded images up to it "
                           f"are memory-mapped, larger ones read batch by batch), got {limit!r}.")
    return float(limit)


def _cache_dir(options: dict) -> str | None:
    folder = options.get("cache_dir", "outputs/.cache")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise DltrainError(f"data.cache_dir must be a folder for the decoded images, or null to decode them "
                           f"into memory on every run, got {folder!r}.")
    return folder


@register_dataset("image_folder", kind="image", as_sequence=True)
def load_image_folder(settings) -> Source:
    """A user's images, one sub-folder per class (``root/cat/1.png``), resized to
    ``data.image_size``, decoded once into ``data.cache_dir`` (image_cache.py); mean and std come
    from the training rows."""
    options = settings.options
    path = options.get("path")
    if not path or path == "???":
        raise DltrainError("data=image_folder needs a folder: set data.path=FOLDER with one sub-folder of images per class.")
    folder = Path(str(path)).expanduser()
    if folder.is_file():
        raise DltrainError(f"data.path {str(folder)!r} is a file; data=image_folder reads a folder with one "
                           f"sub-folder of images per class.")
    if not folder.is_dir():
        raise DltrainError(f"The image folder {str(folder)!r} does not exist; set data.path to a folder with one sub-folder per class.")
    size = options.get("image_size", 32)
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise DltrainError(f"data.image_size must be a positive integer or [height, width], got {options.get('image_size')!r}.")
    height, width = size
    grayscale = options.get("grayscale", False)
    if not isinstance(grayscale, bool):
        raise DltrainError(f"data.grayscale must be true or false, got {grayscale!r}.")
    view = _view_options(options)
    workers, memory_max_mb, cache_dir = _workers(options), _memory_max_mb(options), _cache_dir(options)

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, codes = [], []
    for code, name in enumerate(classes):
        for file in sorted((folder / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append(file)
                codes.append(code)
    if len(classes) < 2 or not files:
        raise DltrainError(
            f"The image folder {str(folder)!r} has {len(classes)} class sub-folder(s) and {len(files)} "
            f"images; it needs two or more sub-folders (one per class) holding "
            f"{', '.join(IMAGE_SUFFIXES)} files."
        )
    empty = [name for code, name in enumerate(classes) if code not in set(codes)]
    if empty:  # a class without examples: an output the model could never learn
        raise DltrainError(f"The class folder {str(folder / empty[0])!r} holds no images "
                           f"({', '.join(IMAGE_SUFFIXES)}); add images to it or remove it.")
    channels = 1 if grayscale else 3
    augment = _augment(options, (channels, height, width))  # refused before a long decode, not after
    pixels = open_or_build(folder, files, codes, classes, height, width, channels, cache_dir=cache_dir,
                           workers=workers, memory_max_mb=memory_max_mb)
    return Source(
        features=pixels,
        target=np.asarray(codes, dtype=np.int64),
        task="binary" if len(classes) == 2 else "multiclass",
        class_names=tuple(classes),
        kind=_kind(view),
        make_preprocessor=lambda: ImagePreprocessor(**view),
        augment=augment,
    )
