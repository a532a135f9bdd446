"""Several loggers at once (logger=[tensorboard,csv,mlflow]): the logger group chosen from the
shell, metrics.csv read back with pandas (a fit, every fold and the refit of a cross-validation,
a resumed run), the MLflow run read back with MLflow's own client, logger=none."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from omegaconf import OmegaConf

from conftest import read_metrics, run_folders
from dltrain.config import LoggerSettings, MlflowSettings, TensorBoardSettings, compose, read_settings
from dltrain.errors import DltrainError
from dltrain.train import mlflow_logger
from dltrain.train.csv_logger import METRICS_CSV, CsvLogger
from dltrain.train.loggers import Logger, Loggers
from dltrain.train.population import open_loggers

FAST = ["data=iris", "trainer.progress=false", "trainer.checkpoint_every_seconds=0"]
VALID = "valid options are: csv, mlflow, none, tensorboard."


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def assert_rows_are_history(path: Path, history: list[dict]) -> None:
    """metrics.csv, as pandas reads it, holds metrics.json's history: the same columns and rows."""
    rows = read_csv(path).to_dict("records")
    assert len(rows) == len(history)
    for row, expected in zip(rows, history):
        assert list(row) == list(expected)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-12), key


# --------------------------------------------------------------------------- the config group


def test_several_loggers_are_chosen_as_a_list_and_none_and_tensorboard_still_work():
    both = read_settings(compose(["logger=[tensorboard,csv]", "logger.tensorboard.graph=true"])).logger
    assert both.names == ("tensorboard", "csv")
    assert both.tensorboard == TensorBoardSettings(graph=True) and both.mlflow is None
    assert read_settings(compose(["logger=tensorboard"])).logger == LoggerSettings()
    assert LoggerSettings().names == ("tensorboard",)
    none = compose(["logger=none"])
    assert dict(none.logger) == {} and read_settings(none).logger.names == ()
    chosen = read_settings(compose(["logger=[csv,mlflow]", "logger.mlflow.experiment=course"])).logger
    assert chosen.names == ("csv", "mlflow")
    assert chosen.mlflow == MlflowSettings(tracking_uri="sqlite:///outputs/mlflow.db", experiment="course",
                                           checkpoint=True)


@pytest.mark.parametrize("overrides, message", [
    (["logger=wandb"], f"Unknown logger 'wandb'; {VALID}"),
    (["logger=[tensorboard,wandb]"], f"Unknown logger 'wandb'; {VALID}"),
    (["logger=[]"], "'logger=[]' chooses no logger; choose none with logger=none, or one or more of: "
                    "csv, mlflow, none, tensorboard."),
    (["logger.graph=true"], "There is no setting 'logger.graph' to override; did you mean "
                            "logger.tensorboard.graph?"),
    (["logger=csv", "logger.tensorboard.graph=true"], "choose it too, as in logger=[csv,tensorboard]."),
    (["model=[mlp,cnn]"], "'model=[mlp,cnn]' chooses several model options, but a run has one model; "
                          "to train each in turn, sweep them with -m: model=mlp,cnn."),
])
def test_a_bad_logger_choice_is_one_sentence(overrides, message):
    with pytest.raises(DltrainError) as caught:
        compose(overrides)
    text = str(caught.value)
    assert text.endswith(message) and text.count(". ") == 0, text


def test_the_shell_sees_the_loggers_and_how_to_choose_several(cli):
    listed = cli("list", "logger").output
    assert "logger=[tensorboard,csv]" in listed and "pip install 'dltrain[mlflow]'" in listed
    result = cli("fit", "logger=[csv,wandb]")
    assert result.exit_code == 2 and f"Unknown logger 'wandb'; {VALID}" in result.output


def test_a_config_saved_before_loggers_could_be_combined_still_reads():
    """A run folder's or a checkpoint's config from an older dltrain: logger.name beside its settings."""
    old = OmegaConf.create({"data": {"name": "iris"}, "logger": {"name": "tensorboard", "graph": True,
                                                                 "max_images": 4}})
    logger = read_settings(old).logger
    assert logger.names == ("tensorboard",)
    assert logger.tensorboard == TensorBoardSettings(graph=True, max_images=4)
    assert read_settings(OmegaConf.create({"logger": {"name": "none"}})).logger.names == ()


def test_resume_never_takes_the_mlflow_tracking_uri_from_the_run_folder(tmp_path, capsys):
    """MLflow writes wherever the URI points, outside the run folder: a saved one is not followed."""
    import yaml

    from dltrain.commands.resume import CONFIG, resumed_config

    run_dir = tmp_path / "run"
    (run_dir / CONFIG).parent.mkdir(parents=True)
    saved = OmegaConf.to_container(compose(["logger=[csv,mlflow]", "trainer.epochs=2"]))
    saved["logger"]["mlflow"]["tracking_uri"] = "sqlite:////elsewhere/planted.db"
    (run_dir / CONFIG).write_text(yaml.safe_dump(saved))
    cfg = resumed_config("run", run_dir, run_dir / CONFIG, ["trainer.epochs=3"])
    assert read_settings(cfg).logger.mlflow.tracking_uri == "sqlite:///outputs/mlflow.db"
    assert "not at the saved sqlite:////elsewhere/planted.db" in " ".join(capsys.readouterr().out.split())
    given = resumed_config("run", run_dir, run_dir / CONFIG, ["logger.mlflow.tracking_uri=sqlite:///mine.db"])
    assert read_settings(given).logger.mlflow.tracking_uri == "sqlite:///mine.db"
    assert read_settings(given).logger.names == ("csv", "mlflow")


# --------------------------------------------------------------------------- the loggers


def test_metrics_csv_stays_readable_when_a_column_appears_late_or_a_link_is_planted(tmp_path):
    logger = CsvLogger(tmp_path)
    path = tmp_path / METRICS_CSV
    logger.start(None, None, None, None)
    assert not path.exists()  # no file until there is a row: an empty file is not a table
    logger.epoch_end(1, {"epoch": 1, "train_loss": 0.5, "lr": 0.1})
    logger.epoch_end(2, {"epoch": 2, "train_loss": 0.25, "lr": 0.1})
    assert read_csv(path).to_dict("list") == {"epoch": [1, 2], "train_loss": [0.5, 0.25], "lr": [0.1, 0.1]}
    # A metric that first appears at epoch 3: every row gets its column, empty before.
    logger.epoch_end(3, {"epoch": 3, "train_loss": 1 / 3, "val_loss": 0.75, "lr": 0.1})
    frame = read_csv(path)
    assert list(frame.columns) == ["epoch", "train_loss", "lr", "val_loss"]
    assert frame["val_loss"].isna().tolist() == [True, True, False]
    assert frame["train_loss"].iloc[-1] == pytest.approx(1 / 3, rel=1e-15)
    # A link planted in the run folder is replaced, never written through.
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("precious\n")
    path.unlink()
    path.symlink_to(outside)
    logger.epoch_end(4, {"epoch": 4, "train_loss": 0.125, "val_loss": 0.5, "lr": 0.1})
    assert outside.read_text() == "precious\n"
    assert not path.is_symlink() and read_csv(path)["epoch"].tolist() == [1, 2, 3, 4]
    # A resumed run's file holds its checkpoint's epochs, not those a killed run logged past it.
    resumed = CsvLogger(tmp_path)
    resumed.start(None, None, None, None, first_epoch=3,
                  history=[{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}])
    assert read_csv(path).to_dict("list") == {"epoch": [1, 2], "train_loss": [0.5, 0.25]}
    resumed.epoch_end(3, {"epoch": 3, "train_loss": 0.2})
    assert read_csv(path)["epoch"].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS_CSV]  # no temporary left


class _Recorder(Logger):
    def __init__(self, step_every: int):
        self.step_every = step_every
        self.calls = []

    def step(self, step, loss):
        self.calls.append(("step", step))

    def close(self, status):
        self.calls.append(("close", status))


def test_loggers_as_one_take_their_own_steps_and_close_as_the_training_ended():
    every_two, every_three, never = _Recorder(2), _Recorder(3), _Recorder(0)
    loggers = Loggers([every_two, every_three, never])
    assert loggers.step_every == 1 and Loggers([]).step_every == 0
    for step in range(1, 7):
        if step % loggers.step_every == 0:
            loggers.step(step, None)
    assert every_two.calls == [("step", 2), ("step", 4), ("step", 6)]
    assert every_three.calls == [("step", 3), ("step", 6)] and never.calls == []
    for error, status in ((KeyboardInterrupt, "interrupted"), (ValueError, "failed")):
        with pytest.raises(error), Loggers([never]):
            raise error()
        assert never.calls[-1] == ("close", status)


def test_mlflow_without_mlflow_installed_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow_logger.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DltrainError, match=r"^logger=mlflow needs MLflow, which is not installed; install "
                                           r"it with: pip install 'dltrain\[mlflow\]'"):
        open_loggers(LoggerSettings(tensorboard=None, mlflow=MlflowSettings()), tmp_path, {}, None,
                     monitor="val_loss", seed=0)


# --------------------------------------------------------------------------- whole runs


@pytest.mark.slow
def test_fit_logs_to_tensorboard_and_metrics_csv_at_once(cli):
    from test_tensorboard import events, scalars

    result = cli("fit", "trainer.epochs=3", "logger=[tensorboard,csv]", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    history = read_metrics(run_dir)["history"]
    assert_rows_are_history(run_dir / METRICS_CSV, history)
    assert [step for step, _ in scalars(events(run_dir), "loss/val")] == [1, 2, 3]


@pytest.mark.slow
def test_cv_writes_metrics_csv_for_every_fold_and_the_refit(cli):
    # The folds trained together (one population) and the refit alone: both ways of opening a run.
    result = cli("cv", "k=2", "trainer.epochs=2", "cv.vectorize=true", "cv.refit=true", "logger=csv", *FAST)
    assert result.exit_code == 0, result.output
    (summary,) = Path("outputs").glob("**/cv_summary.json")
    cv_dir = summary.parent
    for folder in (cv_dir / "fold_0", cv_dir / "fold_1", cv_dir / "refit"):
        assert_rows_are_history(folder / METRICS_CSV, read_metrics(folder)["history"])
    assert not list(cv_dir.glob("**/events.out.tfevents.*"))  # logger=csv alone: no TensorBoard


@pytest.mark.slow
def test_resume_may_change_the_loggers_and_logger_none_writes_nothing(cli):
    result = cli("fit", "trainer.epochs=2", "logger=none", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    assert not list(Path(".").glob("**/events.out.tfevents.*")) and not list(Path(".").glob("**/*.csv"))
    assert not Path("outputs/mlflow.db").exists()
    result = cli("fit", f"resume={run_dir}", "trainer.epochs=3", "logger=[tensorboard,csv]")
    assert result.exit_code == 0, result.output
    # The resumed run's metrics.csv holds every epoch, those before the resume too.
    assert_rows_are_history(run_dir / METRICS_CSV, read_metrics(run_dir)["history"])
    assert read_csv(run_dir / METRICS_CSV)["epoch"].tolist() == [1, 2, 3]
    assert list(run_dir.glob("*/events.out.tfevents.*"))


@pytest.mark.slow
def test_mlflow_run_reads_back_with_mlflows_own_client(cli):
    from mlflow.tracking import MlflowClient

    result = cli("fit", "trainer.epochs=3", "data.batch_size=32", "logger=[csv,mlflow]", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    record = read_metrics(run_dir)
    client = MlflowClient(tracking_uri="sqlite:///outputs/mlflow.db")  # the default tracking URI
    experiment = client.get_experiment_by_name("dltrain")
    (found,) = client.search_runs([experiment.experiment_id])
    run = client.get_run(found.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dltrain.run_folder"] == str(run_dir.resolve())
    params = run.data.params
    assert params["data.name"] == "iris" and params["data.batch_size"] == "32"
    assert params["optimizer.lr"] == "0.001" and params["trainer.seed"] == "0"
    assert not any(key.startswith(("logger.", "hydra.")) for key in params)
    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], r[key]) for r in record["history"]]
    assert run.data.metrics["best_val_loss"] == record["best"]["val_loss"]
    assert run.data.metrics["best_epoch"] == record["best_epoch"]
    # best.pt as an artifact, kept beside the database (not in ./mlruns)
    (artifact,) = client.list_artifacts(run.info.run_id)
    assert artifact.path == "best.pt"
    stored = Path(urlparse(run.info.artifact_uri).path) / "best.pt"
    assert stored.is_relative_to(Path("outputs/mlartifacts").resolve())
    assert stored.read_bytes() == (run_dir / "best.pt").read_bytes()
    assert not Path("mlruns").exists()
    assert_rows_are_history(run_dir / METRICS_CSV, record["history"])
    # A tracking URI MLflow cannot use is one sentence, and nothing is trained.
    Path("notes.db").write_text("not a database\n")
    result = cli("fit", "trainer.epochs=1", "logger=mlflow", "logger.mlflow.tracking_uri=sqlite:///notes.db", *FAST)
    assert result.exit_code == 2
    assert ("logger.mlflow.tracking_uri=sqlite:///notes.db could not be used by MLflow ((sqlite3.DatabaseError) "
            "file is not a database); give a database such as") in result.output
    assert run_folders() == [run_dir]
