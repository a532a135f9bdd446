"""dltrain.commands.launch: a hydra.run.dir typed by the user never points a new run at an
existing one (nor at no folder at all); dltrain's own use of the key (resume) stays allowed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dltrain.commands.launch import check_run_dir
from dltrain.errors import DltrainError


def _a_run(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name.replace("_dot_", ".")).write_text(text)
    return folder


@pytest.mark.parametrize("command", ["fit", "cv"])
def test_hydra_run_dir_at_an_existing_run_is_refused_before_anything_is_written(cli, command):
    run = _a_run(Path("outputs/old"), metrics_dot_json=json.dumps({"status": "finished"}), last_dot_pt="w")
    before = sorted(p.name for p in run.iterdir())
    result = cli(command, "data=iris", f"hydra.run.dir={run}")
    assert result.exit_code == 2
    assert (f"hydra.run.dir={run} is an existing run folder, which a new run would overwrite; "
            f"continue it with resume={run} alone") in " ".join(result.output.split())
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("typed", ["hydra.run.dir=", "hydra.run.dir=''", '++hydra.run.dir=" "'])
def test_an_empty_hydra_run_dir_is_refused(cli, typed):
    result = cli("fit", typed)
    assert result.exit_code == 2 and "names no folder" in result.output
    assert not Path("outputs").exists()


def test_which_folders_count_as_a_run(tmp_path):
    check_run_dir(["hydra.run.dir=outputs/new", "data=iris"])  # not there yet
    check_run_dir([f"hydra.run.dir={_a_run(tmp_path / 'empty')}"])  # there, but nothing in it
    check_run_dir(["hydra.run.dir=outputs/${now:%H-%M}"])  # an interpolation: a fresh folder
    for name in ("metrics.json", "last.pt", "best.pt", "cv_summary.json"):
        with pytest.raises(DltrainError, match="is an existing run folder"):
            check_run_dir([f"hydra.run.dir={_a_run(tmp_path / name, **{name.replace('.', '_dot_'): '{}'})}"])
    with pytest.raises(DltrainError, match="is an existing run folder"):
        check_run_dir([f"+hydra.run.dir={_a_run(tmp_path / 'hydra' / '.hydra').parent}"])


def test_a_folder_another_process_is_starting_a_run_in_is_refused(tmp_path):
    # A run loading its data has its lock and nothing else yet.
    code = ("import sys; from dltrain.files import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "starting")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DltrainError, match="is an existing run folder"):
            check_run_dir([f"hydra.run.dir={tmp_path / 'starting'}"])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


# --------------------------------------------------------------------------- an existing run folder

# Short epochs (a checkpoint each) without end: the test stops the run itself.
ENDLESS_FIT = ["data=iris", "data.batch_size=1", "trainer.epochs=100000", "trainer.checkpoint_every_seconds=0",
               "trainer.progress=false", "logger=none"]


def _dltrain(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dltrain", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _first_checkpoint(process: subprocess.Popen, root: Path) -> Path:
    """The run folder, once the process printed its second epoch row (epoch 1's last.pt is
    written before epoch 2 starts; epoch 1's own row comes before its checkpoint)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip().startswith("2 "):  # the epoch table's second row
            (last,) = root.glob("outputs/*/*/last.pt")
            return last.parent
    raise AssertionError("the fit ended before its first epoch: " + "".join(lines))


@pytest.mark.slow
def test_a_second_resume_of_a_run_in_training_is_refused(tmp_path):
    first = _dltrain("fit", *ENDLESS_FIT, cwd=tmp_path)
    try:
        run = _first_checkpoint(first, tmp_path)
        saved = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
        second = _dltrain("fit", f"resume={run}", cwd=tmp_path)
        output = second.communicate(timeout=300)[0]
        assert second.returncode == 2, output
        assert f"{str(run)!r} is being trained by another dltrain process" in " ".join(output.split())
        assert first.poll() is None  # still training, its folder untouched by the refused one
        assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == saved
        (listed,) = json.loads(_dltrain("runs", "--json", cwd=tmp_path).communicate(timeout=300)[0])
        assert listed["status"] == "running"
    finally:
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=300)[0]
    assert first.returncode == 130, rest
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_resume_never_writes_through_planted_links_and_clears_orphans(cli, iris_fit_run, tmp_path):
    from conftest import copy_run

    run = copy_run(iris_fit_run)
    victims = {name: tmp_path / f"victim_{name}" for name in ("hydra.yaml", "dltrain.log")}
    for victim in victims.values():
        victim.write_text("precious")
    (run / ".hydra" / "hydra.yaml").unlink()
    (run / ".hydra" / "hydra.yaml").symlink_to(victims["hydra.yaml"])
    (run / "dltrain.log").unlink(missing_ok=True)
    (run / "dltrain.log").symlink_to(victims["dltrain.log"])
    (run / ".last.pt.k2j9.tmp").write_bytes(b"half a checkpoint")  # left by a SIGKILL mid-write
    (run / ".hydra" / ".config.yaml.x1.tmp").write_bytes(b"half a config")
    result = cli("fit", f"resume={run}", "trainer.epochs=16")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 16
    assert all(victim.read_text() == "precious" for victim in victims.values())
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".hydra/.*.tmp"))


def test_nothing_logged_after_a_run_lands_in_its_log(cli):
    """Hydra's job logging leaves a file handler for the run's dltrain.log on the root logger;
    a record logged once the run ended (TensorBoard's event reader, in a later test) must not
    be appended to the finished run's log."""
    import logging

    result = cli("fit", "data=iris", "trainer.epochs=1")
    assert result.exit_code == 0, result.output
    (log,) = Path("outputs").glob("*/*/dltrain.log")
    before = log.read_text()
    logging.getLogger("tensorboard").warning("logged after the run ended")
    assert log.read_text() == before
