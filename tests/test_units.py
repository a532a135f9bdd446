"""Quick in-process tests of the modules the end-to-end tests (marked slow) reach only through a
whole run: each builds its own small input (a hand-made run folder, a few random rows) and checks
what the module itself does. Together with the other quick tests they cover every module of
dltrain (tests/test_quick_coverage.py keeps it so)."""

from __future__ import annotations

import json
import math
import os
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dltrain.checks import check_keywords, value
from dltrain.cli import app
from dltrain.commands import cv_report, launch, runs, sweep, tb
from dltrain.commands.fit import resume as resume_fit
from dltrain.commands.resume import CONFIG, nothing_left, resumed_config, split_resume
from dltrain.config import CVSettings, DataSettings, NamedSettings, OptimizerSettings, TrainerSettings
from dltrain.data import Prepared, Split, prepare
from dltrain.data.bundled import load_bundled
from dltrain.data.preprocessing import load_preprocessing, save_preprocessing
from dltrain.data.spec import DataSpec
from dltrain.data.synthetic import load_linear_toy, load_synthetic_linear
from dltrain.data.tabular import TabularPreprocessor
from dltrain.errors import DltrainError
from dltrain.models.cnn import CNN, output_side, resolve_padding
from dltrain.models.linear import LinearRegression
from dltrain.models.lstm import RecurrentNet
from dltrain.train import figures
from dltrain.train.build import Parts
from dltrain.train.checkpoint import load_checkpoint
from dltrain.train.device import resolve_device, seed_everything
from dltrain.train.engine import Trainer, batch_count, batch_size_for
from dltrain.train.member import Member
from dltrain.train.objective import build_objective
from dltrain.train.optim import Schedule, build_optimizer
from dltrain.train.parallel import Shard, current_shard, secondary_rank, world_size
from dltrain.train.population import conclude
from dltrain.train.predictions import prediction_frame, read_predictions, scores_of
from dltrain.train.rundir import RunFolder
from dltrain.train.speed import compiled, configure, resolve_precision
from dltrain.train.staging import Staged, length, rows
from dltrain.train.stopping import EarlyStopping
from dltrain.train.tensorboard import hparams_of, scalar_tags

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- base


def test_value_reads_kinds_and_bounds_in_one_sentence():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"trainer": {"epochs": 3, "lr": 1, "name": "x"}})
    assert value(cfg, "trainer.epochs", int, minimum=1) == 3
    assert value(cfg, "trainer.lr", float) == 1.0 and isinstance(value(cfg, "trainer.lr", float), float)
    assert value(cfg, "trainer.missing", int, 7) == 7
    with pytest.raises(DltrainError, match=r"trainer.epochs must be at least 5, got 3\."):
        value(cfg, "trainer.epochs", int, minimum=5)
    with pytest.raises(DltrainError, match=r"trainer.name must be an integer, got 'x'\."):
        value(cfg, "trainer.name", int)
    with pytest.raises(DltrainError, match="trainer.name must be one of a, b; got 'x'"):
        value(cfg, "trainer.name", str, choices=("a", "b"))


def test_check_keywords_names_unknown_and_mistyped_settings():
    def factory(params, size: int = 3, flag: bool = False):
        return None

    check_keywords(factory, {"size": 4, "flag": True}, "model=x", "model")
    with pytest.raises(DltrainError, match="model=x has no setting 'depth'; its settings are: size, flag."):
        check_keywords(factory, {"depth": 1}, "model=x", "model")
    with pytest.raises(DltrainError, match="model.flag must be true or false, got 1."):
        check_keywords(factory, {"flag": 1}, "model=x", "model")
    with pytest.raises(DltrainError, match="model.size must be a number, got 'big'."):
        check_keywords(factory, {"size": "big"}, "model=x", "model")


def test_help_lists_the_commands_in_process():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("fit", "cv", "config", "list", "runs", "tb", "eval", "predict"):
        assert command in result.output, command


def test_python_dash_m_dltrain_is_the_same_command_line(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr("sys.argv", ["dltrain", "--help"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("dltrain.__main__", run_name="__main__")
    assert exit.value.code == 0
    assert "dltrain fit" in capsys.readouterr().out


# --------------------------------------------------------------------------- data and models


def test_bundled_and_generated_sources():
    iris = load_bundled(DataSettings("iris", 8, 0.2, True, {}))
    assert len(iris) == 150 and iris.task == "multiclass"
    assert iris.class_names == ("setosa", "versicolor", "virginica")
    toy = load_linear_toy(DataSettings("linear_toy", 0, 0.0, False, {}))
    assert toy.features["x"].tolist() == [1.0, 2.0, 3.0] and list(toy.target) == [2.0, 4.0, 6.0]
    line = load_synthetic_linear(DataSettings("synthetic_linear", 8, 0.0, True,
                                              {"num_samples": 50, "weights": [1.0, 2.0, 3.0]}))
    assert len(line) == 50 and line.features.shape == (50, 3)
    with pytest.raises(DltrainError, match="data.num_samples must be a positive integer, got 0."):
        load_synthetic_linear(DataSettings("synthetic_linear", 8, 0.0, True, {"num_samples": 0}))


def test_cnn_padding_arithmetic_and_shapes():
    assert output_side(28, 5, 1, 0) == 24 and output_side(8, 3, 1, 1) == 8
    assert resolve_padding("same", 5, 28, 2) == 2
    assert resolve_padding("auto", 5, 28, 2) == 0  # 28 -> 24 -> 12 -> 8 -> 4: valid convolutions fit
    assert resolve_padding("auto", 5, 8, 2) == 2  # 8 -> 4 -> 2 -> 0: too small, so same padding
    with pytest.raises(DltrainError, match="model.padding must be auto, same or a non-negative integer"):
        resolve_padding(-1, 5, 28, 2)
    model = CNN((1, 28, 28), 10)
    assert model.flatten_size == 320 and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_linear_model_describes_its_weights_and_recurrent_net_reads_sequences():
    model = LinearRegression(1, 1)
    with torch.no_grad():
        model.linear.weight.fill_(2.0)
        model.linear.bias.fill_(-0.5)
    assert model.describe() == "w = [2.0000], b = [-0.5000]"
    assert LinearRegression(20, 1).describe() is None  # too many weights to read
    net = RecurrentNet("sequence", (6, 2), 3, hidden_size=4)
    assert net(torch.randn(5, 6, 2)).shape == (5, 3)
    with pytest.raises(DltrainError, match="model.cell must be one of"):
        RecurrentNet("sequence", (6, 2), 3, cell="transformer")


# --------------------------------------------------------------------------- the engine's parts


def test_early_stopping_patience_and_state_round_trip():
    stopping = EarlyStopping("val_loss", "min", patience=2, min_delta=0.1)
    assert stopping.update(1, {"val_loss": 1.0}) is True
    assert stopping.update(2, {"val_loss": 0.95}) is False  # not better by min_delta
    copy = EarlyStopping("val_loss", "min", patience=2, min_delta=0.1)
    copy.load_state_dict(json.loads(json.dumps(stopping.state_dict())))
    for tracker in (stopping, copy):  # the resumed one goes on exactly as the original
        assert tracker.update(3, {"val_loss": 0.99}) is False
        assert tracker.stopped and tracker.best_epoch == 1 and tracker.best == {"val_loss": 1.0}
    rising = EarlyStopping("val_accuracy", "max")  # patience 0: never stops
    for epoch, accuracy in enumerate([0.5, 0.4, 0.3, 0.2], start=1):
        rising.update(epoch, {"val_accuracy": accuracy})
    assert not rising.stopped and rising.best_value == 0.5 and rising.waited == 3


def test_device_seeding_and_speed_on_the_cpu():
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(DltrainError, match="trainer.device=cuda but no CUDA GPU is available"):
            resolve_device("cuda")
    seed_everything(3)
    first = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    assert torch.equal(first[0], torch.rand(3)) and np.array_equal(first[1], np.random.rand(3))
    assert resolve_precision("auto", CPU) == "32"
    with pytest.raises(DltrainError, match="trainer.precision=fp16 needs a GPU"):
        resolve_precision("fp16", CPU)
    model = torch.nn.Linear(2, 1)
    speed = configure(model, TrainerSettings(precision="bf16"), CPU)
    assert speed.describe() == "precision=bf16" and speed.scaler is None
    with speed.autocast():
        assert model(torch.randn(4, 2)).dtype == torch.bfloat16
    assert compiled(model, TrainerSettings()) is model  # trainer.compile=false: the model itself


def test_staged_splits_give_the_same_batches_resident_or_streamed():
    x, y = torch.randn(10, 3), torch.arange(10)
    index = torch.tensor([7, 2, 5])
    resident, streamed = Staged(x, y, CPU, max_bytes=1e9), Staged(x, y, CPU, max_bytes=0)
    assert resident.resident and not streamed.resident and len(streamed) == 10
    for staged in (resident, streamed):
        batch_x, batch_y = staged.batch(index)
        assert torch.equal(batch_x, x[index]) and torch.equal(batch_y, y[index])
    tokens = (torch.zeros(4, 6, dtype=torch.long), torch.tensor([6, 2, 3, 1]))
    assert length(tokens) == 4 and rows(tokens, slice(1, 3))[1].tolist() == [2, 3]


def test_shard_cuts_every_global_batch_into_contiguous_weighted_parts():
    # 7 rows, global batches of 5 over 2 ranks: step 0 gives rows 0-2 and 3-4, step 1 rows 5 and 6.
    assert Shard(0, 2, 0).spans(7, 5, 2) == [(0, 3, 2 * 3 / 5), (5, 6, 1.0)]
    assert Shard(1, 2, 0).spans(7, 5, 2) == [(3, 5, 2 * 2 / 5), (6, 7, 1.0)]
    # 10 rows, batches of 4 over 3 ranks: the last batch has 2 rows, so rank 2 gets none and runs
    # the batch's first row with weight 0 (it must still join every gradient all-reduce).
    shards = [Shard(rank, 3, 0) for rank in range(3)]
    spans = [shard.spans(10, 4, 3) for shard in shards]
    assert spans[2][-1] == (8, 9, 0.0)
    parts = [shard._parts(shard.rank, 10, 4, 3) for shard in shards]
    covered = sorted(i for rank in parts for start, count, _ in rank for i in range(start, start + count))
    assert covered == list(range(10))  # every row of every step in exactly one rank's part
    # DDP averages the ranks' weighted mean losses: that average is the whole batch's mean loss.
    losses = torch.rand(10, dtype=torch.float64)
    for step, first in enumerate(range(0, 10, 4)):
        averaged = sum(w * losses[a:b].mean() for a, b, w in (s[step] for s in spans)) / 3
        assert float(averaged) == pytest.approx(float(losses[first:first + 4].mean()))
    assert world_size() == 1 and current_shard() is None and not secondary_rank()


def regression_member(folder=None, count=64, seed=0, lr=0.05):
    """One member learning y = x @ w on ``count`` random rows (no validation split)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 3, generator=generator)
    y = x @ torch.tensor([1.5, -2.0, 0.5])
    spec = DataSpec(task="regression", input_shape=(3,))
    torch.manual_seed(seed)
    model = LinearRegression(3, 1)
    optimizer, regularizer = build_optimizer(model, OptimizerSettings("sgd", lr), NamedSettings("none"))
    parts = Parts(build_objective("mse", {}, spec), model, optimizer, regularizer, Schedule())
    data = Prepared(spec, Split(x, y), None, None, TabularPreprocessor().fit(pd.DataFrame(x.numpy())))
    member = Member("", seed, data, parts, EarlyStopping("train_loss", "min"))
    if folder is not None:
        member.folder = RunFolder(folder, config={"model": {"name": "linear"}}, spec={"task": "regression"},
                                  record={"task": "regression", "monitor": "train_loss"},
                                  every_seconds=3600)
    return member


def test_trainer_of_one_member_takes_its_steps_and_the_loss_falls():
    member = regression_member()
    steps = []
    member.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: steps.append(1))
    trainer = Trainer([member], settings=TrainerSettings(epochs=6), device=CPU, batch_size=16, shuffle=True)
    assert batch_size_for(64, 16) == 16 and batch_count(64, 16) == 4 and batch_size_for(64, 0) == 64
    trainer.fit()
    losses = [row["train_loss"] for row in member.rows]
    assert [row["epoch"] for row in member.rows] == [1, 2, 3, 4, 5, 6]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.2 * losses[0]
    assert len(steps) == 6 * 4  # 4 batches of 16 rows an epoch
    assert member.stopping.best_epoch == 6 and {"train_mse", "train_r2"} <= set(member.rows[-1])


def test_run_folder_goes_from_running_to_finished_with_atomic_checkpoints(tmp_path):
    folder = tmp_path / "run"
    member = regression_member(folder)
    member.folder.open(member)
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "running" and record["monitor"] == "train_loss"
    assert (folder / "preprocessing.json").is_file() and not (folder / "preprocessor.pkl").exists()
    trainer = Trainer([member], settings=TrainerSettings(epochs=3), device=CPU, batch_size=0, shuffle=False)
    trainer.fit()
    assert [p.name for p in folder.glob("*.pt")] == ["init.pt"]  # every_seconds=3600: nothing more mid-run
    member.folder.flush()
    result = conclude(member, started=0.0)
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "finished" and record["epochs_run"] == 3
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3]
    best_loss = min(row["train_loss"] for row in record["history"])
    assert record["best"]["train_loss"] == result.best["train_loss"] == best_loss
    assert record["best_epoch"] == result.best_epoch and record["model_summary"].startswith("w = [")
    last = load_checkpoint(folder / "last.pt")
    assert last["epoch"] == 3 and {"model", "optimizer", "trainer", "config", "spec"} <= set(last)
    assert torch.equal(last["model"]["linear.weight"], member.model.linear.weight.detach())
    assert load_checkpoint(folder / "best.pt")["epoch"] == result.best_epoch == 3
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "init.pt", "last.pt", "metrics.json",
                                                         "preprocessing.json", "preprocessing.npz"]  # no temporary left


def test_predictions_round_trip_through_the_one_file_schema(tmp_path):
    classes = ("cat", "dog", "owl")
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    frame = prediction_frame("multiclass", classes, probabilities, keys=[4, 9], target=[0, 2])
    assert list(frame.columns) == ["index", "target", "prediction", "probability_cat", "probability_dog",
                                   "probability_owl"]
    assert frame["prediction"].tolist() == ["cat", "owl"]
    frame.to_csv(tmp_path / "p.csv", index=False)
    scores, targets = scores_of(read_predictions(tmp_path / "p.csv"), "multiclass", classes)
    assert np.allclose(scores, probabilities) and targets.tolist() == [0, 2]
    binary = prediction_frame("binary", ("0", "1"), [0.2, 0.9], keys=[0, 1], target=[0, 1])
    binary.to_csv(tmp_path / "b.csv", index=False)  # class names that read back as numbers
    scores, targets = scores_of(read_predictions(tmp_path / "b.csv"), "binary", ("0", "1"))
    assert np.allclose(scores, [0.2, 0.9]) and targets.tolist() == [0, 1]
    assert binary["prediction"].tolist() == ["0", "1"]
    values = prediction_frame("regression", (), [1.5, -2.0], keys=["a.csv", "b.csv"], key="input")
    assert list(values.columns) == ["input", "prediction"]


# --------------------------------------------------------------------------- TensorBoard


def test_scalar_tags_group_by_metric_and_hparams_flatten_the_config():
    row = {"epoch": 3, "train_loss": 0.5, "val_loss": 0.7, "val_macro_f1": 0.8, "lr": 0.01, "seconds": 2.0,
           "note": "not a number"}
    assert scalar_tags(row) == {"loss/train": 0.5, "loss/val": 0.7, "macro_f1/val": 0.8, "lr": 0.01,
                                "time/epoch_seconds": 2.0}
    cfg = {"model": {"name": "mlp", "hidden_sizes": [64, 32], "dropout": None}, "trainer": {
        "epochs": 5, "progress": False, "device": "cpu"}, "logger": {"name": "tensorboard"}, "k": 5}
    assert hparams_of(cfg, seed=2) == {"model.name": "mlp", "model.hidden_sizes": "[64, 32]",
                                       "model.dropout": "null", "trainer.epochs": 5, "trainer.seed": 2}


def test_tb_refuses_a_missing_folder_before_starting_a_server(tmp_path):
    with pytest.raises(DltrainError, match="There is no folder '.*nowhere' to show"):
        tb.serve(tmp_path / "nowhere")
    assert tb._URL.search("TensorBoard 2.16 at http://127.0.0.1:6006/ (Press CTRL+C to quit)")


def test_figures_are_rgb_arrays():
    matrix = figures.confusion_matrix(np.array([[5, 1], [0, 4]]), ["a", "b"], title="confusion")
    scatter = figures.predicted_vs_true(np.arange(5.0), np.arange(5.0) + 0.1, title="fit")
    grid = figures.image_grid(np.random.rand(3, 1, 8, 8), ["0", "1", "2"], title="samples")
    for picture in (matrix, scatter, grid):
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        assert picture.std() > 0  # something was drawn
    stretched = figures.displayable(np.array([[[[2.0, 4.0]]]]))
    assert stretched.tolist() == [[[0.0, 1.0]]]


# --------------------------------------------------------------------------- run folders, by hand


def write_fit_run(folder: Path, *, status="finished", overrides=("data=iris", "trainer.epochs=2"),
                  best=0.25, seconds=3.0, when=None):
    """A fit run folder as dltrain leaves it: .hydra/ and metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "mlp"},
                                                                   "data": {"name": "iris"}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": 0}}}))
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": best}]
    record = {"status": status, "monitor": "val_loss", "mode": "min", "task": "multiclass",
              "epochs_run": 2, "best_epoch": 2, "history": history, "final": history[-1]}
    if status == "finished":
        record.update(best=history[-1], seconds=seconds)
    else:
        record["error"] = "it diverged"
    (folder / "metrics.json").write_text(json.dumps(record))
    if when is not None:
        for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            os.utime(folder / ".hydra" / name, (when, when))


def test_find_runs_reads_hand_made_run_folders_newest_first(tmp_path):
    root = tmp_path / "outputs"
    write_fit_run(root / "old", when=1_700_000_000)
    write_fit_run(root / "new", status="failed", overrides=["data=iris", "optimizer.lr=10"],
                  when=1_700_000_100)
    (root / "not_a_run").mkdir()
    found = runs.find_runs(root)
    assert [run.path for run in found] == ["new", "old"]
    old, new = found[1], found[0]
    assert (old.kind, old.status, old.model, old.data) == ("fit", "finished", "mlp", "iris")
    assert old.command == "dltrain fit data=iris trainer.epochs=2"
    assert (old.best, old.epochs, old.seconds, old.monitor) == (0.25, 2, 3.0, "val_loss")
    assert new.status == "failed" and new.error == "it diverged" and new.best == 0.25  # from history
    assert runs.duration(75) == "1 min 15 s" and runs.duration(None) == "-"
    with pytest.raises(DltrainError, match="There is no folder"):
        runs.find_runs(tmp_path / "nowhere")


def write_fold(run_dir: Path, index: int, val_index, target, scores, final: dict):
    folder = run_dir / f"fold_{index}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", "epochs_run": 2,
                                                     "final": {"epoch": 2, "lr": 0.1, **final}}))
    (folder / "fold.json").write_text(json.dumps({"fold": index, "repeat": 0, "train_size": 2,
                                                  "val_size": len(val_index)}))
    prediction_frame("binary", ("no", "yes"), scores, keys=val_index, target=target).to_csv(
        folder / "val_predictions.csv", index=False)


def test_cv_report_aggregates_two_hand_made_folds(tmp_path):
    run_dir = tmp_path / "cv"
    write_fold(run_dir, 0, [0, 2], [0, 1], [0.1, 0.8], {"train_loss": 0.3, "val_loss": 0.4, "val_accuracy": 1.0})
    write_fold(run_dir, 1, [1, 3], [1, 0], [0.4, 0.3], {"train_loss": 0.5, "val_loss": 0.8, "val_accuracy": 0.5})
    settings = SimpleNamespace(data=SimpleNamespace(name="hand"), model=SimpleNamespace(name="mlp"),
                               trainer=SimpleNamespace(monitor="loss", mode="auto"))
    source = type("Source", (), {"task": "binary", "class_names": ("no", "yes"), "__len__": lambda self: 4})()
    summary = cv_report.aggregate(run_dir, [0, 1], settings, CVSettings(k=2), source)
    assert summary["mean"]["val_loss"] == pytest.approx(0.6) and summary["std"]["val_loss"] == pytest.approx(0.2)
    assert summary["objective"] == {"metric": "val_loss", "mode": "min", "mean": pytest.approx(0.6),
                                    "std": pytest.approx(0.2)}
    assert summary["strategy"] == "stratified" and summary["samples"] == 4
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    assert oof["index"].tolist() == [0, 1, 2, 3] and oof["fold"].tolist() == [0, 1, 0, 1]
    assert summary["out_of_fold"]["rows"] == 4 and summary["out_of_fold"]["accuracy"] == 0.75
    table = pd.read_csv(run_dir / "cv_summary.csv")
    assert table["fold"].tolist() == ["0", "1", "mean", "std"]
    from rich.console import Console

    out = StringIO()
    cv_report.print_summary({**summary, "seconds": 1.0}, run_dir, out=Console(file=out, width=200))
    assert "Mean val_loss over 2 folds: 0.6000 ± 0.2000" in out.getvalue()


def test_run_folder_overrides_are_unique_and_keep_the_users_own():
    first, second = launch.run_folder_overrides([]), launch.run_folder_overrides([])
    assert first != second  # same second, different random suffix
    assert first[0].startswith("hydra.run.dir=outputs/") and first[1].startswith("hydra.sweep.dir=")
    assert launch.run_folder_overrides(["hydra.run.dir=mine", "hydra.sweep.dir=sweeps"]) == []
    assert launch.objective_value({"objective": {"mean": 0.25}}) == 0.25
    assert launch.objective_value(SimpleNamespace(best={"val_loss": 0.5}, monitor="val_loss")) == 0.5
    assert launch.objective_value(None) is None


def test_resume_takes_its_target_from_the_words_and_its_config_from_the_run(tmp_path):
    from omegaconf import OmegaConf

    from dltrain.config import compose

    assert split_resume(["data=iris"]) == (None, ["data=iris"])
    assert split_resume(["resume=a", "trainer.epochs=4", "++resume=b"]) == ("b", ["trainer.epochs=4"])
    assert split_resume(["resume=a", "~resume", "k=3"]) == (None, ["k=3"])
    assert split_resume(["resume=null"]) == (None, [])
    run_dir = tmp_path / "run"
    write_fit_run(run_dir)
    (run_dir / CONFIG).write_text(OmegaConf.to_yaml(compose(["data=iris", "trainer.epochs=2"])))
    cfg = resumed_config("run", run_dir, run_dir / CONFIG,
                         ["trainer.epochs=4", "logger=none", "trainer.device=cpu", "~trainer.progress"])
    assert (cfg.trainer.epochs, dict(cfg.logger), cfg.trainer.device, cfg.trainer.progress) == (4, {}, "cpu", True)
    assert cfg.data.name == "iris" and cfg.resume == str(run_dir)
    with pytest.raises(DltrainError, match=r"^resume=run cannot change optimizer.lr \(a resumed run keeps"):
        resumed_config("run", run_dir, run_dir / CONFIG, ["optimizer.lr=0.5"])
    with pytest.raises(DltrainError, match="'trainer.epochs=3,4' is a sweep"):
        resumed_config("run", run_dir, run_dir / CONFIG, ["trainer.epochs=3,4"])
    (run_dir / "last.pt").write_bytes(b"not read: the run has finished its 2 epochs")
    assert resume_fit(str(run_dir), ["trainer.progress=false"]) is None


def test_what_a_finished_run_has_left_to_train(tmp_path):
    folder = tmp_path / "run"
    write_fit_run(folder)  # finished: 2 epochs, the best the last
    assert nothing_left(folder, TrainerSettings(epochs=2)) == (
        "has finished its 2 epochs (a larger trainer.epochs trains it on)")
    assert nothing_left(folder, TrainerSettings(epochs=3)) is None
    with pytest.raises(DltrainError, match="trainer.epochs=1 is fewer than the 2 epochs"):
        nothing_left(folder, TrainerSettings(epochs=1))
    record = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**record, "epochs_run": 5, "best_epoch": 2}))
    assert nothing_left(folder, TrainerSettings(epochs=10, patience=3)) == (
        "stopped early after 5 epochs, 3 without improvement (a larger trainer.early_stopping.patience, "
        "or 0, trains it on)")
    assert nothing_left(folder, TrainerSettings(epochs=10, patience=4)) is None
    assert nothing_left(folder, TrainerSettings(epochs=10, patience=0)) is None
    (folder / "metrics.json").write_text(json.dumps({**record, "status": "interrupted"}))
    assert nothing_left(folder, TrainerSettings(epochs=2)) is None  # its last.pt decides how far it got
    (folder / "metrics.json").write_text("[")
    assert nothing_left(folder, TrainerSettings(epochs=2)) is None


def test_early_stopping_goes_on_under_the_patience_it_is_loaded_with():
    stopping = EarlyStopping("val_loss", "min", patience=2)
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7], start=1):
        stopping.update(epoch, {"val_loss": loss})
    assert stopping.stopped and stopping.waited == 2
    for patience, stopped in ((2, True), (1, True), (3, False), (0, False)):
        resumed = EarlyStopping("val_loss", "min", patience=patience)
        resumed.load_state_dict(stopping.state_dict())
        assert resumed.stopped is stopped and resumed.best_epoch == 2


def test_the_saved_preprocessing_is_the_fitted_one(tmp_path):
    source = load_bundled(DataSettings("iris", 8, 0.2, True, {}))
    fitted = prepare(source, np.arange(0, 150, 2)).preprocessor
    save_preprocessing(tmp_path, fitted)
    again = prepare(source, np.arange(1, 150, 2), preprocessor=load_preprocessing(tmp_path))
    features = source.features.iloc[:5] if hasattr(source.features, "iloc") else source.features[:5]
    torch.testing.assert_close(again.preprocessor.transform(features), fitted.transform(features))
    with pytest.raises(DltrainError):
        load_preprocessing(tmp_path / "elsewhere")


def test_a_sweep_is_collected_from_its_job_folders_and_ranked(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for job, (lr, best) in enumerate([("0.1", 0.4), ("0.01", 0.2), ("1.0", None)]):
        folder = sweep_dir / str(job)
        write_fit_run(folder, status="finished" if best is not None else "failed",
                      overrides=["data=iris", f"optimizer.lr={lr}"], best=best or 0.0)
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": job}}}))
    points = sweep.rank(sweep.collect(sweep_dir, "fit", ["data=iris", "optimizer.lr=0.1,0.01,1.0"]))
    assert [(p.job, p.rank, p.status) for p in points] == [(1, 1, "finished"), (0, 2, "finished"),
                                                           (2, None, "failed")]
    assert points[0].swept == {"optimizer.lr": "0.01"} and points[0].value == 0.2
    assert points[2].error == "it diverged"
    nan = sweep.Point(job=3, folder="3", swept={}, overrides=[], status="finished", value=math.nan,
                      mode="min")
    assert sweep.rank([nan, *points])[-2:] == [nan, points[2]]  # NaN last among the finished


def test_an_epoch_record_keeps_losses_and_outputs_in_order_and_saves_copies():
    from dltrain.train.epoch_record import EpochRecord

    batches = [torch.randn(4, 3), torch.randn(4, 3), torch.randn(2, 3)]
    record = EpochRecord(steps=3, rows=10)
    for step, batch in enumerate(batches[:2]):
        record.add_loss(torch.tensor(float(step)))
        record.add_outputs(batch)
    saved = record.saved()  # a stop request's cursor: its own storage, not the buffer's
    assert saved["outputs"].untyped_storage().nbytes() == 8 * 3 * 4
    again = EpochRecord.resumed(3, 10, saved["losses"], saved["outputs"])
    again.add_loss(torch.tensor(2.0))
    again.add_outputs(batches[2])
    assert torch.equal(again.losses, torch.tensor([0.0, 1.0, 2.0])) and float(again.last_loss()) == 2.0
    assert torch.equal(again.outputs, torch.cat(batches))
    grown = EpochRecord(steps=1, rows=2)  # more rows than counted on: kept, not lost
    grown.add_outputs(batches[0][:2])
    grown.add_outputs(batches[1])
    assert torch.equal(grown.outputs, torch.cat([batches[0][:2], batches[1]]))
