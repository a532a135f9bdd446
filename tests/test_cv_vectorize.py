"""cv.vectorize: the k fold models trained at once (torch.func stacked parameters under vmap)
give the same folds as training them one by one.

Tolerance: 1e-4 absolute on losses and metrics. Each fold starts from the same seed (weights),
visits the same batches in the same order (its own shuffling generator) and gets an elementwise
optimizer update from its own gradient, so the two paths differ only in floating-point rounding:
a batched matrix product under vmap and a per-row loss summed then divided by the batch's rows
round differently from one fold's matrix product and the criterion's mean (measured about 1e-7
relative). Dropout is turned off here: under vmap its masks are drawn differently
(randomness="different"), so with dropout the folds agree in distribution, not number for number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_metrics

# wine with k=3: folds of 118 and 119 training rows, batches of 32: the last batch of each epoch
# has 22 rows in one fold and 23 in the others (the padded, weighted path).
# Adam, weight decay on weights only plus the L1 penalty (regularization=elastic), per-fold
# gradient clipping.
WINE = ["data=wine", "k=3", "data.batch_size=32", "model=mlp", "model.hidden_sizes=[16]",
        "model.dropout=0", "regularization=elastic", "regularization.l1=0.001", "trainer.grad_clip=0.3",
        "trainer.progress=false", "logger=none"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Vectorised and sequential runs of the same cross-validation, shared by the tests below."""
    from typer.testing import CliRunner

    from dltrain.cli import app

    root = tmp_path_factory.mktemp("cv_vectorize")
    folders = {}
    # A constant learning rate: the first two epochs of a 3-epoch run are those of a 2-epoch run.
    for name, extra in (("vectorized", ["cv.vectorize=true", "trainer.epochs=2"]),
                        ("sequential", ["trainer.epochs=3"])):  # cv.vectorize=auto: off on the CPU
        folders[name] = root / name
        result = CliRunner().invoke(app, ["cv", *WINE, *extra, f"hydra.run.dir={folders[name]}"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return folders


def assert_rows_close(rows, expected, tolerance=TOLERANCE):
    assert len(rows) == len(expected)
    for row, reference in zip(rows, expected):
        assert row.keys() == reference.keys()
        for key in row:
            if key != "seconds":
                assert row[key] == pytest.approx(reference[key], abs=tolerance), (row["epoch"], key)


@pytest.mark.slow
def test_vectorized_folds_equal_the_sequential_folds(runs):
    vectorized, sequential = runs["vectorized"], runs["sequential"]
    assert not (sequential / "multirun.yaml").exists()  # auto on the CPU: one by one, in this process
    assert (sequential / "fold_0" / ".hydra" / "overrides.yaml").exists()
    for fold in range(3):
        together, alone = read_metrics(vectorized / f"fold_{fold}"), read_metrics(sequential / f"fold_{fold}")
        assert together["vectorized"] is True and "vectorized" not in alone
        assert together.keys() - {"vectorized"} == alone.keys()
        assert together["status"] == "finished" and together["epochs_run"] == 2
        assert_rows_close(together["history"], alone["history"][:2])
        for name in ("fold.json", "val_predictions.csv"):
            assert (vectorized / f"fold_{fold}" / name).exists()
        assert json.loads((vectorized / f"fold_{fold}" / "fold.json").read_text()) == \
            json.loads((sequential / f"fold_{fold}" / "fold.json").read_text())
    sizes = {json.loads((vectorized / f"fold_{f}" / "fold.json").read_text())["train_size"] for f in range(3)}
    assert sizes == {118, 119}
    import pandas as pd

    summary = json.loads((vectorized / "cv_summary.json").read_text())
    assert summary["objective"]["mean"] == pytest.approx(
        sum(read_metrics(sequential / f"fold_{f}")["history"][1]["val_loss"] for f in range(3)) / 3,
        abs=TOLERANCE)
    oof = pd.read_csv(vectorized / "oof_predictions.csv")
    assert sorted(oof["index"]) == list(range(178))
    from dltrain.commands.runs import find_runs

    (listed,) = find_runs(vectorized)  # dltrain runs: one cross-validation, as typed
    assert listed.kind == "cv" and listed.status == "finished" and listed.folds == 3
    assert listed.command.startswith("dltrain cv data=wine k=3") and "cv.vectorize=true" in listed.command


@pytest.mark.slow
def test_sgd_momentum_onecycle_regression_and_tensorboard(cli):
    """SGD with momentum, a per-step schedule and per-fold clipping (on every step here) on a
    regression target standardized per fold; the vectorised folds write their own TensorBoard
    events (step points included) and the cv_mean run."""
    common = ["data=diabetes", "k=2", "model=mlp", "model.hidden_sizes=[8]", "model.dropout=0",
              "optimizer=sgd", "optimizer.momentum=0.9", "optimizer.lr=0.05", "scheduler=onecycle",
              "trainer.grad_clip=0.05", "trainer.epochs=2", "trainer.progress=false"]
    result = cli("cv", *common, "cv.vectorize=true", "logger.tensorboard.log_every_n_steps=3", "logger.tensorboard.figures=false",
                 "hydra.run.dir=outputs/true")
    assert result.exit_code == 0, result.output
    result = cli("cv", *common, "cv.vectorize=false", "logger=none", "hydra.run.dir=outputs/false")
    assert result.exit_code == 0, result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path("outputs/true/fold_1/fold_1"))).Reload()  # named after its folder
    assert [e.step for e in events.Scalars("loss/val")] == [1, 2]
    assert len(events.Scalars("step/loss_train")) == 2 * 7 // 3  # 7 steps per epoch
    assert Path("outputs/true/cv_mean").is_dir()
    for fold in range(2):
        together, alone = (read_metrics(Path(f"outputs/{m}/fold_{fold}")) for m in ("true", "false"))
        assert together["vectorized"] is True
        # losses are on the standardized target; mse/mae in the target's units (about 3000)
        relative = [{k: v / max(abs(r["train_mse"]), 1) if "mse" in k or "mae" in k else v
                     for k, v in r.items()} for r in together["history"]]
        expected = [{k: v / max(abs(r["train_mse"]), 1) if "mse" in k or "mae" in k else v
                     for k, v in r.items()} for r in alone["history"]]
        assert_rows_close(relative, expected)


@pytest.mark.slow
def test_early_stopping_stops_each_fold_on_its_own(cli):
    """A fold that stops keeps its weights while the others go on, as if it had trained alone."""
    common = ["data=iris", "k=3", "model=mlp", "model.hidden_sizes=[16]", "model.dropout=0",
              "optimizer.lr=0.02", "trainer.monitor=accuracy", "trainer.early_stopping.patience=1",
              "trainer.epochs=6", "trainer.progress=false", "logger=none"]
    for mode in ("true", "false"):
        result = cli("cv", *common, f"cv.vectorize={mode}", f"hydra.run.dir=outputs/{mode}")
        assert result.exit_code == 0, result.output
    epochs = set()
    for fold in range(3):
        together, alone = (read_metrics(Path(f"outputs/{m}/fold_{fold}")) for m in ("true", "false"))
        assert together["vectorized"] is True and together["stopped_early"] == alone["stopped_early"]
        assert (together["epochs_run"], together["best_epoch"]) == (alone["epochs_run"], alone["best_epoch"])
        assert_rows_close(together["history"], alone["history"])
        epochs.add(together["epochs_run"])
    assert len(epochs) > 1  # the folds stopped at different epochs (2 and 5 when written)


@pytest.mark.slow
def test_eval_reads_a_vectorized_fold(runs, cli):
    """best.pt and last.pt hold the fold's own state_dict, loaded as eval and predict load it."""
    import numpy as np
    import pandas as pd
    import torch

    from dltrain.config import read_settings
    from dltrain.data import load_source
    from dltrain.data.split import take
    from dltrain.commands.evaluate import load_run

    fold = runs["vectorized"] / "fold_1"
    result = cli("eval", str(fold))
    assert result.exit_code == 0, result.output
    assert json.loads((fold / "eval.json").read_text())["metrics"]["loss"] > 0
    # the checkpoints, loaded as eval and predict load them, on the fold's own validation rows
    predictions = pd.read_csv(fold / "val_predictions.csv")
    best, last = load_run(str(fold / "best.pt")), load_run(str(fold / "last.pt"))
    source = load_source(read_settings(best.cfg).data)
    index = predictions["index"].to_numpy()
    x = best.preprocessor.transform(take(source.features, index))
    y = torch.as_tensor(np.asarray(source.target)[index], dtype=torch.long)
    with torch.no_grad():
        best_loss = best.objective.loss(best.model.eval()(x), y).item()
        last_scores = last.objective.scores(last.model.eval()(x)).numpy()
    assert best_loss == pytest.approx(read_metrics(fold)["best"]["val_loss"], abs=TOLERANCE)
    columns = [c for c in predictions if c.startswith("probability_")]
    assert np.abs(last_scores - predictions[columns].to_numpy()).max() < TOLERANCE


@pytest.mark.slow
def test_ctrl_c_stops_after_the_epoch_and_resume_continues_fold_by_fold(runs, cli, monkeypatch):
    """Ctrl-C during a vectorised run: every fold saves last.pt (its own optimizer and trainer
    state) at the end of the epoch; resume then continues the folds one by one to the numbers
    the sequential run reached."""
    import os
    import signal

    from dltrain.train.stopping import EarlyStopping

    update = EarlyStopping.update
    calls = []

    def interrupted(stopping, epoch, row):
        calls.append(epoch)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C at the end of the first epoch
        return update(stopping, epoch, row)

    monkeypatch.setattr(EarlyStopping, "update", interrupted)
    run = Path("outputs/stopped").resolve()
    result = cli("cv", *WINE, "cv.vectorize=true", "trainer.epochs=3", f"hydra.run.dir={run}")
    assert result.exit_code == 130, result.output
    assert "Resume with: dltrain cv resume=" in " ".join(result.output.split())
    for fold in range(3):
        record = read_metrics(run / f"fold_{fold}")
        assert record["status"] == "interrupted" and len(record["history"]) == 1
    monkeypatch.setattr(EarlyStopping, "update", update)
    result = cli("cv", f"resume={run}")
    assert result.exit_code == 0, result.output
    assert "folds 0, 1, 2 to run" in result.output
    for fold in range(3):
        resumed = read_metrics(run / f"fold_{fold}")
        assert resumed["status"] == "finished" and "vectorized" not in resumed  # went on alone
        assert_rows_close(resumed["history"], read_metrics(runs["sequential"] / f"fold_{fold}")["history"])


def test_auto_is_off_on_the_cpu_and_on_for_cuda_when_allowed(monkeypatch):
    from dltrain.commands import cv as cv_command
    from dltrain.config import compose, read_cv_settings, read_settings
    from dltrain.data.folds import load_cv_source, plan_folds

    def decide(*overrides):
        cfg = compose(["data=iris", "k=3", *overrides])
        settings, plan = read_settings(cfg), read_cv_settings(cfg)
        source = load_cv_source(settings, plan)
        folds = plan_folds(source, plan)
        selected = folds if plan.fold is None else [folds[plan.fold]]
        members = cv_command._stacked_members(cfg, settings, plan, source, selected, Path("unused"),
                                              cv_command.console)
        return members is not None

    assert cv_default_is_auto()
    assert decide() is False  # the CPU
    import torch

    monkeypatch.setattr(cv_command, "resolve_device", lambda requested: torch.device("cuda"))
    monkeypatch.setattr("dltrain.train.population.resolve_device", lambda requested: torch.device("cpu"),
                        raising=False)
    assert decide() is True
    assert decide("model=softmax") is True
    assert decide("scheduler=plateau") is True  # each member steps its own scheduler
    assert decide("model=mlp", "model.batch_norm=true") is False  # auto falls back, with a note
    assert decide("cv.fold=1") is False  # one fold: nothing to stack


def cv_default_is_auto() -> bool:
    from dltrain.config import compose, read_cv_settings

    return read_cv_settings(compose([])).vectorize == "auto"


@pytest.mark.parametrize("overrides, words", [
    (["data=iris", "model.batch_norm=true"], "running statistics (batch norm)"),
    (["data=digits", "data.as_sequence=true", "model=lstm"], "model=lstm cannot be stacked"),
    (["data=digits_images", "data.augment=[RandomHorizontalFlip]", "model=cnn"], "data.augment augments each batch"),
    (["data=iris", "k=4"], "112 and 113 training rows make 7 and 8 batches per epoch"),
])
def test_true_refuses_what_cannot_be_stacked_in_one_sentence(cli, overrides, words):
    result = cli("cv", "cv.vectorize=true", "trainer.epochs=1", "logger=none", *overrides)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert words in message, message
    assert "cv.vectorize=true cannot train the folds together" in message
    assert "cv.vectorize=false runs the folds one by one" in message
    assert not list(Path(".").glob("outputs/**/best.pt"))


def test_a_bad_value_is_one_sentence(cli):
    result = cli("cv", "data=iris", "cv.vectorize=sometimes")
    assert result.exit_code == 2
    assert "cv.vectorize must be auto, true or false, got 'sometimes'." in " ".join(result.output.split())
