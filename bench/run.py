"""dltrain against the loops people write by hand and against Lightning, side by side in one run.

    python bench/run.py                       # every workload, 3 repeats, 3 epochs; writes bench/README.md's table
    python bench/run.py --quick               # 1 repeat, 2 epochs, digits only: a smoke run
    python bench/run.py --workloads cnn_mnist --repeats 5 --epochs 4 --no-write

Each (workload, contender, repeat) runs in a fresh process (bench/contenders.py), in an
interleaved order so that a slow spell of the machine hits every contender alike. Per contender it
reports the median over repeats of the median epoch time (the first epoch, with its warm-up,
left out), the samples per second that makes, the peak memory (resident set on the CPU, allocated
on CUDA), and the ratio to dltrain computed from the same run. Then it times `dltrain --help` and
the default `dltrain fit` end to end (median of several runs each), and writes the results to
bench/results.json and the table between the markers in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from contenders import CONTENDERS, DEFAULT_MNIST, WORKLOADS  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ORDER = ("dltrain", "hand", "course", "lightning")
LABELS = {"dltrain": "dltrain", "hand": "minimal hand loop", "course": "course DataLoader loop",
          "lightning": "Lightning"}


def one_run(workload: str, contender: str, epochs: int, mnist_root: Path, device: str) -> dict:
    command = [sys.executable, str(HERE / "contenders.py"), workload, contender, f"--epochs={epochs}",
               f"--mnist-root={mnist_root}", f"--device={device}"]
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall_times(args: list[str], runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(["dltrain", *args], cwd=scratch, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
    return times


def steady(run: dict) -> float:
    """A run's median epoch, the first (warm-up) left out."""
    return statistics.median(run["epoch_seconds"][1:] or run["epoch_seconds"])


def summarise(runs: list[dict], reference: list[dict] | None = None) -> dict:
    steady_seconds = [steady(r) for r in runs]
    seconds = statistics.median(steady_seconds)
    paired = None
    if reference:  # each repeat against dltrain's run just before it: robust to a machine that drifts
        paired = statistics.median(steady(r) / steady(d) for r, d in zip(runs, reference))
    return {
        "paired_ratio": paired,
        "epoch_seconds": seconds,
        "epoch_seconds_all": steady_seconds,
        "first_epoch_seconds": statistics.median(r["epoch_seconds"][0] for r in runs),
        "samples_per_second": runs[0]["train_samples"] / seconds,
        "peak_memory_mib": statistics.median(r["peak_memory_mib"] for r in runs),
    }


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def table(results: dict, startup: dict, args, header: str) -> str:
    lines = [header, ""]
    lines.append("| workload | contender | s/epoch | samples/s | first epoch s | peak MiB | dltrain speed-up |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for workload, by_contender in results.items():
        ours = by_contender.get("dltrain")
        for contender in ORDER:
            if contender not in by_contender:
                continue
            row = by_contender[contender]
            if "skipped" in row:
                lines.append(f"| {workload} | {LABELS[contender]} | skipped: {row['skipped']} | | | | |")
                continue
            ratio = row.get("paired_ratio") or (row["epoch_seconds"] / ours["epoch_seconds"] if ours else float("nan"))
            lines.append(
                f"| {workload} | {LABELS[contender]} | {row['epoch_seconds']:.3f} | "
                f"{row['samples_per_second']:,.0f} | {row['first_epoch_seconds']:.2f} | "
                f"{row['peak_memory_mib']:,.0f} | {'—' if contender == 'dltrain' else f'{ratio:.2f}x'} |")
    lines.append("")
    lines.append("| command | median wall time (s) | runs |")
    lines.append("|---|---:|---|")
    for command, times in startup.items():
        lines.append(f"| `{command}` | {statistics.median(times):.2f} | "
                     f"{', '.join(f'{t:.2f}' for t in times)} |")
    lines.append("")
    lines.append("dltrain speed-up: the contender's seconds per epoch divided by dltrain's, taken "
                 "per repeat against the dltrain run just before it and then the median (above 1: "
                 "dltrain is faster; 0.95 means dltrain takes 5% longer).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--contenders", default=",".join(ORDER))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 epochs, mlp_digits, 1 start-up run")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave bench/ as it is")
    args = parser.parse_args()
    if args.quick:
        args.workloads, args.repeats, args.epochs, args.startup_runs = "mlp_digits", 1, 2, 1
    workloads = [w for w in args.workloads.split(",") if w]
    contenders = [c for c in args.contenders.split(",") if c]
    for name in workloads:
        if name not in WORKLOADS:
            raise SystemExit(f"Unknown workload {name!r}; choose from {', '.join(WORKLOADS)}.")
    for name in contenders:
        if name not in CONTENDERS:
            raise SystemExit(f"Unknown contender {name!r}; choose from {', '.join(CONTENDERS)}.")
    if any("mnist" in w for w in workloads) and not (args.mnist_root / "MNIST" / "raw").is_dir():
        print(f"MNIST is not at {args.mnist_root}: skipping the MNIST workloads (--mnist-root DIR).")
        workloads = [w for w in workloads if "mnist" not in w]

    raw: dict[str, dict[str, list[dict]]] = {w: {c: [] for c in contenders} for w in workloads}
    for workload in workloads:
        for repeat in range(args.repeats):
            for contender in contenders:
                run = one_run(workload, contender, args.epochs, args.mnist_root, args.device)
                raw[workload][contender].append(run)
                shown = run.get("skipped") or " ".join(f"{s:.3f}" for s in run["epoch_seconds"])
                print(f"{workload:11s} {contender:9s} repeat {repeat + 1}/{args.repeats}: {shown}", flush=True)
    results = {w: {c: (summarise(runs, by.get("dltrain") if c != "dltrain" else None)
                       if "skipped" not in runs[0] else runs[0])
                   for c, runs in by.items()} for w, by in raw.items()}

    startup = {"dltrain --help": wall_times(["--help"], args.startup_runs),
               "dltrain fit": wall_times(["fit"], args.startup_runs)}
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    device = next((r[0]["device"] for by in raw.values() for r in by.values() if "device" in r[0]), "cpu")
    header = (f"Machine: {machine()}. Device: {device}. {args.repeats} repeats x {args.epochs} epochs "
              f"per contender; command: `{command.strip()}`; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    text = table(results, startup, args, header)
    print(text)
    if args.no_write:
        return
    (HERE / "results.json").write_text(json.dumps({"header": header, "results": results, "raw": raw,
                                                   "startup": startup}, indent=1) + "\n")
    readme = HERE / "README.md"
    current = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current:
        current += f"\n{BEGIN}\n{END}\n"
    before, rest = current.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")
    print(f"wrote {readme} and {HERE / 'results.json'}")


if __name__ == "__main__":
    main()
