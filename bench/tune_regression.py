"""Does `dltrain tune` beat the defaults on a regression CSV within a time budget? On a generated
1,500-row CSV (scikit-learn's Friedman #1: y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5
+ noise, 10 features of which 5 are noise), the default `dltrain tune` space (lr, weight decay,
dropout, width/depth, loss, target transform) with `tune.seconds` (default 180: no rung starts
after it), then the best recipe rescored by `dltrain cv k=5 recipe=best_recipe.yaml`, against the
defaults' own `dltrain cv k=5`.

    python bench/tune_regression.py [--seconds 180] [--points 24]

Prints the tune's wall time, both 5-fold mean val_mse (± std) and the best point's values."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data" / "friedman1_1500.csv"


def make_csv() -> Path:
    import pandas as pd
    from sklearn.datasets import make_friedman1

    if not DATA.exists():
        x, y = make_friedman1(n_samples=1500, n_features=10, noise=1.0, random_state=0)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
        frame["y"] = y
        DATA.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(DATA, index=False)
    return DATA


def dltrain(*words: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dltrain", *words], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--points", type=int, default=24)
    args = parser.parse_args()
    data = ["data=csv", f"data.path={make_csv()}", "data.target=y", "logger=none", "trainer.progress=false"]
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        tuned = dltrain("tune", *data, f"tune.points={args.points}", f"tune.seconds={args.seconds}",
                        "hydra.run.dir=tune", cwd=cwd)
        best = json.loads((cwd / "tune" / "tune.json").read_text())["points"][0]
        dltrain("cv", f"recipe={cwd / 'tune' / 'best_recipe.yaml'}", "k=5", "logger=none",
                "hydra.run.dir=best", cwd=cwd)
        dltrain("cv", *data, "k=5", "trainer.monitor=mse", "hydra.run.dir=defaults", cwd=cwd)  # scored as the tune
        scores = {name: json.loads((cwd / name / "cv_summary.json").read_text())["objective"]
                  for name in ("best", "defaults")}
    values = {k: v for k, v in best.items() if "." in k or k in ("loss",)}
    print(f"tune: {tuned:.0f} s wall (tune.seconds={args.seconds:g}, {args.points} points); best point "
          f"{values} at {best['epochs']} epochs, 3-fold val_mse {best['val_mse_mean']:.4f}")
    for name, score in scores.items():
        print(f"dltrain cv k=5 {'recipe=best_recipe.yaml' if name == 'best' else '(defaults)'}: "
              f"val_mse {score['mean']:.4f} ± {score['std']:.4f}")


if __name__ == "__main__":
    main()
