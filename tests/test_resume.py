"""Never lose a run: SIGKILL, Ctrl-C and SIGTERM on real processes, then resume=RUN_DIR ends
with exactly the metrics of an uninterrupted run (fixed seed, CPU)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_folders

# digits one sample per step: ~1,400 steps an epoch, slow enough to stop in the middle of one.
RUN = ["data=digits", "data.batch_size=1", "trainer.epochs=2", "trainer.seed=3",
       "trainer.checkpoint_every_seconds=0", "trainer.progress=false", "model.hidden_sizes=[32]"]


def dltrain(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "dltrain", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=300):
    output = process.communicate(timeout=timeout)[0]
    return process.returncode, output


def comparable(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    strip = lambda row: {k: v for k, v in row.items() if k != "seconds"}
    return {"status": metrics["status"], "best_epoch": metrics["best_epoch"],
            "history": [strip(r) for r in metrics["history"]]}


def wait_for_epoch(folder_root: Path, epoch: int, timeout=240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for last in folder_root.glob("outputs/**/last.pt"):
            try:
                if torch.load(last, weights_only=True)["epoch"] >= epoch:
                    return last.parent
            except Exception:  # being replaced right now; atomic, so the next read is whole
                pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    code, output = finish(dltrain("fit", *RUN, cwd=root))
    assert code == 0, output
    (run_dir,) = run_folders(root / "outputs")
    return comparable(run_dir)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, reference):
    process = dltrain("fit", *RUN, cwd=tmp_path)
    run_dir = wait_for_epoch(tmp_path, 1)
    time.sleep(0.2)  # inside epoch 2 (its 1,438 steps take a second or more)
    process.kill()
    process.communicate()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"
    code, output = finish(dltrain("fit", f"resume={run_dir}", cwd=tmp_path))
    assert code == 0, output
    assert "Resuming from" in output
    assert run_folders(tmp_path / "outputs") == [run_dir]  # continued in its own folder
    assert comparable(run_dir) == reference
    # TensorBoard goes on too: one point per epoch, none doubled by the restart
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    points = events.Scalars("loss/train")
    assert [p.step for p in points] == [1, 2]
    assert [p.value for p in points] == pytest.approx([r["train_loss"] for r in history])


@pytest.mark.slow
@pytest.mark.parametrize("sig,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_resume_matches(tmp_path, reference, sig, exit_code):
    process = dltrain("fit", *RUN, cwd=tmp_path)
    run_dir = wait_for_epoch(tmp_path, 1)
    time.sleep(0.2)
    process.send_signal(sig)
    code, output = finish(process)
    assert code == exit_code, output
    assert f"Resume with: dltrain fit resume={run_dir.resolve()}" in output.replace("\n", "")
    assert "Traceback" not in output
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    cursor = torch.load(run_dir / "last.pt", weights_only=True)["trainer"]["cursor"]
    assert cursor is not None and cursor["step"] > 0  # stopped inside an epoch, after a step
    code, output = finish(dltrain("fit", "resume=last", cwd=tmp_path))
    assert code == 0, output
    assert f"inside epoch {cursor['epoch']} at step {cursor['step']}" in output
    assert comparable(run_dir) == reference


def test_resume_of_something_that_is_not_a_run(cli):
    result = cli("fit", "resume=nowhere")
    assert result.exit_code == 2
    assert "resume=nowhere: 'nowhere' is not a run folder with a last.pt checkpoint" in result.output
    result = cli("fit", "resume=last")
    assert result.exit_code == 2 and "resume=last found no run" in result.output


def test_the_python_api_says_what_the_command_line_says(cli):
    """dltrain.fit() goes through the same door as dltrain fit: resume, compose, launch."""
    import dltrain
    from dltrain.errors import DltrainError

    for overrides in (["resume=last"], ["resume=nowhere"], ["+trainer.epochz=2"]):
        with pytest.raises(DltrainError) as raised:
            dltrain.fit(*overrides)
        result = cli("fit", *overrides)
        assert result.exit_code == 2
        assert str(raised.value) in " ".join(result.output.split())
    assert not Path("outputs").exists()  # no run folder made on the way


@pytest.mark.slow
def test_resume_can_extend_a_finished_run(cli):
    assert cli("fit", "data=iris", "trainer.epochs=2").exit_code == 0
    (run_dir,) = run_folders()
    result = cli("fit", f"resume={run_dir}", "trainer.epochs=4")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert run_folders() == [run_dir]


@pytest.mark.slow
def test_cv_resume_skips_finished_folds_and_finishes_the_rest(cli):
    assert cli("cv", "k=3", "data=iris", "trainer.epochs=2", "logger=none").exit_code == 0
    (cv_dir,) = {p.parent for p in Path("outputs").glob("**/cv_summary.json")}
    finished = {i: (cv_dir / f"fold_{i}" / "last.pt").stat().st_mtime_ns for i in (0, 1)}
    record = json.loads((cv_dir / "fold_2" / "metrics.json").read_text())
    record["status"] = "interrupted"  # as a Ctrl-C inside fold 2 leaves it
    (cv_dir / "fold_2" / "metrics.json").write_text(json.dumps(record))
    (cv_dir / "cv_summary.json").unlink()
    result = cli("cv", f"resume={cv_dir}")
    assert result.exit_code == 0, result.output
    assert "folds 2 to run, 2 finished" in result.output
    assert {i: (cv_dir / f"fold_{i}" / "last.pt").stat().st_mtime_ns for i in (0, 1)} == finished
    assert json.loads((cv_dir / "fold_2" / "metrics.json").read_text())["status"] == "finished"
    assert len(json.loads((cv_dir / "cv_summary.json").read_text())["folds"]) == 3


@pytest.mark.slow
def test_ctrl_c_inside_a_cv_fold_prints_the_cv_resume_command(tmp_path):
    """A real Ctrl-C once fold 0 saved its first epoch: two more epochs of ~1,400 steps each are
    left in the fold, so the signal lands inside it however fast or loaded the machine is."""
    run = [o for o in RUN if not o.startswith("trainer.epochs=")] + ["trainer.epochs=3"]
    process = dltrain("cv", "k=2", *run, "logger=none", cwd=tmp_path)
    fold_0 = wait_for_epoch(tmp_path, 1)
    process.send_signal(signal.SIGINT)
    code, output = finish(process)
    assert code == 130, output
    cv_dir = fold_0.parent
    assert cv_resume_target(output) == cv_dir.resolve()
    assert "Traceback" not in output
    assert json.loads((fold_0 / "metrics.json").read_text())["status"] == "interrupted"
    assert not (cv_dir / "fold_1" / "metrics.json").exists()
    code, output = finish(dltrain("cv", f"resume={cv_dir}", cwd=tmp_path))
    assert code == 0, output
    assert "folds 0, 1 to run, 0 finished" in output
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["status"] == "finished" and [f["epochs"] for f in summary["folds"]] == [3, 3]


# iris: a whole cross-validation (2 folds and a refit on all rows) in about a second
CV = ["k=2", "data=iris", "trainer.epochs=2", "cv.refit=true", "logger=none", "trainer.progress=false"]


def cv_resume_target(output: str) -> Path:
    """The folder of the one ``Resume with: dltrain cv resume=...`` line."""
    found = re.findall(r"^Resume with: dltrain cv resume=(.+)$", output, re.MULTILINE)
    assert len(found) == 1, output
    return Path(found[0])


def cv_comparable(cv_dir: Path) -> dict:
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    return {"status": summary["status"], "folds": summary["folds"], "refit": summary["refit"]["final"]}


@pytest.fixture(scope="module")
def cv_reference(tmp_path_factory):
    from typer.testing import CliRunner

    from dltrain.cli import app

    root = tmp_path_factory.mktemp("cv_reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(app, ["cv", *CV], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (summary,) = root.glob("outputs/**/cv_summary.json")
    return cv_comparable(summary.parent)


def status_of(run_dir: Path) -> str | None:
    metrics = run_dir / "metrics.json"
    return json.loads(metrics.read_text())["status"] if metrics.exists() else None


def signal_at_epoch_end(monkeypatch, call: int) -> None:
    """Ctrl-C to this process at the end of the ``call``-th epoch that trains (counting on
    through the folds and the refit), as its early-stopping state takes the epoch's row."""
    from dltrain.train.stopping import EarlyStopping

    update, calls = EarlyStopping.update, []

    def update_then_signal(stopping, epoch, row):
        calls.append(epoch)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGINT)
        return update(stopping, epoch, row)

    monkeypatch.setattr(EarlyStopping, "update", update_then_signal)


def signal_after(monkeypatch, module, name: str, when=lambda *args: True) -> None:
    """Ctrl-C to this process as soon as ``module``'s ``name`` returns (``when`` its positional
    arguments say so)."""
    real = getattr(module, name)

    def then_signal(*args, **kwargs):
        result = real(*args, **kwargs)
        if when(*args):
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(module, name, then_signal)


def _cv_module():
    import dltrain.commands.cv

    return dltrain.commands.cv


def _fit_module():
    import dltrain.commands.fit

    return dltrain.commands.fit


# Where a Ctrl-C lands, and what each folder holds then (fold_0, fold_1, refit). Fold 0's trainer
# ignores a request in its last epoch (nothing is left to stop), so the cross-validation must stop
# before fold 1; one made while fold 1 is set up (data prepared, model built) stops its trainer
# after its first step.
MOMENTS = {
    "fold_0_last_epoch": (lambda mp: signal_at_epoch_end(mp, 2), ["finished", None, None]),
    "between_folds": (lambda mp: signal_after(mp, _cv_module(), "train_fold",
                                              lambda cfg, settings, source, fold, *rest: fold.index == 0),
                      ["finished", None, None]),
    "fold_1_setup": (lambda mp: signal_after(mp, _fit_module(), "open_member",
                                             lambda *args: Path(args[5]).name == "fold_1"),
                     ["finished", "interrupted", None]),
    "refit_epoch": (lambda mp: signal_at_epoch_end(mp, 5), ["finished", "finished", "interrupted"]),
    "before_the_summary": (lambda mp: signal_after(mp, _cv_module(), "refit"),
                           ["finished", "finished", "finished"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_at_any_moment_of_a_cv_prints_its_resume_command(cli, monkeypatch, cv_reference, moment):
    arrange, statuses = MOMENTS[moment]
    with monkeypatch.context() as patch:
        arrange(patch)
        result = cli("cv", *CV)
    assert result.exit_code == 130, result.output
    cv_dir = cv_resume_target(result.output)
    assert f"Stopped by SIGINT; a checkpoint to resume from is saved in {cv_dir}." in result.output
    assert [status_of(cv_dir / f) for f in ("fold_0", "fold_1", "refit")] == statuses
    assert not (cv_dir / "cv_summary.json").exists()  # the mark of a cross-validation that ended
    result = cli("cv", f"resume={cv_dir}")
    assert result.exit_code == 0, result.output
    assert cv_comparable(cv_dir) == cv_reference


BETWEEN_FOLDS = """
import os, sys
import dltrain.commands.cv as cv
from dltrain.cli import main

train_fold, signal_number = cv.train_fold, int(sys.argv[1])

def then_signal(cfg, settings, source, fold, *args, **kwargs):
    result = train_fold(cfg, settings, source, fold, *args, **kwargs)
    if fold.index == 0:  # fold 0 wrote its metrics and files; fold 1 has not begun
        os.kill(os.getpid(), signal_number)
    return result

cv.train_fold = then_signal
sys.argv = ["dltrain", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
def test_sigterm_between_two_cv_folds_exits_143_with_the_resume_command(tmp_path, cli, cv_reference):
    """A real process, signalled exactly at the fold boundary (by itself, as fold 0 returns):
    SIGTERM there used to kill it with nothing said."""
    done = subprocess.run([sys.executable, "-c", BETWEEN_FOLDS, str(int(signal.SIGTERM)), "cv", *CV],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert done.returncode == 143, done.stdout
    cv_dir = cv_resume_target(done.stdout)
    assert "Stopped by SIGTERM" in done.stdout and "Traceback" not in done.stdout
    assert json.loads((cv_dir / "fold_0" / "metrics.json").read_text())["status"] == "finished"
    assert not (cv_dir / "fold_1" / "metrics.json").exists()
    result = cli("cv", f"resume={cv_dir}")
    assert result.exit_code == 0, result.output
    assert "folds 1 to run, 1 finished" in result.output
    assert cv_comparable(cv_dir) == cv_reference
