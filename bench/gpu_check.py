"""Every CUDA path of dltrain in one command, for the short spells of GPU time this project gets.

    python bench/gpu_check.py                       # on the GPU machine: writes bench/GPU.md, bench/gpu.json
    python bench/gpu_check.py --output DIR          # the two files into DIR instead
    python bench/gpu_check.py --device cpu --quick  # CI: the same checks on tiny settings, CPU only
    python bench/gpu_check.py --only cnn,data-par   # the checks whose name starts with one of these
    python bench/gpu_check.py --bundle              # here, before carrying the repo to a GPU machine

Each check trains through the command line, `python -m dltrain fit|cv OVERRIDES`, in its own
process (a crash, a hang or a CUDA error in one cannot take the others down), with its own time
budget (the process is ended when it runs over) inside a total limit (--limit, 480 s: every
check's budget is cut to what is left of it); the run folders go to a scratch folder and the
figures come from the metrics.json each run wrote. A failure is recorded with its one-line
reason and the next check runs. The processes run dltrain's own `main()` behind a thin wrapper
that records, for the report, what the trainer resolved (precision, channels_last, cuDNN
benchmark, torch.compile, where each split was staged) and torch.cuda.max_memory_allocated (a
fresh process per check: each peak starts at zero).

What is checked, on the default fit (MLP on the embedded digits) and on `recipe=mnist_cnn` (the
shared MNIST subset, --mnist-root):
  precision auto (bf16 on a GPU that has it), 32, fp16; channels_last on and off;
  trainer.compile=true; the bf16 and 32 loss curves agree within CURVE_RELATIVE/CURVE_ABSOLUTE;
  data-parallel (nccl on CUDA, every GPU present; gloo on 2 CPU processes in cpu mode) and its
  resume; `dltrain cv k=5` one fold after another, stacked (cv.vectorize=true) and auto (stacking
  on CUDA), training and wall time; the host-staging path forced with trainer.device_data_max_mb
  (pinned memory on CUDA), equal to the resident path within STAGING_RELATIVE.

--device cpu marks the CUDA-only checks not applicable (with why) and runs the rest, one torch
thread per process; --quick trains them for 2 epochs (cv: 2 epochs per fold, data-parallel 1 + 1
on resume) on the embedded digits (the CNN reads them as 8x8 images), without TensorBoard logging,
two processes at a time (--jobs).
A CPU run writes to bench/_data/gpu-check-cpu/ (git-ignored) unless --output says otherwise: its
files are not a GPU result. See bench/README.md, "GPU check", for running it on the GPU machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CARRIED = BENCH / "_data"  # git-ignored: what --bundle prepares for the GPU machine
SITE = CARRIED / "site"  # pure-Python packages the GPU machine's image lacks (hydra, omegaconf)
CPU_OUTPUT = CARRIED / "gpu-check-cpu"
MNIST_CANDIDATES = (REPO.parent / "shared" / "data" / "mnist-subset",  # beside the checkout
                    REPO / "shared" / "data" / "mnist-subset",  # a shared/ inside it travels along
                    CARRIED / "mnist-subset")  # copied there by --bundle
BUNDLED_PACKAGES = ("hydra", "omegaconf", "antlr4")

LIMIT_SECONDS = 480.0  # the whole check on one recent data-centre GPU: 8 minutes
QUICK_LIMIT_SECONDS = 300.0
CURVE_RELATIVE, CURVE_ABSOLUTE = 0.10, 0.02  # bf16 vs 32: |a - b| <= abs + rel * |b|, every epoch
STAGING_RELATIVE, STAGING_ABSOLUTE = 1e-5, 1e-6  # host-staged vs resident: the same arithmetic
CV_ACCURACY = 0.05  # stacked vs one by one: mean validation accuracy (dropout masks differ)
STAGED_CNN_ACCURACY = 0.01  # MNIST CNN staged vs resident: cuDNN may pick other algorithms

PASSED, FAILED, NOT_APPLICABLE, SKIPPED, PENDING = "passed", "failed", "not applicable", "skipped", "pending"


# --------------------------------------------------------------------------- what a child runs

# The process of one check: dltrain's own command line, with the trainer observed from outside.
CHILD = r'''
import atexit, json, sys

probe_path, args = sys.argv[1], sys.argv[2:]
seen = {"trainers": [], "staged": []}


def observe():
    try:
        import torch
        from dltrain.train import engine, staging
        trainer_init, staged_init = engine.Trainer.__init__, staging.Staged.__init__
    except Exception as error:  # a renamed class: the run still counts, the report says so
        seen["observe_error"] = f"{type(error).__name__}: {error}"
        return

    def trainer(self, *a, **k):
        trainer_init(self, *a, **k)
        speed = getattr(self, "speed", None)
        stacked = getattr(engine, "Stacked", None)
        seen["trainers"].append({
            "device": str(getattr(self, "device", "")), "members": len(getattr(self, "members", [])),
            "precision": getattr(speed, "precision", None), "channels_last": getattr(speed, "channels_last", None),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "compile": bool(getattr(getattr(self, "settings", None), "compile", False)),
            "stacked": isinstance(getattr(self, "forward", None), stacked) if stacked else None})

    def staged(self, x, y, *a, **k):
        staged_init(self, x, y, *a, **k)
        first = self.x[0] if isinstance(self.x, tuple) else self.x
        seen["staged"].append({"rows": len(self.y), "resident": bool(self.resident),
                               "pinned": (not self.resident) and bool(first.is_pinned())})

    engine.Trainer.__init__, staging.Staged.__init__ = trainer, staged


def write():
    try:
        import torch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            seen["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as error:
        seen["peak_error"] = f"{type(error).__name__}: {error}"
    with open(probe_path, "w") as out:
        json.dump(seen, out)


atexit.register(write)
observe()
sys.argv = ["dltrain", *args]
from dltrain.cli import main
main()
'''

ENVIRONMENT = r'''
import json, os, platform, shutil, subprocess
info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
import torch
info.update(torch=torch.__version__, cuda_runtime=torch.version.cuda, cuda_available=torch.cuda.is_available(),
            default_threads=torch.get_num_threads())
if info["cuda_available"]:
    info["gpus"] = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        info["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                             "memory_gib": round(p.total_memory / 2**30, 1),
                             "multiprocessors": p.multi_processor_count})
    info["cudnn"] = torch.backends.cudnn.version()
    try:
        version = torch.cuda.nccl.version()
        info["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    except Exception as error:
        info["nccl"] = f"unavailable ({type(error).__name__})"
    info["bf16_supported"] = torch.cuda.is_bf16_supported()
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True)
        info["driver"] = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
for name in ("hydra", "omegaconf", "torchvision", "dltrain"):
    try:
        module = __import__(name)
        info[name] = getattr(module, "__version__", None) or "present"
        if name == "dltrain":
            info["dltrain_path"] = os.path.dirname(module.__file__)
    except Exception as error:
        info[name] = f"missing ({type(error).__name__}: {error})"
print("ENVIRONMENT " + json.dumps(info))
'''


# --------------------------------------------------------------------------- one process per run


@dataclass
class Run:
    """One dltrain process: what it ran, how it ended, what it wrote."""

    name: str
    args: list[str]
    budget: float
    launcher: str = "wrapper"  # wrapper (dltrain's main, observed) | torchrun (1 process) | environment
    env: dict = field(default_factory=dict)
    resumes: str | None = None  # the run it resumes (dltrain fit resume=ITS_FOLDER), after it succeeded
    status: str = PENDING  # ok | failed | timed out | skipped | pending
    reason: str = ""
    wall_s: float | None = None
    timeout_s: float | None = None
    output_tail: str = ""
    output: str = ""
    probe: dict = field(default_factory=dict)
    run_dir: Path | None = None
    snapshot: dict | None = None  # metrics.json as this run left it (a resume rewrites the file)

    def record(self) -> dict:
        return {"name": self.name, "command": " ".join(["dltrain", *self.args]) if self.launcher != "environment"
                else "python -c ENVIRONMENT", "launcher": self.launcher, "status": self.status,
                "reason": self.reason, "wall_s": _round(self.wall_s), "budget_s": self.budget,
                "timeout_s": _round(self.timeout_s), "observed": self.probe or None,
                "output_tail": self.output_tail if self.status != "ok" else ""}


def _round(x, digits=3):
    return None if x is None else round(x, digits)


def failure_reason(output: str, code: int) -> str:
    """One line: dltrain's own sentence (Error: ...), else the exception a traceback ends with."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error:"):
            return line[:400]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
            return line[:400]
    return f"exit code {code}" + (f": {lines[-1][:300]}" if lines else ", no output")


class Runner:
    """Runs the planned processes (``jobs`` at a time) within the total limit, in plan order."""

    def __init__(self, scratch: Path, limit: float, jobs: int, on_done):
        self.scratch, self.limit, self.jobs, self.on_done = scratch, limit, jobs, on_done
        self.deadline = time.monotonic() + limit
        self.lock = threading.Lock()
        self.env = dict(os.environ)
        paths = [str(REPO)]
        if importlib.util.find_spec("hydra") is None and SITE.is_dir():
            paths.append(str(SITE))  # carried by --bundle to a machine whose image lacks them
        paths.append(self.env.get("PYTHONPATH", ""))
        self.env.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), COLUMNS="250",
                        PYTHONUNBUFFERED="1")

    def run_all(self, todo: list[Run], everything: dict[str, Run]) -> None:
        """Run ``todo`` in its order, ``jobs`` at a time; a resume waits for the run it resumes
        without holding a worker (``everything``: every run of the plan, by name)."""
        pending, finished = list(todo), {r.name for r in everything.values() if r not in todo}
        condition = threading.Condition()

        def ready() -> Run | None:
            return next((r for r in pending if r.resumes is None or r.resumes in finished), None)

        def worker() -> None:
            while True:
                with condition:
                    while pending and ready() is None:
                        condition.wait()
                    if not pending:
                        return
                    run = ready()
                    pending.remove(run)
                try:
                    resumed = everything.get(run.resumes) if run.resumes else None
                    if resumed is not None and resumed.status != "ok":
                        run.status, run.reason = "skipped", f"{resumed.name} did not succeed"
                    else:
                        if resumed is not None:
                            run.run_dir = resumed.run_dir
                            run.args = [run.args[0], f"resume={run.run_dir}", *run.args[1:]]
                        self.execute(run)
                finally:
                    with condition:
                        finished.add(run.name)
                        condition.notify_all()
                    self.on_done(run)

        workers = [threading.Thread(target=worker) for _ in range(self.jobs)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()

    def execute(self, run: Run) -> None:
        left = self.deadline - time.monotonic()
        if left < 15:
            run.status = "skipped"
            run.reason = f"the total limit of {self.limit:.0f} s was spent before it could start"
            return
        run.timeout_s = min(run.budget, left)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", run.name).strip("_")
        log = self.scratch / f"{slug}.log"
        probe = self.scratch / f"{slug}.probe.json"
        if run.launcher == "environment":
            command = [sys.executable, "-c", ENVIRONMENT]
        else:
            if run.run_dir is None:
                run.run_dir = self.scratch / "runs" / slug
            args = list(run.args) if run.resumes else [*run.args, f"hydra.run.dir={run.run_dir}"]
            if run.launcher == "torchrun":
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           "-m", "dltrain", *args]
            else:
                command = [sys.executable, "-c", CHILD, str(probe), *args]
        print(f"[{time.strftime('%H:%M:%S')}] {run.name}: start (budget {run.timeout_s:.0f} s)", flush=True)
        started = time.perf_counter()
        with open(log, "w") as out:
            # A process group of its own, so that a run over its budget is ended with what it started.
            process = subprocess.Popen(command, cwd=self.scratch, env={**self.env, **run.env}, stdout=out,
                                       stderr=subprocess.STDOUT, preexec_fn=os.setpgrp)
            try:
                code = process.wait(timeout=run.timeout_s)
            except subprocess.TimeoutExpired:
                code = None
                _end(process)
        run.wall_s = time.perf_counter() - started
        run.output = log.read_text(errors="replace")
        run.output_tail = run.output[-3000:]
        if probe.exists():
            try:
                run.probe = json.loads(probe.read_text())
            except json.JSONDecodeError:
                run.probe = {}
        if code is None:
            run.status, run.reason = "timed out", f"ran over its budget of {run.timeout_s:.0f} s and was ended"
        elif code != 0:
            run.status, run.reason = "failed", failure_reason(run.output, code)
        else:
            run.status = "ok"
            if run.run_dir is not None and (run.run_dir / "metrics.json").is_file():
                run.snapshot = json.loads((run.run_dir / "metrics.json").read_text())
        print(f"[{time.strftime('%H:%M:%S')}] {run.name}: {run.status} in {run.wall_s:.1f} s"
              + (f" ({run.reason})" if run.reason else ""), flush=True)


def _end(process: subprocess.Popen) -> None:
    """SIGTERM first (torch's launcher passes it on to the ranks it started in sessions of their
    own), then SIGKILL to the whole group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=40)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


# --------------------------------------------------------------------------- reading a run


def metrics(run: Run) -> dict:
    """The run's metrics.json as the run left it."""
    return run.snapshot if run.snapshot is not None else json.loads((run.run_dir / "metrics.json").read_text())


def summary(run: Run) -> dict:
    """Figures of a finished fit: times, accuracies, peak memory, resolved settings."""
    m = metrics(run)
    seconds = [row["seconds"] for row in m["history"]]
    final = m["final"] or {}
    trainer = (run.probe.get("trainers") or [{}])[0]
    staged = run.probe.get("staged") or []
    peak = run.probe.get("peak_gpu_bytes")
    return {
        "status": m["status"], "epochs": m["epochs_run"],
        "first_epoch_s": _round(seconds[0]) if seconds else None,
        "epoch_s": _round(statistics.median(seconds[1:])) if len(seconds) > 1 else None,
        "val_accuracy": _round(final.get("val_accuracy"), 4),
        "test_accuracy": _round((m.get("test") or {}).get("accuracy"), 4),
        "final_train_loss": _round(final.get("train_loss"), 5), "final_val_loss": _round(final.get("val_loss"), 5),
        "peak_gpu_mib": round(peak / 2**20, 1) if peak is not None else None,
        "wall_s": _round(run.wall_s, 2),
        "precision": trainer.get("precision"), "channels_last": trainer.get("channels_last"),
        "cudnn_benchmark": trainer.get("cudnn_benchmark"), "compile": trainer.get("compile"),
        "device": trainer.get("device"),
        "staged": [{"rows": s["rows"], "where": "device" if s["resident"] else
                    ("pinned host" if s["pinned"] else "host")} for s in staged],
    }


def curve(run: Run, key: str) -> list[float]:
    return [row[key] for row in metrics(run)["history"]]


def compare_curves(a: list[float], b: list[float], relative: float, absolute: float) -> tuple[bool, float, str]:
    """Whether every epoch's a is within absolute + relative * |b| of b: (ok, worst |a-b|, where)."""
    if len(a) != len(b):
        return False, float("inf"), f"{len(a)} epochs against {len(b)}"
    worst, where, ok = 0.0, "", True
    for epoch, (x, y) in enumerate(zip(a, b), start=1):
        gap = abs(x - y)
        if not gap <= absolute + relative * abs(y):  # NaN fails too
            ok = False
        if gap > worst or gap != gap:
            worst, where = gap, f"epoch {epoch}: {x:.5g} against {y:.5g}"
    return ok, worst, where


# --------------------------------------------------------------------------- the plan


@dataclass
class Check:
    name: str
    what: str
    status: str = PENDING
    reason: str = ""
    runs: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    evaluate: object = None  # Plan's reading of the runs: sets reason and results, raises CheckFailed

    def record(self) -> dict:
        return {"name": self.name, "what": self.what, "status": self.status, "reason": self.reason,
                "runs": self.runs, "results": self.results}


class CheckFailed(Exception):
    pass


class Plan:
    """The runs of one mode (cuda or cpu, quick or not) and the checks read from them."""

    def __init__(self, device: str, quick: bool, mnist: Path | None, environment: dict):
        self.device, self.quick, self.mnist, self.env = device, quick, mnist, environment
        cuda = device == "cuda"
        self.cuda = cuda
        self.gpus = len(environment.get("gpus") or []) if cuda else 0
        self.bf16 = bool(environment.get("bf16_supported")) if cuda else False
        base = ["trainer.progress=false", f"trainer.device={device}"]
        if not cuda:
            base.append("trainer.threads=1")  # a shared CPU: no OpenMP thread waits on a busy core
        if quick:
            base.append("logger=none")  # TensorBoard and the end-of-run figures: seconds of imports
        epochs = ["trainer.epochs=2"] if quick else []
        self.fit_base = ["fit", *base, *epochs]
        self.ddp_base = ["fit", *base]  # its epochs are its own
        if self.quick or self.mnist is None:
            self.cnn_data = ["data=digits_images"]
            self.cnn_data_note = ("the embedded digits as 8x8 images (--quick)" if quick
                                  else "the embedded digits as 8x8 images: no MNIST subset was found")
        else:
            self.cnn_data = [f"data.root={self.mnist}"]
            self.cnn_data_note = f"the MNIST subset at {self.mnist}"
        self.cnn_base = ["fit", "recipe=mnist_cnn", *self.cnn_data, *base, *epochs]
        self.cv_base = ["cv", "k=5", *base, *epochs]
        self.fit_floor = 0.5 if quick else 0.9  # final validation accuracy of the default fit
        self.cnn_floor = 0.5 if quick else (0.97 if self.mnist else 0.9)
        self.ddp_epochs = (1, 2) if quick else (10, 20)
        self.compile_backend = [] if cuda else ["trainer.compile_backend=eager"]
        scale = 1.0 if cuda else (3.0 if quick else 10.0)  # budgets are a GPU's; a shared CPU is slower
        self.scale = scale
        self.runs: dict[str, Run] = {}
        self.checks: list[Check] = []
        self._build()

    # ------------------------------------------------------------------ runs

    def run(self, name: str, args: list[str], budget: float, **kw) -> str:
        self.runs[name] = Run(name, args, budget * self.scale, **kw)
        return name

    def _build(self) -> None:
        cuda, quick = self.cuda, self.quick
        auto_precision = ("bf16" if self.bf16 else "32") if cuda else "32"
        # A training whose settings auto already resolves to is not run twice (alias=...): its check
        # reads the run of auto for its own setting. Budgets are seconds on a GPU.
        self.run("environment", [], 60, launcher="environment")
        self.environment_check()
        fit, cnn = self.fit_base, self.cnn_base
        self.training("fit precision=auto", "fit_auto", [*fit, "trainer.precision=auto"], 60,
                      {"precision": auto_precision, "channels_last": False}, self.fit_floor,
                      "the default dltrain fit (MLP, embedded digits), precision auto: bf16 on a GPU that has it")
        self.training("fit precision=32", "fit_32", [*fit, "trainer.precision=32"], 60,
                      {"precision": "32"}, self.fit_floor, "the default fit in float32",
                      alias=None if cuda else ("fit_auto", "precision=auto resolves to 32 on the CPU"))
        self.training("fit precision=fp16", "fit_fp16", [*fit, "trainer.precision=fp16"], 60,
                      {"precision": "fp16"}, self.fit_floor, "the default fit in float16 with a GradScaler",
                      na=None if cuda else "float16 training needs a GPU (dltrain refuses fp16 on the CPU)")
        self.training("fit compile=true", "fit_compile", [*fit, "trainer.compile=true", *self.compile_backend],
                      150, {"compile": True}, self.fit_floor,
                      "the default fit under torch.compile" + ("" if cuda else " (backend eager on the CPU: "
                                                                "the model traces; inductor is the GPU check)"))
        bf16_fit = "fit_auto" if cuda and self.bf16 else self.run("fit_bf16", [*fit, "trainer.precision=bf16"], 60)
        self.curves("fit bf16 vs 32 loss curves", bf16_fit, "fit_32" if cuda else "fit_auto",
                     "the default fit's training and validation loss, every epoch, bf16 against 32",
                     na="this GPU has no bfloat16" if cuda and not self.bf16 else None)

        layout_auto = cuda  # channels_last=auto: on for convolutions on CUDA, off elsewhere
        self.training("cnn precision=auto", "cnn_auto", [*cnn, "trainer.precision=auto"], 90,
                      {"precision": auto_precision, "channels_last": layout_auto,
                       **({"cudnn_benchmark": True} if cuda else {})}, self.cnn_floor,
                      f"recipe=mnist_cnn on {self.cnn_data_note}, precision and channels_last auto")
        self.training("cnn precision=32", "cnn_32", [*cnn, "trainer.precision=32"], 90,
                      {"precision": "32"}, self.cnn_floor, "recipe=mnist_cnn in float32",
                      alias=None if cuda else ("cnn_auto", "precision=auto resolves to 32 on the CPU"))
        self.training("cnn precision=fp16", "cnn_fp16", [*cnn, "trainer.precision=fp16"], 90,
                      {"precision": "fp16"}, self.cnn_floor, "recipe=mnist_cnn in float16 with a GradScaler",
                      na=None if cuda else "float16 training needs a GPU (dltrain refuses fp16 on the CPU)")
        self.training("cnn channels_last=true", "cnn_cl_true", [*cnn, "trainer.channels_last=true"], 90,
                      {"channels_last": True}, self.cnn_floor, "recipe=mnist_cnn with channels_last on",
                      alias=("cnn_auto", "channels_last=auto turns it on for convolutions on CUDA") if cuda else None)
        self.training("cnn channels_last=false", "cnn_cl_false", [*cnn, "trainer.channels_last=false"], 90,
                      {"channels_last": False}, self.cnn_floor, "recipe=mnist_cnn with channels_last off",
                      alias=None if cuda else ("cnn_auto", "channels_last=auto leaves it off on the CPU"))
        self.training("cnn compile=true", "cnn_compile", [*cnn, "trainer.compile=true", *self.compile_backend],
                      180, {"compile": True}, self.cnn_floor, "recipe=mnist_cnn under torch.compile",
                      skip="--quick runs one compile check (fit compile=true)" if quick and not cuda else None)
        if quick and not cuda:
            self.curves("cnn bf16 vs 32 loss curves", None, None, "recipe=mnist_cnn's losses, bf16 against 32",
                        skip="--quick compares bf16 and 32 on the default fit only")
        else:
            bf16_cnn = "cnn_auto" if cuda and self.bf16 else self.run("cnn_bf16", [*cnn, "trainer.precision=bf16"], 90)
            self.curves("cnn bf16 vs 32 loss curves", bf16_cnn, "cnn_32" if cuda else "cnn_auto",
                        "recipe=mnist_cnn's training and validation loss, every epoch, bf16 against 32",
                        na="this GPU has no bfloat16" if cuda and not self.bf16 else None)

        self.staging("staging device_data_max_mb=0", "staging", [*fit, "trainer.device_data_max_mb=0"], 60,
                     "fit_auto", True, "the default fit with every split in host memory"
                     + (" (pinned), each batch copied over without blocking" if cuda else "")
                     + ": equal to the resident run (fit precision=auto)")
        self.staging("staging cnn device_data_max_mb=8", "staging_cnn", [*cnn, "trainer.device_data_max_mb=8"], 90,
                     "cnn_auto", False, "recipe=mnist_cnn with its training split in pinned host memory, batches "
                     "turned channels_last on the GPU: agrees with the resident run (cnn precision=auto)",
                     na=None if cuda else "pinned memory and channels_last batches are the CUDA path "
                                          "(the CPU path is the staging check above)")
        self.data_parallel()
        self.cross_validation()

    def _check(self, name: str, what: str, runs: list[str]) -> Check:
        check = Check(name, what, runs=[r for r in runs if r])
        self.checks.append(check)
        return check

    def environment_check(self) -> None:
        check = self._check("environment", "device, capability, torch/CUDA/cuDNN/NCCL versions, dltrain's "
                            "dependencies importable", ["environment"])
        check.evaluate = self._environment

    def training(self, name, run_name, args, budget, expect, floor, what, alias=None, na=None, skip=None):
        if na or skip:
            check = self._check(name, what, [])
            check.status, check.reason = (NOT_APPLICABLE, na) if na else (SKIPPED, skip)
            return
        if alias:
            original, why = alias
            check = self._check(name, what, [original])
            check.evaluate = lambda c: self._alias(c, original, why, expect, floor)
            return
        self.run(run_name, args, budget)
        check = self._check(name, what, [run_name])
        check.evaluate = lambda c: self._training(c, run_name, expect, floor)

    def curves(self, name, a, b, what, na=None, skip=None):
        check = self._check(name, what, [a, b])
        if na or skip:
            check.status, check.reason = (NOT_APPLICABLE, na) if na else (SKIPPED, skip)
            return
        check.evaluate = lambda c: self._curves(c, a, b)

    def staging(self, name, run_name, args, budget, reference, exact, what, na=None):
        if na:
            check = self._check(name, what, [])
            check.status, check.reason = NOT_APPLICABLE, na
            return
        self.run(run_name, args, budget)
        check = self._check(name, what, [run_name, reference])
        check.evaluate = lambda c: self._staging(c, run_name, reference, exact)

    def data_parallel(self) -> None:
        first, total = self.ddp_epochs
        if self.cuda:
            if self.gpus >= 2:
                args, launcher = [*self.ddp_base, "trainer.strategy=ddp"], "wrapper"
                how = f"trainer.strategy=ddp: {self.gpus} processes, one per GPU, nccl"
            else:
                args, launcher = [*self.ddp_base, "trainer.strategy=ddp"], "torchrun"
                how = ("one GPU: a data-parallel job of one process, started by torchrun --standalone "
                       "--nproc_per_node=1 (trainer.strategy=ddp alone trains one plain process), nccl")
            env = {"NCCL_DEBUG": "VERSION"}
        else:
            args, launcher, env = [*self.ddp_base, "trainer.devices=2"], "wrapper", {}
            how = "2 CPU processes with gloo (nccl needs CUDA GPUs)"
        self.run("ddp", [*args, f"trainer.epochs={first}"], 120, launcher=launcher, env=env)
        check = self._check("data-parallel", f"the default fit data-parallel, {first} epochs: {how}", ["ddp"])
        check.evaluate = lambda c: self._ddp(c)
        self.run("ddp_resume", ["fit", f"trainer.epochs={total}"], 120, launcher=launcher, env=env, resumes="ddp")
        check = self._check("data-parallel resume", f"dltrain fit resume=RUN trainer.epochs={total} on the "
                            f"data-parallel run: continues after epoch {first} in the same folder, same launcher",
                            ["ddp", "ddp_resume"])
        check.evaluate = lambda c: self._ddp_resume(c)

    def cross_validation(self) -> None:
        for mode in ("false", "true", "auto"):
            run = f"cv_{mode}"
            if mode == "auto" and not self.cuda:
                check = self._check("cv vectorize=auto", "dltrain cv k=5 cv.vectorize=auto: stacks the folds on "
                                    "CUDA", ["cv_false"])
                check.evaluate = lambda c: self._cv(c, "cv_false", stacked=False,
                                                    alias="cv.vectorize=auto trains the folds one by one on the CPU")
                continue
            self.run(run, [*self.cv_base, f"cv.vectorize={mode}"], 120)
            what = {"false": "dltrain cv k=5, the folds one after another (cv.vectorize=false)",
                    "true": "dltrain cv k=5, the five folds stacked under torch.vmap (cv.vectorize=true)",
                    "auto": "dltrain cv k=5 cv.vectorize=auto: should choose stacking on CUDA"}[mode]
            check = self._check(f"cv vectorize={mode}", what, [run])
            check.evaluate = lambda c, run=run, mode=mode: self._cv(c, run, stacked=mode != "false")
        check = self._check("cv stacked vs one by one", "training and wall time of cv.vectorize=true against "
                            f"false; mean validation accuracy within {CV_ACCURACY}", ["cv_false", "cv_true"])
        check.evaluate = lambda c: self._cv_compare(c)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, final: bool) -> None:
        for check in self.checks:
            evaluate = check.evaluate
            if evaluate is None:
                continue
            states = [self.runs[r].status for r in check.runs if r in self.runs]
            if not final and any(s == PENDING for s in states):
                continue
            missing = [r for r in check.runs if r in self.runs and self.runs[r].status != "ok"]
            check.results = {}
            if missing:
                run = self.runs[missing[0]]
                if run.status == "skipped":
                    check.status, check.reason = SKIPPED, f"{run.name}: {run.reason}"
                elif run.status == PENDING:
                    check.status, check.reason = SKIPPED, f"{run.name} did not run"
                else:
                    check.status, check.reason = FAILED, f"{run.name} {run.status}: {run.reason}"
                continue
            try:
                evaluate(check)
                check.status, check.reason = PASSED, check.reason
            except CheckFailed as failure:
                check.status, check.reason = FAILED, str(failure)
            except Exception as error:  # a metrics.json without what a finished run writes
                check.status, check.reason = FAILED, f"could not read the run: {type(error).__name__}: {error}"

    def _environment(self, check: Check) -> None:
        env = self.env = environment_of(self.runs["environment"])
        check.results = dict(env)
        missing = [n for n in ("hydra", "omegaconf", "dltrain") if str(env.get(n, "missing")).startswith("missing")]
        if missing:
            raise CheckFailed(f"{', '.join(missing)} not importable: {env[missing[0]]}"
                              + ("; carry bench/_data (python bench/gpu_check.py --bundle)" if "dltrain" not in missing
                                 else ""))
        if self.cuda and not env.get("cuda_available"):
            raise CheckFailed("torch sees no CUDA GPU")
        gpus = env.get("gpus") or []
        check.reason = (f"{len(gpus)} x {gpus[0]['name']} (capability {gpus[0]['capability']}), torch "
                        f"{env['torch']}, CUDA {env['cuda_runtime']}, cuDNN {env.get('cudnn')}, NCCL {env.get('nccl')}"
                        if gpus else f"CPU only, torch {env['torch']}, {env['cpus']} cores")

    def _training(self, check: Check, run_name: str, expect: dict, floor: float) -> None:
        run = self.runs[run_name]
        figures = summary(run)
        check.results = figures
        if figures["status"] != "finished":
            raise CheckFailed(f"the run ended {figures['status']}")
        self._expect(run, figures, expect)
        loss = figures["final_train_loss"]
        if loss is None or loss != loss:
            raise CheckFailed(f"final training loss {loss}")
        accuracy = figures["val_accuracy"]
        if accuracy is None or accuracy < floor:
            raise CheckFailed(f"validation accuracy {accuracy} is under {floor}")
        check.reason = _describe(figures)

    def _expect(self, run: Run, figures: dict, expect: dict) -> None:
        if not run.probe.get("trainers"):
            raise CheckFailed("the trainer was not observed (" + run.probe.get("observe_error", "no probe file") + ")")
        for key, wanted in expect.items():
            if figures.get(key) != wanted:
                raise CheckFailed(f"{key} resolved to {figures.get(key)!r}, expected {wanted!r}")
        if self.cuda and not str(figures.get("device", "")).startswith("cuda"):
            raise CheckFailed(f"trained on {figures.get('device')}, not CUDA")

    def _alias(self, check: Check, original: str, why: str, expect: dict, floor: float) -> None:
        self._training(check, original, expect, floor)
        check.reason = f"same settings as {original} once auto resolved ({why}): not run twice; " + check.reason

    def _curves(self, check: Check, a: str, b: str) -> None:
        check.results = {"bf16_run": a, "float32_run": b, "relative": CURVE_RELATIVE, "absolute": CURVE_ABSOLUTE}
        for name, run in (("bf16", a), ("32", b)):
            resolved = summary(self.runs[run])["precision"]
            if resolved != name:
                raise CheckFailed(f"{run} trained in {resolved}, not {name}")
        notes = []
        for key in ("train_loss", "val_loss"):
            ok, worst, where = compare_curves(curve(self.runs[a], key), curve(self.runs[b], key),
                                              CURVE_RELATIVE, CURVE_ABSOLUTE)
            check.results[f"{key}_largest_gap"] = _round(worst, 6)
            check.results[f"{key}_largest_gap_at"] = where
            if not ok:
                raise CheckFailed(f"{key} outside tolerance, largest gap {worst:.4g} ({where})")
            notes.append(f"{key} largest gap {worst:.3g}")
        check.reason = ", ".join(notes) + f" (allowed {CURVE_ABSOLUTE} + {CURVE_RELATIVE:.0%} of the 32 value)"

    def _staging(self, check: Check, run_name: str, reference: str, exact: bool) -> None:
        run, ref = self.runs[run_name], self.runs[reference]
        figures = summary(run)
        check.results = figures
        if figures["status"] != "finished":
            raise CheckFailed(f"the run ended {figures['status']}")
        self._expect(run, figures, {} if exact else {"channels_last": True})  # the CNN's: a CUDA check
        staged = run.probe.get("staged") or []
        if not staged or staged[0]["resident"]:
            raise CheckFailed("the training split was still moved to the device whole")
        if self.cuda and not staged[0]["pinned"]:
            raise CheckFailed("the host-staged training split is not in pinned memory")
        ours, theirs = metrics(run)["history"], metrics(ref)["history"]
        if exact:
            keys = [k for k in theirs[0] if k not in ("epoch", "seconds") and isinstance(theirs[0][k], (int, float))]
            worst = 0.0
            for key in keys:
                ok, gap, where = compare_curves([r[key] for r in ours], [r[key] for r in theirs],
                                                STAGING_RELATIVE, STAGING_ABSOLUTE)
                worst = max(worst, gap)
                if not ok:
                    raise CheckFailed(f"{key} differs from the resident run: {where}")
            check.results["largest_difference"] = worst
            check.reason = (f"{figures['staged'][0]['where']} staging, every epoch's metrics equal to the resident "
                            f"run (largest difference {worst:.2g}, allowed {STAGING_RELATIVE:g} relative); "
                            + _describe(figures))
            return
        for key in ("train_loss", "val_loss"):
            ok, gap, where = compare_curves([r[key] for r in ours], [r[key] for r in theirs],
                                            CURVE_RELATIVE, CURVE_ABSOLUTE)
            check.results[f"{key}_largest_gap"] = _round(gap, 6)
            if not ok:
                raise CheckFailed(f"{key} outside tolerance of the resident run: {where}")
        gap = abs(ours[-1]["val_accuracy"] - theirs[-1]["val_accuracy"])
        if gap > STAGED_CNN_ACCURACY:
            raise CheckFailed(f"final validation accuracy {ours[-1]['val_accuracy']:.4f} against the resident "
                              f"{theirs[-1]['val_accuracy']:.4f}")
        check.reason = (f"training split in {figures['staged'][0]['where']} memory, channels_last "
                        f"{figures['channels_last']}; losses within the bf16/32 tolerance of the resident run, "
                        f"accuracy within {STAGED_CNN_ACCURACY}; " + _describe(figures))

    def _ddp_output(self, run: Run) -> str:
        text = " ".join(run.output.split())
        match = re.search(r"x (\d+) processes \(DDP", text)
        if not match:
            raise CheckFailed("dltrain trained one plain process (its banner says no DDP): with one process it "
                              "never joins a process group, so the data-parallel path was not reached")
        if self.cuda and "device=cuda" not in text:
            raise CheckFailed("the data-parallel ranks did not train on CUDA")
        return match.group(1)

    def _ddp(self, check: Check) -> None:
        run = self.runs["ddp"]
        processes = self._ddp_output(run)
        m = metrics(run)
        if m["status"] != "finished":
            raise CheckFailed(f"the run ended {m['status']}")
        nccl = re.search(r"NCCL version ([\w.+-]+)", run.output)
        final = m["final"]
        check.results = {"processes": int(processes), "epochs": m["epochs_run"],
                         "val_accuracy": _round(final.get("val_accuracy"), 4),
                         "epoch_s": _round(statistics.median([r["seconds"] for r in m["history"]])),
                         "wall_s": _round(run.wall_s, 2), "nccl": nccl.group(1) if nccl else None}
        floor = min(self.fit_floor, 0.3) if self.quick else self.fit_floor
        if final.get("val_accuracy", 0) < floor:
            raise CheckFailed(f"validation accuracy {final.get('val_accuracy')} is under {floor}")
        check.reason = (f"{processes} process{'es' if processes != '1' else ''} (DDP){', NCCL ' + nccl.group(1) if nccl else ''}, "
                        f"{m['epochs_run']} epochs, validation accuracy {final['val_accuracy']:.4f}, "
                        f"wall {run.wall_s:.1f} s")

    def _ddp_resume(self, check: Check) -> None:
        first, resumed = self.runs["ddp"], self.runs["ddp_resume"]
        self._ddp_output(resumed)
        if "Resuming from" not in resumed.output:
            raise CheckFailed("the resumed run did not say it resumed")
        before, after = metrics(first), metrics(resumed)
        epochs, total = [r["epoch"] for r in after["history"]], self.ddp_epochs[1]
        check.results = {"epochs": epochs, "status": after["status"], "wall_s": _round(resumed.wall_s, 2),
                         "val_accuracy": _round(after["final"].get("val_accuracy"), 4)}
        if after["status"] != "finished" or epochs != list(range(1, total + 1)):
            raise CheckFailed(f"the resumed run ended {after['status']} with epochs {epochs}")
        if after["history"][:len(before["history"])] != before["history"]:
            raise CheckFailed("the epochs before the resume changed")
        check.reason = (f"continued from epoch {len(before['history'])} to {total} in the same folder; "
                        f"the earlier epochs kept; validation accuracy {after['final']['val_accuracy']:.4f}")

    def _cv(self, check: Check, run_name: str, stacked: bool, alias: str | None = None) -> None:
        run = self.runs[run_name]
        figures = cv_figures(run)
        check.results = figures
        if figures["status"] != "finished" or figures["folds_finished"] != 5:
            raise CheckFailed(f"{figures['folds_finished']} of 5 folds finished, status {figures['status']}")
        if figures["stacked"] != stacked:
            raise CheckFailed(f"the folds trained {'stacked' if figures['stacked'] else 'one by one'}, expected "
                              f"{'stacked' if stacked else 'one by one'}")
        check.reason = ((f"same run as cv_false ({alias}); " if alias else "")
                        + f"5 folds {'stacked' if stacked else 'one by one'}: training {figures['train_s']:.2f} s, "
                          f"wall {figures['wall_s']:.1f} s, mean validation accuracy {figures['mean_val_accuracy']:.4f}")

    def _cv_compare(self, check: Check) -> None:
        one, stacked = cv_figures(self.runs["cv_false"]), cv_figures(self.runs["cv_true"])
        check.results = {"training_speedup": _round(one["train_s"] / stacked["train_s"]),
                         "wall_speedup": _round(one["wall_s"] / stacked["wall_s"]),
                         "accuracy_gap": _round(abs(one["mean_val_accuracy"] - stacked["mean_val_accuracy"]), 4)}
        if check.results["accuracy_gap"] > CV_ACCURACY:
            raise CheckFailed(f"mean validation accuracy {stacked['mean_val_accuracy']:.4f} stacked against "
                              f"{one['mean_val_accuracy']:.4f} one by one")
        check.reason = (f"stacked {check.results['training_speedup']:.2f}x the training speed and "
                        f"{check.results['wall_speedup']:.2f}x the wall speed of one by one; accuracy gap "
                        f"{check.results['accuracy_gap']:.4f}")


def _describe(figures: dict) -> str:
    parts = [f"precision {figures['precision']}"]
    if figures.get("channels_last"):
        parts.append("channels_last")
    if figures.get("compile"):
        parts.append("compiled")
    parts.append(f"val accuracy {figures['val_accuracy']:.4f}")
    if figures.get("test_accuracy") is not None:
        parts.append(f"test {figures['test_accuracy']:.4f}")
    if figures.get("epoch_s") is not None:
        parts.append(f"{figures['epoch_s']:.3f} s/epoch")
    parts.append(f"first epoch {figures['first_epoch_s']:.3f} s")
    if figures.get("peak_gpu_mib") is not None:
        parts.append(f"peak {figures['peak_gpu_mib']:.0f} MiB")
    return ", ".join(parts)


def cv_figures(run: Run) -> dict:
    root = run.run_dir
    summary_json = json.loads((root / "cv_summary.json").read_text())
    folds = [json.loads(p.read_text()) for p in sorted(root.glob("fold_*/metrics.json"))]
    stacked = bool(folds) and all(f.get("vectorized") for f in folds)
    if stacked:  # the folds share each epoch: its seconds once
        per_epoch = {}
        for fold in folds:
            for row in fold["history"]:
                per_epoch[row["epoch"]] = max(per_epoch.get(row["epoch"], 0.0), row["seconds"])
        train = sum(per_epoch.values())
    else:
        train = sum(row["seconds"] for fold in folds for row in fold["history"])
    return {"status": summary_json.get("status"),
            "folds_finished": sum(f["status"] == "finished" for f in folds), "stacked": stacked,
            "train_s": round(train, 3), "wall_s": round(run.wall_s, 2),
            "summary_s": _round(summary_json.get("seconds"), 2),
            "mean_val_accuracy": summary_json["mean"].get("val_accuracy"),
            "mean_val_loss": summary_json["mean"].get("val_loss")}


# --------------------------------------------------------------------------- the report


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return os.environ.get("DLTRAIN_COMMIT")
    if done.returncode != 0:  # a copy of the tree without .git (the GPU machine's)
        return os.environ.get("DLTRAIN_COMMIT")
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def report(plan: Plan, header: dict) -> tuple[dict, str]:
    checks = [c.record() for c in plan.checks]
    counts = {s: sum(c["status"] == s for c in checks) for s in (PASSED, FAILED, NOT_APPLICABLE, SKIPPED, PENDING)}
    data = {**header, "counts": counts,
            "tolerances": {"bf16_vs_32": {"relative": CURVE_RELATIVE, "absolute": CURVE_ABSOLUTE},
                           "staging_vs_resident": {"relative": STAGING_RELATIVE, "absolute": STAGING_ABSOLUTE},
                           "staged_cnn_accuracy": STAGED_CNN_ACCURACY, "cv_stacked_accuracy": CV_ACCURACY},
            "environment": plan.env, "checks": checks, "runs": [r.record() for r in plan.runs.values()]}
    return data, markdown(plan, data)


def markdown(plan: Plan, data: dict) -> str:
    env, counts = data["environment"], data["counts"]
    lines = ["# GPU check", "",
             f"Written by `{data['command']}` on {data['date']}; {data['total_s']:.0f} s of a "
             f"{data['limit_s']:.0f} s limit. dltrain commit: {data['commit'] or 'unknown'}.", ""]
    if plan.device != "cuda":
        lines += ["**A CPU run (`--device cpu`): no CUDA path ran, this is not a GPU result.**", ""]
    gpus = env.get("gpus") or []
    if gpus:
        gpu = gpus[0]
        lines.append(f"Device: {len(gpus)} x {gpu['name']}, capability {gpu['capability']}, "
                     f"{gpu['memory_gib']} GiB, {gpu['multiprocessors']} multiprocessors; driver {env.get('driver')}.")
    else:
        lines.append(f"Device: the CPU ({env.get('cpus')} cores).")
    lines += [f"torch {env.get('torch')}, CUDA {env.get('cuda_runtime')}, cuDNN {env.get('cudnn')}, "
              f"NCCL {env.get('nccl')}; Python {env.get('python')}; {env.get('platform')}.", "",
              f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[NOT_APPLICABLE]} not applicable, "
              f"{counts[SKIPPED]} skipped" + (f", {counts[PENDING]} still running" if counts[PENDING] else "") + ".",
              "", "| check | status | result |", "|---|---|---|"]
    for c in data["checks"]:
        lines.append(f"| {c['name']} | {c['status']} | {_cell(c['reason'] or c['what'])} |")
    lines += ["", "## Trainings", "",
              "Seconds per epoch: the median of every epoch after the first (which holds set-up, cuDNN's "
              "benchmark and compilation). Peak: torch.cuda.max_memory_allocated of the run's process.", "",
              "| check | precision | channels_last | compile | staging | epochs | first epoch s | s/epoch | "
              "val acc | test acc | peak GPU MiB | wall s |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in data["checks"]:
        r = c["results"]
        if "first_epoch_s" not in r:
            continue
        where = ", ".join(sorted({s["where"] for s in r.get("staged") or []})) or "-"
        lines.append(f"| {c['name']} | {r['precision']} | {r['channels_last']} | {r['compile']} | {where} | "
                     f"{r['epochs']} | {_num(r['first_epoch_s'])} | {_num(r['epoch_s'])} | {_num(r['val_accuracy'], 4)} | "
                     f"{_num(r['test_accuracy'], 4)} | {_num(r['peak_gpu_mib'], 0)} | {_num(r['wall_s'], 1)} |")
    lines += ["", "## Cross-validation", "",
              "Training s: the epochs' seconds summed (stacked: the folds share each epoch); wall s: the "
              "whole `dltrain cv` process.", "",
              "| check | folds | training s | wall s | mean val acc | mean val loss |", "|---|---|---:|---:|---:|---:|"]
    for c in data["checks"]:
        r = c["results"]
        if "folds_finished" in r:
            lines.append(f"| {c['name']} | {r['folds_finished']} {'stacked' if r['stacked'] else 'one by one'} | "
                         f"{_num(r['train_s'], 2)} | {_num(r['wall_s'], 1)} | {_num(r['mean_val_accuracy'], 4)} | "
                         f"{_num(r['mean_val_loss'], 4)} |")
    lines += ["", "## Tolerances", "",
              f"- bf16 against 32: every epoch's training and validation loss within {CURVE_ABSOLUTE} + "
              f"{CURVE_RELATIVE:.0%} of the float32 value (the runs share seed and batches; bf16 rounds each "
              f"matrix product's inputs to 8 bits of mantissa, so the curves drift apart slowly).",
              f"- host staging against resident (default fit): every epoch's metrics within {STAGING_RELATIVE:g} "
              f"relative (+{STAGING_ABSOLUTE:g}): the same batches and arithmetic, only the copy differs.",
              f"- staged CNN (MNIST, pinned, channels_last): the bf16/32 tolerance and final validation accuracy "
              f"within {STAGED_CNN_ACCURACY} (cuDNN's benchmark may choose other algorithms in another process).",
              f"- cv stacked against one by one: mean validation accuracy within {CV_ACCURACY} (dropout draws "
              f"other masks when stacked).", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x, digits=3) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


# --------------------------------------------------------------------------- main


def find_mnist(given: Path | None) -> Path | None:
    for root in ([given] if given else MNIST_CANDIDATES):
        if (root / "MNIST" / "raw").is_dir():
            return root.resolve()
    return None


def bundle(mnist: Path | None) -> None:
    """Copy what the GPU machine cannot fetch into bench/_data (git-ignored, carried by the device
    tool): the MNIST subset, and the pure-Python packages its image lacks, from this Python."""
    copied = []
    if mnist is not None:
        _copy_tree(mnist, CARRIED / "mnist-subset")
        copied.append(f"MNIST subset from {mnist}")
    for name in BUNDLED_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"{name} is not installed here; pip install hydra-core first.")
        _copy_tree(Path(spec.origin).parent, SITE / name)
        copied.append(name)
    size = sum(p.stat().st_size for p in CARRIED.rglob("*") if p.is_file()) / 2**20
    print(f"bench/_data now holds {', '.join(copied)} ({size:.0f} MiB in all). Carry bench/_data to the GPU "
          f"machine (device run: carry=['bench/_data']).")


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def environment_of(run: Run) -> dict:
    """What the environment run printed (torch, CUDA, the GPUs, dltrain's dependencies)."""
    match = re.search(r"^ENVIRONMENT (.*)$", run.output, re.M)
    return json.loads(match.group(1)) if run.status == "ok" and match else {"error": run.reason or "no output"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default): every check on the GPU; cpu: the CUDA-only checks marked not applicable")
    parser.add_argument("--quick", action="store_true", help="tiny settings: 2 epochs, the embedded digits")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"folder for GPU.md and gpu.json (default: bench/ on cuda, {CPU_OUTPUT.relative_to(REPO)} on cpu)")
    parser.add_argument("--mnist-root", type=Path, default=None,
                        help="the MNIST subset (torchvision layout); default: the first of "
                             + ", ".join(str(p) for p in MNIST_CANDIDATES))
    parser.add_argument("--limit", type=float, default=None,
                        help=f"total seconds for all checks (default {LIMIT_SECONDS:.0f}; --quick {QUICK_LIMIT_SECONDS:.0f})")
    parser.add_argument("--jobs", type=int, default=None, help="processes at a time (default 1; --quick on cpu 2)")
    parser.add_argument("--only", default=None, help="comma-separated prefixes of the check names to run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder with every run folder and log")
    parser.add_argument("--bundle", action="store_true", help="copy the MNIST subset and hydra/omegaconf into "
                                                              "bench/_data for the GPU machine, and stop")
    args = parser.parse_args(argv)
    mnist = find_mnist(args.mnist_root)
    if args.bundle:
        bundle(mnist)
        return 0
    quick = args.quick
    limit = args.limit or (QUICK_LIMIT_SECONDS if quick else LIMIT_SECONDS)
    jobs = args.jobs or (2 if quick and args.device == "cpu" else 1)
    output = args.output or (BENCH if args.device == "cuda" else CPU_OUTPUT)
    command = "python bench/gpu_check.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    lock = threading.Lock()
    try:
        runner = Runner(scratch, limit, jobs, on_done=lambda run: write(final=False))
        environment, probe = {}, None
        if args.device == "cuda":  # the plan depends on the GPUs (how many, bf16): look first
            probe = Run("environment", [], 60, launcher="environment")
            runner.execute(probe)
            environment = environment_of(probe)
            if not environment.get("cuda_available"):
                print(f"No CUDA GPU here ({environment.get('error') or 'torch sees none'}): run this on the GPU "
                      f"machine, or with --device cpu (which writes nothing under bench/ unless --output says so).",
                      file=sys.stderr)
                return 2
            if mnist is None:
                print("warning: no MNIST subset found (--mnist-root DIR, or python bench/gpu_check.py --bundle "
                      "before carrying bench/_data): the CNN checks train on the embedded 8x8 digits.", flush=True)
        plan = Plan(args.device, quick, mnist, environment)
        if probe is not None:
            plan.runs["environment"] = probe
        if args.only:
            prefixes = [p.strip() for p in args.only.split(",") if p.strip()]
            wanted = {r for c in plan.checks if c.name.startswith(tuple(prefixes)) for r in c.runs}
            wanted |= {plan.runs[r].resumes for r in wanted if r in plan.runs and plan.runs[r].resumes}
            for check in plan.checks:
                if not check.name.startswith(tuple(prefixes)) and check.name != "environment":
                    check.status, check.reason, check.evaluate = SKIPPED, f"not in --only {args.only}", None
            for name, run in plan.runs.items():
                if name not in wanted and name != "environment":
                    run.status, run.reason = "skipped", f"not in --only {args.only}"
        output.mkdir(parents=True, exist_ok=True)
        header = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command,
                  "device": args.device, "quick": quick, "limit_s": limit, "jobs": jobs, "commit": git_commit(),
                  "mnist_root": str(mnist) if mnist else None}

        def write(final: bool) -> None:
            with lock:
                plan.evaluate(final)
                if final:  # the --only leftovers and the pending ones
                    for check in plan.checks:
                        if check.status == PENDING:
                            check.status, check.reason = SKIPPED, check.reason or "did not run"
                data, text = report(plan, {**header, "total_s": time.monotonic() - started})
                write_atomic(output / "gpu.json", json.dumps(data, indent=1) + "\n")
                write_atomic(output / "GPU.md", text)

        # torch.compile's runs last: they take longest, and a slow compiler should not cost the rest;
        # with several jobs the data-parallel run and its resume (the longest chain) go first
        todo = sorted((r for r in plan.runs.values() if r.status == PENDING),
                      key=lambda r: (r.name != "environment", not (jobs > 1 and r.name.startswith("ddp")),
                                     "compile" in r.name))
        runner.run_all(todo, plan.runs)
        write(final=True)
        counts = {s: sum(c.status == s for c in plan.checks) for s in (PASSED, FAILED, NOT_APPLICABLE, SKIPPED)}
        print(f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[NOT_APPLICABLE]} not applicable, "
              f"{counts[SKIPPED]} skipped in {time.monotonic() - started:.0f} s: {output / 'GPU.md'}, "
              f"{output / 'gpu.json'}", flush=True)
        return 0
    finally:
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
