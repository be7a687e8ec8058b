"""Atomic writes leave either the old file or the new one, never a partial file."""

import errno
import os
import stat

import pytest

from quantkit.atomic import atomic_open, check_writable_dir, replacing, write_json, write_text
from quantkit.errors import WriteError


def test_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "file.txt"
    write_text(path, "first")
    write_text(path, "second")
    assert path.read_text() == "second"
    assert list(path.parent.iterdir()) == [path]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "file.json"
    write_json(path, {"b": 1, "a": 2})
    before = path.read_text()
    with pytest.raises(RuntimeError), atomic_open(path, "w") as handle:
        handle.write("{partial")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == before
    assert list(tmp_path.iterdir()) == [path]


def test_json_is_stable(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


@pytest.fixture
def umask():
    """Run a test under a chosen umask, restoring the process's own afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path, umask, mask, mode):
    umask(mask)
    write_json(tmp_path / "scores.json", {"a": 1})
    with replacing(tmp_path / "model.safetensors") as tmp, open(tmp, "wb") as handle:  # libraries write by path
        handle.write(b"x")
    assert stat.S_IMODE((tmp_path / "scores.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == mode


def test_a_full_disk_is_a_one_line_write_error_that_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "index.html"
    write_text(path, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"cannot write .*index.html: No space left on device: free some space"):
        write_text(path, "new")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_a_file_where_a_folder_should_be_is_a_write_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="cannot write"):
        write_text(tmp_path / "file" / "x.json", "{}")
    with pytest.raises(WriteError, match="is a file, not a folder"):
        check_writable_dir(tmp_path / "file", "report folder (--out)")
    with pytest.raises(WriteError, match="is not writable"):
        check_writable_dir(tmp_path / "file" / "sub", "cache folder")
