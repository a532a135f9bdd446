"""``data.augment``: training-batch augmentation as configuration, a list of torchvision
``transforms.v2`` operations with their options, such as ``[{name: RandomCrop, padding: 4},
RandomHorizontalFlip, {name: ColorJitter, brightness: 0.2}]``. Only the operations of ALLOWED can
be built, so a saved config cannot name any other class. Each entry is checked when the data
loads (name, option names, values, and that it keeps the image's shape), with one sentence for
the first wrong one. The operations run on the training device on float batches in [0, 1],
before normalisation, each image with its own random draws."""

from __future__ import annotations

import enum
import inspect

from dltrain.errors import DltrainError

ALLOWED = (
    "RandomResizedCrop", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
    "RandomAffine", "RandomPerspective", "ColorJitter", "RandomGrayscale", "GaussianBlur", "RandomInvert",
    "RandomPosterize", "RandomSolarize", "RandomAdjustSharpness", "RandomAutocontrast", "RandomEqualize",
    "RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix", "RandomErasing",
)
# Operations whose output size is their ``size`` option: it defaults to the image's own size.
SIZED = ("RandomResizedCrop", "RandomCrop")


def _plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def entries(raw) -> list[tuple[str, dict]]:
    """``data.augment`` as (operation name, options) pairs, its form checked (not yet its values)."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise DltrainError(f"data.augment must be a list of torchvision transforms.v2 operations such as "
                           f"[RandomHorizontalFlip,{{name:RandomCrop,padding:4}}], got {raw!r}.")
    result = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            name, options = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, options = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        else:
            raise DltrainError(f"data.augment[{i}] must be an operation's name or {{name: OPERATION, option: "
                               f"value, ...}}, got {entry!r}.")
        if name not in ALLOWED:
            raise DltrainError(f"data.augment[{i}] names the unknown operation {name!r}; valid operations are: "
                               f"{', '.join(ALLOWED)}.")
        for key, value in options.items():
            if not isinstance(key, str) or not _plain(value):
                raise DltrainError(f"data.augment[{i}] ({name}) option {key!r} must be a number, a string, true, "
                                   f"false, null or a list of them, got {value!r}.")
        result.append((name, options))
    return result


def build(raw, image_shape: tuple[int, int, int]) -> "Augment | None":
    """The operations ``raw`` (data.augment) names, for images of ``image_shape``
    (channels, height, width); None for none. One sentence for the first wrong entry."""
    chosen = entries(raw)
    if not chosen:
        return None
    import torch
    from torchvision.transforms import v2

    operations = []
    for i, (name, options) in enumerate(chosen):
        cls = getattr(v2, name)
        parameters = inspect.signature(cls).parameters
        unknown = [key for key in options if key not in parameters]
        if unknown:
            raise DltrainError(f"data.augment[{i}] ({name}) has no option {unknown[0]!r}; its options are: "
                               f"{', '.join(parameters)}.")
        options = {key: _enum(i, name, key, value, parameters[key].default) for key, value in options.items()}
        if name in SIZED and "size" not in options:
            options["size"] = list(image_shape[1:])
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        try:
            operation = cls(**options)
            sample = operation(torch.rand(*image_shape))
        except (TypeError, ValueError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
            raise DltrainError(f"data.augment[{i}] {name}({shown}) is refused by torchvision: {reason}.") from None
        if tuple(sample.shape) != tuple(image_shape):
            raise DltrainError(f"data.augment[{i}] {name}({shown}) turns {tuple(image_shape)} images into "
                               f"{tuple(sample.shape)}; the model reads {tuple(image_shape)}, so keep the size "
                               f"(size={list(image_shape[1:])}).")
        operations.append((name, operation))
    return Augment(operations)


def _enum(i: int, name: str, key: str, value, default):
    """A string given for an enum option (interpolation=bicubic, policy=cifar10) as the enum."""
    if not isinstance(default, enum.Enum) or not isinstance(value, str):
        return value
    members = {member.name.lower(): member for member in type(default)}
    if value.lower() not in members:
        raise DltrainError(f"data.augment[{i}] ({name}) option {key}={value!r} is not one of: "
                           f"{', '.join(members)}.")
    return members[value.lower()]


class Augment:
    """``operations`` ((name, transforms.v2 operation) pairs) applied in turn to a float batch
    (N, C, H, W) in [0, 1] on its device. A v2 operation draws one set of random parameters per
    call, so it is called image by image; the flips and a plain random crop, the usual ones, are
    drawn per image for the whole batch at once."""

    def __init__(self, operations):
        self.operations = operations

    def __call__(self, x):
        for name, operation in self.operations:
            batched = _batched(name, operation)
            if batched is not None:
                x = batched(x)
            else:
                import torch

                x = torch.stack([operation(image) for image in x])
        return x.contiguous()


def _batched(name: str, operation):
    """A batch-at-once version of ``operation`` with per-image draws, when there is one."""
    if name in ("RandomHorizontalFlip", "RandomVerticalFlip"):
        return partial_flip(operation.p, 3 if name == "RandomHorizontalFlip" else 2)
    padding = (operation.padding or [0]) if name == "RandomCrop" else None
    if (name == "RandomCrop" and not operation.pad_if_needed and operation.padding_mode == "constant"
            and len(set(padding)) == 1 and _zero_fill(operation.fill)):
        # build() checked that the crop keeps the image's size
        return lambda x: random_crop(x, padding[0])
    return None


def _zero_fill(fill) -> bool:
    values = fill.values() if isinstance(fill, dict) else [fill]
    return all(v is None or v == 0 or (isinstance(v, (list, tuple)) and not any(v)) for v in values)


def partial_flip(p: float, dim: int):
    def flip(x):
        import torch

        chosen = torch.rand(len(x), device=x.device) < p
        return torch.where(chosen[:, None, None, None], x.flip(dim), x)

    return flip


def random_crop(x, padding: int):
    """Each image of ``x`` cropped at its own random place after zero-padding by ``padding``."""
    import torch
    from torch.nn import functional as F

    if not padding:
        return x
    batch, _, height, width = x.shape
    p = padding
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
    dx = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
    rows = (dy + torch.arange(height, device=x.device))[:, :, None]  # (batch, height, 1)
    cols = (dx + torch.arange(width, device=x.device))[:, None, :]  # (batch, 1, width)
    images = torch.arange(batch, device=x.device)[:, None, None]
    # Advanced indexing puts the indexed axes first: (batch, height, width, channels).
    return padded.permute(0, 2, 3, 1)[images, rows, cols].permute(0, 3, 1, 2)
