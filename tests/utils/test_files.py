"""keras_ltpa.utils.files: atomic writes, JSON, and the mode of renamed outputs."""

import json
import os
import tempfile

import pytest

from keras_ltpa.utils import files


def _usual(base):
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def test_write_atomically_writes_with_the_usual_mode(tmp_path):
    path = tmp_path / "new" / "folder" / "out.txt"
    seen = []

    def write(temporary):
        seen.append(temporary)
        with open(temporary, "w") as file:
            file.write("done")

    assert files.write_atomically(path, write) == os.fspath(path)
    assert path.read_text() == "done"
    # The temporary file sat beside the target, kept its extension and is gone.
    assert os.path.dirname(seen[0]) == os.fspath(path.parent)
    assert os.path.basename(seen[0]).startswith(files.TEMPORARY_PREFIX)
    assert seen[0].endswith(".txt")
    assert os.listdir(path.parent) == ["out.txt"]
    assert os.stat(path).st_mode & 0o777 == _usual(0o666)


def test_write_atomically_failure_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def write(temporary):
        with open(temporary, "w") as file:
            file.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.write_atomically(path, write)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_json_sorted_or_in_order(tmp_path):
    value = {"b": 1, "a": [1.5, None]}
    files.write_json(tmp_path / "sorted.json", value)
    files.write_json(tmp_path / "ordered.json", value, sort_keys=False)
    assert (tmp_path / "sorted.json").read_text() == (
        '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}\n'
    )
    ordered = (tmp_path / "ordered.json").read_text()
    assert ordered.index('"b"') < ordered.index('"a"')
    assert json.loads(ordered) == value


def test_set_usual_mode_opens_private_temporary_folders(tmp_path):
    folder = tempfile.mkdtemp(dir=tmp_path)
    assert os.stat(folder).st_mode & 0o777 == 0o700
    files.set_usual_mode(folder)
    assert os.stat(folder).st_mode & 0o777 == _usual(0o777)
