"""TensorBoard logging, read back with TensorBoard's own reader: tags, steps and values of the
curves, the HParams sessions, config text, figures for images and regression, the cv_mean run,
logger=none, and a real TensorBoard server queried over HTTP."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_run, read_metrics, run_folders

FAST = ["trainer.progress=false", "trainer.checkpoint_every_seconds=0"]


def events(folder: Path):
    """An EventAccumulator holding everything in a run's events file (in its TensorBoard run's
    sub-folder, named after it; cv_mean's right in it), not a fold's or another run's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(folder)
    (path,) = list(folder.glob("events.out.tfevents.*")) or list((folder / folder.name).glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "histograms": 0,
                                                             "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def session(accumulator):
    """(hparams, end status) of the run's HParams session."""
    from tensorboard.plugins.hparams import metadata

    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    hparams = {}
    for key, item in start.hparams.items():
        hparams[key] = getattr(item, item.WhichOneof("kind"))
    return hparams, end.status


@pytest.mark.slow
def test_fit_logs_grouped_curves_whose_values_are_metrics_json(cli):
    from tensorboard.plugins.hparams import api_pb2

    result = cli("fit", "data=iris", "trainer.epochs=3", "data.batch_size=16",
                 "logger.tensorboard.log_every_n_steps=4", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    metrics = read_metrics(run_dir)
    board = events(run_dir)
    tags = set(board.Tags()["scalars"])
    per_epoch = {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "macro_f1/train",
                 "macro_f1/val", "lr", "time/epoch_seconds", "throughput/samples_per_second"}
    assert per_epoch <= tags
    for tag in per_epoch:
        assert [step for step, _ in scalars(board, tag)] == [1, 2, 3], tag
    # Every epoch's value is metrics.json's (events store float32).
    for tag, key in (("loss/val", "val_loss"), ("accuracy/train", "train_accuracy"), ("lr", "lr"),
                     ("time/epoch_seconds", "seconds")):
        logged = [value for _, value in scalars(board, tag)]
        assert logged == [np.float32(row[key]) for row in metrics["history"]], tag
    assert scalars(board, "loss/val")[-1][1] == np.float32(metrics["final"]["val_loss"])
    assert scalars(board, "best/val_loss") == [(3, np.float32(metrics["best"]["val_loss"]))]
    train_rows = 120  # iris: 150 rows, 20% validation
    samples = scalars(board, "throughput/samples_per_second")
    for (_, logged), row in zip(samples, metrics["history"]):
        assert logged == pytest.approx(train_rows / row["seconds"], rel=1e-5)

    # Per step: 8 batches of 16 per epoch, a point every 4 optimizer steps, across epochs.
    steps = scalars(board, "step/loss_train")
    assert [step for step, _ in steps] == list(range(4, 25, 4))
    assert all(np.isfinite(value) and value > 0 for _, value in steps)
    assert [step for step, _ in scalars(board, "step/lr")] == list(range(4, 25, 4))

    hparams, status = session(board)
    assert status == api_pb2.STATUS_SUCCESS
    assert hparams["optimizer.lr"] == pytest.approx(0.001)
    assert hparams["model.name"] == "mlp" and hparams["data.name"] == "iris"
    assert hparams["data.batch_size"] == 16 and "trainer.progress" not in hparams
    assert {"config/text_summary", "overrides/text_summary"} <= set(board.Tags()["tensors"])
    config_text = board.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: iris" in config_text
    # Tabular classes: a confusion matrix, but no image grids.
    assert board.Tags()["images"] == ["figures/confusion_matrix"]
    assert not board.Tags()["histograms"] and not board.Tags()["graph"]


@pytest.mark.slow
def test_image_run_logs_sample_grid_graph_histograms_confusion_and_worst_misclassified(cli):
    result = cli("fit", "data=digits_images", "model=cnn", "model.channels=[4]", "trainer.epochs=2",
                 "data.val_fraction=0.5", "logger.tensorboard.graph=true",
                 "logger.tensorboard.histograms_every_n_epochs=2", "logger.tensorboard.max_images=8", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    board = events(run_dir)
    images = {tag: board.Images(tag) for tag in board.Tags()["images"]}
    assert set(images) == {"images/train_samples", "figures/confusion_matrix", "figures/worst_misclassified"}
    assert [event.step for event in images["images/train_samples"]] == [0]
    assert [event.step for event in images["figures/confusion_matrix"]] == [2]
    for tag, (event,) in images.items():
        assert event.width > 300 and event.height > 150, tag
    assert board.Tags()["graph"]
    histograms = board.Tags()["histograms"]
    assert any(t.startswith("weights/") for t in histograms)
    assert any(t.startswith("gradients/") for t in histograms)
    assert {event.step for t in histograms for event in board.Histograms(t)} == {2}


@pytest.mark.slow
def test_regression_run_logs_predicted_vs_true(cli):
    result = cli("fit", "data=diabetes", "model=linear", "trainer.epochs=1", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    board = events(run_dir)
    assert board.Tags()["images"] == ["figures/predicted_vs_true"]
    assert {"mse/val", "r2/val", "mae/train", "loss/val"} <= set(board.Tags()["scalars"])


@pytest.mark.slow
def test_logger_none_writes_no_events_and_keeps_the_rest(cli):
    result = cli("fit", "data=iris", "trainer.epochs=1", "logger=none", *FAST)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    assert not list(run_dir.glob("**/events.out.tfevents.*"))
    assert read_metrics(run_dir)["status"] == "finished"
    assert (run_dir / "best.pt").exists()


@pytest.mark.slow
def test_a_failed_run_ends_its_session_as_failed(cli):
    from tensorboard.plugins.hparams import api_pb2

    # Diverges in epoch 14: the run folder stays (it has a checkpoint) and is marked failed.
    result = cli("fit", "data=linear_toy", "model=linear", "optimizer=sgd", "optimizer.lr=3",
                 "data.batch_size=0", "trainer.epochs=50", *FAST)
    assert result.exit_code == 2
    (run_dir,) = run_folders()
    assert read_metrics(run_dir)["status"] == "failed"
    board = events(run_dir)
    _, status = session(board)
    assert status == api_pb2.STATUS_FAILURE
    assert scalars(board, "loss/train")


@pytest.mark.slow
def test_cross_validation_logs_every_fold_and_a_cv_mean_run(cli):
    result = cli("cv", "k=2", "data=iris", "trainer.epochs=2", *FAST)
    assert result.exit_code == 0, result.output
    (summary_path,) = Path("outputs").glob("**/cv_summary.json")
    run_dir = summary_path.parent
    histories = [read_metrics(run_dir / f"fold_{i}")["history"] for i in (0, 1)]
    for i in (0, 1):
        board = events(run_dir / f"fold_{i}")
        assert [v for _, v in scalars(board, "loss/val")] == [np.float32(r["val_loss"]) for r in histories[i]]
        hparams, _ = session(board)
        assert hparams["trainer.seed"] == i  # each fold's own seed: the folds compare side by side
    mean = events(run_dir / "cv_mean")
    expected = [np.float32((a["val_loss"] + b["val_loss"]) / 2) for a, b in zip(*histories)]
    assert scalars(mean, "loss/val") == [(1, expected[0]), (2, expected[1])]
    assert [v for _, v in scalars(mean, "cv/folds")] == [2, 2]
    hparams, _ = session(mean)
    assert hparams["data.name"] == "iris" and "trainer.seed" not in hparams
    assert json.loads(summary_path.read_text())["status"] == "finished"
    # One confusion matrix of the out-of-fold predictions (every row predicted by the model that
    # did not train on it) in cv_mean, instead of one per fold.
    assert mean.Tags()["images"] == ["figures/confusion_matrix"]
    assert [e.step for e in mean.Images("figures/confusion_matrix")] == [2]
    assert all(events(run_dir / f"fold_{i}").Tags()["images"] == [] for i in (0, 1))


def test_logger_settings_are_validated_in_one_sentence(cli):
    from typer.testing import CliRunner

    from dltrain.cli import app

    result = CliRunner().invoke(app, ["fit", "logger.tensorboard.log_every_n_steps=-1"])
    assert result.exit_code == 2
    assert "logger.tensorboard.log_every_n_steps must be at least 0, got -1." in result.output
    result = CliRunner().invoke(app, ["fit", "logger=wandb"])
    assert result.exit_code == 2
    assert "Unknown logger 'wandb'; valid options are: csv, mlflow, none, tensorboard." in result.output


def test_tensorboard_names_a_run_after_its_folder_and_a_sweep_point_after_its_overrides(tmp_path):
    """TensorBoard names a run by the folder of its events below the one it serves: a run's
    events go in a sub-folder named after the run, never "." (the run folder served alone) nor a
    sweep's bare job number."""
    import yaml

    from dltrain.train.tensorboard import events_folder, run_name

    run = tmp_path / "outputs" / "2026-12-01" / "10-00-00_abc123"
    assert events_folder(run) == run / "10-00-00_abc123" and run_name(tmp_path / "cv" / "fold_2") == "fold_2"
    sweep = tmp_path / "multirun" / "10-00-00_def456"
    (sweep / "3" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["data=iris", "optimizer.lr=0.1,0.01", "trainer.progress=false",
                                          "data.path=/a/b.csv,/c/d.csv"]}}}))
    (sweep / "3" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["data=iris", "optimizer.lr=0.01", "trainer.progress=False", "data.path=/c/d.csv"]))
    assert run_name(sweep / "3") == "optimizer.lr=0.01,data.path=_c_d.csv"
    assert run_name(sweep / "4") == "4"  # no saved overrides to name it by
    (sweep / "5").mkdir()
    (sweep / "5" / "events.out.tfevents.1.host").write_bytes(b"")  # an older dltrain's run
    assert events_folder(sweep / "5") == sweep / "5"
    (sweep / "3" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model.name=" + "x" * 300]))
    long = run_name(sweep / "3")  # a file system takes the name; two points never share one
    assert long.startswith("model.name=xxx") and len(long) <= 120


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_dltrain_tb_serves_a_finished_run_over_http_and_stops_on_ctrl_c(cli, monkeypatch, iris_fit_run):
    import dltrain.commands.tb

    copy_run(iris_fit_run)  # a finished run with its events, trained once per session (conftest.py)
    (run_dir,) = run_folders()
    run_name = f"{run_dir.relative_to('outputs').as_posix()}/{run_dir.name}"  # its events' folder is named after it
    answers = {}

    def query_then_ctrl_c(server):
        url = server.url
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers["runs"] = _get_json(url + "data/runs")
            if run_name in answers["runs"]:
                break
            time.sleep(0.5)
        answers["tags"] = _get_json(url + "data/plugin/scalars/tags")
        answers["url"] = url
        raise KeyboardInterrupt

    monkeypatch.setattr(dltrain.commands.tb, "wait_for_interrupt", query_then_ctrl_c)
    result = cli("tb", "--port", "0")
    assert result.exit_code == 0, result.output
    assert answers["url"].startswith("http://127.0.0.1:")
    assert answers["url"] in result.output.replace("\n", "")
    assert "TensorBoard stopped." in result.output
    assert run_name in answers["runs"]
    assert {"loss/train", "loss/val", "accuracy/val", "lr", "time/epoch_seconds"} <= set(answers["tags"][run_name])
    # Stopped: the port no longer answers.
    with pytest.raises(OSError):
        urllib.request.urlopen(answers["url"] + "data/runs", timeout=2)


def _write_events(run_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir))
    writer.add_scalar("loss/train", 1.0, 1)
    writer.close()


@pytest.mark.slow
def test_dltrain_tb_serves_a_folder_whose_name_starts_with_a_dash(cli, monkeypatch):
    """``dltrain tb -- -runs``: the folder reaches TensorBoard as a folder, not as a flag."""
    import dltrain.commands.tb

    _write_events(Path("-runs") / "first")
    answers = {}

    def query_then_ctrl_c(server):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "first" not in answers.get("runs", []):
            answers["runs"] = _get_json(server.url + "data/runs")
            time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(dltrain.commands.tb, "wait_for_interrupt", query_then_ctrl_c)
    result = cli("tb", "--port", "0", "--", "-runs")
    assert result.exit_code == 0, result.output
    assert f"TensorBoard for {Path('-runs').resolve()} at" in result.output.replace("\n", "")
    assert answers["runs"] == ["first"]


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):  # gone while we looked
        return None


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (from /proc): TensorBoard and its data server."""
    parents = {int(p.name): _parent_of(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    """Running: not gone, and not a zombie that nobody has reaped yet (this machine's first
    process may never reap the orphans it inherits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _first_line_matching(process, pattern: str, timeout: float = 120) -> re.Match:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                     daemon=True).start()
    deadline, said = time.monotonic() + timeout, []
    while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.1))) is not None:
        said.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError("".join(said))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds TensorBoard's processes in /proc")
@pytest.mark.parametrize("sig,exit_code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_tensorboard_ends_with_dltrain_tb_however_it_ends(tmp_path, sig, exit_code):
    """A dropped ssh connection (SIGHUP), kill (SIGTERM) and kill -9 end ``dltrain tb``; TensorBoard
    (started in its own session) and its data server end with it, and the port is free again."""
    _write_events(tmp_path / "runs" / "first")
    process = subprocess.Popen([sys.executable, "-m", "dltrain", "tb", "runs", "--port", "0"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tensorboard = []
    try:
        port = int(_first_line_matching(process, r"http://127\.0\.0\.1:(\d+)/").group(1))
        tensorboard = _descendants(process.pid)
        assert tensorboard and _get_json(f"http://127.0.0.1:{port}/data/runs") == ["first"]
        process.send_signal(sig)
        assert process.wait(timeout=120) == exit_code
        if sig != signal.SIGKILL:  # dltrain itself stopped TensorBoard before it exited
            assert not _alive(tensorboard[0])
        deadline = time.monotonic() + 60  # the rest end once they see their stdin close
        while any(map(_alive, tensorboard)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, tensorboard))
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:  # a failure leaves nothing serving
        for pid in [process.pid, *tensorboard]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def test_dltrain_tb_on_a_missing_folder_is_one_sentence(cli):
    result = cli("tb", "nowhere")
    assert result.exit_code == 2
    assert "There is no folder 'nowhere' to show" in result.output
