"""Shared fixtures: every test runs in its own temporary folder, so run folders land in
tmp_path/outputs and never in the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
