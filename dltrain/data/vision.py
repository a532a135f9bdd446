"""Images: torchvision's MNIST, Fashion-MNIST and CIFAR-10 from a local folder, a user's own
image folder, and scikit-learn's 8x8 digits as images. All are held in memory as one tensor,
normalized per channel, with an optional view as sequences of rows (for recurrent models) and
optional random crop + horizontal flip applied to training batches on the device."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dltrain.data import register_dataset
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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImagePreprocessor:
    """Scales pixels to [0, 1] and normalizes each channel with ``mean`` and ``std`` (given, such
    as a dataset's published statistics, or measured on the training rows when None). With
    ``as_sequence`` an image (channels, height, width) becomes ``height`` steps of
    ``channels * width`` features. ``augment`` is the training-batch augmentation, or None."""

    def __init__(self, mean=None, std=None, *, as_sequence: bool = False, random_crop: int = 0,
                 horizontal_flip: bool = False, scale: float = 255.0):
        self.mean, self.std = mean, std
        self.as_sequence = as_sequence
        self.scale = scale
        self.random_crop = random_crop
        self.horizontal_flip = horizontal_flip
        self._shape: tuple[int, int, int] | None = None

    def _unit(self, features):
        import torch

        x = torch.as_tensor(features)
        return x.float() / self.scale

    def fit(self, features, target=None) -> "ImagePreprocessor":
        self._shape = tuple(features.shape[1:])
        if self.mean is None or self.std is None:
            per_channel = self._unit(features).transpose(0, 1).flatten(1)
            self.mean = tuple(per_channel.mean(dim=1).tolist())
            self.std = tuple(max(s, 1e-6) for s in per_channel.std(dim=1).tolist())
        return self

    def transform(self, features):
        import torch

        x = self._unit(features)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x - mean) / std
        if self.as_sequence:
            x = x.permute(0, 2, 1, 3).flatten(2).contiguous()
        return x

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
                "std": list(self.std), "as_sequence": self.as_sequence, "random_crop": self.random_crop,
                "horizontal_flip": self.horizontal_flip}, {}

    @classmethod
    def from_state(cls, state) -> "ImagePreprocessor":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader)."""
        shape = state.integers("shape", count=3, minimum=1)
        if shape[0] * shape[1] * shape[2] > MAX_IMAGE_VALUES:
            state.invalid("shape", f"[channels, height, width] of at most {MAX_IMAGE_VALUES} values", shape)
        channels = shape[0]
        preprocessor = cls(state.numbers("mean", count=channels), state.numbers("std", count=channels, positive=True),
                           as_sequence=state.boolean("as_sequence"),
                           random_crop=state.integer("random_crop", minimum=0, maximum=MAX_PADDING),
                           horizontal_flip=state.boolean("horizontal_flip"),
                           scale=state.number("scale", positive=True))
        preprocessor._shape = tuple(shape)
        return preprocessor

    @property
    def augment(self):
        if self.as_sequence or not (self.random_crop or self.horizontal_flip):
            return None
        return BatchAugment(self.random_crop, self.horizontal_flip)


class BatchAugment:
    """Random crop (after zero-padding by ``padding`` pixels, i.e. padding with the mean colour)
    and random horizontal flip, drawn per image, applied to a whole batch on its device."""

    def __init__(self, padding: int, horizontal_flip: bool):
        self.padding = padding
        self.horizontal_flip = horizontal_flip

    def __call__(self, x):
        import torch
        from torch.nn import functional as F

        batch, _, height, width = x.shape
        if self.padding:
            p = self.padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
            dx = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
            rows = (dy + torch.arange(height, device=x.device))[:, :, None]  # (batch, height, 1)
            cols = (dx + torch.arange(width, device=x.device))[:, None, :]  # (batch, 1, width)
            images = torch.arange(batch, device=x.device)[:, None, None]
            # Advanced indexing puts the indexed axes first: (batch, height, width, channels).
            x = padded.permute(0, 2, 3, 1)[images, rows, cols].permute(0, 3, 1, 2)
        if self.horizontal_flip:
            flip = torch.rand(batch, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous()


def _view_options(options: dict) -> dict:
    as_sequence = options.get("as_sequence", False)
    if not isinstance(as_sequence, bool):
        raise DltrainError(f"data.as_sequence must be true or false, got {as_sequence!r}.")
    random_crop = options.get("random_crop", 0)
    if isinstance(random_crop, bool) or not isinstance(random_crop, int) or not 0 <= random_crop <= MAX_PADDING:
        raise DltrainError(
            f"data.random_crop must be the padding in pixels of a random crop (0 for none, 4 for CIFAR, "
            f"at most {MAX_PADDING}), got {random_crop!r}."
        )
    horizontal_flip = options.get("horizontal_flip", False)
    if not isinstance(horizontal_flip, bool):
        raise DltrainError(f"data.horizontal_flip must be true or false, got {horizontal_flip!r}.")
    if as_sequence and (random_crop or horizontal_flip):
        raise DltrainError(
            "data.random_crop and data.horizontal_flip augment images, so they cannot be combined with "
            "data.as_sequence=true; set them to 0 and false."
        )
    return {"as_sequence": as_sequence, "random_crop": random_crop, "horizontal_flip": horizontal_flip}


def _kind(view: dict) -> str:
    return "sequence" if view["as_sequence"] else "image"


@register_dataset("digits_images", kind="image", as_sequence=True)
def load_digits_images(settings) -> Source:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0-16) as one-channel images."""
    import torch
    from sklearn.datasets import load_digits

    view = _view_options(settings.options)
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    return Source(
        features=images,
        target=np.asarray(bunch.target, dtype=np.int64),
        task="multiclass",
        class_names=tuple(str(n) for n in bunch.target_names),
        kind=_kind(view),
        make_preprocessor=lambda: ImagePreprocessor(scale=16.0, **view),
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
            return data.unsqueeze(1).contiguous()
        return data.permute(0, 3, 1, 2).contiguous()  # CIFAR: (N, H, W, C)

    def labels(dataset):
        return np.asarray(dataset.targets, dtype=np.int64)

    return Source(
        features=images(train),
        target=labels(train),
        task="multiclass",
        class_names=tuple(str(c) for c in train.classes),
        kind=_kind(view),
        test_features=images(test),
        test_target=labels(test),
        make_preprocessor=lambda: ImagePreprocessor(mean, std, **view),
    )


def read_images(files, height: int, width: int, channels: int):
    """Image files resized to height x width as a uint8 tensor (N, channels, height, width)."""
    import torch
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    pixels = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for index, file in enumerate(files):
        try:
            with warnings.catch_warnings():
                # Pillow only warns up to twice its pixel limit: a bomb is refused either way.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(file) as image:
                    resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DltrainError(f"The image {str(file)!r} has more than {Image.MAX_IMAGE_PIXELS:,} pixels, "
                               f"Pillow's limit against decompression bombs; shrink it (dltrain resizes "
                               f"every image to data.image_size anyway) or remove it.") from None
        except (UnidentifiedImageError, OSError) as error:
            raise DltrainError(f"Could not read the image {str(file)!r} ({type(error).__name__}); remove it or replace it with a valid image.") from None
        pixels[index] = np.asarray(resized, dtype=np.uint8).reshape(height, width, channels)
    return torch.as_tensor(pixels).permute(0, 3, 1, 2).contiguous()


@register_dataset("image_folder", kind="image", as_sequence=True)
def load_image_folder(settings) -> Source:
    """A user's images, one sub-folder per class (``root/cat/1.png``), resized to
    ``data.image_size`` and loaded once into memory; mean and std come from the training rows."""
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
    pixels = read_images(files, height, width, 1 if grayscale else 3)
    return Source(
        features=pixels,
        target=np.asarray(codes, dtype=np.int64),
        task="binary" if len(classes) == 2 else "multiclass",
        class_names=tuple(classes),
        kind=_kind(view),
        make_preprocessor=lambda: ImagePreprocessor(**view),
    )
