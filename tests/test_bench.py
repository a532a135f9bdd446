"""bench/ works: every contender of the benchmark trains the digits workload (one epoch each, no
timing asserted; the timings live in bench/README.md), and the table is built from the runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("contender", ["hand", "course", "dltrain", "lightning"])
def test_contender_trains_the_digits_workload(contender, tmp_path):
    if contender == "lightning" and importlib.util.find_spec("lightning") is None:
        pytest.skip("lightning is only installed with the bench extra: pip install -e '.[bench]'")
    done = subprocess.run([sys.executable, str(BENCH / "contenders.py"), "mlp_digits", contender,
                           "--epochs=2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["contender"] == contender
    assert run["train_samples"] == 1438 and run["val_samples"] == 359 and run["batch_size"] == 64
    assert len(run["epoch_seconds"]) == 2 and all(s > 0 for s in run["epoch_seconds"])
    assert run["peak_memory_mib"] > 0


def test_table_ranks_contenders_against_dltrain():
    sys.path.insert(0, str(BENCH))
    try:
        from run import summarise, table
    finally:
        sys.path.remove(str(BENCH))
    runs = {"dltrain": [{"epoch_seconds": [9.0, 1.0, 1.0], "train_samples": 100, "peak_memory_mib": 50}],
            "hand": [{"epoch_seconds": [9.0, 0.98, 0.98], "train_samples": 100, "peak_memory_mib": 40}],
            "course": [{"epoch_seconds": [9.0, 2.0, 2.0], "train_samples": 100, "peak_memory_mib": 60}]}
    results = {"mlp_digits": {name: summarise(r) for name, r in runs.items()}}
    text = table(results, {"dltrain --help": [0.3, 0.4, 0.5]}, None, "header")
    assert "| mlp_digits | course DataLoader loop | 2.000 | 50 |" in text
    assert "2.00x" in text and "0.98x" in text
    assert "| `dltrain --help` | 0.40 |" in text


def test_house_like_csv_is_shaped_like_kaggles_train_csv(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from house_like import write_house_like_csv
    finally:
        sys.path.remove(str(BENCH))
    import pandas as pd

    path = write_house_like_csv(tmp_path / "train.csv")
    frame = pd.read_csv(path)
    assert frame.shape == (1460, 81)
    assert list(frame.columns[[0, -1]]) == ["Id", "SalePrice"]
    numeric = frame.drop(columns=["Id", "SalePrice"]).select_dtypes(include="number").columns
    assert len(numeric) == 36 and frame["LotFrontage"].isna().mean() > 0.1
    assert frame["PoolQC"].isna().mean() > 0.98 and frame["SalePrice"].min() > 0
    assert frame.equals(pd.read_csv(write_house_like_csv(tmp_path / "again.csv")))  # same seed, same rows


def test_overhead_table_reports_every_pair():
    sys.path.insert(0, str(BENCH))
    try:
        from overhead import summary, table
    finally:
        sys.path.remove(str(BENCH))
    row = summary("default_fit", "dltrain fit", [12.0, 10.0, 11.0], "hand", [10.0, 10.0, 10.0],
                  "s wall", "<= 1.5", "1.0 1.0 1.0")
    assert row["pairs"] == 3 and row["ratio_median"] == 1.1
    assert "| **1.10** | 1.20, 1.00, 1.10 | 3 | <= 1.5 |" in table([row], "header")
