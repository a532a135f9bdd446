"""How long ``dltrain landscape RUN`` takes on a trained ``recipe=mnist_cnn`` run (the shared MNIST
subset: 18,000 training rows), and where the time goes: the 1-D line from init.pt to last.pt, the
2-D plane around last.pt, the pictures, the rest (loading the run and the data, writing files).

    python bench/landscape.py                         # 1 epoch of training, then 1 timed run
    python bench/landscape.py --repeats 3 --warmup --grid 11 --rows 500 --data-root DIR

The run trains once (``dltrain fit recipe=mnist_cnn trainer.epochs=1``, on the CPU unless
--device says otherwise); then ``dltrain landscape`` runs ``--repeats`` times in this process
(after one untimed run with --warmup; without it the first run also pays for importing
matplotlib and TensorBoard, in "pictures" and "rest"), each phase timed by wrapping
train/landscape.py's functions. Printed: every run, and the median of each phase with its range. One landscape evaluates the loss on ``rows`` rows at
2 x grid - 1 points of the line and grid x grid points of the plane.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist-subset"


def timed(module, name: str, spent: dict) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed landscape runs")
    parser.add_argument("--warmup", action="store_true", help="one untimed landscape run first")
    parser.add_argument("--grid", default="auto", help="landscape.grid (auto: 21 for the plane)")
    parser.add_argument("--rows", type=int, default=1000, help="landscape.rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=str(DEFAULT_MNIST))
    args = parser.parse_args()

    from rich.console import Console

    from dltrain.commands import landscape as command
    from dltrain.commands.fit import fit
    from dltrain.train import landscape as grids

    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        started = time.perf_counter()
        fit(["recipe=mnist_cnn", f"data.root={args.data_root}", f"trainer.epochs={args.epochs}",
             f"trainer.device={args.device}", "trainer.progress=false", "logger=none", f"hydra.run.dir={run_dir}"])
        print(f"trained {args.epochs} epoch(s) of recipe=mnist_cnn in {time.perf_counter() - started:.1f} s", flush=True)
        spent: dict[str, float] = {}
        for name in ("line", "plane"):
            timed(grids, name, spent)
        for name in ("draw_line", "draw_plane"):
            timed(grids, name, spent)
        phases = {"total": [], "1-D line": [], "2-D plane": [], "pictures": [], "rest": []}
        for number in range(0 if args.warmup else 1, args.repeats + 1):
            spent.clear()
            started = time.perf_counter()
            command.landscape([str(run_dir), f"landscape.grid={args.grid}", f"landscape.rows={args.rows}"], out=quiet)
            total = time.perf_counter() - started
            if not number:
                continue
            row = {"total": total, "1-D line": spent["line"], "2-D plane": spent["plane"],
                   "pictures": spent["draw_line"] + spent["draw_plane"]}
            row["rest"] = total - row["1-D line"] - row["2-D plane"] - row["pictures"]
            for key, value in row.items():
                phases[key].append(value)
            print(f"run {number}: " + ", ".join(f"{key} {value:.2f} s" for key, value in row.items()), flush=True)
    grid = command.AUTO_GRID[1] if args.grid == "auto" else int(args.grid)
    print(f"\ngrid {grid} ({2 * grid - 1} line points, {grid * grid} plane points), {args.rows} rows, "
          f"device {args.device}, median of {args.repeats} runs (range):")
    for key, values in phases.items():
        print(f"  {key}: {statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})")
    per_point = statistics.median(phases["2-D plane"]) / (grid * grid)
    print(f"  one loss evaluation on {args.rows} rows: {1000 * per_point:.1f} ms")


if __name__ == "__main__":
    main()
