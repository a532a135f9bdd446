"""cnn, inception and resnet: shapes inferred from the data (MNIST-, CIFAR- and digits-shaped
inputs), the course's layer sizes, refusals of impossible pairs, and training from the CLI."""

import re

import pytest
import torch

from conftest import read_metrics, run_folders
from dltrain.data.spec import DataSpec
from dltrain.errors import DltrainError
from dltrain.models import count_parameters, create_model

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)


def image_spec(shape, num_classes=10, task="multiclass"):
    return DataSpec(task=task, input_shape=shape, kind="image", num_classes=num_classes)


@pytest.mark.parametrize("name", ["cnn", "inception", "resnet"])
@pytest.mark.parametrize("shape", [MNIST, CIFAR, DIGITS], ids=["mnist", "cifar", "digits"])
def test_default_models_fit_every_image_shape(name, shape):
    model = create_model(name, image_spec(shape), 10)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_course_layer_sizes_on_mnist():
    # The course's nets flatten 320 (cnn), 1408 (inception) and 512 (resnet) features.
    assert create_model("cnn", image_spec(MNIST), 10).flatten_size == 320
    assert create_model("inception", image_spec(MNIST), 10).flatten_size == 1408
    assert create_model("resnet", image_spec(MNIST), 10).flatten_size == 512


def test_small_images_switch_to_same_padding_and_explicit_padding_is_checked():
    cnn = create_model("cnn", image_spec(DIGITS), 10)
    assert cnn.flatten_size == 20 * 2 * 2  # 8 -> 8 -> pool 4 -> 4 -> pool 2
    with pytest.raises(DltrainError, match="shrinks the 8x8 images to nothing"):
        create_model("cnn", image_spec(DIGITS), 10, padding=0)


def test_cnn_options_shape_the_network():
    model = create_model("cnn", image_spec(CIFAR), 10, channels=[8, 16, 32], kernel_size=3,
                         padding="same", batch_norm=True, dropout=0.3, hidden_sizes=[64, 32], pool="avg")
    assert model.flatten_size == 32 * 4 * 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 3
    assert model(torch.randn(4, *CIFAR)).shape == (4, 10)


@pytest.mark.parametrize("depth, blocks", [(18, 8), (34, 16)])
def test_resnet_depth_gives_the_stage_layout(depth, blocks):
    from dltrain.models.resnet import ResidualBlock

    model = create_model("resnet", image_spec(CIFAR), 10, depth=depth, width=8)
    residual = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(residual) == blocks
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0  # on by default
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_resnet18_at_full_width_has_resnet18s_size():
    model = create_model("resnet", image_spec(CIFAR), 10, depth=18)
    assert 11.0e6 < count_parameters(model) < 11.3e6  # ResNet-18 for CIFAR: about 11.2 M


def test_inception_block_concatenates_its_four_branches():
    from dltrain.models.inception import InceptionBlock

    block = InceptionBlock(10, branch_channels=(4, 5, 6, 7), reduce_channels=3)
    assert block(torch.randn(2, 10, 12, 12)).shape == (2, 22, 12, 12)
    model = create_model("inception", image_spec(CIFAR), 10, stages=[16, 32, 64], blocks=2,
                         batch_norm=True, global_pool=True)
    assert model.flatten_size == 88
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_binary_and_regression_heads_have_one_output():
    assert create_model("cnn", image_spec(MNIST, 2, "binary"), 1)(torch.randn(3, *MNIST)).shape == (3, 1)
    assert create_model("resnet", image_spec(DIGITS, 0, "regression"), 1)(torch.randn(3, *DIGITS)).shape == (3, 1)


@pytest.mark.parametrize("name, options, message", [
    ("cnn", {"channels": [0, 4]}, "model.channels must be a list of positive integers"),
    ("cnn", {"pool": "median"}, "model.pool must be one of max, avg, none"),
    ("cnn", {"padding": "valid"}, "model.padding must be auto, same or a non-negative integer"),
    ("inception", {"branch_channels": [8, 8]}, "model.branch_channels must list the 4 branch widths"),
    ("resnet", {"depth": 50}, "model.depth must be null"),
    ("resnet", {"dropout": 1.5}, r"model.dropout must be a number in \[0, 1\)"),
    ("cnn", {"filters": 3}, "model=cnn has no setting 'filters'"),
])
def test_bad_model_settings_are_one_sentence(name, options, message):
    with pytest.raises(DltrainError, match=message):
        create_model(name, image_spec(MNIST), 10, **options)


def test_cnn_refuses_tabular_data_naming_the_image_datasets(cli):
    result = cli("fit", "model=cnn", "data=digits", "trainer.epochs=1")
    assert result.exit_code == 2
    assert ("model=cnn needs image data (data=digits_images, mnist, fashion_mnist, cifar10, "
            "image_folder), but this data is tabular data") in result.output


@pytest.mark.parametrize("name", ["inception", "resnet"])
def test_image_models_refuse_tabular_and_text_data(name):
    for kind, words in (("tabular", "tabular data"), ("tokens", "text (token) data")):
        spec = DataSpec(task="multiclass", input_shape=(64,), kind=kind, num_classes=10, vocab_size=50)
        with pytest.raises(DltrainError, match=rf"model={name} needs image data \(data=digits_images.*but this data is {re.escape(words)}"):
            create_model(name, spec, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [
    # With random crops on the training batches: augmentation must not stop learning.
    ("cnn", ["model.channels=[8,16]", "data.augment=[{name:RandomCrop,padding:1}]"]),
    ("inception", ["model.stages=[8,16]", "model.branch_channels=[8,8,8,8]", "model.reduce_channels=8"]),
    ("resnet", ["model.channels=[8,16]"]),
])
def test_each_image_model_learns_digits_images_from_the_cli(cli, name, overrides):
    # Narrow widths keep this quick on a busy 2-core machine; the structure is the real one.
    result = cli("fit", f"model={name}", "data=digits_images", "data.batch_size=128", "trainer.epochs=5",
                 "trainer.progress=false", "optimizer.lr=0.01", "model.batch_norm=true", *overrides)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "finished"
    assert metrics["best"]["val_accuracy"] >= 0.9  # chance is 0.1
