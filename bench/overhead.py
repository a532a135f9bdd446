"""Whole-process overheads of dltrain against the scripts people write, and the thread policy.

    python bench/overhead.py [--pairs 3] [--only cv_house_like,default_fit,contention,cnn_threads]
                             [--mnist-root DIR]

Every figure comes from fresh processes of this tree (`python -m dltrain`, PYTHONPATH set to it),
run in interleaved pairs whose order alternates, so that a slow spell of the shared machine
hits both sides of a pair; a ratio is taken per pair and the median reported with every pair.

  cv_house_like  `dltrain cv recipe=house_prices_kfold data.path=CSV` as shipped (logging,
                 checkpoints, figures) against bench/textbook_house_prices.py (the book's k-fold)
                 on a generated 1,460-row CSV shaped like Kaggle's train.csv (bench/house_like.py).
                 Wall time of each whole process; target dltrain / script <= 1.2.
  default_fit    `dltrain fit` as shipped against bench/hand_fit_digits.py; target <= 1.5.
  contention     the default fit's median epoch (metrics.json, epochs 2-20) with one competing
                 CPU-bound process (`python -c "while True: pass"`) against quiet, for
                 trainer.threads=auto and for torch's default count; target loaded / quiet <= 2.
  cnn_threads    `dltrain fit recipe=mnist_cnn trainer.epochs=2` (MNIST subset): the second
                 epoch's seconds with trainer.threads=auto against torch's default count;
                 target auto / default <= 1 (within the noise).

Writes bench/overhead.json and the table between the overhead markers in bench/README.md.
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
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist-subset"
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
BENCHMARKS = ("cv_house_like", "default_fit", "contention", "cnn_threads")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def dltrain(*args: str) -> list[str]:
    return [sys.executable, "-m", "dltrain", *args]


def epoch_seconds(run_dir: Path) -> list[float]:
    return [row["seconds"] for row in json.loads((run_dir / "metrics.json").read_text())["history"]]


def torch_default_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=ENV, check=True, capture_output=True, text=True).stdout
    return int(out)


def paired(pairs: int, first, second) -> tuple[list[float], list[float]]:
    """Run first() and second() ``pairs`` times each, alternating which goes first."""
    a, b = [], []
    for pair in range(pairs):
        if pair % 2 == 0:
            a.append(first(pair))
            b.append(second(pair))
        else:
            b.append(second(pair))
            a.append(first(pair))
        print(f"  pair {pair + 1}: {a[-1]:.2f} / {b[-1]:.2f} = {a[-1] / b[-1]:.2f}  (load {load()})", flush=True)
    return a, b


def summary(name: str, a_name: str, a: list[float], b_name: str, b: list[float], unit: str,
            target: str, load_before: str) -> dict:
    ratios = [x / y for x, y in zip(a, b)]
    return {"benchmark": name, "a": a_name, "b": b_name, "unit": unit,
            "a_values": [round(x, 3) for x in a], "b_values": [round(x, 3) for x in b],
            "a_median": statistics.median(a), "b_median": statistics.median(b),
            "ratios": [round(r, 3) for r in ratios], "ratio_median": statistics.median(ratios),
            "pairs": len(ratios), "target": target, "load_before": load_before, "load_after": load()}


def cv_house_like(pairs: int, scratch: Path, **_) -> list[dict]:
    sys.path.insert(0, str(BENCH))
    from house_like import DEFAULT_PATH, write_house_like_csv

    csv = write_house_like_csv(DEFAULT_PATH)
    before = load()
    a, b = paired(
        pairs,
        lambda i: timed(dltrain("cv", "recipe=house_prices_kfold", f"data.path={csv}",
                                f"hydra.run.dir={scratch / f'cv{i}'}"), scratch),
        lambda i: timed([sys.executable, str(BENCH / "textbook_house_prices.py"), str(csv)], scratch),
    )
    return [summary("cv_house_like", "dltrain cv recipe=house_prices_kfold", a,
                    "textbook_house_prices.py", b, "s wall", "<= 1.2", before)]


def default_fit(pairs: int, scratch: Path, **_) -> list[dict]:
    before = load()
    a, b = paired(
        pairs,
        lambda i: timed(dltrain("fit", f"hydra.run.dir={scratch / f'fit{i}'}"), scratch),
        lambda i: timed([sys.executable, str(BENCH / "hand_fit_digits.py")], scratch),
    )
    return [summary("default_fit", "dltrain fit", a, "hand_fit_digits.py", b, "s wall", "<= 1.5", before)]


def median_epoch(scratch: Path, tag: str, threads, competing: bool) -> float:
    run_dir = scratch / tag
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competing else None
    try:
        timed(dltrain("fit", "trainer.progress=false", f"trainer.threads={threads}",
                      f"hydra.run.dir={run_dir}"), scratch)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return statistics.median(epoch_seconds(run_dir)[1:])


def contention(pairs: int, scratch: Path, default_threads: int, **_) -> list[dict]:
    results = []
    for threads in ("auto", default_threads):
        label = f"trainer.threads={threads}" + (" (torch's default)" if threads != "auto" else "")
        print(f" {label}", flush=True)
        before = load()
        a, b = paired(pairs,
                      lambda i: median_epoch(scratch, f"loaded_{threads}_{i}", threads, True),
                      lambda i: median_epoch(scratch, f"quiet_{threads}_{i}", threads, False))
        results.append(summary(f"contention {label}", "median epoch, 1 competing process", a,
                               "median epoch, quiet", b, "s/epoch", "<= 2", before))
    return results


def cnn_threads(pairs: int, scratch: Path, default_threads: int, mnist_root: Path, **_) -> list[dict]:
    if not (mnist_root / "MNIST").exists() and not any(mnist_root.glob("*")):
        print(f" skipped: no MNIST under {mnist_root}")
        return []

    def second_epoch(threads, i) -> float:
        run_dir = scratch / f"cnn_{threads}_{i}"
        timed(dltrain("fit", "recipe=mnist_cnn", f"data.root={mnist_root}", "trainer.epochs=2",
                      "trainer.progress=false", f"trainer.threads={threads}", f"hydra.run.dir={run_dir}"),
              scratch)
        return epoch_seconds(run_dir)[-1]

    before = load()
    a, b = paired(pairs, lambda i: second_epoch("auto", i), lambda i: second_epoch(default_threads, i))
    return [summary("cnn_threads", "recipe=mnist_cnn trainer.threads=auto", a,
                    f"trainer.threads={default_threads} (torch's default)", b, "s/epoch (2nd)", "<= 1", before)]


def table(results: list[dict], header: str) -> str:
    lines = [header, "", "| benchmark | A | B | A median | B median | A/B median | A/B per pair | pairs | target | load before / after | run |",
             "|---|---|---|---:|---:|---:|---|---:|---|---|---|"]
    for r in results:
        lines.append(f"| {r['benchmark']} | {r['a']} | {r['b']} | {r['a_median']:.2f} {r['unit']} | "
                     f"{r['b_median']:.2f} {r['unit']} | **{r['ratio_median']:.2f}** | "
                     f"{', '.join(f'{x:.2f}' for x in r['ratios'])} | {r['pairs']} | {r['target']} | "
                     f"{r['load_before']} / {r['load_after']} | {r.get('when', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--no-write", action="store_true", help="print only; leave README and JSON alone")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    default_threads = torch_default_threads()
    results = []
    with tempfile.TemporaryDirectory(prefix="dltrain-overhead-") as scratch:
        for name in chosen:
            print(f"{name} (load {load()})", flush=True)
            results += globals()[name](pairs=args.pairs, scratch=Path(scratch),
                                       default_threads=default_threads, mnist_root=args.mnist_root)
    import torch

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = (f"python bench/overhead.py --pairs {args.pairs}"
               + (f" --only {args.only}" if args.only != ",".join(BENCHMARKS) else ""))
    for result in results:
        result.update(when=when, command=command)
    # --only: the other benchmarks' rows of the last full run stay, each with its own command and date
    saved = BENCH / "overhead.json"
    if set(chosen) != set(BENCHMARKS) and saved.exists() and not args.no_write:
        kept = [r for r in json.loads(saved.read_text())["results"]
                if r["benchmark"].split()[0] not in chosen]
        results = sorted(kept + results, key=lambda r: BENCHMARKS.index(r["benchmark"].split()[0]))
    header = (f"Machine: {os.cpu_count()} CPU cores, torch's default {default_threads} threads; Python "
              f"{platform.python_version()}, torch {torch.__version__}. Last command: `{command}`; {when}. "
              f"Load: 1/5/15-minute load averages from /proc/loadavg.")
    text = table(results, header)
    print(text)
    if args.no_write:
        return
    (BENCH / "overhead.json").write_text(json.dumps({"when": when, "header": header, "results": results},
                                                    indent=1) + "\n")
    readme = BENCH / "README.md"
    content = readme.read_text()
    begin, end = "<!-- overhead:begin -->", "<!-- overhead:end -->"
    if begin in content and end in content:
        content = content[:content.index(begin) + len(begin)] + "\n" + text + "\n" + content[content.index(end):]
    else:
        content += f"\n## Whole-process overheads (`python bench/overhead.py`)\n\n{begin}\n{text}\n{end}\n"
    readme.write_text(content)


if __name__ == "__main__":
    main()
