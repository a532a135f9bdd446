"""logger=mlflow: each run (each fold, the refit) as an MLflow run, through MLflow's own client:
the composed config as params (flattened ``group.key``, the hyperparameters TensorBoard's HParams
get), every epoch's metrics row with the epoch as the step, the test metrics and the best value
at the end, and best.pt as an artifact. MLflow is an optional extra (pip install
'dltrain[mlflow]') imported only when a run starts with it.

``logger.mlflow.tracking_uri`` defaults to ``sqlite:///outputs/mlflow.db`` (MLflow's database
store; its file store is deprecated): the file and its folder are made on first use, and a new
experiment there keeps its artifacts beside it, in ``mlartifacts/``. A resumed run is a new
MLflow run holding the epochs of its checkpoint again (an MLflow run's points cannot be taken
back, so the epochs a killed run logged past its checkpoint stay with the killed run)."""

from __future__ import annotations

import importlib.util
import os
import time
from contextlib import contextmanager
from pathlib import Path

from dltrain.console import console
from dltrain.errors import DltrainError
from dltrain.train.loggers import Logger
from dltrain.train.tensorboard import hparams_of

# dltrain's end of a run -> MLflow's run status
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_SQLITE = "sqlite:///"
_PARAM_CHARACTERS = 6000  # MLflow's longest param value


def check_installed() -> None:
    if importlib.util.find_spec("mlflow") is None:
        raise DltrainError("logger=mlflow needs MLflow, which is not installed; install it with: "
                           "pip install 'dltrain[mlflow]' (or choose other loggers).")


class MlflowLogger(Logger):
    def __init__(self, settings, folder: Path, cfg, *, seed: int, out=console):
        check_installed()
        self.settings = settings
        self.folder = Path(folder)
        self.cfg = cfg
        self.seed = seed
        self.out = out
        self.client = None
        self.run_id: str | None = None
        self.open = False

    def start(self, model, optimizer, data, device, first_epoch: int = 1, history=()) -> None:
        from mlflow.entities import Param

        self.client, experiment_id = self._connect()
        tags = {"dltrain.run_folder": str(self.folder.resolve())}
        if history:
            tags["dltrain.resumed_after_epoch"] = str(len(history))
        run = self.client.create_run(experiment_id, run_name=str(self.folder), tags=tags)
        self.run_id, self.open = run.info.run_id, True
        params = [Param(key, str(value)[:_PARAM_CHARACTERS])
                  for key, value in hparams_of(self.cfg, seed=self.seed).items()]
        self.client.log_batch(self.run_id, params=params)
        for row in history:
            self.epoch_end(row["epoch"], row)
        self.out.print(f"MLflow run {self.run_id} in experiment {self.settings.experiment!r} "
                       f"at {self.settings.tracking_uri}")

    def _connect(self):
        """MLflow's client for the tracking URI and the experiment's id (made on first use), or
        one sentence when MLflow cannot use that URI."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        refusals: tuple = (MlflowException, OSError)
        if importlib.util.find_spec("sqlalchemy") is not None:  # a database store's (a file that is no database)
            from sqlalchemy.exc import SQLAlchemyError

            refusals += (SQLAlchemyError,)
        name, uri = self.settings.experiment, self.settings.tracking_uri
        try:
            with _one_at_a_time(uri):
                client = MlflowClient(tracking_uri=uri)  # makes a new database's tables
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    try:
                        return client, client.create_experiment(name, artifact_location=_artifacts_beside(uri))
                    except MlflowException:  # a tracking server's: another process made it meanwhile
                        experiment = client.get_experiment_by_name(name)
                        if experiment is None:
                            raise
        except refusals as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DltrainError(f"logger.mlflow.tracking_uri={uri} could not be used by MLflow ({first}); "
                               f"give a database such as sqlite:///outputs/mlflow.db or a tracking "
                               f"server's URL.") from None
        if experiment.lifecycle_stage == "deleted":
            raise DltrainError(f"logger.mlflow.experiment={name}: that MLflow experiment was deleted; "
                               f"restore it (mlflow experiments restore) or name another.")
        return client, experiment.experiment_id

    def epoch_end(self, epoch: int, row: dict) -> None:
        self._metrics({key: value for key, value in row.items() if key != "epoch"}, epoch)

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), stamp, step) for key, value in values.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, result, data, member) -> None:
        """The test metrics of the best model and the best value, at the last epoch; best.pt."""
        try:
            values = {f"test_{key}": value for key, value in (result.test or {}).items()}
            values[f"best_{result.monitor}"] = result.best[result.monitor]
            values["best_epoch"] = result.best_epoch
            self._metrics(values, result.epochs_run)
            best = self.folder / "best.pt"
            if self.settings.checkpoint and best.is_file():
                self.client.log_artifact(self.run_id, str(best))
        finally:
            self.close("finished")

    def close(self, status: str) -> None:
        if self.open:
            self.open = False
            self.client.set_terminated(self.run_id, _STATUS[status])


@contextmanager
def _one_at_a_time(uri: str):
    """For a database file: hold a lock on its folder (made here: SQLAlchemy makes the file, not
    its folder) while MLflow makes its tables and the experiment. Two processes making a new
    database at once (the jobs of a sweep) break it: MLflow's table creation has no lock of its own."""
    if not uri.startswith(_SQLITE):
        yield
        return
    import fcntl

    folder = Path(uri[len(_SQLITE):]).parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(handle)


def _artifacts_beside(uri: str) -> str | None:
    """Artifacts of a new experiment in a database file: mlartifacts/ beside the file (MLflow's
    default would be ./mlruns wherever the run was started); a server keeps its own default."""
    if not uri.startswith(_SQLITE):
        return None
    return (Path(uri[len(_SQLITE):]).resolve().parent / "mlartifacts").as_uri()
