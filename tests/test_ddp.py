"""Data-parallel training on 2 CPU processes (gloo on 127.0.0.1): `dltrain fit trainer.devices=2`
(dltrain starts the ranks with torch's elastic launcher) and `python -m torch.distributed.run
--standalone --nproc_per_node=2 -m dltrain fit` give one run folder that rank 0 alone writes, and
the same training as one process with the same global batch; Ctrl-C and resume agree across ranks.

Why the results agree tightly: every rank draws the same shuffled order (same seed), step s's
global batch is the rows a single process would take, cut into one contiguous part per rank,
and each rank's mean loss is weighted by its share of the batch, so DDP's average of the ranks'
gradients is the gradient of the whole batch's mean loss. With no dropout and no batch norm (the
MLP below) the two runs differ only by float rounding in the gradient sum: measured 1.4e-7
relative on losses and 1.5e-7 absolute on weights after 3 epochs (864 steps); the test allows
1e-5 relative (losses, metrics) and atol 1e-5 (weights)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import read_metrics, run_folders

# digits: 1,438 training rows; a global batch of 5 gives parts of 3 and 2 rows (the last batch:
# 2 and 1), 288 steps an epoch: long enough to stop in the middle of the run.
RUN = ["data.batch_size=5", "trainer.epochs=3", "model.hidden_sizes=[16]", "model.dropout=0.0",
       "trainer.seed=5", "trainer.progress=false", "trainer.device=cpu", "logger=none",
       "trainer.checkpoint_every_seconds=0"]
TOLERANCE = 1e-5
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dltrain"]


def dltrain(args, cwd, *, launcher=None, timeout=240):
    command = [sys.executable, *(launcher or ["-m", "dltrain"]), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def only_run(root: Path) -> Path:
    folders = run_folders(root / "outputs")
    assert len(folders) == 1, folders
    assert [p for p in (root / "outputs").glob("*/*") if p.is_dir()] == folders  # no stray rank folders
    return folders[0]


def assert_same_training(run_dir: Path, reference_dir: Path) -> None:
    ours, theirs = read_metrics(run_dir), read_metrics(reference_dir)
    assert ours["status"] == theirs["status"] == "finished"
    assert ours["best_epoch"] == theirs["best_epoch"]
    for mine, single in zip(ours["history"], theirs["history"], strict=True):
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_macro_f1"):
            assert mine[key] == pytest.approx(single[key], rel=TOLERANCE), (key, mine, single)
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    for name, value in torch.load(reference_dir / "last.pt", weights_only=True)["model"].items():
        torch.testing.assert_close(weights[name], value, atol=TOLERANCE, rtol=0)


def single_process_run(cli, tmp_path, *overrides: str):
    """The reference run, in this process with one thread, like each rank (OMP_NUM_THREADS=1):
    tiny steps, no thread contention; returns its run folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = cli("fit", *overrides)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return only_run(tmp_path)


@pytest.mark.slow
def test_two_ranks_train_like_one_process_through_ctrl_c_and_a_torchrun_resume(tmp_path, cli):
    """``dltrain fit trainer.devices=2`` starts 2 gloo ranks; SIGINT to it reaches both, they
    agree to stop at the end of an epoch and rank 0 leaves an epoch-end last.pt (exit 130);
    ``torchrun --nproc_per_node=2 -m dltrain fit resume=RUN_DIR`` finishes the run in the same
    folder. The result matches one process trained with the same global batch, uninterrupted."""
    single = single_process_run(cli, tmp_path, *RUN)

    root = tmp_path / "ddp"
    root.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "dltrain", "fit", *RUN, "trainer.devices=2",
                                "logger=tensorboard"], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not list(root.glob("outputs/**/last.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    run_dir = only_run(root)
    assert "x 2 processes (DDP, global batch 5)" in " ".join(output.split())
    assert output.count("run folder:") == 1  # rank 0 alone prints
    assert f"Resume with: dltrain fit resume={run_dir}" in " ".join(output.split())
    stopped = read_metrics(run_dir)
    assert stopped["status"] == "interrupted" and stopped["epochs_run"] in (1, 2), output
    assert torch.load(run_dir / "last.pt", weights_only=True)["trainer"]["cursor"] is None
    assert {p.name for p in run_dir.iterdir()} >= {".hydra", "dltrain.log", "metrics.json",
                                                   "preprocessing.json", "best.pt", "last.pt"}
    assert len(list(run_dir.glob("**/events.out.tfevents.*"))) == 1  # TensorBoard: rank 0 only

    code, output = dltrain(["fit", f"resume={run_dir}", "logger=none"], root, launcher=TORCHRUN)
    assert code == 0, output
    assert "x 2 processes (DDP" in output and output.count("run folder:") == 1
    assert only_run(root) == run_dir
    finished = read_metrics(run_dir)
    assert [row["epoch"] for row in finished["history"]] == [1, 2, 3]
    assert finished["history"][:stopped["epochs_run"]] == stopped["history"]
    assert_same_training(run_dir, single)


@pytest.mark.parametrize("overrides, sentence", [
    (["trainer.strategy=foo"], "trainer.strategy must be one of auto, ddp; got 'foo'."),
    (["trainer.devices=0"], "trainer.devices must be auto or a number of processes of at least 1, got 0."),
    (["trainer.devices=99", "trainer.device=cuda"], "99 processes on this machine need 99 CUDA GPUs but"),
    (["trainer.devices=2", "trainer.device=cuda:1"], "trainer.device=cuda:1 names one GPU"),
    (["trainer.devices=2", "trainer.device=mps"], "trainer.device=mps cannot train data-parallel"),
    (["data=iris", "data.batch_size=1", "trainer.devices=2", "trainer.device=cpu"],
     "data.batch_size=1 is smaller than the 2 data-parallel processes"),
    (["-m", "trainer.devices=2", "optimizer.lr=0.1,0.01"], "dltrain fit -m does not run data-parallel"),
])
def test_bad_data_parallel_settings_are_one_sentence_before_any_run_folder(cli, overrides, sentence):
    result = cli("fit", *overrides)
    assert result.exit_code == 2
    assert sentence in " ".join(result.output.split())
    assert not Path("outputs").exists()


def test_cv_says_it_does_not_run_data_parallel(cli):
    result = cli("cv", "data=iris", "trainer.strategy=ddp", "trainer.devices=2")
    assert result.exit_code == 2
    assert "dltrain cv does not run data-parallel" in " ".join(result.output.split())
    assert not Path("outputs").exists()




@pytest.mark.slow
def test_one_process_started_by_torchrun_trains_through_the_process_group(tmp_path, cli):
    """``torchrun --nproc_per_node=1 -m dltrain fit`` is a data-parallel job of one process (as the
    README says: DDP when torchrun started the process), so a one-GPU machine reaches the
    data-parallel path too; it trains exactly like a plain process."""
    run = [*RUN, "trainer.epochs=1"]
    single = single_process_run(cli, tmp_path, *run)
    root = tmp_path / "ddp"
    root.mkdir()
    code, output = dltrain(["fit", *run], root, launcher=[*TORCHRUN[:-3], "--nproc_per_node=1", "-m", "dltrain"])
    assert code == 0, output
    assert "x 1 processes (DDP, global batch 5)" in " ".join(output.split())
    assert_same_training(only_run(root), single)


@pytest.mark.slow
def test_two_ranks_accumulating_train_like_one_process_with_the_larger_batch(tmp_path, cli):
    """trainer.accumulate_grad_batches=4 on 2 ranks with a global batch of 5 steps like one process
    with batches of 20: 288 batches an epoch in 72 groups, the last of 18 rows, as the last batch
    of 20 is."""
    common = [row for row in RUN if not row.startswith(("data.batch_size", "trainer.epochs"))] + ["trainer.epochs=2"]
    single = single_process_run(cli, tmp_path, *common, "data.batch_size=20")
    root = tmp_path / "ddp"
    root.mkdir()
    code, output = dltrain(["fit", *common, "data.batch_size=5", "trainer.accumulate_grad_batches=4",
                            "trainer.devices=2"], root)
    assert code == 0, output
    assert "x 2 processes (DDP, global batch 5)" in " ".join(output.split())
    assert_same_training(only_run(root), single)
