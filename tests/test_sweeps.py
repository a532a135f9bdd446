"""Sweeps (dltrain fit -m / cv -m): every point in its own folder, one table ranked by the
monitored metric (also saved as sweep.json / sweep.csv), failed points listed with their reason,
results read back from launchers that run jobs in other processes (joblib), the Optuna search
recipe, and the SLURM launcher preset composed into sbatch settings."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import read_metrics

QUIET = ["logger=none", "trainer.progress=false", "trainer.checkpoint_every_seconds=60"]


def sweep_dirs() -> list[Path]:
    return sorted(p.parent for p in Path("outputs/multirun").glob("*/*/sweep.json"))


def ranking(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


@pytest.mark.slow
def test_fit_sweep_ranks_every_point_and_lists_a_failed_one_with_its_reason(cli):
    result = cli("fit", "-m", "optimizer.lr=0.1,0.01", "model=mlp,cnn", "data=iris",
                 "trainer.epochs=2", *QUIET)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = sweep_dirs()
    saved = ranking(sweep_dir)
    assert saved["monitor"] == "val_loss" and saved["mode"] == "min"
    points = saved["points"]
    assert len(points) == 4 and sorted(p["job"] for p in points) == [0, 1, 2, 3]
    finished = [p for p in points if p["status"] == "finished"]
    failed = [p for p in points if p["status"] == "failed"]
    assert [p["swept"]["model"] for p in finished] == ["mlp", "mlp"]
    assert [p["rank"] for p in finished] == [1, 2] and points[:2] == finished  # best first
    assert finished[0]["value"] <= finished[1]["value"]
    for point in finished:  # the value ranked is the folder's own best val_loss
        metrics = read_metrics(sweep_dir / point["folder"])
        assert point["value"] == pytest.approx(metrics["best"]["val_loss"])
        assert point["epochs"] == 2 and point["seconds"] > 0
        assert metrics["best"]["lr"] == pytest.approx(float(point["swept"]["optimizer.lr"]))
    assert [p["swept"]["model"] for p in failed] == ["cnn", "cnn"] and all(p["rank"] is None for p in failed)
    for point in failed:  # the others ran; each failed point is on record with its one sentence
        assert point["error"].startswith("model=cnn needs image data")
        assert read_metrics(sweep_dir / point["folder"])["status"] == "failed"

    out = " ".join(result.output.split())
    # a failed point says so when it fails, before the next point starts, with its swept settings
    failure = "Point 1 failed (optimizer.lr=0.1 model=cnn): model=cnn needs image data"
    assert failure in out and out.index(failure) < out.index(f"run folder: {sweep_dir.resolve() / '2'}")
    assert "ranked by val_loss at its best epoch (lowest first)" in out
    assert " lr " in out and " model " in out  # the swept keys are columns
    assert out.count("model=cnn needs image data") >= 2 and "2 of 4 points did not finish" in out
    with open(sweep_dir / "sweep.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["rank"] for r in rows] == ["1", "2", "", ""]
    assert rows[0]["optimizer.lr"] == finished[0]["swept"]["optimizer.lr"]
    assert rows[2]["status"] == "failed" and rows[2]["error"].startswith("model=cnn")


@pytest.mark.slow
def test_cv_sweep_nests_the_folds_in_each_point_and_ranks_by_the_mean(cli):
    result = cli("cv", "-m", "optimizer.lr=0.0005,0.05", "data=iris", "k=2", "trainer.epochs=2",
                 "trainer.monitor=accuracy", *QUIET)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = sweep_dirs()
    points = ranking(sweep_dir)["points"]
    assert len(points) == 2 and all(p["status"] == "finished" for p in points)
    for point in points:
        folder = sweep_dir / point["folder"]
        assert sorted(p.name for p in folder.glob("fold_*")) == ["fold_0", "fold_1"]
        objective = json.loads((folder / "cv_summary.json").read_text())["objective"]
        assert objective["metric"] == "val_accuracy" and objective["mode"] == "max"
        assert point["value"] == pytest.approx(objective["mean"])
        assert point["std"] == pytest.approx(objective["std"])
    assert points[0]["value"] >= points[1]["value"]  # accuracy: highest first
    assert points[0]["swept"] == {"optimizer.lr": "0.05"}
    out = " ".join(result.output.split())
    assert "ranked by mean val_accuracy over folds (highest first)" in out
    assert f"{points[0]['value']:.4f} ± {points[0]['std']:.4f}" in out


@pytest.mark.slow
def test_joblib_launched_points_come_back_to_the_ranking(cli):
    """The jobs run in joblib's worker processes, so nothing returns to this process's memory:
    the ranking reads what each job's folder holds."""
    result = cli("fit", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.1,0.001",
                 "data=iris", "trainer.epochs=2", *QUIET)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = sweep_dirs()
    points = ranking(sweep_dir)["points"]
    assert sorted(p["swept"]["optimizer.lr"] for p in points) == ["0.001", "0.1"]
    assert all(p["status"] == "finished" for p in points) and [p["rank"] for p in points] == [1, 2]
    for point in points:
        assert point["value"] == pytest.approx(read_metrics(sweep_dir / point["folder"])["best"]["val_loss"])
    assert points[0]["value"] < points[1]["value"]
    assert "Sweep of 2 runs" in " ".join(result.output.split())


@pytest.mark.slow
def test_a_sweep_whose_every_point_fails_exits_2_with_the_first_reason(cli):
    result = cli("fit", "-m", "model=cnn", "data=iris", "optimizer.lr=0.1,0.01", *QUIET)
    assert result.exit_code == 2
    assert "Every point of the sweep failed; the first: model=cnn needs image data" in result.output
    (sweep_dir,) = sweep_dirs()
    assert [p["status"] for p in ranking(sweep_dir)["points"]] == ["failed", "failed"]


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.foo=1,2"], "There is no setting 'optimizer.foo'"),
    (["model=mlp,nosuch"], "Unknown model 'nosuch'"),
    (["trainer.epochs=0,-1"], "trainer.epochs must be at least 1, got 0."),
    (["trainer.monitor=loss,accuracy"], "A sweep ranks its points by one metric"),
    (["hydra/launcher=nosuch", "optimizer.lr=0.1,0.01"], "Unknown hydra/launcher 'nosuch'; valid options are: basic, joblib, slurm"),
    (["recipe=search_mlp_digits", "trainer.monitor=accuracy"],
     "hydra.sweeper.direction is minimize, but trainer.monitor=accuracy is better when higher; "
     "set hydra.sweeper.direction=maximize."),
])
def test_a_mistake_every_point_shares_is_one_sentence_before_any_folder(cli, overrides, message):
    result = cli("cv", "-m", "data=iris", *overrides, *QUIET)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not Path("outputs").exists()


def test_the_slurm_launcher_without_slurm_is_one_sentence(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun on it
    for command in (["fit", "-m", "optimizer.lr=0.1,0.01"], ["cv", "k=2"]):  # a sweep's jobs, a CV's folds
        result = cli(*command, "hydra/launcher=slurm", "data=iris", *QUIET)
        assert result.exit_code == 2
        assert "hydra/launcher=slurm submits SLURM jobs, but this machine has no srun" in " ".join(result.output.split())
        assert not Path("outputs").exists()


@pytest.mark.slow
def test_optuna_search_recipe_runs_its_trials_and_reports_the_best(cli):
    result = cli("cv", "-m", "recipe=search_mlp_digits", "hydra.sweeper.n_trials=3", "k=2",
                 "trainer.epochs=1", *QUIET)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = sweep_dirs()
    points = ranking(sweep_dir)["points"]
    assert len(points) == 3 and all(p["status"] == "finished" for p in points)
    for point in points:
        assert set(point["swept"]) == {"optimizer.lr", "regularization.weight_decay", "model.hidden_sizes"}
        assert 1e-4 <= float(point["swept"]["optimizer.lr"]) <= 1e-1
        assert 1e-6 <= float(point["swept"]["regularization.weight_decay"]) <= 1e-2
        config = yaml.safe_load((sweep_dir / point["folder"] / ".hydra" / "config.yaml").read_text())
        assert config["model"]["hidden_sizes"] in ([32, 32], [64, 64], [128, 128], [256, 256])
        assert sorted(p.name for p in (sweep_dir / point["folder"]).glob("fold_*")) == ["fold_0", "fold_1"]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    # What Optuna optimised is the CV mean of val_loss, the value ranked first in the table.
    assert best["best_value"] == pytest.approx(points[0]["value"])
    assert best["best_value"] == pytest.approx(min(p["value"] for p in points))
    assert ranking(sweep_dir)["optuna"]["best_value"] == pytest.approx(best["best_value"])
    out = " ".join(result.output.split())
    assert "Optuna's best trial" in out and "mean val_loss over folds" in out


def test_the_search_recipe_without_m_is_refused_rather_than_sampling_folds(cli):
    """dltrain cv hands its folds to Hydra's sweeper; Optuna would sample cv.fold like a parameter."""
    result = cli("cv", "recipe=search_mlp_digits", "k=2", *QUIET)
    assert result.exit_code == 2
    assert ("This config searches with a sweeper (OptunaSweeper), which needs -m: dltrain cv -m "
            "recipe=search_mlp_digits k=2") in " ".join(result.output.split())
    assert not Path("outputs").exists()


@pytest.mark.slow
def test_optuna_over_fit_runs_gets_the_monitored_value_as_a_float(cli):
    result = cli("fit", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                 "hydra.sweeper.direction=maximize", "trainer.monitor=accuracy", "data=iris",
                 "optimizer.lr=tag(log, interval(0.001, 0.1))", "trainer.epochs=1", *QUIET)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = sweep_dirs()
    points = ranking(sweep_dir)["points"]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert len(points) == 2 and all(p["status"] == "finished" for p in points)
    assert best["best_value"] == pytest.approx(max(p["value"] for p in points)) == pytest.approx(points[0]["value"])


@pytest.mark.slow
def test_without_the_optuna_plugin_the_recipe_names_the_pip_command(tmp_path):
    """An empty hydra_plugins.hydra_optuna_sweeper earlier on the path hides the installed one."""
    shadow = tmp_path / "shadow" / "hydra_plugins" / "hydra_optuna_sweeper"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shadow"), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-m", "dltrain", "cv", "-m", "recipe=search_mlp_digits"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert ("hydra/sweeper=optuna needs a Hydra plugin that is not installed; install it with: "
            "pip install 'dltrain[search]' (or pip install hydra-optuna-sweeper).") in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_the_slurm_launcher_composes_into_sbatch_settings(launcher, tmp_path, monkeypatch):
    """No cluster here: compose hydra/launcher=..., build submitit's executor the way the Hydra
    launcher does, and read the sbatch script it would submit."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dltrain.config import VERSION_BASE, config_dir

    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake = tmp_path / "bin"  # submitit looks for srun before it builds a SLURM executor
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    overrides = [f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2",
                 "hydra.launcher.timeout_min=240", "hydra.launcher.nodes=1", "hydra.sweep.dir=outputs/multirun/s"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m dltrain", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=240",
                 "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1"):
        assert line in script
    assert "outputs/multirun/s/.submitit/" in script
    if launcher == "slurm":  # dltrain's preset: one task on one GPU per job, 8 CPUs, 32 GB
        assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=32GB" in script
