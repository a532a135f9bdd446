"""What gradient accumulation costs: ``trainer.accumulate_grad_batches=4`` (batches of B, an
optimizer step every 4) against one batch 4 times larger (batches of 4B, a step after each), per
epoch, in interleaved pairs of runs.

    python bench/accumulate.py                       # 6 pairs, B=64 (the default fit's batch)
    python bench/accumulate.py --pairs 10 --batch-size 32 --workload cnn --threads 0

Both configurations take the same optimizer steps on the same rows and end with the same weights
(tests/test_train_options.py); what differs is how many forward and backward passes carry them.
One process trains through ``dltrain.commands.fit.train_split`` (what ``dltrain fit`` runs),
each pair running both configurations back to back, the order alternating from pair to pair
(so a machine growing busier or quieter favours neither), after one warm-up pair. Per run: the
median of epochs 2..N, from one epoch's end to the next (wall time). Per pair: the ratio
accumulated / large. Printed: every pair, and the median ratio with its range.

Workloads: ``mlp``: the default `dltrain fit` (MLP on the embedded digits, 1438 training rows);
``cnn``: model=cnn data=digits_images. ``--threads 1`` (default) pins torch to one thread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    "mlp": ["trainer.epochs=8"],
    "cnn": ["model=cnn", "data=digits_images", "trainer.epochs=5"],
}
COMMON = ["trainer.progress=false", "trainer.device=cpu", "logger=none"]


def configurations(batch_size: int) -> dict[str, list[str]]:
    return {"accumulate=4": [f"data.batch_size={batch_size}", "trainer.accumulate_grad_batches=4"],
            "batch x4": [f"data.batch_size={batch_size * 4}"]}


def one_run(overrides: list[str]) -> float:
    """Train once; the median wall time of epochs 2..N."""
    from rich.console import Console

    from dltrain.commands.fit import train_split
    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices

    cfg = compose(overrides)
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        train_split(cfg, settings, source, train_index, val_index, Path(scratch) / "run",
                    out=Console(quiet=True), callbacks=[lambda epoch, row: stamps.append(time.perf_counter())])
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="measured pairs (after one warm-up pair)")
    parser.add_argument("--batch-size", type=int, default=64, help="B: the accumulated batches' size")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="mlp")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 keeps torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = configurations(args.batch_size)
    names = list(configs)
    ratios, epochs = [], {name: [] for name in names}
    for number in range(args.pairs + 1):
        order = names if number % 2 else names[::-1]
        times = {name: one_run([*WORKLOADS[args.workload], *COMMON, *configs[name],
                                f"trainer.threads={args.threads or 'auto'}"]) for name in order}
        if not number:
            continue
        ratios.append(times[names[0]] / times[names[1]])
        for name in names:
            epochs[name].append(times[name])
        print(f"pair {number:2d} ({' then '.join(order)}): "
              + ", ".join(f"{name} {times[name] * 1000:7.1f} ms" for name in names)
              + f"; ratio {ratios[-1]:.3f}", flush=True)
    print(f"\nworkload {args.workload}: {' '.join(WORKLOADS[args.workload] + COMMON)}; batches of "
          f"{args.batch_size} x 4 accumulated against batches of {args.batch_size * 4}; torch threads "
          f"{torch.get_num_threads()}; {args.pairs} pairs (+1 warm-up), order alternating, medians over epochs 2..N")
    print("  epoch " + ", ".join(f"{name} {statistics.median(epochs[name]) * 1000:.1f} ms" for name in names)
          + f"; ratio accumulate/large median {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f}) over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
