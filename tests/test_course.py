"""The course's and the textbook's first experiments (issue 13): weight initialisation and the
activations that show stacked linear layers collapsing, linear regression's closed form,
polynomial features and the polynomial-fitting recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dltrain
from dltrain.config import compose, read_settings
from dltrain.data import load_source, prepare
from dltrain.data.preprocessing import load_preprocessing, save_preprocessing
from dltrain.data.spec import DataSpec
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.models import create_model
from dltrain.train.build import build
from dltrain.train.device import seed_everything
from dltrain.train.optim import ClosedForm

FAST = ("trainer.progress=false", "logger=none")
TABULAR = DataSpec(task="multiclass", input_shape=(200,), num_classes=3)


def _weights_and_biases(model):
    weights = [p for p in model.parameters() if p.ndim >= 2]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return weights, biases


# ---- model.init and the activations


@pytest.mark.parametrize("init", ["normal", "uniform", "xavier", "kaiming", "zeros"])
def test_every_init_sets_the_weights_it_names_and_zero_biases(init):
    model = create_model("mlp", TABULAR, 3, hidden_sizes=[300], activation="relu", dropout=0.0,
                         init=init, init_std=0.02, init_range=0.3)
    weights, biases = _weights_and_biases(model)
    first = weights[0]  # 300 x 200
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    expected_std = {"normal": 0.02, "uniform": 0.3 / math.sqrt(3), "xavier": math.sqrt(2 / (200 + 300)),
                    "kaiming": math.sqrt(2 / 200), "zeros": 0.0}[init]
    assert first.std().item() == pytest.approx(expected_std, rel=0.05, abs=1e-9)
    if init == "uniform":
        assert first.abs().max().item() <= 0.3


def test_default_init_is_pytorchs_and_a_conv_net_is_initialised_too():
    default = create_model("mlp", TABULAR, 3, hidden_sizes=[8], init="default")
    assert any(torch.count_nonzero(b) for b in _weights_and_biases(default)[1])  # PyTorch's biases
    image = DataSpec(task="multiclass", input_shape=(1, 12, 12), kind="image", num_classes=3)
    cnn = create_model("cnn", image, 3, channels=[4], kernel_size=3, init="normal", init_std=0.01)
    kernels, biases = _weights_and_biases(cnn)
    assert kernels[0].ndim == 4 and kernels[0].std().item() == pytest.approx(0.01, rel=0.3)
    assert all(torch.count_nonzero(b) == 0 for b in biases)


def test_init_is_drawn_per_seed_so_each_population_member_has_its_own():
    settings = read_settings(compose(["data=iris", "model.init=normal"]))
    spec = DataSpec(task="multiclass", input_shape=(4,), num_classes=3)

    def first_weight(seed):
        seed_everything(seed)
        return build(settings, spec, training=False).model.layers[1].weight

    assert torch.equal(first_weight(1), first_weight(1))
    assert not torch.equal(first_weight(1), first_weight(2))
    assert first_weight(3).std().item() == pytest.approx(0.01, rel=0.2)


def test_init_settings_are_checked():
    with pytest.raises(DltrainError, match=r"^model.init must be one of default, normal, uniform, xavier, "
                                           r"kaiming, zeros; got 'he'\.$"):
        compose(["model.init=he"])
    with pytest.raises(DltrainError, match=r"^model.init_std must be greater than 0"):
        compose(["model=linear", "model.init_std=0"])


def test_identity_activation_collapses_an_mlp_into_one_affine_map_and_the_others_build():
    model = create_model("mlp", DataSpec(task="regression", input_shape=(5,)), 1, hidden_sizes=[16, 16, 16],
                         activation="identity", dropout=0.0)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    with torch.no_grad():  # affine: f(a + b) - f(a) - f(b) + f(0) = 0
        gap = model(a + b) - model(a) - model(b) + model(torch.zeros(4, 5))
    assert gap.abs().max().item() < 1e-5
    for name, kind in (("elu", torch.nn.ELU), ("selu", torch.nn.SELU)):
        layers = create_model("mlp", TABULAR, 3, hidden_sizes=[4], activation=name).layers
        assert any(isinstance(layer, kind) for layer in layers)
    leaky = create_model("mlp", TABULAR, 3, hidden_sizes=[4], activation="leaky_relu", negative_slope=0.2)
    assert [layer.negative_slope for layer in leaky.layers if isinstance(layer, torch.nn.LeakyReLU)] == [0.2]
    with pytest.raises(DltrainError, match=r"^model.negative_slope \(of leaky_relu\) must be a number of at least 0"):
        create_model("mlp", TABULAR, 3, activation="leaky_relu", negative_slope=-1)


def test_a_deep_identity_mlp_matches_a_linear_model_and_relu_beats_both_on_the_moons():
    # The moons_* recipes, short: 6 of their 30 epochs (84.5%, 84.5% and 95.5% at the best epoch).
    small = ("trainer.epochs=6", *FAST)
    linear = dltrain.fit("recipe=moons_linear", *small).best["val_accuracy"]
    identity = dltrain.fit("recipe=moons_deep_linear", *small).best["val_accuracy"]
    relu = dltrain.fit("recipe=moons_deep_relu", *small).best["val_accuracy"]
    assert abs(identity - linear) <= 0.01 and relu >= max(linear, identity) + 0.05, (linear, identity, relu)


# ---- optimizer=closed_form


def test_closed_form_on_the_toy_is_the_least_squares_solution():
    result = dltrain.fit("recipe=linear_regression", "optimizer=closed_form", *FAST)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])
    (w, b), *_ = np.linalg.lstsq(np.stack([x, np.ones(3)], axis=1), y, rcond=None)
    linear = result.model.linear
    assert linear.weight.item() == pytest.approx(w, abs=1e-4) and linear.bias.item() == pytest.approx(b, abs=1e-4)
    assert result.epochs_run == 1 and result.final["train_loss"] < 1e-8


def test_closed_form_with_l2_is_ridge_with_the_bias_unpenalised():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0 + 0.1 * rng.normal(size=50)
    layer = torch.nn.Linear(3, 1)
    ClosedForm(layer, weight_decay=0.2).solve(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    # SGD's weight decay wd descends mse + wd/2 |w|², i.e. |r|² + (n wd / 2) |w|²: Ridge's alpha.
    ridge = Ridge(alpha=50 * 0.2 / 2).fit(x, y)
    assert layer.weight.detach().numpy().ravel() == pytest.approx(ridge.coef_, abs=1e-4)
    assert layer.bias.item() == pytest.approx(ridge.intercept_, abs=1e-4)


def test_closed_form_refuses_other_models_and_losses_in_one_sentence():
    with pytest.raises(DltrainError, match=r"^optimizer=closed_form solves linear regression's least squares, "
                                           r"so it needs model=linear and loss=mse, not model=mlp with loss=mse; "):
        dltrain.fit("data=linear_toy", "model=mlp", "loss=mse", "optimizer=closed_form", *FAST)


# ---- polynomial features and the polynomial-fitting recipes


def test_polynomial_degree_expands_numeric_features_and_is_saved(tmp_path):
    settings = read_settings(compose(["data=iris", "data.polynomial_degree=3", "data.standardize=false"]))
    data = prepare(load_source(settings.data), np.arange(150))
    assert data.spec.feature_names[:3] == ("sepal length (cm)", "sepal length (cm)^2/2!", "sepal length (cm)^3/3!")
    first = data.train.x[0, :3].numpy()
    assert first == pytest.approx([5.1, 5.1 ** 2 / 2, 5.1 ** 3 / 6], rel=1e-5)
    save_preprocessing(tmp_path, data.preprocessor)
    again = load_preprocessing(tmp_path)
    assert again.polynomial_degree == 3 and again.feature_names == list(data.spec.feature_names)


def test_polynomial_data_is_the_textbooks_cubic():
    settings = read_settings(compose(["data=polynomial", "data.polynomial_degree=2"]))
    source = load_source(settings.data)
    x, y = source.features["x"].to_numpy(), source.target
    cubic = 5 + 1.2 * x - 3.4 * x ** 2 / 2 + 5.6 * x ** 3 / 6
    assert len(source) == 200 and np.std(y - cubic) == pytest.approx(0.1, rel=0.15)
    assert prepare(source, np.arange(100)).spec.feature_names == ("x", "x^2/2!")


def test_polynomial_recipes_in_closed_form_order_as_the_textbook_says():
    # Each recipe's data, split and model as fit builds them, solved in closed form: more features,
    # less training loss; the true cubic's validation loss is the lowest.
    train, val = {}, {}
    for name in ("underfit", "fit", "overfit"):
        settings = read_settings(compose([f"recipe=poly_{name}", "optimizer=closed_form"]))
        source = load_source(settings.data)
        data = prepare(source, *train_val_indices(source, settings.data.val_fraction, settings.trainer.seed))
        model = build(settings, data.spec).model
        ClosedForm(model.linear).solve(data.train.x, data.train.y)
        train[name], val[name] = ((model(split.x).squeeze(1) - split.y).square().mean().item()
                                  for split in (data.train, data.val))
    assert val["underfit"] > val["fit"] < val["overfit"], val
    assert train["overfit"] < train["fit"] < train["underfit"], train
    assert train["overfit"] == pytest.approx(0.0101, abs=5e-4) and val["fit"] == pytest.approx(0.0094, abs=5e-4)


@pytest.mark.slow
def test_polynomial_recipes_trained_as_the_textbook_order_their_validation_losses():
    # SGD, lr 0.01, batch 10, 400 epochs (the over-fitting one 1,500, as the textbook; 5-10 s each):
    # the numbers their comments state.
    final = {name: dltrain.fit(f"recipe=poly_{name}", *FAST).final for name in ("underfit", "fit", "overfit")}
    val = {name: row["val_loss"] for name, row in final.items()}
    train = {name: row["train_loss"] for name, row in final.items()}
    assert val["underfit"] > val["fit"] < val["overfit"], val
    assert train["overfit"] < train["fit"] < train["underfit"], train
    assert val["underfit"] == pytest.approx(12.6, rel=0.05) and val["fit"] == pytest.approx(0.014, rel=0.2)


# ---- dltrain data


def test_data_shows_the_textbooks_preprocessed_table_as_fit_prepares_it(cli, tmp_path):
    # D2L "Data Preprocessing": print(inputs) after NA-fill (the mean) and get_dummies(dummy_na=True).
    (tmp_path / "house_tiny.csv").write_text("NumRooms,RoofType,Price\nNA,NA,127500\n2,NA,106000\n"
                                             "4,Slate,178100\nNA,NA,140000\n")
    result = cli("data", "data=csv", "data.path=house_tiny.csv", "data.target=Price", "data.val_fraction=0",
                 "data.standardize=false", "data.target_transform=none", "--rows", "4")
    assert result.exit_code == 0, result.output
    assert "data=csv  tabular, regression: 4 train rows; input shape (3)" in result.output
    assert "3 features after preprocessing: NumRooms, RoofType_Slate, RoofType_nan" in result.output
    table = [line.split("│")[1:-1] for line in result.output.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in table] == [
        ["3", "0", "1", "127500"], ["2", "0", "1", "106000"], ["4", "1", "0", "178100"], ["3", "0", "1", "140000"]]


def test_data_on_images_writes_a_grid_of_samples_and_counts_the_classes():
    from PIL import Image

    from dltrain.commands.data_view import data_view

    result = data_view(["data=digits_images"], rows=0)
    assert result.splits == {"train": 1438, "val": 359} and result.input_shape == (1, 8, 8)
    assert sum(result.class_counts["train"].values()) == 1438 and len(result.class_counts["val"]) == 10
    with Image.open(result.png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 800
