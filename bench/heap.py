"""glibc's mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_=1048576 in the environment) against
glibc's default (a threshold that rises as blocks are freed): peak resident memory and training
seconds of the same fits. dltrain leaves glibc's default: this bench is why (bench/README.md, "Heap").

    python bench/heap.py              # 3 pairs; writes the table under "Heap" in bench/README.md
    python bench/heap.py --pairs 1 --no-write

Each fit is a fresh `python -m dltrain fit` process under a wrapper whose only child it is (peak
RSS: ru_maxrss of the wrapper's children), once with MALLOC_MMAP_THRESHOLD_ set and once without. The contenders of a pair run back to back, their
order alternating from pair to pair, so that a slow spell of the shared machine hits both alike.
Training seconds are metrics.json's "seconds" (the epochs, without start-up).

Fits: the default `dltrain fit` (MLP on digits, 20 epochs); the bench's small CNN for one epoch on
a generated folder of 6,000 128x128 JPEGs (bench/image_folder.py), its cache opened and, with
data.memory_max_mb a third of its pixels, streaming; `recipe=mnist_cnn` for one epoch on the MNIST
subset when ../shared/data/mnist-subset is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from image_folder import CNN, generate, spawn, write_section  # noqa: E402

BEGIN, END = "<!-- heap:begin -->", "<!-- heap:end -->"
MNIST = HERE.parent.parent / "shared" / "data" / "mnist-subset"
QUIET = ["trainer.progress=false", "logger=none", "trainer.device=cpu"]
FIXED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def fit(overrides: list[str], work: Path, fixed: bool) -> dict:
    command = [sys.executable, "-m", "dltrain", "fit", *overrides]
    before = set(work.glob("outputs/*/*/metrics.json"))
    result = spawn("peak", *command, cwd=work, env=FIXED if fixed else None)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result['tail']}")
    (metrics,) = set(work.glob("outputs/*/*/metrics.json")) - before
    return {"peak_mib": result["peak_bytes"] / 2**20, "seconds": json.loads(metrics.read_text())["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    folder = generate(HERE / "_data", 6000, 128)
    cnn = [*CNN, f"data.path={folder}", "data.image_size=128"]
    fits = {"default fit (MLP, digits, 20 epochs)": ["trainer.epochs=20", *QUIET],
            "CNN, image folder, cache opened (1 epoch)": cnn,
            "CNN, image folder, streaming (1 epoch)": [*cnn, "data.memory_max_mb=93.75"]}
    if (MNIST / "MNIST").is_dir():
        fits["recipe=mnist_cnn (1 epoch, MNIST subset)"] = ["recipe=mnist_cnn", "trainer.epochs=1",
                                                           f"data.root={MNIST}", *QUIET]
    results = {name: [] for name in fits}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        spawn("peak", sys.executable, "-m", "dltrain", "fit", *cnn, cwd=work)  # builds the image cache
        for pair in range(args.pairs):
            for name, overrides in fits.items():
                order = (True, False) if pair % 2 == 0 else (False, True)
                runs = {fixed: fit(overrides, work, fixed) for fixed in order}
                results[name].append({"fixed": runs[True], "glibc": runs[False]})
                print(f"pair {pair + 1} {name}: fixed {runs[True]['peak_mib']:,.0f} MiB {runs[True]['seconds']:.1f} s, "
                      f"glibc {runs[False]['peak_mib']:,.0f} MiB {runs[False]['seconds']:.1f} s", flush=True)
    (HERE / "_data" / "heap.json").write_text(json.dumps(results, indent=1))
    table = report(results, args.pairs)
    print(table)
    if not args.no_write:
        write_section(BEGIN, END, table)


def report(results: dict, pairs: int) -> str:
    rows = ["| fit | peak RSS, fixed 1 MiB | peak RSS, glibc default | training seconds, fixed / glibc (per pair) | median |",
            "| --- | --- | --- | --- | --- |"]
    for name, runs in results.items():
        ratios = [run["fixed"]["seconds"] / run["glibc"]["seconds"] for run in runs]
        fixed = ", ".join(f"{run['fixed']['peak_mib']:,.0f}" for run in runs)
        glibc = ", ".join(f"{run['glibc']['peak_mib']:,.0f}" for run in runs)
        rows.append(f"| {name} | {fixed} MiB | {glibc} MiB | {', '.join(f'{r:.2f}x' for r in ratios)} "
                    f"| {statistics.median(ratios):.2f}x |")
    return "\n".join(rows) + f"\n\n{pairs} pair(s), interleaved (order alternating); peak RSS from ru_maxrss of a wrapper process's children."


if __name__ == "__main__":
    main()
