"""The run directory: finding a run's model and class names, the resume guard."""

import json

import pytest

from keras_ltpa import build_model
from keras_ltpa.train import runs


def test_find_model_file_looks_where_training_writes(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.keras").write_text("")
    assert runs.find_model_file(tmp_path) == str(tmp_path / "checkpoints" / "last.keras")
    # An unfinished run: its best checkpoint comes before its last.
    (tmp_path / "checkpoints" / "best.keras").write_text("")
    assert runs.find_model_file(tmp_path) == str(tmp_path / "checkpoints" / "best.keras")
    (tmp_path / "model.keras").write_text("")
    assert runs.find_model_file(tmp_path) == str(tmp_path / "model.keras")


def test_find_model_file_in_other_folders_and_errors(tmp_path):
    (tmp_path / "checkpoint.keras").write_text("")
    assert runs.find_model_file(tmp_path) == str(tmp_path / "checkpoint.keras")
    (tmp_path / "other.keras").write_text("")
    with pytest.raises(ValueError, match="checkpoint.keras, other.keras"):
        runs.find_model_file(tmp_path)
    (tmp_path / "weights.h5").write_text("")
    with pytest.raises(ValueError, match="weights.h5"):
        runs.find_model_file(tmp_path / "weights.h5")
    with pytest.raises(ValueError, match="does not exist"):
        runs.find_model_file(tmp_path / "missing")


def test_run_class_names(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert runs.run_class_names(tmp_path / "checkpoints" / "best.keras") is None
    (tmp_path / "config.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    assert runs.run_class_names(tmp_path) == ["cat", "dog"]
    assert runs.run_class_names(tmp_path / "model.keras") == ["cat", "dog"]
    assert runs.run_class_names(tmp_path / "checkpoints" / "best.keras") == ["cat", "dog"]
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="config.json"):
        runs.run_class_names(tmp_path)


def test_class_names_come_from_the_flag_the_model_then_the_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"class_names": ["x", "y", "z"]}))
    unnamed = build_model(3, width_multiplier=0.0625)
    named = build_model(3, width_multiplier=0.0625, class_names=["a", "b", "c"])
    assert runs.class_names_of(named, tmp_path, ["p", "q", "r"]) == ["p", "q", "r"]
    assert runs.class_names_of(named, tmp_path) == ["a", "b", "c"]
    assert runs.class_names_of(unnamed, tmp_path) == ["x", "y", "z"]
    assert runs.class_names_of(unnamed, tmp_path / "a" / "b" / "m.keras") is None


def test_load_model_from_a_run_directory(tmp_path):
    model = build_model(3, width_multiplier=0.0625, class_names=["a", "b", "c"])
    runs.save_model(model, tmp_path / "model.keras")
    loaded = runs.load_model(tmp_path)
    assert loaded.class_names == ["a", "b", "c"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_check_resume_refuses_another_model(tmp_path):
    settings = {key: None for key in runs.RESUME_KEYS}
    runs.check_resume(tmp_path, dict(settings, variant="att3-concat-pc"))  # No run yet.
    (tmp_path / "config.json").write_text(json.dumps(dict(settings, variant="noatt")))
    runs.check_resume(tmp_path, dict(settings, variant="noatt"))
    with pytest.raises(ValueError, match="variant='noatt'"):
        runs.check_resume(tmp_path, dict(settings, variant="att3-concat-pc"))
