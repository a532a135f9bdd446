"""bench/ works: every contender of the benchmark trains the digits workload (one epoch each, no
timing asserted; the timings live in bench/README.md), and the table is built from the runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("contender", ["hand", "course", "dltrain", "lightning"])
def test_contender_trains_the_digits_workload(contender, tmp_path):
    if contender == "lightning" and importlib.util.find_spec("lightning") is None:
        pytest.skip("lightning is only installed with the bench extra: pip install -e '.[bench]'")
    done = subprocess.run([sys.executable, str(BENCH / "contenders.py"), "mlp_digits", contender,
                           "--epochs=2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["contender"] == contender
    assert run["train_samples"] == 1438 and run["val_samples"] == 359 and run["batch_size"] == 64
    assert len(run["epoch_seconds"]) == 2 and all(s > 0 for s in run["epoch_seconds"])
    assert run["peak_memory_mib"] > 0


def test_table_ranks_contenders_against_dltrain():
    sys.path.insert(0, str(BENCH))
    try:
        from run import summarise, table
    finally:
        sys.path.remove(str(BENCH))
    runs = {"dltrain": [{"epoch_seconds": [9.0, 1.0, 1.0], "train_samples": 100, "peak_memory_mib": 50}],
            "hand": [{"epoch_seconds": [9.0, 0.98, 0.98], "train_samples": 100, "peak_memory_mib": 40}],
            "course": [{"epoch_seconds": [9.0, 2.0, 2.0], "train_samples": 100, "peak_memory_mib": 60}]}
    results = {"mlp_digits": {name: summarise(r) for name, r in runs.items()}}
    text = table(results, {"dltrain --help": [0.3, 0.4, 0.5]}, None, "header")
    assert "| mlp_digits | course DataLoader loop | 2.000 | 50 |" in text
    assert "2.00x" in text and "0.98x" in text
    assert "| `dltrain --help` | 0.40 |" in text


def test_house_like_csv_is_shaped_like_kaggles_train_csv(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from house_like import write_house_like_csv
    finally:
        sys.path.remove(str(BENCH))
    import pandas as pd

    path = write_house_like_csv(tmp_path / "train.csv")
    frame = pd.read_csv(path)
    assert frame.shape == (1460, 81)
    assert list(frame.columns[[0, -1]]) == ["Id", "SalePrice"]
    numeric = frame.drop(columns=["Id", "SalePrice"]).select_dtypes(include="number").columns
    assert len(numeric) == 36 and frame["LotFrontage"].isna().mean() > 0.1
    assert frame["PoolQC"].isna().mean() > 0.98 and frame["SalePrice"].min() > 0
    assert frame.equals(pd.read_csv(write_house_like_csv(tmp_path / "again.csv")))  # same seed, same rows


def test_overhead_table_reports_every_pair():
    sys.path.insert(0, str(BENCH))
    try:
        from overhead import summary, table
    finally:
        sys.path.remove(str(BENCH))
    row = summary("default_fit", "dltrain fit", [12.0, 10.0, 11.0], "hand", [10.0, 10.0, 10.0],
                  "s wall", "<= 1.5", "1.0 1.0 1.0")
    assert row["pairs"] == 3 and row["ratio_median"] == 1.1
    assert "| **1.10** | 1.20, 1.00, 1.10 | 3 | <= 1.5 |" in table([row], "header")


# --------------------------------------------------------------------------- bench/gpu_check.py


def _gpu_check():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCH))
    return gpu_check


# Every check of bench/gpu_check.py, in its report's order.
GPU_CHECKS = [
    "environment", "fit precision=auto", "fit precision=32", "fit precision=fp16", "fit compile=true",
    "fit bf16 vs 32 loss curves", "cnn precision=auto", "cnn precision=32", "cnn precision=fp16",
    "cnn channels_last=true", "cnn channels_last=false", "cnn compile=true", "cnn bf16 vs 32 loss curves",
    "staging device_data_max_mb=0", "staging cnn device_data_max_mb=8", "data-parallel", "data-parallel resume",
    "cv vectorize=false", "cv vectorize=true", "cv vectorize=auto", "cv stacked vs one by one",
]
# What --device cpu --quick cannot run, and why not.
CPU_NOT_APPLICABLE = {"fit precision=fp16", "cnn precision=fp16", "staging cnn device_data_max_mb=8"}
QUICK_SKIPPED = {"cnn compile=true", "cnn bf16 vs 32 loss curves"}


@pytest.mark.slow
def test_gpu_check_runs_every_check_on_the_cpu(tmp_path):
    """CI's run of the GPU check (python bench/gpu_check.py --device cpu --quick): every check is in
    both files, each CPU-runnable one passed, and the CUDA-only ones say why they did not run. The
    limit is raised from the quick default so that a busy shared machine does not cut checks off."""
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--output", str(tmp_path / "report"), "--limit", "900"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "gpu.json").read_text())
    markdown = (tmp_path / "report" / "GPU.md").read_text()
    statuses = {check["name"]: check for check in report["checks"]}
    assert list(statuses) == GPU_CHECKS
    for name, check in statuses.items():
        if name in CPU_NOT_APPLICABLE:
            assert check["status"] == "not applicable" and check["reason"], check
        elif name in QUICK_SKIPPED:
            assert check["status"] == "skipped" and "--quick" in check["reason"], check
        else:
            assert check["status"] == "passed", check
        assert f"| {name} | {check['status']} |" in markdown
    assert "this is not a GPU result" in markdown
    assert report["device"] == "cpu" and report["quick"] is True
    # what the report says it ran is what the trainer did
    assert statuses["cnn channels_last=true"]["results"]["channels_last"] is True
    assert statuses["fit bf16 vs 32 loss curves"]["results"]["bf16_run"] == "fit_bf16"
    assert statuses["staging device_data_max_mb=0"]["results"]["staged"][0]["where"] == "host"
    assert statuses["data-parallel"]["results"]["processes"] == 2
    assert statuses["data-parallel resume"]["results"]["epochs"] == [1, 2]
    assert statuses["cv vectorize=true"]["results"]["stacked"] is True
    assert not list(tmp_path.glob("gpu_check_*"))  # the scratch folder is gone


def _history(epochs: int, loss: float = 1.0) -> list[dict]:
    return [{"epoch": e, "train_loss": loss / e, "val_loss": loss / e + 0.1, "train_accuracy": 0.9,
             "val_accuracy": 0.98, "lr": 0.001, "seconds": 0.5 if e > 1 else 3.0} for e in range(1, epochs + 1)]


def _finish(gpu_check, plan, run_name: str, **probe) -> None:
    """Make ``run_name`` look like a finished CUDA run: metrics.json and what the wrapper saw."""
    run = plan.runs[run_name]
    run.status, run.wall_s, run.output = "ok", 9.0, "dltrain fit ... device=cuda"
    history = _history(2 if run_name.startswith("ddp") else 3)
    run.snapshot = {"status": "finished", "epochs_run": len(history), "history": history, "final": history[-1],
                    "test": {"accuracy": 0.99}}
    trainer = {"device": "cuda", "members": 1, "precision": "bf16", "channels_last": "cnn" in run_name,
               "cudnn_benchmark": True, "compile": "compile" in run_name, "stacked": False}
    trainer.update(probe.pop("trainer", {}))
    run.probe = {"trainers": [trainer], "staged": [{"rows": 100, "resident": True, "pinned": False}],
                 "peak_gpu_bytes": 3 * 2**20, **probe}


def test_gpu_check_reads_cuda_runs_as_a_gpu_would_leave_them(tmp_path):
    """The checks of a CUDA run, on results shaped like a GPU's (no GPU here): the runs auto
    resolves to need not run twice, a setting that resolved otherwise than asked fails with
    what it resolved to; a data-parallel run and its resume are read from dltrain's banner (one GPU:
    a job of one process, started by torchrun), and a run that trained as one plain process fails
    the data-parallel check, saying so."""
    gpu_check = _gpu_check()
    environment = {"cuda_available": True, "bf16_supported": True, "torch": "2.11.0", "cuda_runtime": "13.0",
                   "cudnn": 91200, "nccl": "2.27.3", "cpus": 16, "python": "3.12.3", "platform": "Linux",
                   "gpus": [{"name": "NVIDIA H200", "capability": "9.0", "memory_gib": 139.8,
                             "multiprocessors": 132}], "hydra": "1.3.2", "omegaconf": "2.3.0", "dltrain": "present"}
    plan = gpu_check.Plan("cuda", False, tmp_path / "mnist", environment)
    assert [c.name for c in plan.checks] == GPU_CHECKS
    assert all(c.status == "pending" for c in plan.checks)  # nothing is not applicable on a GPU
    # auto is bf16 and channels_last on CUDA: those runs are not repeated; no bf16 run of its own
    assert "cnn_cl_true" not in plan.runs and "fit_bf16" not in plan.runs and "cnn_bf16" not in plan.runs
    assert plan.runs["ddp"].launcher == "torchrun" and plan.runs["ddp_resume"].resumes == "ddp"
    assert "trainer.device=cuda" in plan.runs["fit_auto"].args and f"data.root={tmp_path / 'mnist'}" in plan.runs["cnn_auto"].args

    plan.runs["environment"].status = "ok"
    plan.runs["environment"].output = "ENVIRONMENT " + json.dumps(environment)
    for name in plan.runs:
        if name != "environment":
            _finish(gpu_check, plan, name)
    for name in ("ddp", "ddp_resume"):
        plan.runs[name].output = "dltrain fit ... device=cuda:0 x 1 processes (DDP, global batch 64)\nNCCL version 2.27.3+cuda13.0"
    plan.runs["ddp_resume"].output += "\nResuming from RUN/last.pt (after epoch 10)."
    resumed = _history(20)  # its first 2 epochs are the data-parallel run's
    plan.runs["ddp_resume"].snapshot.update(history=resumed, final=resumed[-1], epochs_run=20)
    for name, precision in (("fit_32", "32"), ("cnn_32", "32"), ("fit_fp16", "fp16"), ("cnn_fp16", "fp16")):
        plan.runs[name].probe["trainers"][0]["precision"] = precision
    plan.runs["cnn_cl_false"].probe["trainers"][0]["channels_last"] = False
    for name in ("staging", "staging_cnn"):
        plan.runs[name].probe["staged"][0].update(resident=False, pinned=True)
    plan.runs["staging"].snapshot = plan.runs["fit_auto"].snapshot
    for name in ("cv_false", "cv_true", "cv_auto"):
        folder = tmp_path / name
        for fold in range(5):
            (folder / f"fold_{fold}").mkdir(parents=True)
            (folder / f"fold_{fold}" / "metrics.json").write_text(json.dumps(
                {"status": "finished", "vectorized": name != "cv_false", "history": _history(3)}))
        (folder / "cv_summary.json").write_text(json.dumps(
            {"status": "finished", "seconds": 7.0, "mean": {"val_accuracy": 0.97, "val_loss": 0.1}}))
        plan.runs[name].run_dir = folder
    plan.runs["cnn_auto"].probe["trainers"][0]["precision"] = "32"  # auto did not pick bf16

    plan.evaluate(final=True)
    checks = {c.name: c for c in plan.checks}
    assert checks["cnn precision=auto"].status == "failed"
    assert checks["cnn precision=auto"].reason == "precision resolved to '32', expected 'bf16'"
    assert checks["cnn channels_last=true"].status == "passed"  # the same run, read for its own setting
    assert checks["cnn channels_last=true"].reason.startswith("same settings as cnn_auto")
    assert checks["data-parallel"].results == {"processes": 1, "epochs": 2, "val_accuracy": 0.98, "epoch_s": 1.75,
                                               "wall_s": 9.0, "nccl": "2.27.3+cuda13.0"}
    assert checks["data-parallel resume"].reason.startswith("continued from epoch 2 to 20")
    failed = {name for name, c in checks.items() if c.status != "passed"}
    assert failed == {"cnn precision=auto", "cnn bf16 vs 32 loss curves"}
    assert checks["fit precision=auto"].results["peak_gpu_mib"] == 3.0
    assert checks["cv vectorize=auto"].results["stacked"] is True
    assert "largest difference 0" in checks["staging device_data_max_mb=0"].reason

    data, markdown = gpu_check.report(plan, {"date": "today", "command": "python bench/gpu_check.py",
                                             "limit_s": 480, "total_s": 400, "commit": "abc"})
    assert "1 x NVIDIA H200, capability 9.0" in markdown and "not a GPU result" not in markdown
    assert data["counts"]["failed"] == 2 and len(data["checks"]) == len(GPU_CHECKS)

    plan.runs["ddp"].output = "dltrain fit ... device=cuda"  # trained as one plain process
    plan.evaluate(final=True)
    assert checks["data-parallel"].status == "failed"
    assert "never joins a process group" in checks["data-parallel"].reason


def test_gpu_check_tolerances_and_one_line_reasons():
    gpu_check = _gpu_check()
    ok, worst, where = gpu_check.compare_curves([1.0, 0.52], [1.0, 0.5], 0.1, 0.0)
    assert ok and worst == pytest.approx(0.02) and where.startswith("epoch 2")
    assert not gpu_check.compare_curves([1.0, 0.7], [1.0, 0.5], 0.1, 0.02)[0]
    assert not gpu_check.compare_curves([1.0, float("nan")], [1.0, 0.5], 0.1, 0.02)[0]
    assert not gpu_check.compare_curves([1.0], [1.0, 0.5], 0.1, 0.02)[0]
    output = "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA error: out of memory\n"
    assert gpu_check.failure_reason(output, 1) == "RuntimeError: CUDA error: out of memory"
    said = "dltrain fit ...\nError: trainer.precision=fp16 needs a GPU (float16 on the CPU is slow).\n"
    assert gpu_check.failure_reason(said, 2).startswith("Error: trainer.precision=fp16 needs a GPU")
    assert gpu_check.failure_reason("", -9) == "exit code -9, no output"
