"""The export's metadata file: the current layout, older and newer ones."""

import json
import os

import pytest

from keras_ltpa.serving import metadata


def _write(folder, content):
    path = folder / metadata.METADATA_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(content))


def test_layout_0_1_0_is_read_with_its_missing_entries(tmp_path):
    _write(tmp_path, {"format": "keras_ltpa SavedModel", "top_k": 5, "fold_max_difference": 1e-6})
    read = metadata.read_metadata(tmp_path)
    assert read["metadata_version"] == metadata.METADATA_VERSION
    assert read["limits"] == {
        "max_image_pixels": None, "max_batch_size": None, "max_request_pixels": None,
    }
    assert read["warmup"] == {"skipped": "exported by keras-ltpa 0.1.0"}
    assert read["fold_max_relative_difference"] is None and read["top_k"] == 5


def test_the_current_layout_is_read_as_written(tmp_path):
    limits = {"max_image_pixels": 4096, "max_batch_size": 8, "max_request_pixels": 10000}
    content = {"metadata_version": metadata.METADATA_VERSION, "limits": limits}
    _write(tmp_path, content)
    assert metadata.read_metadata(str(tmp_path)) == content


def test_layout_2_without_a_request_limit_reads_it_as_none(tmp_path):
    """Exports written before `max_request_pixels` check no request total."""
    limits = {"max_image_pixels": 4096, "max_batch_size": 8}
    _write(tmp_path, {"metadata_version": 2, "limits": limits, "top_k": 3})
    read = metadata.read_metadata(tmp_path)
    assert read == {
        "metadata_version": 2, "top_k": 3,
        "limits": {"max_image_pixels": 4096, "max_batch_size": 8, "max_request_pixels": None},
    }


def test_newer_missing_or_broken_metadata_is_refused_by_path(tmp_path):
    path = os.path.join(str(tmp_path), metadata.METADATA_FILE)
    with pytest.raises(ValueError, match="Cannot read the export's metadata") as error:
        metadata.read_metadata(tmp_path)
    assert path in str(error.value)
    _write(tmp_path, {"metadata_version": metadata.METADATA_VERSION + 1})
    with pytest.raises(ValueError, match="newer than this keras-ltpa reads"):
        metadata.read_metadata(tmp_path)
    (tmp_path / metadata.METADATA_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="Cannot read the export's metadata"):
        metadata.read_metadata(tmp_path)
