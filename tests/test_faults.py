"""What the machine throws (a full disk, a read-only or deleted folder, a second Ctrl-C) and what
a bug throws: one sentence and a non-zero exit, never a traceback nor a status left ``running``,
and the last good checkpoint kept."""

import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import copy_run, run_folders

FIT = ("fit", "data=iris", "trainer.epochs=3", "trainer.checkpoint_every_seconds=0", "logger=none",
       "trainer.progress=false")


def _checkpoint_epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def _one_sentence(output: str) -> str:
    """The error line of a command's output, checked to be the only thing said after the epochs."""
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    return line


def _status(run_dir: Path) -> str:
    return json.loads((run_dir / "metrics.json").read_text())["status"]


def _refuse_replacing(monkeypatch, name: str, code: int, *, after: int = 0) -> None:
    """The writer's os.replace of a file called ``name`` fails with ``code`` after ``after``
    successes, naming no file, as a write() into a full disk does."""
    replace = os.replace
    calls = []

    def refusing(source, destination, *args, **kwargs):
        if Path(destination).name == name:
            calls.append(destination)
            if len(calls) > after:
                raise OSError(code, os.strerror(code))
        return replace(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refusing)


@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "No space is left on the device to write"),
    (errno.EROFS, "is on a read-only file system"),
    (errno.EACCES, "Permission denied for"),
], ids=["full", "read-only", "permission-denied"])
def test_a_full_or_read_only_disk_is_one_sentence_and_the_last_good_checkpoint_stays(cli, monkeypatch, code, cause):
    _refuse_replacing(monkeypatch, "last.pt", code, after=1)  # epoch 1's is written, epoch 2's is refused
    result = cli(*FIT)
    assert result.exit_code == 1, result.output
    (run_dir,) = run_folders()
    line = _one_sentence(result.output)
    assert cause in line and repr(str(run_dir.resolve() / "last.pt")) in line.replace("Error: ", "")
    assert _status(run_dir) == "failed"
    assert _checkpoint_epoch(run_dir / "last.pt") == 1
    assert not list(run_dir.rglob("*.tmp"))


def test_what_hydra_itself_cannot_write_is_one_sentence(cli):
    Path("outputs").write_text("")  # a file where the run folders go
    result = cli(*FIT)
    assert result.exit_code == 1, result.output
    assert _one_sentence(result.output).startswith("Error: 'outputs/")
    assert "cannot be made: a folder on its way is a file." in result.output


def test_eval_prints_its_metrics_when_it_cannot_save_them(cli, iris_fit_run, monkeypatch):
    run_dir = copy_run(iris_fit_run)
    _refuse_replacing(monkeypatch, "eval.json", errno.EROFS)
    result = cli("eval", str(run_dir))
    assert result.exit_code == 1, result.output
    assert "accuracy" in result.output and "macro_f1" in result.output  # the metrics table
    assert "eval.json' is on a read-only file system" in _one_sentence(result.output)
    assert not (run_dir / "eval.json").exists()


def test_a_run_folder_deleted_while_training_stops_the_run_and_is_not_made_again(cli, monkeypatch):
    from dltrain.train.rundir import RunFolder

    last = RunFolder.last

    def deleting(folder, epoch, row):  # the user removes the folder as epoch 2 ends
        if epoch == 2:
            shutil.rmtree(folder.path)
        last(folder, epoch, row)

    monkeypatch.setattr(RunFolder, "last", deleting)
    result = cli(*FIT)
    assert result.exit_code == 1, result.output
    assert "does not exist (any more): was it deleted or moved" in _one_sentence(result.output)
    assert run_folders() == [] and not list(Path("outputs").rglob("*.pt"))


@pytest.mark.parametrize("where", ["in an epoch", "after training", "before the run folder"])
def test_a_bug_is_one_sentence_naming_its_traceback_file_and_debug_shows_it(cli, monkeypatch, tmp_path, where):
    import tempfile

    from dltrain.train.member import Member
    from dltrain.train.rundir import RunFolder

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s)")

    if where == "in an epoch":
        monkeypatch.setattr(RunFolder, "last", bug)
    elif where == "after training":
        monkeypatch.setattr(Member, "predict_scores", bug)
    else:
        monkeypatch.setattr("dltrain.commands.fit.compose", bug)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    result = cli(*FIT)
    assert result.exit_code == 1, result.output
    line = _one_sentence(result.output)
    assert "unexpected error (TypeError: unsupported operand type(s)), a bug: its traceback is in" in line
    if where == "before the run folder":
        assert run_folders() == []
        (written,) = (tmp_path / "temporary").glob("dltrain-traceback-*.txt")
    else:
        (run_dir,) = run_folders()
        written = run_dir / "traceback.txt"
        assert _status(run_dir) == "failed"
        assert json.loads((run_dir / "metrics.json").read_text())["error"].startswith("unexpected TypeError")
    assert str(written) in line
    assert "Traceback (most recent call last)" in written.read_text()
    assert 'raise TypeError("unsupported operand type(s)")' in written.read_text()
    with pytest.raises(TypeError):
        cli("--debug", *FIT)


def test_a_bug_in_a_sweep_point_stops_the_sweep_at_once(cli, monkeypatch):
    from dltrain.train.rundir import RunFolder

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(RunFolder, "last", bug)
    result = cli("fit", "-m", *FIT[1:], "optimizer.lr=0.1,0.01,0.001")
    assert result.exit_code == 1, result.output
    (point,) = run_folders(Path("outputs/multirun"))  # the next points never started
    assert f"a bug: its traceback is in {point.resolve() / 'traceback.txt'}" in _one_sentence(result.output)
    assert _status(point) == "failed"


def test_a_second_ctrl_c_in_the_middle_of_a_checkpoint_stops_at_once_leaving_none_half_written(cli, monkeypatch):
    save = torch.save
    calls = []

    def interrupted_save(payload, stream, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # after init.pt and epoch 1's two: one of epoch 2, half written at a double Ctrl-C
            stream.write(b"PK\x03\x04half a checkpoint")
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return save(payload, stream, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    result = cli(*FIT)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == "Stopped at once by Ctrl-C."
    (run_dir,) = run_folders()
    assert _status(run_dir) == "interrupted"
    assert not list(run_dir.rglob("*.tmp"))
    assert _checkpoint_epoch(run_dir / "last.pt") == 1  # epoch 2's never got written
    assert {_checkpoint_epoch(p) for p in run_dir.glob("*.pt")} <= {0, 1, 2}  # each one whole (init.pt: 0)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted at tmp_path/disk (needs root, or the test is skipped)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot run mount: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_a_real_full_disk_is_one_sentence_and_the_last_good_checkpoint_stays(cli, monkeypatch, small_disk):
    from dltrain.train.rundir import RunFolder

    last = RunFolder.last

    def filling(folder, epoch, row):  # something else fills the disk as epoch 2 ends, 16 KiB left
        if epoch == 2:
            stat = os.statvfs(small_disk)
            (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 16 * 1024))
        last(folder, epoch, row)

    monkeypatch.setattr(RunFolder, "last", filling)
    result = cli(*FIT, f"hydra.run.dir={small_disk / 'run'}")
    assert result.exit_code == 1, result.output
    line = _one_sentence(result.output)
    assert f"No space is left on the device to write '{small_disk / 'run'}" in line
    run_dir = small_disk / "run"
    assert _status(run_dir) == "failed"  # a few bytes still fit
    assert _checkpoint_epoch(run_dir / "last.pt") == 1 and _checkpoint_epoch(run_dir / "best.pt") == 1
    assert not list(run_dir.rglob("*.tmp"))
