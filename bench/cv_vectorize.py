"""How much faster is `dltrain cv k=5` with the fold models trained at once (cv.vectorize=true)
than one after another (cv.vectorize=false), on this machine's device?

    python bench/cv_vectorize.py [--epochs 5] [--repeats 3] [OVERRIDES...]

Runs `dltrain cv k=5 data=digits model=mlp model.dropout=0 trainer.epochs=E logger=none` as fresh
processes in a scratch folder, each mode ``--repeats`` times, and prints the medians:
  wall s        the whole command (start-up, data, five fold folders, aggregation)
  train s       the epochs themselves: the sum of the epochs' ``seconds`` in metrics.json (sequential:
                over every fold; vectorised: the folds share each epoch, so one fold's)
  samples/s     training rows seen per second of training (all folds)
  s/fold-epoch  train s / (k * epochs)
and the speed-up sequential / vectorised of both times. The device is trainer.device=auto
(CUDA when there is one); pass trainer.device=cpu or cuda to choose, or other overrides
(model.hidden_sizes=[512,512], data.batch_size=256, k=10, ...). Run it on a GPU to see what
cv.vectorize=auto turns on there. auto leaves the CPU alone, where it was measured slower; on a
busy 2-core CPU (load about 5) this benchmark measured it 1.4x faster, so measure your own."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(mode: str, overrides: list[str], cwd: Path, name: str) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dltrain", "cv", f"cv.vectorize={mode}", *overrides,
                    f"hydra.run.dir={name}"], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    folds = [json.loads(path.read_text()) for path in sorted((cwd / name).glob("fold_*/metrics.json"))]
    infos = [json.loads(path.read_text()) for path in sorted((cwd / name).glob("fold_*/fold.json"))]
    epoch_seconds = [sum(row["seconds"] for row in fold["history"]) for fold in folds]
    train = max(epoch_seconds) if mode == "true" else sum(epoch_seconds)  # vectorised: shared epochs
    epochs = folds[0]["epochs_run"]
    rows = sum(info["train_size"] for info in infos) * epochs
    return {"wall": wall, "train": train, "samples": rows / train,
            "per_fold_epoch": train / (len(folds) * epochs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args, extra = parser.parse_known_args()
    overrides = ["k=5", "data=digits", "model=mlp", "model.dropout=0", f"trainer.epochs={args.epochs}",
                 "trainer.progress=false", "logger=none", *extra]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        for repeat in range(args.repeats):  # interleaved, so that a busy spell hits both modes
            for mode in ("false", "true"):
                try:
                    run = one_run(mode, overrides, cwd, f"{mode}_{repeat}")
                except subprocess.CalledProcessError as error:
                    sys.exit(f"dltrain cv cv.vectorize={mode} failed:\n{error.stderr.decode()[-2000:]}")
                results.setdefault(mode, []).append(run)
    median = {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
              for mode, runs in results.items()}
    print(f"dltrain cv {' '.join(overrides)}  (device {_device(overrides)}, median of {args.repeats})")
    print(f"{'cv.vectorize':14s} {'wall s':>8s} {'train s':>8s} {'samples/s':>10s} {'s/fold-epoch':>13s}")
    for mode, label in (("false", "false (1 by 1)"), ("true", "true (vmap)")):
        m = median[mode]
        print(f"{label:14s} {m['wall']:8.2f} {m['train']:8.2f} {m['samples']:10.0f} {m['per_fold_epoch']:13.4f}")
    print(f"speed-up of cv.vectorize=true: {median['false']['train'] / median['true']['train']:.2f}x in "
          f"training, {median['false']['wall'] / median['true']['wall']:.2f}x in wall time")


def _device(overrides: list[str]) -> str:
    """The device trainer.device picks, in words."""
    import torch

    requested = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("trainer.device=")), "auto")
    if requested.startswith("cuda") or (requested == "auto" and torch.cuda.is_available()):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return requested if requested != "auto" else "cpu"


if __name__ == "__main__":
    main()
