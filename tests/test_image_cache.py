"""Image folders decoded once into a cache (dltrain/data/image_cache.py), kept as uint8 Pixels
until the batch (dltrain/data/pixels.py), streamed from the cache file when they do not fit
(dltrain/train/staging.py), and data.augment checked entry by entry (dltrain/data/augment.py)."""

import json

import numpy as np
import pytest
import torch

from conftest import read_metrics, run_folders
from dltrain.config import DataSettings, upgrade_saved
from dltrain.data import augment, image_cache, load_source, prepare
from dltrain.data.pixels import ArrayStore, FileStore
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.train.staging import Staged

CPU = torch.device("cpu")


def write_folder(root, count=12):
    """Two classes of ``count`` small PNG and JPEG images each, of varied sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for level, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(40 + 170 * level + rng.normal(0, 30, (9 + i % 4, 11, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def folder_settings(path, **options):
    return DataSettings(name="image_folder", batch_size=8, val_fraction=0.25, shuffle=True,
                        options={"path": str(path), "image_size": 8, **options})


def cache_files(root="outputs/.cache"):
    from pathlib import Path

    return sorted(p.name for p in Path(root).glob("images-*"))


def batches(source, seed=0):
    """Three training batches of a prepared split, as the engine stages them on the CPU."""
    train, val = train_val_indices(source, 0.25, seed)
    data = prepare(source, train, val)
    staged = Staged(data.train.x, data.train.y, CPU, 2**30)
    order = torch.randperm(len(staged), generator=torch.Generator().manual_seed(seed))
    return [staged.batch(order[i:i + 6]) for i in range(0, 18, 6)]


def test_cached_and_uncached_folders_give_identical_batches(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "pictures")
    monkeypatch.setattr(image_cache, "POOL_MIN_FILES", 0)  # 24 files: decoded by a pool of 2 all the same
    cached = load_source(folder_settings(folder, workers=2))
    assert isinstance(cached.features.store, ArrayStore) and len(cache_files()) == 2
    built = (tmp_path / "outputs/.cache").stat().st_mtime_ns
    again = load_source(folder_settings(folder))  # opened, not decoded again
    assert (tmp_path / "outputs/.cache").stat().st_mtime_ns == built
    uncached = load_source(folder_settings(folder, cache_dir=None, workers=1))
    assert cached.class_names == uncached.class_names == ("dark", "light")
    assert torch.equal(cached.features.uint8(), uncached.features.uint8())
    for a, b, c in zip(batches(cached), batches(again), batches(uncached)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
        assert a[0].dtype == torch.float32 and a[0].shape == (6, 3, 8, 8)


def test_a_changed_folder_gets_a_new_cache_and_a_damaged_one_is_rebuilt_with_a_note(tmp_path, capsys):
    from PIL import Image

    folder = write_folder(tmp_path / "pictures", count=4)
    first = load_source(folder_settings(folder)).features.uint8()
    Image.new("RGB", (5, 5), (255, 0, 0)).save(folder / "dark" / "red.png")
    changed = load_source(folder_settings(folder))
    assert len(changed.features) == 9 and len(cache_files()) == 4  # a second cache beside the first
    (data,) = [tmp_path / "outputs/.cache" / name for name in cache_files() if name.endswith(".npy")
               and json.loads((tmp_path / "outputs/.cache" / name).with_suffix(".json").read_text())["shape"][0] == 8]
    capsys.readouterr()
    data.write_bytes(data.read_bytes()[:-100])  # a truncated file
    (folder / "dark" / "red.png").unlink()
    rebuilt = load_source(folder_settings(folder)).features.uint8()
    note = " ".join(capsys.readouterr().out.split())
    assert "the image cache" in note and "is damaged" in note and "rebuilding it" in note
    assert torch.equal(rebuilt, first)
    # A decode killed before its .json was written leaves nothing that passes for a cache.
    data.with_suffix(".json").unlink()
    assert torch.equal(load_source(folder_settings(folder)).features.uint8(), first)
    assert "damaged" not in capsys.readouterr().out


def test_a_folder_over_memory_max_mb_streams_from_its_file(tmp_path):
    folder = write_folder(tmp_path / "pictures")
    resident = load_source(folder_settings(folder))
    streamed = load_source(folder_settings(folder, memory_max_mb=0.001))
    assert isinstance(streamed.features.store, FileStore) and streamed.features.streams
    index = torch.tensor([5, 6, 7, 0, 23, 1])  # runs of neighbours are read at once
    assert torch.equal(streamed.features[index].uint8(), resident.features[index].uint8())
    with pytest.raises(DltrainError, match="data.cache_dir=null keeps the decoded images in memory, but they "
                                           "take .* MiB, more than data.memory_max_mb=0.001"):
        load_source(folder_settings(folder, memory_max_mb=0.001, cache_dir=None))


@pytest.mark.parametrize("entries, message", [
    (["Flip"], r"data.augment\[0\] names the unknown operation 'Flip'; valid operations are: RandomResizedCrop, "),
    (["RandomHorizontalFlip", {"name": "ColorJitter", "brightnes": 0.2}],
     r"data.augment\[1\] \(ColorJitter\) has no option 'brightnes'; its options are: brightness, contrast,"),
    ([{"name": "ColorJitter", "brightness": -1}],
     r"data.augment\[0\] ColorJitter\(brightness=-1\) is refused by torchvision: .*non negative"),
    ([{"name": "RandomCrop", "size": 4}], r"turns \(3, 8, 8\) images into \(3, 4, 4\); the model reads"),
    ([{"name": "AutoAugment", "policy": "mnist"}], r"option policy='mnist' is not one of: imagenet, cifar10, svhn"),
    ([{"name": "RandomErasing", "p": {"a": 1}}], r"option 'p' must be a number, a string, true, false, null"),
    ([{"RandomCrop": {"padding": 4}}], r"data.augment\[0\] must be an operation's name or \{name: OPERATION"),
    ("RandomCrop", r"data.augment must be a list of torchvision transforms.v2 operations"),
    (["torch.nn.Module"], r"names the unknown operation 'torch.nn.Module'"),  # nothing beyond the allow-list
])
def test_every_augmentation_entry_is_checked_in_one_sentence(entries, message):
    with pytest.raises(DltrainError, match=message):
        augment.build(entries, (3, 8, 8))


def test_augmentation_runs_per_image_before_normalisation():
    torch.manual_seed(0)
    pipeline = augment.build([{"name": "RandomResizedCrop", "scale": [0.3, 1.0]}, "RandomHorizontalFlip",
                              {"name": "ColorJitter", "brightness": 0.5}, "RandAugment", "RandomErasing"], (3, 8, 8))
    x = torch.rand(1, 3, 8, 8).repeat(16, 1, 1, 1)
    out = pipeline(x)
    assert out.shape == x.shape and len({round(float(image.sum()), 3) for image in out}) > 8  # own draws


def test_saved_random_crop_and_flip_become_augment_entries_and_a_saved_cache_dir_is_not_used():
    saved = {"data": {"name": "cifar10", "random_crop": 4, "horizontal_flip": True, "cache_dir": "/etc"}}
    data = upgrade_saved(saved)["data"]
    assert data == {"name": "cifar10", "augment": [{"name": "RandomCrop", "padding": 4}, "RandomHorizontalFlip"]}
    assert upgrade_saved({"data": {"random_crop": 0, "horizontal_flip": False}})["data"] == {"augment": []}


@pytest.mark.slow
def test_streaming_and_resident_folders_train_identically(cli, tmp_path):
    folder = write_folder(tmp_path / "pictures")
    common = ["fit", "model=cnn", "model.channels=[4]", "data=image_folder", f"data.path={folder}",
              "data.image_size=8", "data.batch_size=6", "trainer.epochs=2", "trainer.progress=false",
              "logger=csv", "data.augment=[RandomHorizontalFlip,{name:RandomCrop,padding:1}]"]
    assert cli(*common).exit_code == 0
    result = cli(*common, "data.memory_max_mb=0.001", "trainer.device_data_max_mb=0")
    assert result.exit_code == 0, result.output
    resident, streamed = ([{k: v for k, v in row.items() if k != "seconds"} for row in read_metrics(run)["history"]]
                          for run in run_folders())
    assert len(resident) == 2 and resident == streamed
