"""dltrain runs: a folder with a finished, a failed and an interrupted run and cross-validations,
shown newest first as a table and as JSON; the one-sentence error for a missing folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import read_metrics, run_folders

FAST = ["trainer.progress=false", "logger=none"]


def _set_started(run_dir: Path, when: float) -> None:
    for name in ("hydra.yaml", "config.yaml", "overrides.yaml"):  # hydra.yaml: a Hydra job's
        if (run_dir / ".hydra" / name).exists():
            os.utime(run_dir / ".hydra" / name, (when, when))


def _copy_with_status(run_dir: Path, name: str, status: str, epochs: int) -> Path:
    """A copy of a finished run that ended after ``epochs`` epochs as launch.py leaves it."""
    copy = run_dir.parent / name
    shutil.copytree(run_dir, copy)
    record = read_metrics(copy)
    history = record.pop("history")[:epochs]
    for key in ("best", "test", "seconds", "stopped_early", "model_summary"):
        record.pop(key, None)
    record.update(status=status, epochs_run=epochs, final=history[-1], best_epoch=1,
                  error="The training loss became nan in epoch 2 at step 1 of 1; lower optimizer.lr."
                  if status == "failed" else "interrupted by the user")
    if status == "interrupted":
        record["history"] = history
    (copy / "metrics.json").write_text(json.dumps(record))
    return copy


@pytest.fixture
def folder_of_runs(cli):
    """outputs/ with: a finished fit, a failed and an interrupted copy of it, a finished
    cross-validation, and a cross-validation whose second fold failed (oldest to newest)."""
    result = cli("fit", "data=iris", "trainer.epochs=2", "optimizer.lr=0.01", *FAST)
    assert result.exit_code == 0, result.output
    (finished,) = run_folders()
    result = cli("cv", "k=2", "data=iris", "trainer.epochs=1", *FAST)
    assert result.exit_code == 0, result.output
    (cv_dir,) = {p.parent for p in Path("outputs").glob("**/cv_summary.json")}
    failed = _copy_with_status(finished, "failed_run", "failed", 1)
    interrupted = _copy_with_status(finished, "interrupted_run", "interrupted", 1)
    broken_cv = cv_dir.parent / "broken_cv"
    shutil.copytree(cv_dir, broken_cv)
    (broken_cv / "cv_summary.json").unlink()
    fold = json.loads((broken_cv / "fold_1" / "metrics.json").read_text())
    fold.update(status="failed", error="fold 1 went wrong")
    (broken_cv / "fold_1" / "metrics.json").write_text(json.dumps(fold))

    now = time.time()
    _set_started(finished, now - 500)
    _set_started(failed, now - 400)
    _set_started(interrupted, now - 300)
    for i, folder in enumerate((cv_dir, broken_cv)):
        when = now - 200 + 100 * i
        _set_started(folder, when)  # a cross-validation's own .hydra/
        for fold_dir in folder.glob("fold_*"):
            _set_started(fold_dir, when + 1)
    return {"finished": finished, "failed": failed, "interrupted": interrupted, "cv": cv_dir,
            "broken_cv": broken_cv}


@pytest.mark.slow
def test_runs_lists_every_run_newest_first_with_its_status(cli, folder_of_runs):
    result = cli("runs", "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    by_name = {Path(run["path"]).name: run for run in runs}
    expected_order = ["broken_cv", folder_of_runs["cv"].name, "interrupted_run", "failed_run",
                      folder_of_runs["finished"].name]
    assert [Path(run["path"]).name for run in runs] == expected_order

    finished = by_name[folder_of_runs["finished"].name]
    metrics = read_metrics(folder_of_runs["finished"])
    assert finished["status"] == "finished" and finished["kind"] == "fit"
    assert finished["command"] == "dltrain fit data=iris trainer.epochs=2 optimizer.lr=0.01 " \
                                  "trainer.progress=false logger=none"
    assert (finished["model"], finished["data"]) == ("mlp", "iris")
    assert finished["monitor"] == "val_loss"
    assert finished["best"] == metrics["best"]["val_loss"]
    assert finished["epochs"] == 2
    assert finished["seconds"] == pytest.approx(metrics["seconds"])

    failed = by_name["failed_run"]
    assert failed["status"] == "failed" and failed["epochs"] == 1
    assert failed["best"] == metrics["history"][0]["val_loss"]  # the best epoch it reached
    assert "nan in epoch 2" in failed["error"]
    assert by_name["interrupted_run"]["status"] == "interrupted"

    cv = by_name[folder_of_runs["cv"].name]
    summary = json.loads((folder_of_runs["cv"] / "cv_summary.json").read_text())
    assert cv["kind"] == "cv" and cv["status"] == "finished"
    assert cv["command"] == "dltrain cv k=2 data=iris trainer.epochs=1 trainer.progress=false logger=none"
    assert cv["best"] == summary["objective"]["mean"] and cv["best_std"] == summary["objective"]["std"]
    assert (cv["folds"], cv["epochs"]) == (2, 1)
    broken = by_name["broken_cv"]
    assert broken["status"] == "failed" and broken["error"] == "fold 1 went wrong"

    # The same runs as a table.
    result = cli("runs")
    assert result.exit_code == 0, result.output
    text = result.output
    for word in ("finished", "failed", "interrupted", "dltrain fit data=iris", "dltrain cv k=2",
                 "val_loss", "× 2", "failed_run", "interrupted_run"):
        assert word in text, word
    assert text.index("broken_cv") < text.index("interrupted_run") < text.index("failed_run")
    # One folder of a sweep or a single run also works as PATH.
    result = cli("runs", str(folder_of_runs["failed"]), "--json")
    (run,) = json.loads(result.output)
    assert run["status"] == "failed"


def test_runs_on_an_empty_or_missing_folder(cli):
    Path("empty").mkdir()
    result = cli("runs", "empty")
    assert result.exit_code == 0 and "No runs under empty yet" in result.output
    assert json.loads(cli("runs", "empty", "--json").output) == []
    result = cli("runs", "nowhere")
    assert result.exit_code == 2
    assert "There is no folder 'nowhere' with runs" in result.output


def _running_run(folder: Path) -> Path:
    """A run folder as a process leaves it while it trains (or when SIGKILL ended it)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- data=iris\n")
    (folder / "metrics.json").write_text(json.dumps({"status": "running", "monitor": "val_loss",
                                                     "model": "mlp", "data": "iris"}))
    return folder


def test_a_running_run_that_nobody_holds_was_killed(cli):
    from dltrain.files import RunLock

    killed, alive = _running_run(Path("outputs/a/fit1")), _running_run(Path("outputs/a/fit2"))
    killed_cv, alive_cv = Path("outputs/b/cv1"), Path("outputs/b/cv2")
    for cv_dir in (killed_cv, alive_cv):
        for index in (0, 1):
            _running_run(cv_dir / f"fold_{index}")
    with RunLock(alive), RunLock(alive_cv / "fold_1"):  # a launcher's fold job holds only its fold
        found = {Path(run["path"]).name: run for run in json.loads(cli("runs", "--json").output)}
        table = cli("runs").output
    assert {name: run["status"] for name, run in found.items()} == {
        "fit1": "killed", "fit2": "running", "cv1": "killed", "cv2": "running"}
    assert found["fit1"]["seconds"] is not None and found["fit2"]["seconds"] is None
    assert table.count("killed") == 2 and table.count("running") == 2


def test_runs_lists_a_tune_by_its_best_point_and_a_seed_ensemble_by_its_ensemble(cli):
    """A dltrain tune folder (tune.json) and a trainer.ensemble=N fit (ensemble.json, no metrics.json
    at its top) are listed with their status and best value, not as unknown."""
    from dltrain.commands.runs import find_runs

    tune = Path("outputs/2026-12-01/10-00-00_aaaaaa")
    (tune / ".hydra").mkdir(parents=True)
    (tune / ".hydra" / "config.yaml").write_text("model:\n  name: mlp\ndata:\n  name: iris\n")
    (tune / ".hydra" / "overrides.yaml").write_text("- data=iris\n- tune.points=3\n")
    (tune / "tune.json").write_text(json.dumps({
        "status": "finished", "metric": "val_loss", "mode": "min", "folds": 3, "seconds": 4.5,
        "points": [{"rank": 1, "point": 2, "val_loss_mean": 0.25, "val_loss_std": 0.01, "epochs": 4},
                   {"rank": 2, "point": 0, "val_loss_mean": 0.5, "val_loss_std": 0.02, "epochs": 2}]}))
    ensemble = Path("outputs/2026-12-01/11-00-00_bbbbbb")
    (ensemble / ".hydra").mkdir(parents=True)
    (ensemble / "member_0").mkdir()
    (ensemble / "member_0" / "metrics.json").write_text(json.dumps({"status": "finished", "monitor": "val_accuracy"}))
    (ensemble / "ensemble.json").write_text(json.dumps({
        "status": "finished", "seconds": 2.0, "ensemble_val": {"loss": 0.7, "accuracy": 0.875}}))
    found = {Path(run.path).name: run for run in find_runs(Path("outputs"))}
    assert set(found) == {tune.name, ensemble.name}  # a member is part of its ensemble, not a run of its own
    listed = found[tune.name]
    assert (listed.kind, listed.status, listed.best, listed.best_std, listed.epochs, listed.folds) == \
        ("tune", "finished", 0.25, 0.01, 4, 3)
    assert listed.command == "dltrain tune data=iris tune.points=3"
    listed = found[ensemble.name]
    assert (listed.kind, listed.status, listed.monitor, listed.best) == ("fit", "finished", "val_accuracy", 0.875)
    result = cli("runs")
    assert result.exit_code == 0 and "unknown" not in result.output, result.output
