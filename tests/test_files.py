"""dltrain.files: the atomic writer every run-folder file goes through, and the one-writer lock."""

import pytest

from dltrain.errors import DltrainError
from dltrain.files import RunLock, locked_by_someone, remove_orphan_temporaries, write_atomic, write_json


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
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.tmp").write_bytes(b"a fold's own")
    removed = remove_orphan_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "sub"]
    assert (tmp_path / "sub" / ".x.tmp").exists()


def test_a_second_writer_is_refused_and_the_lock_is_released_on_exit(tmp_path):
    assert not locked_by_someone(tmp_path)
    with RunLock(tmp_path):
        assert locked_by_someone(tmp_path)
        with pytest.raises(DltrainError, match="in use by another dltrain process"):
            RunLock(tmp_path).acquire()
    assert not locked_by_someone(tmp_path)
    RunLock(tmp_path).acquire().release()


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
