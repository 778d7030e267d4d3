"""The run directory: finding a run's model and class names, the resume guard."""

import dataclasses
import json

import pytest

from keras_ltpa import build_model
from keras_ltpa.train import runs
from keras_ltpa.train.config import TrainingConfig


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


# A run of width 1/16, dropout 0.5, 32x32 images and two classes, as its
# config.json records it; each case resumes it with one of those changed.
RUN_SETTINGS = dict(
    dataclasses.asdict(TrainingConfig()),
    width_multiplier=0.0625, dropout=0.5, image_size=32, class_names=["cat", "dog"],
)


@pytest.mark.parametrize(
    "key, other",
    [
        ("width_multiplier", 0.125),
        ("dropout", 0.0),
        ("image_size", 64),
        ("class_names", ["dog", "cat"]),  # The same classes, another order.
        ("ema", True),  # The backup holds no averages to restore.
    ],
)
def test_check_resume_refuses_another_model_setting(tmp_path, key, other):
    (tmp_path / runs.CONFIG_FILE).write_text(json.dumps(RUN_SETTINGS))
    runs.check_resume(tmp_path, dict(RUN_SETTINGS))  # Same settings: resumes.
    # Settings that do not change the model may change.
    runs.check_resume(tmp_path, dict(RUN_SETTINGS, epochs=RUN_SETTINGS["epochs"] + 1))
    with pytest.raises(ValueError) as error:
        runs.check_resume(tmp_path, dict(RUN_SETTINGS, **{key: other}))
    message = str(error.value)
    assert f"{key}={RUN_SETTINGS[key]!r}" in message and f"{key}={other!r}" in message
    assert str(tmp_path) in message and "--output-dir" in message


def test_accuracy_milestones_give_the_first_epoch_and_the_time_to_it():
    rows = [
        {"epoch": "0", "val_accuracy": "0.70", "epoch_seconds": "100"},
        {"epoch": "1", "val_accuracy": "0.86", "epoch_seconds": "90"},  # passes 0.8 and 0.85 at once
        {"epoch": "2", "val_accuracy": "0.84", "epoch_seconds": "95"},
        {"epoch": "3", "val_accuracy": "0.90", "epoch_seconds": "80"},  # exactly 0.9 counts
    ]
    assert runs.accuracy_milestones(rows) == [
        {"threshold": 0.8, "epoch": 2, "wall_seconds": 190.0},
        {"threshold": 0.85, "epoch": 2, "wall_seconds": 190.0},
        {"threshold": 0.9, "epoch": 4, "wall_seconds": 365.0},
    ]
    # A history written before epoch times were recorded: epochs, no times.
    untimed = [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]
    assert runs.accuracy_milestones(untimed, thresholds=(0.9,)) == [
        {"threshold": 0.9, "epoch": 4, "wall_seconds": None}]
    assert runs.accuracy_milestones(rows, thresholds=(0.95,)) == []
