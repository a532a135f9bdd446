"""The command line: help, list, config, override forms, run folders."""

import subprocess
import sys

import pytest
import yaml

from conftest import read_metrics, run_folders


def test_root_help_lists_commands_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dltrain.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'fit' in result.output and 'config' in result.output and 'list' in result.output\n"
        "heavy = [m for m in ('torch', 'sklearn', 'pandas', 'hydra', 'mlflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", ["fit", "config", "list", "landscape", "plot"])
def test_every_command_has_help_with_examples(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.output
    assert f"dltrain {command}" in result.output


def test_list_shows_every_group_with_descriptions(cli):
    result = cli("list")
    assert result.exit_code == 0
    for group in ("data", "model", "loss", "optimizer", "scheduler", "regularization", "recipe"):
        assert f"{group}:" in result.output
    assert "linear_regression" in result.output
    assert "handwritten digits" in result.output


def test_list_one_group_accepts_plurals(cli):
    result = cli("list", "recipes")
    assert result.exit_code == 0
    assert "breast_cancer_mlp" in result.output and "mlp " not in result.output.split("recipe:")[0]
    result = cli("list", "models")
    assert "softmax" in result.output and "digits" not in result.output


def test_list_unknown_group_is_one_sentence(cli):
    result = cli("list", "widgets")
    assert result.exit_code == 2
    assert "Unknown config group 'widgets'" in result.output
    assert "Traceback" not in result.output


def test_config_prints_composed_yaml_with_every_override_form(cli):
    result = cli(
        "config", "model=mlp", "optimizer.lr=0.01", "++trainer.seed=3", "~trainer.grad_clip",
        "model.hidden_sizes=[64,32]",
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(result.output)
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["trainer"]["seed"] == 3
    assert cfg["trainer"]["grad_clip"] == 0.0  # ~key restores the option's default
    assert cfg["model"]["hidden_sizes"] == [64, 32]
    assert cfg["model"]["name"] == "mlp"


def test_config_with_recipe_overrides_groups(cli):
    cfg = yaml.safe_load(cli("config", "recipe=linear_regression").output)
    assert cfg["data"]["name"] == "linear_toy"
    assert cfg["model"]["name"] == "linear"
    assert cfg["optimizer"]["name"] == "sgd"


@pytest.mark.slow
def test_fit_accepts_every_override_form_and_saves_config_and_overrides(cli):
    overrides = ["model=mlp", "optimizer.lr=0.01", "++trainer.seed=3", "~trainer.grad_clip",
                 "model.hidden_sizes=[64,32]", "trainer.epochs=1"]
    result = cli("fit", *overrides)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert saved["model"]["hidden_sizes"] == [64, 32]
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == overrides
    assert read_metrics(run_dir)["status"] == "finished"


@pytest.mark.slow
def test_two_runs_in_the_same_second_get_different_folders(cli):
    for _ in range(2):
        assert cli("fit", "data=iris", "trainer.epochs=1").exit_code == 0
    folders = run_folders()
    assert len(folders) == 2 and folders[0] != folders[1]


@pytest.mark.slow
def test_two_processes_started_together_write_different_folders(tmp_path):
    command = [sys.executable, "-m", "dltrain", "fit", "data=iris", "trainer.epochs=1",
               "trainer.progress=false"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(2)]
    for process in processes:
        output = process.communicate(timeout=240)[0].decode()
        assert process.returncode == 0, output
    folders = run_folders(tmp_path / "outputs")
    assert len(folders) == 2
    assert all(read_metrics(f)["status"] == "finished" for f in folders)


@pytest.mark.slow
def test_python_api_matches_cli():
    import dltrain

    cfg = dltrain.compose("data=wine", "model=softmax")
    assert cfg.data.name == "wine"
    result = dltrain.fit("data=wine", "model=softmax", "trainer.epochs=20", "optimizer.lr=0.05")
    assert result.task == "multiclass"
    assert result.best["val_accuracy"] > 0.9
    assert result.run_dir.exists()
