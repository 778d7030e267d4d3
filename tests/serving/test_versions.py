"""Version folders: numbering, refusal to overwrite, atomic publishing."""

import os
import re

import pytest

from keras_ltpa.serving import versions


def test_versions_are_the_numbered_folders(tmp_path):
    assert versions.model_versions(tmp_path / "missing") == []
    assert versions.next_version(tmp_path / "missing") == 1
    for entry in ("3", "12", "notes", ".staging-13-abc"):
        (tmp_path / entry).mkdir()
    (tmp_path / "20").write_text("a file, not a version")
    assert versions.model_versions(tmp_path) == [3, 12]
    assert versions.next_version(tmp_path) == 13


def test_an_existing_version_is_refused(tmp_path):
    (tmp_path / "2").mkdir()
    assert versions.free_version_dir(str(tmp_path), "m", 3) == os.path.join(str(tmp_path), "3")
    with pytest.raises(ValueError, match=re.escape(f"Version 2 of model 'm' already exists at '{tmp_path}")):
        versions.free_version_dir(str(tmp_path), "m", 2)


def test_publish_renames_the_complete_staging_folder(tmp_path):
    model_dir = tmp_path / "m"
    seen = {}

    def write(path):
        seen["entries"] = os.listdir(model_dir)
        with open(os.path.join(path, "saved_model.pb"), "w") as file:
            file.write("complete")

    versions.publish_version(str(model_dir), str(model_dir / "1"), write)
    # While writing, the only entry was hidden and not a number.
    assert len(seen["entries"]) == 1 and seen["entries"][0].startswith(".staging-1-")
    assert os.listdir(model_dir) == ["1"]
    assert (model_dir / "1" / "saved_model.pb").read_text() == "complete"
    # The mode mkdir gives, not mkdtemp's 0o700: TF Serving may run as another user.
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(model_dir / "1").st_mode & 0o777 == 0o777 & ~umask


def test_a_failed_write_leaves_nothing(tmp_path):
    def write(path):
        (tmp_path / os.path.basename(path) / "saved_model.pb").write_text("partial")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        versions.publish_version(str(tmp_path), str(tmp_path / "1"), write)
    assert os.listdir(tmp_path) == []


def test_a_version_that_appears_meanwhile_is_left_untouched(tmp_path):
    def write(path):
        # Another export publishes the same version first.
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "theirs").write_text("kept")
        (tmp_path / os.path.basename(path) / "ours").write_text("ours")

    with pytest.raises(ValueError, match="appeared while exporting"):
        versions.publish_version(str(tmp_path), str(tmp_path / "1"), write)
    assert os.listdir(tmp_path) == ["1"]
    assert os.listdir(tmp_path / "1") == ["theirs"]
