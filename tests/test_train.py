"""The generic trainer through the Python API: losses, optimizers, schedulers, regularization,
batching, seeding, early stopping, clipping, checkpoints and metrics."""

import math

import pytest
import torch

import dltrain
from dltrain.train.checkpoint import load_checkpoint
from conftest import read_metrics

FAST = ("trainer.progress=false",)


def fit(*overrides):
    return dltrain.fit(*overrides, *FAST)


@pytest.mark.slow
def test_linear_regression_recipe_learns_w_2_b_0(cli):
    result = cli("fit", "recipe=linear_regression")
    assert result.exit_code == 0, result.output
    assert "Learned parameters: w = [" in result.output
    weights = load_checkpoint(next(__import__("pathlib").Path("outputs").glob("**/last.pt")))["model"]
    assert weights["linear.weight"].item() == pytest.approx(2.0, abs=0.05)
    assert weights["linear.bias"].item() == pytest.approx(0.0, abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["logistic_regression", "breast_cancer_mlp"])
def test_binary_recipes_reach_good_accuracy(recipe):
    result = fit(f"recipe={recipe}")
    assert result.task == "binary"
    assert result.best["val_accuracy"] >= 0.93
    assert result.best["val_roc_auc"] >= 0.97


@pytest.mark.slow
def test_metrics_per_task():
    regression = fit("data=diabetes", "model=linear", "trainer.epochs=2")
    assert {"val_mse", "val_mae", "val_r2", "train_loss"} <= set(regression.final)
    binary = fit("data=breast_cancer", "model=logistic", "trainer.epochs=2")
    assert {"val_accuracy", "val_roc_auc"} <= set(binary.final)
    multiclass = fit("data=iris", "model=softmax", "trainer.epochs=2")
    assert {"val_accuracy", "val_macro_f1"} <= set(multiclass.final)


@pytest.mark.slow
def test_regression_metrics_are_in_target_units():
    result = fit("data=diabetes", "model=linear", "optimizer.lr=0.05", "trainer.epochs=40")
    # The target is standardized for training (val_loss ~ 0.5) but mse is in squared units.
    assert result.best["val_r2"] > 0.3
    assert result.best["val_mse"] > 1000 > result.best["val_loss"] * 100


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics():
    a = fit("data=iris", "trainer.epochs=3", "trainer.seed=7")
    b = fit("data=iris", "trainer.epochs=3", "trainer.seed=7")
    c = fit("data=iris", "trainer.epochs=3", "trainer.seed=8")
    assert a.final == {**b.final, "seconds": a.final["seconds"]}
    assert a.final["train_loss"] != c.final["train_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,steps", [(0, 1), (100000, 1), (1, 120), (32, 4)])
def test_batch_size_sets_steps_per_epoch(batch_size, steps):
    # 120 training rows of iris; Adam's state counts the optimizer steps taken.
    adam = fit("data=iris", f"data.batch_size={batch_size}", "trainer.epochs=1")
    step = load_checkpoint(adam.run_dir / "last.pt")["optimizer"]["state"][0]["step"]
    assert int(step) == steps


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_regression_losses_train(loss):
    result = fit("data=synthetic_linear", "model=linear", f"loss={loss}", "trainer.epochs=5",
                 "optimizer.lr=0.05")
    assert result.final["val_r2"] > 0.9


def test_smooth_l1_is_pytorchs_and_huber_with_delta_1_at_beta_1():
    from dltrain.config import compose, read_settings
    from dltrain.errors import DltrainError
    from dltrain.train.losses import LOSSES

    outputs, targets = torch.linspace(-3, 3, 13), torch.zeros(13)
    smooth = LOSSES["smooth_l1"].constructor
    assert torch.allclose(smooth()(outputs, targets), torch.nn.HuberLoss(delta=1.0)(outputs, targets))
    beta = read_settings(compose(["data=linear_toy", "model=linear", "loss=smooth_l1", "loss.beta=0.5"])).loss
    assert beta.options == {"beta": 0.5}
    assert torch.allclose(smooth(**beta.options)(outputs, targets),
                          torch.nn.functional.smooth_l1_loss(outputs, targets, beta=0.5))
    with pytest.raises(DltrainError, match="loss.beta must be a number of at least 0, got -1"):
        smooth(beta=-1)


@pytest.mark.slow
def test_bce_and_label_smoothed_cross_entropy_train():
    assert fit("data=breast_cancer", "loss=bce", "trainer.epochs=3").best["val_accuracy"] > 0.9
    smoothed = fit("data=digits", "loss=cross_entropy", "loss.label_smoothing=0.1", "trainer.epochs=3")
    assert smoothed.best["val_accuracy"] > 0.85


@pytest.mark.slow
def test_cross_entropy_on_binary_uses_two_outputs():
    result = fit("data=breast_cancer", "model=softmax", "loss=cross_entropy", "trainer.epochs=3")
    assert result.model.linear.out_features == 2
    assert result.best["val_accuracy"] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", [
    ("optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9", "optimizer.nesterov=true"),
    ("optimizer=adam",), ("optimizer=adamw",), ("optimizer=rmsprop",),
    ("optimizer=adagrad", "optimizer.lr=0.1"),
])
def test_every_optimizer_trains(optimizer):
    result = fit("data=iris", *optimizer, "trainer.epochs=8")
    losses = [row["train_loss"] for row in read_metrics(result.run_dir)["history"]]
    assert losses[-1] < losses[0]
    assert result.best["val_accuracy"] > 0.6


def _lrs(result):
    return [row["lr"] for row in read_metrics(result.run_dir)["history"]]


@pytest.mark.slow
def test_schedulers_change_the_learning_rate():
    step = fit("data=iris", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
               "trainer.epochs=3", "optimizer.lr=0.1")
    assert _lrs(step) == pytest.approx([0.1, 0.05, 0.025])
    cosine = _lrs(fit("data=iris", "scheduler=cosine", "trainer.epochs=4"))
    assert cosine[0] > cosine[1] > cosine[2] > cosine[3]
    plateau = _lrs(fit("data=iris", "scheduler=plateau", "scheduler.patience=0",
                       "trainer.early_stopping.min_delta=100", "trainer.epochs=3",
                       "optimizer=sgd", "optimizer.lr=1e-6"))
    assert plateau[-1] < plateau[0]
    onecycle = _lrs(fit("data=iris", "scheduler=onecycle", "trainer.epochs=4"))
    assert max(onecycle) > onecycle[0] and onecycle[-1] < max(onecycle)


def test_l2_decays_weights_only_and_l1_adds_a_penalty():
    from dltrain.config import NamedSettings, OptimizerSettings
    from dltrain.models.mlp import MLP
    from dltrain.train.optim import build_optimizer

    model = MLP(4, 3, hidden_sizes=[8], batch_norm=True)
    optimizer, regularizer = build_optimizer(
        model, OptimizerSettings("sgd", 0.1), NamedSettings("elastic", {"weight_decay": 0.01, "l1": 0.001}))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"])  # the two weight matrices
    assert all(p.ndim == 1 for p in plain["params"])  # biases and batch-norm parameters
    expected = 0.001 * sum(p.abs().sum() for p in decayed["params"])
    assert regularizer.penalty().item() == pytest.approx(expected.item())
    _, none = build_optimizer(model, OptimizerSettings("sgd", 0.1), NamedSettings("none", {}))
    assert none.l1 == 0


@pytest.mark.slow
@pytest.mark.parametrize("regularization", ["l2", "l1", "elastic"])
def test_regularization_options_train(regularization):
    result = fit("data=iris", f"regularization={regularization}", "trainer.epochs=3")
    assert math.isfinite(result.final["train_loss"])


@pytest.mark.slow
def test_early_stopping_stops_after_patience():
    result = fit("data=iris", "trainer.epochs=50", "trainer.early_stopping.patience=2",
                 "trainer.early_stopping.min_delta=100")
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_gradient_clipping_bounds_each_update():
    from dltrain.config import NamedSettings, OptimizerSettings, TrainerSettings
    from dltrain.data import Prepared, Split
    from dltrain.data.spec import DataSpec
    from dltrain.train.build import Parts
    from dltrain.train.engine import Trainer
    from dltrain.train.member import Member
    from dltrain.train.objective import build_objective
    from dltrain.train.optim import Schedule, build_optimizer
    from dltrain.train.stopping import EarlyStopping

    spec = DataSpec(task="regression", input_shape=(3,))
    model = torch.nn.Linear(3, 1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    optimizer, regularizer = build_optimizer(model, OptimizerSettings("sgd", 1.0), NamedSettings("none"))
    parts = Parts(build_objective("mse", {}, spec), model, optimizer, regularizer, Schedule())
    data = Prepared(spec, Split(torch.randn(64, 3) * 100, torch.randn(64) * 100), None, None, None)
    member = Member("", 0, data, parts, EarlyStopping("train_loss", "min"))
    trainer = Trainer([member], settings=TrainerSettings(epochs=1, grad_clip=0.01),
                      device=torch.device("cpu"), batch_size=0, shuffle=False)
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-3)


@pytest.mark.slow
def test_checkpoints_hold_training_state_and_load_with_weights_only():
    result = fit("data=iris", "trainer.epochs=2", "scheduler=step")
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "config", "spec"} <= set(last)
    assert last["epoch"] == 2 and last["config"]["data"]["name"] == "iris"
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
    metrics = read_metrics(result.run_dir)
    assert metrics["best"]["epoch"] == result.best_epoch
    assert metrics["final"]["epoch"] == 2 and len(metrics["history"]) == 2


@pytest.mark.slow
def test_best_checkpoint_follows_the_monitored_metric():
    result = fit("data=digits", "trainer.epochs=4", "trainer.monitor=accuracy")
    accuracies = [row["val_accuracy"] for row in read_metrics(result.run_dir)["history"]]
    assert result.best["val_accuracy"] == max(accuracies)
    assert result.monitor == "val_accuracy"


@pytest.mark.slow
def test_no_validation_monitors_training_loss():
    result = fit("data=iris", "data.val_fraction=0", "trainer.epochs=2")
    assert result.monitor == "train_loss" and "val_loss" not in result.final


@pytest.mark.slow
def test_auto_device_is_cpu_here_and_batch_norm_mlp_trains():
    result = fit("data=wine", "model.batch_norm=true", "model.activation=gelu", "trainer.epochs=5",
                 "trainer.device=auto")
    assert result.best["val_accuracy"] > 0.85
    assert next(result.model.parameters()).device.type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu", "gelu"])
def test_mlp_activations(activation):
    from dltrain.models.mlp import ACTIVATIONS, MLP

    model = MLP(5, 2, hidden_sizes=[4], activation=activation, dropout=0.5)
    assert any(isinstance(m, ACTIVATIONS[activation]) for m in model.modules())
    assert model(torch.randn(3, 5)).shape == (3, 2)
