"""Never lose a run: SIGKILL, Ctrl-C and SIGTERM on real processes, then resume=RUN_DIR ends
with exactly the metrics of an uninterrupted run (fixed seed, CPU). And resume cannot corrupt a
run: the folder is untrusted input (nothing in it reaches Hydra), only settings that cannot change
what was learned may change, and a refused or empty resume writes nothing."""

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
import yaml

from conftest import copy_run, run_folders

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

    events = EventAccumulator(str(run_dir / run_dir.name)).Reload()  # the TensorBoard run, named after its folder
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
    """A larger trainer.epochs trains a finished run on, to exactly what an uninterrupted run
    with that many epochs reaches; its preprocessing and .hydra/ stay as they were."""
    assert cli("fit", "data=iris", "trainer.epochs=2", "hydra.run.dir=outputs/four").exit_code == 0
    assert cli("fit", "data=iris", "trainer.epochs=2", "hydra.run.dir=outputs/run").exit_code == 0
    run_dir = Path("outputs/run")
    kept = {name: value for name, value in snapshot(run_dir).items() if name.startswith(("preprocess", ".hydra"))}
    assert any(name.startswith("preprocess") for name in kept) and ".hydra/config.yaml" in kept
    result = cli("fit", f"resume={run_dir}", "trainer.epochs=4")
    assert result.exit_code == 0, result.output
    assert cli("fit", "resume=outputs/four", "trainer.epochs=3").exit_code == 0  # twice: 2 -> 3 -> 4
    assert cli("fit", "resume=outputs/four", "trainer.epochs=4").exit_code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert {name: snapshot(run_dir)[name] for name in kept} == kept
    assert cli("fit", "data=iris", "trainer.epochs=4", "hydra.run.dir=outputs/whole").exit_code == 0
    assert comparable(run_dir) == comparable(Path("outputs/four")) == comparable(Path("outputs/whole"))
    assert sorted(run_folders()) == sorted(Path("outputs") / name for name in ("four", "run", "whole"))


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


# --------------------------------------------------------------------------- resume cannot corrupt a run


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` (and itself) with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in [folder, *sorted(folder.rglob("*"))]}


def hand_made_run(folder: Path, *overrides: str, status: str = "finished", epochs_run: int = 2,
                  best_epoch: int = 2) -> Path:
    """A run folder as ``dltrain fit OVERRIDES`` leaves it, without training: its composed config
    in .hydra/, metrics.json, and a last.pt that nothing may read before the checks pass."""
    import dltrain
    from omegaconf import OmegaConf

    overrides = overrides or ("data=iris", "trainer.epochs=2")
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(dltrain.compose(*overrides)))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (folder / "last.pt").write_bytes(b"a checkpoint")
    (folder / "preprocessing.json").write_bytes(b"its preprocessing")
    history = [{"epoch": e + 1, "val_loss": 1.0 / (e + 1)} for e in range(epochs_run)]
    (folder / "metrics.json").write_text(json.dumps({
        "status": status, "monitor": "val_loss", "mode": "min", "epochs_run": epochs_run,
        "best_epoch": best_epoch, "history": history, "final": history[-1]}))
    return folder


def planted_callbacks(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """Override strings that make Hydra open files when replayed: ``marker`` created (append
    mode), ``victim`` emptied (write mode)."""
    marker, victim = tmp_path / "marker", tmp_path / "victim"
    victim.write_text("precious\n")
    return ["+hydra.callbacks.append._target_=builtins.open", f"+hydra.callbacks.append._args_=[{marker},a]",
            "+hydra.callbacks.empty._target_=builtins.open", f"+hydra.callbacks.empty._args_=[{victim},w]"
            ], marker, victim


def test_saved_override_strings_never_reach_hydra(cli, tmp_path):
    """Issue 14's exploit: a callback planted in .hydra/overrides.yaml is not replayed."""
    run = hand_made_run(Path("outputs/planted"))
    words, marker, victim = planted_callbacks(tmp_path)
    saved = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(saved + words))
    before = snapshot(run)
    result = cli("fit", f"resume={run}")
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output
    assert not marker.exists() and victim.read_text() == "precious\n"
    assert snapshot(run) == before


@pytest.mark.parametrize("change, why", [
    (lambda c: c.update(hydra={"callbacks": {"x": {"_target_": "builtins.open"}}}), "has a hydra section"),
    (lambda c: c["model"].update(_target_="builtins.open", _args_=["marker", "a"]),
     "has model._args_, a key Hydra would instantiate or act on"),
    (lambda c: c["trainer"].update(device="${oc.env:HOME}"), "sets trainer.device to an interpolation"),
    (lambda c: c["optimizer"].update(lr=-1.0), "is not one dltrain can run (optimizer.lr must be"),
    (lambda c: c.update(unknown=1), "is not one dltrain can run (There is no top-level setting 'unknown'"),
    ("!!python/object/apply:os.system [touch marker]\n", "cannot be read (ConstructorError)"),
    ("- a list\n", "is not a mapping of settings"),
    ("model: " + "[" * 60 + "]" * 60 + "\n", "is too large to be a dltrain config"),
    ("model: " + "[" * 5000 + "]" * 5000 + "\n", "cannot be read (RecursionError)"),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(  # a billion nodes from aliases
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)),
     "is too large to be a dltrain config"),
], ids=["hydra", "target", "interpolation", "invalid", "unknown", "python-tag", "list", "deep", "deeper",
        "aliases"])
def test_a_hostile_saved_config_is_one_sentence_and_writes_nothing(cli, change, why):
    run = hand_made_run(Path("outputs/hostile"))
    path = run / ".hydra" / "config.yaml"
    if callable(change):
        config = yaml.safe_load(path.read_text())
        change(config)
        path.write_text(yaml.safe_dump(config))
    else:
        path.write_text(change)
    before = snapshot(run)
    result = cli("fit", f"resume={run}", "trainer.epochs=3")
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert output.startswith(f"Error: resume={run}: the saved config") and why in output, output
    assert "Traceback" not in output and not Path("marker").exists()
    assert snapshot(run) == before


@pytest.mark.parametrize("override, key", [
    ("data.standardize=false", "data.standardize"), ("model.hidden_sizes=[8]", "model.hidden_sizes"),
    ("optimizer=sgd", "optimizer"), ("optimizer.lr=0.1", "optimizer.lr"), ("trainer.seed=1", "trainer.seed"),
    ("trainer.early_stopping.min_delta=0.1", "trainer.early_stopping.min_delta"),
    ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches"),
    ("hydra.run.dir=elsewhere", "hydra.run.dir"), ("+trainer.extra=1", "trainer.extra"),
    ("recipe=mnist_cnn", "recipe"), ("hydra/launcher=joblib", "hydra/launcher"),
])
def test_resume_refuses_any_other_setting_in_one_sentence_before_writing(cli, override, key):
    run = hand_made_run(Path("outputs/run"))
    before = snapshot(run)
    for resume in (f"resume={run}", f"++resume={run}"):
        result = cli("fit", resume, "trainer.epochs=4", override)
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert f"cannot change {key} (a resumed run keeps what it was trained with; only trainer.epochs, " \
               f"trainer.early_stopping.patience, trainer.checkpoint_every_seconds, trainer.save_top_k, trainer.progress, " \
               f"trainer.device, trainer.devices, trainer.strategy and logger settings may change)" in output
        assert snapshot(run) == before


def test_a_finished_run_without_more_epochs_has_nothing_to_do_and_is_left_as_it_is(cli):
    run = hand_made_run(Path("outputs/done"))
    before = snapshot(run)
    for extra in ([], ["trainer.progress=false", "logger=none", "trainer.checkpoint_every_seconds=0"],
                  ["trainer.epochs=2"]):
        result = cli("fit", f"resume={run}", *extra)
        assert result.exit_code == 0, result.output
        assert f"Nothing to do: {run.resolve()} has finished its 2 epochs (a larger trainer.epochs trains it " \
               f"on)." in " ".join(result.output.split())
        assert snapshot(run) == before
    result = cli("fit", f"resume={run}", "trainer.epochs=1")
    assert result.exit_code == 2
    assert "trainer.epochs=1 is fewer than the 2 epochs" in " ".join(result.output.split())
    assert snapshot(run) == before


def test_epochs_cannot_change_under_a_schedule_fitted_to_them(cli):
    run = hand_made_run(Path("outputs/cosine"), "data=iris", "trainer.epochs=2", "scheduler=cosine")
    before = snapshot(run)
    result = cli("fit", f"resume={run}", "trainer.epochs=4")
    assert result.exit_code == 2
    assert ("cannot change trainer.epochs to 4: scheduler=cosine spreads its curve over the 2 epochs"
            in " ".join(result.output.split()))
    assert snapshot(run) == before


def test_resume_last_takes_the_newest_run_no_process_holds_and_never_a_cv_fold(cli):
    from dltrain.files import RunLock

    older = hand_made_run(Path("outputs/d/older"))
    newer = hand_made_run(Path("outputs/d/newer"))
    cv_dir = Path("outputs/d/cv")
    fold = hand_made_run(cv_dir / "fold_0")
    hand_made_run(cv_dir / "fold_1")
    for when, folder in enumerate([older, newer, cv_dir / "fold_1", fold]):
        os.utime(folder / "last.pt", (1_700_000_000 + when, 1_700_000_000 + when))
    result = cli("fit", "resume=last")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"leaves out the newer cross-validation {cv_dir}" in output
    assert f"Nothing to do: {newer.resolve()} has finished" in output
    with RunLock(newer):  # as while another process trains it
        result = cli("fit", "resume=last")
        assert f"Nothing to do: {older.resolve()} has finished" in " ".join(result.output.split())
        result = cli("fit", f"resume={newer}")
        assert result.exit_code == 2
        assert (f"resume={newer}: '{newer.resolve()}' is being trained by another dltrain process"
                in " ".join(result.output.split()))
        with RunLock(older):
            result = cli("fit", "resume=last")
    assert result.exit_code == 2
    assert ("resume=last found no run with a last.pt under outputs/ that no other dltrain process is "
            f"training (the newest checkpoint is in the cross-validation {cv_dir}: resume it with "
            f"dltrain cv resume={cv_dir})" in " ".join(result.output.split()))


def test_a_cv_fold_resumes_only_with_its_cross_validation(cli):
    cv_dir = Path("outputs/cv")
    for index in range(2):
        hand_made_run(cv_dir / f"fold_{index}", "data=iris", "trainer.epochs=2", f"cv.fold={index}", "k=2")
    (cv_dir / "cv_summary.json").write_text(json.dumps({"status": "finished", "folds": [{}, {}]}))
    before = snapshot(cv_dir)
    fold = cv_dir / "fold_1"
    for command in ("fit", "cv"):
        result = cli(command, f"resume={fold}")
        assert result.exit_code == 2
        assert (f"resume={fold}: '{fold}' is part of the cross-validation '{cv_dir}'; resume the whole "
                f"cross-validation with dltrain cv resume={cv_dir}." in " ".join(result.output.split()))
    result = cli("fit", f"resume={cv_dir}")
    assert result.exit_code == 2
    assert f"is a cross-validation; resume it with dltrain cv resume={cv_dir}." in " ".join(result.output.split())
    result = cli("cv", f"resume={cv_dir}", "optimizer.lr=0.5")
    assert result.exit_code == 2 and "cannot change optimizer.lr" in result.output
    result = cli("cv", f"resume={cv_dir}", "trainer.progress=false")
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output
    assert snapshot(cv_dir) == before


def test_a_sweep_cannot_resume(cli):
    result = cli("fit", "-m", "resume=outputs/run", "optimizer.lr=0.1,0.01")
    assert result.exit_code == 2
    assert "dltrain fit -m cannot resume" in result.output
    assert not Path("outputs").exists()


@pytest.mark.slow
def test_a_refused_resume_leaves_a_trained_run_as_it_was(cli, iris_fit_run):
    """Issue 14's corruptions, on a real run: each refused in one sentence, nothing written, and
    a plain resume afterwards still works (nothing to do: the run has finished)."""
    run = copy_run(iris_fit_run)
    before = snapshot(run)
    for override in ("data.standardize=false", "model.hidden_sizes=[8]", "optimizer=sgd"):
        result = cli("fit", f"resume={run}", override)
        assert result.exit_code == 2, result.output
        assert f"cannot change {override.split('=')[0]}" in result.output and "Traceback" not in result.output
        assert snapshot(run) == before
    result = cli("fit", f"resume={run}")
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output
    assert snapshot(run) == before
    assert json.loads((run / "metrics.json").read_text())["status"] == "finished"
    # A resume that fails once the data is loaded (another program's last.pt, found while the run
    # folder's lock is held, as any earlier dltrain writer leaves it) writes nothing either.
    from dltrain.files import RunLock

    torch.save({"model": {}, "epoch": 3}, run / "last.pt")
    RunLock(run).acquire().release()
    before = snapshot(run)
    result = cli("fit", f"resume={run}", "trainer.epochs=16")
    assert result.exit_code == 2 and "holds no training state to resume from" in result.output, result.output
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_planted_callback_never_runs_while_a_run_trains_on(cli, iris_fit_run, tmp_path):
    run = copy_run(iris_fit_run)
    words, marker, victim = planted_callbacks(tmp_path)
    saved = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(saved + words))
    result = cli("fit", f"resume={run}", "trainer.epochs=16", "trainer.progress=false")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 16
    assert not marker.exists() and victim.read_text() == "precious\n"


@pytest.mark.slow
def test_cv_resume_refuses_changes_has_nothing_to_do_or_trains_every_fold_on(cli):
    base = ["k=3", "data=iris", "logger=none", "trainer.progress=false"]
    assert cli("cv", *base, "trainer.epochs=2", "hydra.run.dir=outputs/cv").exit_code == 0
    cv_dir = Path("outputs/cv")
    before = snapshot(cv_dir)
    result = cli("cv", f"resume={cv_dir}", "data.standardize=false")
    assert result.exit_code == 2 and "cannot change data.standardize" in result.output, result.output
    result = cli("cv", f"resume={cv_dir}", "trainer.checkpoint_every_seconds=0")
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output
    assert snapshot(cv_dir) == before
    result = cli("cv", f"resume={cv_dir}", "trainer.epochs=3")
    assert result.exit_code == 0, result.output
    assert "folds 0, 1, 2 to run" in result.output
    after = snapshot(cv_dir)
    assert all(after[name] == before[name] for name in before
               if Path(name).name.startswith("preprocess") or name.endswith(("config.yaml", "overrides.yaml")))
    assert cli("cv", *base, "trainer.epochs=3", "hydra.run.dir=outputs/whole").exit_code == 0
    for fold in ("fold_0", "fold_1", "fold_2"):
        assert comparable(cv_dir / fold) == comparable(Path("outputs/whole") / fold)
    means = [json.loads((folder / "cv_summary.json").read_text())["objective"]["mean"]
             for folder in (cv_dir, Path("outputs/whole"))]
    assert means[0] == means[1]
