"""Atomic writes leave either the old file or the new one, never a partial file."""

import pytest

from quantkit.atomic import atomic_open, write_json, write_text


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
