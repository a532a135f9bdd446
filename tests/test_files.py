"""dltrain.files: the atomic writer every run-folder file goes through, and the one-writer lock."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dltrain.errors import DltrainError
from dltrain.files import (RunLock, copy_file, locked_by_someone, remove_links, remove_orphan_temporaries,
                           write_atomic, write_json)


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("precious")
    link = tmp_path / "run" / "predictions.csv"
    link.parent.mkdir()
    link.symlink_to(target)
    write_atomic(link, "a,b\n1,2\n")
    assert target.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "a,b\n1,2\n"


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"status": "running"})

    def breaks(stream):
        stream.write(b'{"sta')
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(path, breaks)
    assert path.read_text() == '{\n  "status": "running"\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_orphan_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / ".config.yaml.x1.tmp").write_bytes(b"half")
    (tmp_path / ".hydra" / "config.yaml").write_bytes(b"whole")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.tmp").write_bytes(b"a fold's own")
    removed = remove_orphan_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".config.yaml.x1.tmp", ".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "last.pt", "sub"]
    assert [p.name for p in (tmp_path / ".hydra").iterdir()] == ["config.yaml"]
    assert (tmp_path / "sub" / ".x.tmp").exists()


def test_taking_the_lock_removes_what_a_killed_writer_left(tmp_path):
    (tmp_path / ".metrics.json.k9.tmp").write_bytes(b'{"sta')
    with RunLock(tmp_path):
        assert not (tmp_path / ".metrics.json.k9.tmp").exists()


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock until its stdin closes; returns once it does."""
    code = ("import sys; from dltrain.files import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_a_second_process_is_refused_and_the_lock_goes_with_its_holder(tmp_path):
    assert not locked_by_someone(tmp_path)
    holder = _holder(tmp_path)
    assert locked_by_someone(tmp_path)
    with pytest.raises(DltrainError, match="in use by another dltrain process"):
        RunLock(tmp_path).acquire()
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert not locked_by_someone(tmp_path)
    RunLock(tmp_path).acquire().release()


def test_one_process_shares_one_hold_of_a_folder_however_it_is_named(tmp_path, monkeypatch):
    # flock belongs to an open file description: a second open in this process would refuse
    # the first (a cross-validation holds its folder while its fold's job holds it again).
    (tmp_path / "run").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    outer = RunLock(tmp_path / "run").acquire()
    inner = RunLock(Path("alias")).acquire()
    outer.release()
    assert locked_by_someone(tmp_path / "run")  # the inner holder still holds it
    inner.release()
    assert not locked_by_someone(tmp_path / "run")


def test_an_unwritable_run_folder_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DltrainError, match="cannot be written"):
        RunLock(tmp_path / "file" / "run").acquire()


def test_files_get_the_mode_open_would_give_not_mkstemps_private_one(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_json(tmp_path / "metrics.json", {})
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o666 & ~umask


def test_copy_file_and_remove_links_never_write_through_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "last.pt").write_bytes(b"weights")
    (run / "final.pt").symlink_to(outside)
    copy_file(run / "last.pt", run / "final.pt")
    assert (run / "final.pt").read_bytes() == b"weights" and not (run / "final.pt").is_symlink()
    (run / ".hydra" / "hydra.yaml").symlink_to(outside)
    (run / ".hydra" / "config.yaml").write_text("kept")
    removed = remove_links(run, [".hydra", ".hydra/*.yaml"])
    assert removed == [run / ".hydra" / "hydra.yaml"]
    assert (run / ".hydra" / "config.yaml").read_text() == "kept"
    assert outside.read_text() == "precious"


def test_a_planted_lock_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    assert not locked_by_someone(run)
    with RunLock(run):
        assert not (run / ".lock").is_symlink()
    assert target.read_text() == "keep"


def test_a_folder_in_a_files_place_is_one_sentence_and_stays(tmp_path):
    (tmp_path / "predictions.csv").mkdir()
    with pytest.raises(DltrainError, match="a folder is in its place"):
        write_atomic(tmp_path / "predictions.csv", "a\n")
    assert (tmp_path / "predictions.csv").is_dir() and not list(tmp_path.glob(".*.tmp"))
