"""Shared fixtures: every test runs in its own temporary folder, so run folders land in
tmp_path/outputs and never in the repository. Runs that several tests only read back are trained
once per session (iris_fit_run); a test copies one into its own folder with copy_run."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker (-n auto: one per core) computes with one thread, before torch is
    # imported here or in a `dltrain` subprocess: two workers' OpenMP threads on two cores spin
    # against each other (bench/README.md, "Threads").
    os.environ["OMP_NUM_THREADS"] = "1"
    # xdist's workers start with COLUMNS=80, which rich would take as the fixed width of the console
    # dltrain imports during collection; each test sets its own (_in_tmp_path).
    os.environ.pop("COLUMNS", None)

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = REPO.parent / "shared" / "data" / "mnist-subset"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    yield


@pytest.fixture
def cli():
    """Invoke the dltrain CLI in-process: cli("fit", "trainer.epochs=1") -> click Result."""
    from dltrain.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def run_folders(root: Path = Path("outputs")) -> list[Path]:
    """Run folders (those with a .hydra folder) under root, oldest first."""
    return sorted((p.parent for p in root.glob("**/.hydra")), key=lambda p: p.stat().st_mtime)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def iris_fit_run(tmp_path_factory) -> Path:
    """The run folder of ``dltrain fit data=iris trainer.epochs=15 optimizer.lr=0.01`` (with its
    TensorBoard events), trained once per session for the tests that use a finished run; they
    get their own copy with copy_run, so what one changes no other sees."""
    from dltrain.cli import app

    root = tmp_path_factory.mktemp("iris_fit_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("COLUMNS", "200")
        result = CliRunner().invoke(app, ["fit", "data=iris", "trainer.epochs=15", "optimizer.lr=0.01"],
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders(root / "outputs")
    return run_dir


def copy_run(run_dir: Path, root: Path = Path("outputs")) -> Path:
    """A copy of a run folder (outputs/DATE/TIME) at the same place under root, file times kept."""
    copy = root / run_dir.parent.name / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def readme_section(heading: str) -> tuple[dict[str, str], list[str]]:
    """The files (`` `path.py`: `` then a python block) and the commands (its bash block, comments
    dropped) that the README's section starting with ``## {heading}`` shows."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index(f"## {heading}"):]
    section = section[:section.index("\n## ", 1)]
    files = dict(re.findall(r"^`([\w/]+\.py)`:\n\n```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL))
    (commands,) = re.findall(r"```bash\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    lines = [line.split("#")[0].strip() for line in commands.splitlines()]
    return files, [line for line in lines if line]
