"""How much faster does `dltrain tune` search the digits MLP than Hydra's Optuna sweeper running
the same number of points of the same space one by one (each a `dltrain cv` of the same folds and
epochs)? Paired and interleaved: each pair runs both contenders back to back, in alternating
order, and the ratio is taken within the pair (the machine's load changes between pairs).

    python bench/tune.py [--points 48] [--epochs 9] [--pairs 2] [--tpe]

Each contender is a fresh process in a scratch folder, with logger=none, k=3 and the space
  optimizer.lr: tag(log, interval(1e-4, 3e-1)), regularization.weight_decay: tag(log,
  interval(1e-6, 1e-2)), model.dropout: interval(0, 0.5), model.hidden_sizes: choice([64],
  [128], [128, 64], [256, 128])  (tune's default space; regularization=l2)
  tune:   dltrain tune tune.points=P trainer.epochs=E tune.sampler=random (successive halving)
  optuna: dltrain cv -m hydra/sweeper=optuna hydra/sweeper/sampler=random hydra.sweeper.n_trials=P
          trainer.epochs=E with the space as command-line ranges
Prints each pair's wall seconds and ratio, the median ratio, and both best mean val_loss (the
optuna sweeper's best_value, tune's best point). --tpe runs both with TPE (best scores only)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = ["optimizer.lr=tag(log, interval(1e-4, 3e-1))", "regularization.weight_decay=tag(log, interval(1e-6, 1e-2))",
         "model.dropout=interval(0, 0.5)", "model.hidden_sizes=choice('[64]','[128]','[128,64]','[256,128]')"]
COMMON = ["data=digits", "model=mlp", "regularization=l2", "k=3", "logger=none", "trainer.progress=false"]


def run(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dltrain", *command], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def tune(points: int, epochs: int, sampler: str, cwd: Path, name: str) -> tuple[float, float]:
    seconds = run(["tune", *COMMON, f"tune.points={points}", f"trainer.epochs={epochs}", f"tune.sampler={sampler}",
                   f"hydra.run.dir={name}"], cwd)
    best = json.loads((cwd / name / "tune.json").read_text())["points"][0]["val_loss_mean"]
    return seconds, best


def optuna(points: int, epochs: int, sampler: str, cwd: Path, name: str) -> tuple[float, float]:
    import yaml

    seconds = run(["cv", "-m", *COMMON, "hydra/sweeper=optuna", f"hydra/sweeper/sampler={sampler}",
                   f"hydra.sweeper.n_trials={points}", "hydra.sweeper.direction=minimize", "trainer.monitor=loss",
                   f"trainer.epochs={epochs}", f"hydra.sweep.dir={name}", *SPACE], cwd)
    results = yaml.safe_load((cwd / name / "optimization_results.yaml").read_text())
    return seconds, float(results["best_value"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--tpe", action="store_true", help="TPE in both (best scores only)")
    args = parser.parse_args()
    sampler = "tpe" if args.tpe else "random"
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        for pair in range(args.pairs):
            order = [("tune", tune), ("optuna", optuna)][:: 1 if pair % 2 == 0 else -1]
            result = {name: contender(args.points, args.epochs, sampler, cwd, f"{name}_{pair}")
                      for name, contender in order}
            ratio = result["optuna"][0] / result["tune"][0]
            ratios.append(ratio)
            print(f"pair {pair + 1}: optuna one by one {result['optuna'][0]:.1f} s (best val_loss "
                  f"{result['optuna'][1]:.4f}), tune {result['tune'][0]:.1f} s (best {result['tune'][1]:.4f}): "
                  f"{ratio:.2f}x", flush=True)
    print(f"{args.points} points, {args.epochs} epochs, k=3, sampler {sampler}: median ratio "
          f"{statistics.median(ratios):.2f}x over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
