"""What does `dltrain cv k=5` cost over training the same five folds one by one?

    python bench/cv_overhead.py [OVERRIDES...]        # default: the literal `dltrain cv k=5`

Times, each as fresh `dltrain` processes in a scratch folder:
  cv      `dltrain cv k=5 OVERRIDES`                       (one process, five fold jobs)
  folds   `dltrain cv k=5 cv.fold=I OVERRIDES`, I = 0..4   (five processes, the very same folds)
  fits    `dltrain fit data.val_fraction=0.2 trainer.seed=I OVERRIDES`, I = 0..4
          (five plain fits with the same train/val sizes and fold seeds)
and prints the overhead ratios cv / folds and cv / fits, plus the time the cv run spent outside
training (wall time minus the folds' own `seconds`).

    python bench/cv_overhead.py --house-prices     # the textbook protocol on a generated train.csv

runs `dltrain cv recipe=house_prices_kfold` at full length (1,460 rows, 100 epochs) on a CSV
generated like Kaggle's (tests/test_cv_house_prices.py) and prints the mean log-RMSE.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["dltrain", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def trained_seconds(root: Path) -> float:
    """The seconds the runs under root spent in train_split (metrics.json of every fold or fit)."""
    return sum(json.loads(path.read_text())["seconds"] for path in root.glob("**/metrics.json"))


def overhead(overrides: list[str]) -> None:
    overrides = ["trainer.progress=false", *overrides]
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        for name in ("cv", "folds", "fits"):
            (cwd / name).mkdir()
        cv = timed(["cv", "k=5", *overrides, "hydra.run.dir=run"], cwd / "cv")
        folds = sum(timed(["cv", "k=5", f"cv.fold={i}", *overrides, f"hydra.run.dir=fold{i}"], cwd / "folds")
                    for i in range(5))
        fits = sum(timed(["fit", "data.val_fraction=0.2", f"trainer.seed={i}", *overrides], cwd / "fits")
                   for i in range(5))
        trained = {name: trained_seconds(cwd / name) for name in ("cv", "folds", "fits")}
    print(f"overrides: {' '.join(overrides)}")
    rows = [("dltrain cv k=5 (one process)", cv, "cv"),
            ("5 x dltrain cv k=5 cv.fold=I (same folds)", folds, "folds"),
            ("5 x dltrain fit data.val_fraction=0.2", fits, "fits")]
    for label, seconds, name in rows:
        print(f"{label:44s} {seconds:7.1f} s wall, {trained[name]:6.1f} s training, "
              f"{seconds - trained[name]:6.1f} s around it")
    print(f"overhead ratio (wall): cv / folds = {cv / folds:.2f}, cv / fits = {cv / fits:.2f}")
    print(f"time around training: cv {cv - trained['cv']:.1f} s vs {folds - trained['folds']:.1f} s "
          f"for the five separate fold runs")


def house_prices() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from test_cv_house_prices import write_house_like_csv

    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        write_house_like_csv(cwd / "train.csv", rows=1460)
        seconds = timed(["cv", "recipe=house_prices_kfold", "data.path=train.csv",
                         "hydra.run.dir=outputs/houses"], cwd)
        summary = json.loads((cwd / "outputs/houses/cv_summary.json").read_text())
    for row in summary["folds"]:
        print(f"fold {row['fold'] + 1}, train log rmse {row['train_log_rmse']:.6f}, "
              f"valid log rmse {row['val_log_rmse']:.6f}")
    print(f"5-fold validation: avg train log rmse: {summary['mean']['train_log_rmse']:.6f}, "
          f"avg valid log rmse: {summary['mean']['val_log_rmse']:.6f}  ({seconds:.1f} s)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--house-prices"]:
        house_prices()
    else:
        overhead(sys.argv[1:])
