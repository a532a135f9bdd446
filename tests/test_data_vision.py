"""Image data: digits as 8x8 images, the torchvision sets from a local root (MNIST when
../shared/data is present; a clear error when the files are missing), image folders, the
sequence-of-rows view, and augmentation on training batches only."""

import numpy as np
import pytest
import torch

from conftest import MNIST_ROOT, read_metrics, run_folders
from dltrain.config import DataSettings
from dltrain.data import load_source, prepare
from dltrain.data.split import train_val_indices
from dltrain.data.augment import partial_flip, random_crop
from dltrain.data.pixels import Pixels
from dltrain.errors import DltrainError
from dltrain.train.staging import to_device

CPU = torch.device("cpu")


def settings(name, **options):
    return DataSettings(name=name, batch_size=32, val_fraction=0.2, shuffle=True, options=options)


def prepared(name, **options):
    source = load_source(settings(name, **options))
    train, val = train_val_indices(source, 0.2, seed=0)
    return source, prepare(source, train, val)


def test_digits_images_are_normalized_one_channel_8x8_images():
    source, data = prepared("digits_images")
    assert data.spec.kind == "image" and data.spec.input_shape == (1, 8, 8)
    assert data.spec.num_classes == 10 and data.spec.class_names[:3] == ("0", "1", "2")
    # The split stays uint8 pixels; a batch becomes floats where it is used.
    assert isinstance(data.train.x, Pixels) and data.train.x.uint8().dtype == torch.uint8
    x = to_device(data.train.x, CPU)
    assert x.shape == (len(data.train), 1, 8, 8) and x.dtype == torch.float32
    # Mean and std measured on the training rows only.
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    assert data.train.augment is None


def test_sequence_view_reads_rows_as_steps():
    _, images = prepared("digits_images")
    _, rows = prepared("digits_images", as_sequence=True)
    assert rows.spec.kind == "sequence" and rows.spec.input_shape == (8, 8)
    assert torch.equal(to_device(rows.train.x, CPU), to_device(images.train.x, CPU)[:, 0])


def test_augmentation_is_given_to_the_training_split_only():
    _, data = prepared("digits_images", augment=[{"name": "RandomCrop", "padding": 2}, "RandomHorizontalFlip"])
    assert [name for name, _ in data.train.augment.operations] == ["RandomCrop", "RandomHorizontalFlip"]
    assert data.val.augment is None
    with pytest.raises(DltrainError, match="cannot be combined with data.as_sequence=true"):
        load_source(settings("digits_images", as_sequence=True, augment=["RandomHorizontalFlip"]))


def test_random_crop_shifts_and_flip_mirrors_each_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    flipped = partial_flip(0.5, 3)(x.repeat(32, 1, 1, 1))
    assert flipped.shape == (64, 3, 6, 6)
    mirrored = [bool(torch.equal(image, x[i % 2].flip(2))) for i, image in enumerate(flipped)]
    unchanged = [bool(torch.equal(image, x[i % 2])) for i, image in enumerate(flipped)]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and 10 < sum(mirrored) < 54
    cropped = random_crop(x.repeat(32, 1, 1, 1), 2)
    assert cropped.shape == (64, 3, 6, 6)
    for i, image in enumerate(cropped):
        padded = torch.nn.functional.pad(x[i % 2], (2, 2, 2, 2))
        # Each crop is some 6x6 window of the zero-padded image, the same window on every channel.
        windows = [padded[:, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(image, w) for w in windows)
    assert not all(torch.equal(image, x[i % 2]) for i, image in enumerate(cropped))


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py")])
def test_missing_torchvision_files_say_where_to_put_them(cli, tmp_path, name, folder):
    result = cli("fit", "model=cnn", f"data={name}", f"data.root={tmp_path / 'nothing'}")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"data={name} found no dataset files under data.root=" in message
    assert folder in message and "data.download=true" in message


@pytest.mark.skipif(not MNIST_ROOT.is_dir(), reason="../shared/data/mnist-subset is not present")
def test_mnist_subset_loads_offline_with_its_test_split():
    source = load_source(settings("mnist", root=str(MNIST_ROOT)))
    assert source.features.shape == (20000, 1, 28, 28) and source.features.uint8().dtype == torch.uint8
    assert len(source.test_target) == 4345 and source.kind == "image"
    data = prepare(source, np.arange(0, 20000, 10), np.arange(1, 20000, 10))
    assert data.spec.input_shape == (1, 28, 28) and data.spec.num_classes == 10
    assert data.test.x.shape == (4345, 1, 28, 28)
    # Normalized with MNIST's published mean and std.
    x = to_device(data.train.x, CPU)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    rows = load_source(settings("mnist", root=str(MNIST_ROOT), as_sequence=True))
    assert rows.kind == "sequence"
    assert prepare(rows, np.arange(100), None).spec.input_shape == (28, 28)


def _write_images(root, classes=("dark", "light"), count=12, sizes=((20, 14), (9, 9), (31, 40))):
    from PIL import Image

    rng = np.random.default_rng(0)
    for level, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(count):
            width, height = sizes[i % len(sizes)]
            base = 40 + 170 * level
            pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_resizes_every_image_and_names_classes_by_folder(tmp_path):
    _write_images(tmp_path / "pictures", classes=("cat", "dog", "owl"))
    (tmp_path / "pictures" / "dog" / "notes.txt").write_text("not an image")
    source, data = prepared("image_folder", path=str(tmp_path / "pictures"), image_size=[12, 16])
    assert source.class_names == ("cat", "dog", "owl") and source.task == "multiclass"
    assert len(source) == 36 and data.spec.input_shape == (3, 12, 16)
    grey = load_source(settings("image_folder", path=str(tmp_path / "pictures"), image_size=10, grayscale=True))
    assert grey.features.shape == (36, 1, 10, 10)


@pytest.mark.slow
def test_a_cnn_learns_an_image_folder_from_the_cli(cli, tmp_path):
    _write_images(tmp_path / "pictures", count=20)
    result = cli("fit", "model=cnn", "data=image_folder", f"data.path={tmp_path / 'pictures'}",
                 "data.image_size=16", "trainer.epochs=5", "trainer.progress=false")
    assert result.exit_code == 0, result.output
    metrics = read_metrics(run_folders()[0])
    assert metrics["task"] == "binary" and metrics["best"]["val_accuracy"] >= 0.9


@pytest.mark.parametrize("options, message", [
    ({}, "data=image_folder needs a folder"),
    ({"path": "no/such/folder"}, "The image folder 'no/such/folder' does not exist"),
    ({"path": ".", "image_size": 0}, "data.image_size must be a positive integer or"),
    ({"path": "."}, "it needs two or more sub-folders"),
])
def test_image_folder_errors_are_one_sentence(options, message):
    with pytest.raises(DltrainError, match=message):
        load_source(settings("image_folder", **options))


def test_an_image_folder_with_an_empty_class_or_a_file_for_a_folder_is_refused(tmp_path):
    _write_images(tmp_path / "pictures", classes=("cat", "dog"), count=2)
    (tmp_path / "pictures" / "owl").mkdir()
    with pytest.raises(DltrainError, match=f"The class folder '{tmp_path / 'pictures' / 'owl'}' holds no "
                                           f"images .*; add images to it or remove it."):
        load_source(settings("image_folder", path=str(tmp_path / "pictures")))
    (tmp_path / "pictures.zip").write_bytes(b"PK")
    with pytest.raises(DltrainError, match="data.path '.*pictures.zip' is a file; data=image_folder reads a folder"):
        load_source(settings("image_folder", path=str(tmp_path / "pictures.zip")))


@pytest.mark.parametrize("side", [100, 40], ids=["over twice the limit", "over the limit"])
def test_a_decompression_bomb_is_one_sentence(tmp_path, monkeypatch, side):
    from PIL import Image

    from dltrain.data.vision import read_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns above it, refuses above twice it
    Image.new("L", (side, side)).save(tmp_path / "bomb.png")
    with pytest.raises(DltrainError, match="has more than 1,000 pixels, Pillow's limit against decompression bombs"):
        read_images([tmp_path / "bomb.png"], 8, 8, 1)


def test_a_failed_download_is_one_sentence(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DltrainError, match=r"data=mnist could not be downloaded to 'data' \(urlopen error "
                                           r"\[Errno -2\] Name or service not known\); copy the files there"):
        load_source(settings("mnist", download=True))
