"""Presets: shipped, loadable in safe mode everywhere, reproducing their accuracy."""

import importlib
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import presets
from keras_ltpa.evaluation.accuracy import subset_scores
from tests.conftest import REPO_ROOT
from tests.conftest import tiny_model

SHIPPED = ("cifar10-att3-w0125", "cifar10-vgg-w0125")
METADATA_KEYS = {
    "name", "description", "dataset", "variant", "width_multiplier", "input_shape",
    "class_names", "test_accuracy", "test_examples", "subset", "epochs", "recipe",
    "training", "code_version",
}


def test_the_two_cifar10_presets_are_shipped():
    assert set(SHIPPED) <= set(keras_ltpa.list_presets())


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_loads_in_safe_mode_as_its_metadata_says(name):
    metadata = keras_ltpa.preset_metadata(name)
    assert METADATA_KEYS <= set(metadata)
    model = keras_ltpa.load_preset(name)  # keras.saving.load_model(safe_mode=True)
    facts = keras_ltpa.describe(model)
    assert facts["variant"] == metadata["variant"]
    assert facts["width_multiplier"] == metadata["width_multiplier"]
    assert list(facts["input_shape"]) == metadata["input_shape"]
    assert facts["class_names"] == metadata["class_names"]
    assert getattr(model, "optimizer", None) is None  # weights only, no optimizer state
    size = sum(f.stat().st_size for f in pathlib.Path(presets.preset_dir(name)).iterdir())
    assert size < 8 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_reproduces_its_subset_accuracy(name, shared_data_dir):
    # The first 2,000 CIFAR-10 test images in the loader's fixed order: the
    # full test split is needed to draw them.
    metadata = keras_ltpa.preset_metadata(name)
    model = keras_ltpa.load_preset(name)
    recorded = metadata["subset"]
    scores = subset_scores(model, shared_data_dir / "cifar10")
    assert scores["count"] == recorded["count"] == presets.SUBSET_SIZE
    # Exactly the recorded count, up to the images whose two best logits are
    # within float rounding of each other (recorded beside the count).
    allowed = max(recorded["near_ties"], scores["near_ties"])
    assert abs(scores["correct"] - recorded["correct"]) <= allowed, (scores, recorded)


def test_unknown_and_corrupt_presets_are_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Unknown preset 'no-such'.*available: cifar10"):
        keras_ltpa.load_preset("no-such")
    monkeypatch.setattr(presets, "PRESETS_DIR", str(tmp_path))
    (tmp_path / "broken-metadata").mkdir()
    (tmp_path / "broken-metadata" / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken-metadata.*metadata.json"):
        keras_ltpa.load_preset("broken-metadata")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "metadata.json").write_text("{}")
    with pytest.raises(ValueError, match="no-weights.*model.keras is missing"):
        keras_ltpa.load_preset("preset:no-weights")
    (tmp_path / "bad-weights" ).mkdir()
    (tmp_path / "bad-weights" / "metadata.json").write_text("{}")
    (tmp_path / "bad-weights" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad-weights.*cannot be loaded"):
        keras_ltpa.load_preset("bad-weights")


def test_save_preset_round_trips_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    model = tiny_model(class_names=[f"c{i}" for i in range(10)])
    model.compile(optimizer="sgd", loss="mse")
    folder = presets.save_preset(model, "tiny", {"name": "tiny"}, presets_dir=str(tmp_path))
    assert sorted(os.listdir(folder)) == ["metadata.json", "model.keras"]
    assert sorted(os.listdir(tmp_path)) == ["tiny"]  # no temporary folder left
    monkeypatch.setattr(presets, "PRESETS_DIR", str(tmp_path))
    loaded = keras_ltpa.load_preset("tiny")
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images))
    )
    assert getattr(loaded, "optimizer", None) is None
    assert type(loaded) is type(model)
    assert keras_ltpa.describe(loaded)["class_names"] == keras_ltpa.describe(model)["class_names"]

    def failing_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(presets, "_write_metadata", failing_write)
    with pytest.raises(OSError):
        presets.save_preset(model, "other", {}, presets_dir=str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["tiny"]


@pytest.mark.slow
def test_visualize_a_photo_with_a_preset_from_the_command_line(tmp_path, small_data_dir):
    photo = small_data_dir / "weizmann_horse" / "rgb" / "horse001.jpg"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "visualize.py"),
         "--model", "preset:cifar10-att3-w0125", "--images", str(photo),
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    (grid,) = tmp_path.glob("*.png")
    assert str(grid) in completed.stdout


@pytest.mark.slow
@pytest.mark.tf_only
def test_export_a_preset_and_call_both_signatures(tmp_path, small_data_dir):
    import tensorflow as tf

    export_cli = importlib.import_module("keras_ltpa.cli.export")
    assert export_cli.main(
        ["preset:cifar10-att3-w0125", "--export-dir", str(tmp_path), "--name", "ltpa"]
    ) == 0
    loaded = tf.saved_model.load(str(tmp_path / "ltpa" / "1"))
    photo = (small_data_dir / "cifar10" / "test" / "horse").iterdir().__next__().read_bytes()
    by_bytes = loaded.signatures["serve_bytes"](tf.constant([photo]))
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))[None]
    by_pixels = loaded.signatures["serving_default"](tf.constant(pixels, tf.uint8))
    names = keras_ltpa.preset_metadata("cifar10-att3-w0125")["class_names"]
    for out in (by_bytes, by_pixels):
        assert out["probabilities"].shape == (1, 10)
        assert out["attention_3"].shape[0] == 1
        assert out["class_names"].numpy()[0, 0].decode() in names
    np.testing.assert_allclose(
        by_bytes["probabilities"].numpy(), by_pixels["probabilities"].numpy(), atol=1e-5
    )


def test_a_preset_is_saved_in_float32_whatever_trained_it(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_ltpa.build_model(10, width_multiplier=0.0625)
        assert model.dtype_policy.name == "mixed_bfloat16"
        folder = presets.save_preset(model, "bf16-trained", {"name": "bf16-trained"}, tmp_path)
    finally:
        keras.config.set_dtype_policy(previous)
    loaded = keras.saving.load_model(os.path.join(folder, presets.MODEL_FILE), safe_mode=True)
    policies = {layer.dtype_policy.name for layer in loaded.layers}
    assert policies == {"float32"}, policies
    assert loaded.get_config()["dtype"] == "float32"
