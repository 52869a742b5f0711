import os
import stat

import pytest

from seqgen.fileio import WriteError, atomic_path, atomic_write_text


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_files_get_the_usual_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_write_error(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="cannot write"):
            atomic_write_text(d / "f.txt", "x")
    finally:
        d.chmod(0o700)


def test_a_file_in_place_of_the_directory_is_a_write_error(tmp_path):
    (tmp_path / "notadir").write_text("x")
    with pytest.raises(WriteError, match="cannot write"):
        atomic_write_text(tmp_path / "notadir" / "f.txt", "y")


def test_the_rename_is_flushed_to_disk_too(tmp_path, monkeypatch):
    """After the file's data, the directory entry: a power cut after save keeps the new file."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(tmp_path / "a.json", "{}")
    assert synced == ["file", "dir"]
