"""How much does logging slow training? Default logging against ``logger=none``; and
``logger=[tensorboard,csv]`` against ``logger=tensorboard`` (what metrics.csv adds), in pairs.

    python bench/logging_overhead.py                  # both workloads, 4 rounds
    python bench/logging_overhead.py --rounds 5 --workload mlp --threads 0
    python bench/logging_overhead.py --pairs 12 --workload mlp   # tensorboard+csv vs tensorboard only

One process trains through ``dltrain.commands.fit.train_split`` (what ``dltrain fit`` runs) in a scratch
folder, round after round, each round running every configuration once in alternating order,
so that a busy machine slows them all alike. Per epoch it records:

  epoch     wall time from one epoch's end to the next: training steps, validation,
            checkpoints and every epoch-end callback, the TensorBoard writer's among them
            (metrics.json's ``seconds`` stops before the callbacks and would hide it)
  cpu       the process's CPU time over the same span (all threads, the writer's too); less
            disturbed than wall time when other programs share the machine
  logger    wall time spent inside the loggers' own calls on the training thread
            (epoch_end and step of each logger): what logging adds to an epoch, measured directly

Before that it times the default logger's per-epoch work alone (2,000 rows of scalars, then
closing the file, which waits for the background writer thread): the whole per-epoch cost,
free of training noise.

The first epoch of every run is left out (warm-up), and so is the first round (imports,
allocator). "outside" is the once-per-run time outside the epochs (events file, config text
and HParams, sample images, final figures), against logger=none.

Configurations:
  none      logger=none
  default   the default logger (per-epoch scalars, HParams, config, end-of-run figures)
  steps     default + logger.tensorboard.log_every_n_steps=10
  all       default + log_every_n_steps=1, histograms every epoch, the model graph

``--pairs N`` measures only what the csv logger adds: N pairs of runs, ``logger=tensorboard``
and ``logger=[tensorboard,csv]`` back to back, the order alternating from pair to pair (so a
machine growing busier or quieter favours neither). Per pair: the ratio of the two runs' median
epoch (wall and CPU); over the pairs, the median ratio and its spread; and the csv logger's own
time per epoch, measured inside its calls, with its work alone (2,000 rows appended) before.

Workloads: ``mlp``: the default `dltrain fit` (MLP on the embedded digits, 23 steps of 64 per
epoch); ``cnn``: model=cnn data=digits_images. ``--threads 1`` (default) pins torch to one
thread for steadier numbers; 0 keeps torch's default.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "none": ["logger=none"],
    "default": [],
    "steps": ["logger.tensorboard.log_every_n_steps=10"],
    "all": ["logger.tensorboard.log_every_n_steps=1", "logger.tensorboard.histograms_every_n_epochs=1",
            "logger.tensorboard.graph=true"],
}
PAIRED = {"tensorboard": ["logger=tensorboard"], "tensorboard+csv": ["logger=[tensorboard,csv]"]}
ROW = {"epoch": 0, "train_loss": 0.5, "train_accuracy": 0.9, "train_macro_f1": 0.9, "val_loss": 0.6,
       "val_accuracy": 0.8, "val_macro_f1": 0.8, "lr": 0.001, "seconds": 0.1}
WORKLOADS = {
    "mlp": ["trainer.epochs=20"],
    "cnn": ["model=cnn", "data=digits_images", "trainer.epochs=8"],
}
COMMON = ["trainer.progress=false", "trainer.device=cpu"]


def instrument_loggers() -> dict:
    """Wrap each logger's per-epoch and per-step calls with a clock; returns the running totals:
    ``seconds`` (all loggers) and ``csv`` (the csv logger alone)."""
    from dltrain.train.csv_logger import CsvLogger
    from dltrain.train.tensorboard import RunLogger

    spent = {"seconds": 0.0, "csv": 0.0}
    for cls, name in ((RunLogger, "epoch_end"), (RunLogger, "step"), (CsvLogger, "epoch_end")):
        original = getattr(cls, name)

        def timed(self, *args, _original=original, _csv=cls is CsvLogger):
            started = time.perf_counter()
            try:
                return _original(self, *args)
            finally:
                took = time.perf_counter() - started
                spent["seconds"] += took
                if _csv:
                    spent["csv"] += took

        setattr(cls, name, timed)
    return spent


def writer_alone(epochs: int = 2000) -> float:
    """Seconds per epoch for the default logger's per-epoch work alone, including the writer's
    background thread: ``epochs`` rows logged, then the file closed (which waits for the thread
    to write everything out)."""
    from omegaconf import OmegaConf

    from dltrain.config import TensorBoardSettings
    from dltrain.data.spec import DataSpec
    from dltrain.train.tensorboard import RunLogger, _Writer

    with tempfile.TemporaryDirectory() as scratch:
        logger = RunLogger(TensorBoardSettings(), Path(scratch), OmegaConf.create({"model": {"name": "mlp"}}),
                           DataSpec(task="multiclass", input_shape=(4,)), monitor="val_loss", seed=0)
        logger.writer, logger.train_size = _Writer(Path(scratch)), 1000
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            logger.epoch_end(epoch, {**ROW, "epoch": epoch})
        logger.close("finished")
        return (time.perf_counter() - started) / epochs


def csv_alone(epochs: int = 2000) -> float:
    """Seconds per epoch for the csv logger's per-epoch work alone: ``epochs`` rows appended to
    metrics.csv (the first writes the file with its header)."""
    from dltrain.train.csv_logger import CsvLogger

    with tempfile.TemporaryDirectory() as scratch:
        logger = CsvLogger(Path(scratch))
        logger.start(None, None, None, None)
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            logger.epoch_end(epoch, {**ROW, "epoch": epoch})
        return (time.perf_counter() - started) / epochs


def one_run(overrides: list[str], spent: dict) -> dict:
    """Train once; per-epoch wall, CPU and logger times (epochs 2..N) and the time outside."""
    from rich.console import Console

    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices
    from dltrain.commands.fit import train_split

    cfg = compose(overrides)
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    stamps: list[tuple[float, float, float, float]] = []

    def stamp(epoch, row):
        stamps.append((time.perf_counter(), time.process_time(), spent["seconds"], spent["csv"]))

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        train_split(cfg, settings, source, train_index, val_index, Path(scratch) / "run",
                    out=Console(quiet=True), callbacks=[stamp])
        total = time.perf_counter() - started
    pairs = list(zip(stamps, stamps[1:]))
    wall = [b[0] - a[0] for a, b in pairs]
    return {"wall": wall, "cpu": [b[1] - a[1] for a, b in pairs],
            "logger": [b[2] - a[2] for a, b in pairs], "csv": [b[3] - a[3] for a, b in pairs],
            # the whole call less epochs 2..N and a typical epoch for epoch 1
            "outside": total - sum(wall) - statistics.median(wall)}


def paired(workload: str, pairs: int, spent: dict) -> None:
    """``logger=[tensorboard,csv]`` against ``logger=tensorboard``: ``pairs`` interleaved pairs
    (after one warm-up pair), each pair's ratio of median epochs; the csv logger's own time."""
    import torch

    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    differences, csv_own, epochs = [], [], {"wall": {}, "cpu": {}}
    for number in range(pairs + 1):
        names = list(PAIRED) if number % 2 else list(PAIRED)[::-1]
        runs = {name: one_run([*WORKLOADS[workload], *COMMON, *PAIRED[name]], spent) for name in names}
        if not number:
            continue
        for key in ratios:
            base, with_csv = (statistics.median(runs[name][key]) for name in PAIRED)
            ratios[key].append(with_csv / base)
            epochs[key].setdefault("tensorboard", []).append(base)
            epochs[key].setdefault("tensorboard+csv", []).append(with_csv)
            if key == "wall":
                differences.append(with_csv - base)
        csv_own.extend(runs["tensorboard+csv"]["csv"])
    print(f"\nworkload {workload}: {' '.join(WORKLOADS[workload] + COMMON)}; torch threads "
          f"{torch.get_num_threads()}; {pairs} pairs (+1 warm-up), order alternating, medians over epochs 2..N")
    for key in ("wall", "cpu"):
        values = sorted(ratios[key])
        quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
        print(f"  epoch {key:<4} tensorboard {statistics.median(epochs[key]['tensorboard']) * 1000:6.1f} ms, "
              f"tensorboard+csv {statistics.median(epochs[key]['tensorboard+csv']) * 1000:6.1f} ms; ratio "
              f"median {statistics.median(values):.3f} (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, "
              f"range {values[0]:.3f}-{values[-1]:.3f}) over {len(values)} pairs")
    own, mean = statistics.median(csv_own), statistics.mean(csv_own)
    print(f"  paired difference of median epochs: {statistics.median(differences) * 1000:+.2f} ms "
          f"(median over pairs); csv logger's own calls per epoch: median {own * 1000:.3f} ms "
          f"({100 * own / statistics.median(epochs['wall']['tensorboard']):.2f}% of the tensorboard epoch), "
          f"mean {mean * 1000:.3f} ms (a busy machine's pauses land in some calls), over {len(csv_own)} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (after one warm-up round)")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=0,
                        help="measure only tensorboard+csv against tensorboard, in this many pairs")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    if args.pairs:
        print(f"csv logger's per-epoch work alone (one row appended): {csv_alone() * 1000:.3f} ms per epoch")
        spent = instrument_loggers()
        for workload in workloads:
            paired(workload, args.pairs, spent)
        return
    alone = writer_alone()
    print(f"default logger's per-epoch work alone, background writer included: {alone * 1000:.2f} ms per epoch")
    spent = instrument_loggers()
    for workload in workloads:
        results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for round_number in range(args.rounds + 1):
            # Rotate the order, so that each configuration runs in every position equally often
            # and a machine growing busier or quieter favours none of them.
            shift = round_number % len(CONFIGS)
            names = list(CONFIGS)[shift:] + list(CONFIGS)[:shift]
            for name in names:
                run = one_run([*WORKLOADS[workload], *COMMON, *CONFIGS[name]], spent)
                if round_number:
                    results[name].append(run)
        print(f"\nworkload {workload}: {' '.join(WORKLOADS[workload] + COMMON)}; torch threads "
              f"{torch.get_num_threads()}; {args.rounds} rounds, medians over epochs 2..N")
        print(f"{'logger':<9}{'epoch':>10}{'vs none':>9}{'cpu':>10}{'vs none':>9}{'logger':>10}"
              f"{'of epoch':>10}{'outside':>10}")
        base = {key: statistics.median(v for r in results["none"] for v in r[key]) for key in ("wall", "cpu")}
        base_outside = statistics.median(r["outside"] for r in results["none"])
        for name, runs in results.items():
            wall = statistics.median(v for r in runs for v in r["wall"])
            cpu = statistics.median(v for r in runs for v in r["cpu"])
            logger = statistics.mean(v for r in runs for v in r["logger"])
            outside = statistics.median(r["outside"] for r in runs) - base_outside
            print(f"{name:<9}{wall * 1000:>7.1f} ms{100 * (wall / base['wall'] - 1):>+8.1f}%"
                  f"{cpu * 1000:>7.1f} ms{100 * (cpu / base['cpu'] - 1):>+8.1f}%"
                  f"{logger * 1000:>7.2f} ms{100 * logger / base['wall']:>9.2f}%{outside:>+8.2f} s")


if __name__ == "__main__":
    main()
