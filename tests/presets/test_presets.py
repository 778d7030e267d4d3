"""Presets: shipped, loadable in safe mode everywhere, reproducing their accuracy."""

import importlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import presets
from keras_ltpa.evaluation.accuracy import subset_scores
from tests.conftest import REPO_ROOT

SHIPPED = ("cifar10-att3-w0125", "cifar10-vgg-w0125", "cifar10-att3-w025", "cifar10-vgg-w025")
METADATA_KEYS = {
    "name", "description", "dataset", "variant", "backbone", "width_multiplier", "input_shape",
    "class_names", "test_accuracy", "test_examples", "subset", "epochs", "recipe", "command",
    "training", "code_version",
}
# What keras-hub's `save_to_preset` writes in metadata.json.
KERAS_HUB_KEYS = {"keras_version", "keras_hub_version", "parameter_count", "date_saved", "tasks"}


def test_the_cifar10_presets_are_shipped():
    assert set(SHIPPED) <= set(keras_ltpa.list_presets())


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_loads_in_safe_mode_as_its_metadata_says(name):
    metadata = keras_ltpa.preset_metadata(name)
    assert METADATA_KEYS | KERAS_HUB_KEYS <= set(metadata)
    assert sorted(os.listdir(presets.preset_dir(name))) == sorted(presets.PRESET_FILES)
    model = keras_ltpa.load_preset(name)  # config.json rebuilt with safe_mode=True
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["command"] == metadata["training"]["command"]
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
