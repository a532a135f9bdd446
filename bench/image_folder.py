"""Image folders: memory, decode speed and start-up of data=image_folder on a generated folder.

    python bench/image_folder.py                    # 6,000 128x128 JPEGs, 2 pairs; writes bench/README.md
    python bench/image_folder.py --before /tmp/base # also the same CNN fit on an export of an older dltrain
    python bench/image_folder.py --images 600 --pairs 1 --no-write   # a smoke run

Every measurement runs in a fresh process (this script with ``--child``), and the peak resident
memory of a command is read with resource.getrusage(RUSAGE_CHILDREN).ru_maxrss in a wrapper
process whose only child it is. Contenders are interleaved as pairs so that a slow spell of the
shared machine hits both alike; each ratio is per pair, and the table gives every pair's.

1. Peak resident memory of a one-epoch CNN fit on the folder against the default tabular fit's
   (the bound: tabular + 1.5 x the pixel bytes), on the first run (decoding into the cache) and
   the second (the cache opened).
2. Decode throughput of ``data.workers=2`` against 1 (images per second into a cache file).
3. Time from a fresh process to the first training batch (load_source, prepare, first batch
   staged) on the first run (empty cache) against the second.
4. The folder trained for one epoch with ``data.memory_max_mb`` a third of its pixels: it streams
   from the cache file; its peak against tabular + 1.5 x data.memory_max_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEGIN, END = "<!-- image-folder:begin -->", "<!-- image-folder:end -->"
# A small CNN (one strided 3x3 convolution of 8 channels, 4x4 pooling): the data's memory, not the
# model's, is what is measured, and the shared 2-core machine trains it in seconds.
CNN = ["model=cnn", "model.channels=[8]", "model.kernel_size=3", "model.stride=2", "model.pool_size=4",
       "data=image_folder", "trainer.epochs=1", "trainer.progress=false", "logger=none", "trainer.device=cpu"]


def generate(root: Path, images: int, size: int) -> Path:
    """``images`` JPEGs of size x size in 4 class folders: smooth colour fields plus noise."""
    import numpy as np
    from PIL import Image

    folder = root / f"jpegs-{images}-{size}"
    if (folder / "done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(images):
        label = i % 4
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 6.28, 3)
        field = np.stack([np.sin(6 * x * (c + 1) + 3 * y * label + phase[c]) for c in range(3)], axis=-1)
        pixels = np.clip(128 + 90 * field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"class{label}" / f"{i:05d}.jpg", quality=90)
    (folder / "done").write_text("")
    return folder


# --------------------------------------------------------------------------- child processes


def child(kind: str, args: list[str]) -> dict:
    """Run in a fresh process: ``kind`` is ``peak`` (run the command ``args``, report its peak
    resident memory and wall time), ``decode`` (workers, folder, count) or ``first`` (folder, size)."""
    if kind == "peak":
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return {"rc": done.returncode, "seconds": seconds, "peak_bytes": peak, "tail": done.stderr[-2000:] + done.stdout[-2000:]}
    if kind == "decode":
        import numpy as np

        from dltrain.data.image_cache import decode_into

        workers, folder, size = int(args[0]), Path(args[1]), int(args[2])
        files = sorted(folder.rglob("*.jpg"))
        with tempfile.TemporaryDirectory() as scratch:  # into a file, as a cache is built
            out = np.lib.format.open_memmap(Path(scratch) / "cache.npy", mode="w+", dtype=np.uint8,
                                            shape=(len(files), 3, size, size))
            started = time.perf_counter()
            decode_into(out, files, size, size, 3, workers)
            out.flush()
            seconds = time.perf_counter() - started
        return {"images": len(files), "seconds": seconds}
    if kind == "first":
        started = time.perf_counter()
        import torch

        from dltrain.config import DataSettings
        from dltrain.data import load_source, prepare
        from dltrain.data.split import train_val_indices
        from dltrain.train.staging import rows, to_device

        import sklearn.model_selection  # noqa: F401  (what the first split imports: not the data's time)
        from dltrain.data import DATASETS

        DATASETS["image_folder"]  # imports every data module
        imported = time.perf_counter()
        settings = DataSettings(name="image_folder", batch_size=64, val_fraction=0.2, shuffle=True,
                                options={"path": args[0], "image_size": int(args[1])})
        source = load_source(settings)
        train, val = train_val_indices(source, 0.2, 0)
        data = prepare(source, train, val)
        batch = to_device(rows(data.train.x, torch.randperm(len(train))[:64]), torch.device("cpu"))
        assert batch.shape[0] == 64
        return {"seconds": time.perf_counter() - imported, "import_seconds": imported - started}
    raise SystemExit(f"unknown child {kind}")


def spawn(kind: str, *args, pythonpath: Path = REPO, cwd: Path | None = None, env: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "COLUMNS": "200", **(env or {})}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"child {kind} {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_peak(overrides: list[str], cwd: Path, pythonpath: Path = REPO) -> dict:
    result = spawn("peak", sys.executable, "-m", "dltrain", "fit", *overrides, pythonpath=pythonpath, cwd=cwd)
    if result["rc"] != 0:
        raise SystemExit(f"dltrain fit {' '.join(overrides)} failed:\n{result['tail']}")
    return result


# --------------------------------------------------------------------------- the bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--before", type=Path, help="an export of an older dltrain to measure the same CNN fit with")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", nargs=1)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.rest)))
        return

    folder = generate(HERE / "_data", args.images, args.size)
    pixel_bytes = args.images * 3 * args.size * args.size
    mib = pixel_bytes / 2**20
    results = {"images": args.images, "size": args.size, "pixel_bytes": pixel_bytes, "pairs": args.pairs}
    cnn = [*CNN, f"data.path={folder}", f"data.image_size={args.size}"]
    stream_limit = round(mib / 3, 2)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print(f"folder {folder}: {args.images} images, {mib:.0f} MiB of pixels", flush=True)
        tabular, first, second, streamed, before = [], [], [], [], []
        for pair in range(args.pairs):
            work = scratch / f"fit{pair}"
            work.mkdir()
            tabular.append(fit_peak(["trainer.epochs=1", "trainer.progress=false", "logger=none",
                                     "trainer.device=cpu"], work))
            first.append(fit_peak(cnn, work))  # decodes into work/outputs/.cache
            second.append(fit_peak(cnn, work))  # opens the cache
            streamed.append(fit_peak([*cnn, f"data.memory_max_mb={stream_limit}"], work))
            if args.before:
                before.append(fit_peak(cnn, work, pythonpath=args.before))
            print(f"pair {pair + 1}: tabular {tabular[-1]['peak_bytes'] / 2**20:.0f} MiB, cnn first "
                  f"{first[-1]['peak_bytes'] / 2**20:.0f} MiB, second {second[-1]['peak_bytes'] / 2**20:.0f} MiB, "
                  f"streamed {streamed[-1]['peak_bytes'] / 2**20:.0f} MiB"
                  + (f", before {before[-1]['peak_bytes'] / 2**20:.0f} MiB" if before else ""), flush=True)
        results["fits"] = {"tabular": tabular, "first": first, "second": second, "streamed": streamed,
                           "before": before, "stream_memory_max_mb": stream_limit}
        decode = []
        for pair in range(args.pairs):
            one, two = spawn("decode", 1, folder, args.size), spawn("decode", 2, folder, args.size)
            decode.append({"one": one, "two": two})
            print(f"decode pair {pair + 1}: 1 worker {one['images'] / one['seconds']:.0f}/s, 2 workers "
                  f"{two['images'] / two['seconds']:.0f}/s", flush=True)
        results["decode"] = decode
        starts = []
        for pair in range(args.pairs):
            work = scratch / f"first{pair}"
            work.mkdir()
            cold, warm = spawn("first", folder, args.size, cwd=work), spawn("first", folder, args.size, cwd=work)
            old = spawn("first", folder, args.size, cwd=work, pythonpath=args.before) if args.before else None
            starts.append({"first": cold, "second": warm, "before": old})
            print(f"first-batch pair {pair + 1}: first run {cold['seconds']:.2f} s, second {warm['seconds']:.2f} s"
                  + (f", before {old['seconds']:.2f} s" if old else ""), flush=True)
        results["first_batch"] = starts
    (HERE / "_data" / "image_folder.json").write_text(json.dumps(results, indent=1))
    table = report(results)
    print(table)
    if not args.no_write:
        write_section(BEGIN, END, table)


def write_section(begin: str, end: str, table: str) -> None:
    """Put ``table`` between the markers ``begin`` and ``end`` of bench/README.md."""
    readme = HERE / "README.md"
    head, _, rest = readme.read_text().partition(begin)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def report(results: dict) -> str:
    mib = 2**20
    fits, pairs = results["fits"], results["pairs"]

    def peaks(name):
        return [run["peak_bytes"] / mib for run in fits[name]]

    def shown(values, unit=""):
        return ", ".join(f"{v:,.0f}{unit}" for v in values)

    pixels = results["pixel_bytes"] / mib
    bound = [t + 1.5 * pixels for t in peaks("tabular")]
    stream_bound = [t + 1.5 * fits["stream_memory_max_mb"] for t in peaks("tabular")]
    rows = [
        "| measurement | per pair | against |",
        "| --- | --- | --- |",
        f"| folder | {results['images']:,} JPEGs of {results['size']}x{results['size']}, {pixels:,.0f} MiB as uint8 pixels | |",
        f"| peak RSS, default tabular fit (1 epoch) | {shown(peaks('tabular'), ' MiB')} | |",
        f"| peak RSS, CNN fit, first run (decodes into the cache) | {shown(peaks('first'), ' MiB')} | bound tabular + 1.5 x pixels: {shown(bound, ' MiB')} |",
        f"| peak RSS, CNN fit, second run (cache opened) | {shown(peaks('second'), ' MiB')} | same bound |",
    ]
    if fits["before"]:
        rows.append(f"| peak RSS, CNN fit, before (main at 288cd37) | {shown(peaks('before'), ' MiB')} | |")
    rows.append(f"| peak RSS, CNN fit streaming (data.memory_max_mb={fits['stream_memory_max_mb']:g}, a third of the pixels) "
                f"| {shown(peaks('streamed'), ' MiB')} | bound tabular + 1.5 x data.memory_max_mb: {shown(stream_bound, ' MiB')} |")
    ratios = [pair["two"]["images"] / pair["two"]["seconds"] / (pair["one"]["images"] / pair["one"]["seconds"])
              for pair in results["decode"]]
    rows.append(f"| decode throughput, data.workers=2 / 1 | {', '.join(f'{r:.2f}x' for r in ratios)} "
                f"| 1 worker: {shown([p['one']['images'] / p['one']['seconds'] for p in results['decode']], '/s')} |")
    starts = results["first_batch"]

    def seconds(which):
        return ", ".join(f"{s[which]['seconds']:.2f} s" for s in starts)

    speedup = ", ".join(f"{s['first']['seconds'] / s['second']['seconds']:.1f}x" for s in starts)
    rows.append(f"| data ready to the first batch, first run (decode) | {seconds('first')} | |")
    rows.append(f"| data ready to the first batch, second run (cache) | {seconds('second')} | first / second: {speedup} |")
    if starts[0].get("before"):
        rows.append(f"| data ready to the first batch, before (main at 288cd37, every run) | {seconds('before')} | |")
    epoch = [run["seconds"] for run in fits["second"]]
    rows.append(f"| CNN fit wall time, second run / streaming run | {shown(epoch, ' s')} / "
                f"{shown([run['seconds'] for run in fits['streamed']], ' s')} | |")
    return "\n".join(rows) + f"\n\n{pairs} pair(s), interleaved; peak RSS from ru_maxrss of a wrapper process's children."


if __name__ == "__main__":
    main()
