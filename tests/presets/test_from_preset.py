"""`AttentionClassifier.from_preset` and `save_to_preset`: keras-hub's layout
(config.json, model.weights.h5, metadata.json) for a built-in preset, a local
folder, a keras-hub backbone inside and a model hub handle (its client
replaced by a local copy); the first layout still loads; every broken file is
one line naming it; a preset is float32 and never half-written."""

import json
import os
import shutil
import sys
import time

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import presets
from keras_ltpa.backbones import downloads
from keras_ltpa.model import AttentionClassifier
from keras_ltpa.presets import layout
from tests.backbones.conftest import IMAGE_SHAPE
from tests.backbones.conftest import all_layers
from tests.backbones.conftest import hub_preset  # noqa: F401  (the fixture)
from tests.backbones.conftest import randomize_batch_norm
from tests.conftest import FIXTURES_ROOT
from tests.conftest import require_package

PRESET = "cifar10-att3-w0125"
KERAS_HUB_KEYS = {"keras_version", "keras_hub_version", "parameter_count", "date_saved", "tasks"}
EPS32 = float(np.finfo("float32").eps)


def _images(shape, count=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


def _logits(model, images):
    return np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), "float64")


def assert_same_model(loaded, model, images):
    """Bitwise equal weights, and logits equal within float32 rounding."""
    assert type(loaded) is type(model)
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    expected, got = _logits(model, images), _logits(loaded, images)
    # Same weights and graph on the same backend; two model instances may
    # still be compiled to kernels that sum in another order. A float32 sum
    # rounds by at most ~4 eps of its layer's peak per layer; through at most
    # 16 layers that is 64 eps (7.6e-6) of the largest logit.
    np.testing.assert_allclose(got, expected, rtol=0, atol=64 * EPS32 * np.abs(expected).max())


def one_line_error(call, *args):
    with pytest.raises(ValueError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --- Round trips ----------------------------------------------------------


def test_a_built_in_preset_round_trips_through_a_folder(tmp_path):
    model = AttentionClassifier.from_preset(PRESET)
    same = AttentionClassifier.from_preset("preset:" + PRESET)
    images = _images((32, 32, 3))
    assert_same_model(same, model, images)
    recorded = keras_ltpa.preset_metadata(PRESET)
    folder = model.save_to_preset(tmp_path / "copy", metadata=recorded)
    assert folder == str(tmp_path / "copy")
    assert sorted(os.listdir(folder)) == sorted(presets.PRESET_FILES)
    assert_same_model(AttentionClassifier.from_preset(folder), model, images)
    metadata = json.loads((tmp_path / "copy" / "metadata.json").read_text())
    for key in ("subset", "test_accuracy", "command", "training", "class_names", "dataset"):
        assert metadata[key] == recorded[key], key


def test_a_fresh_model_round_trips_with_its_metadata(tmp_path):
    keras.utils.set_random_seed(3)
    names = [f"class {i}" for i in range(10)]
    model = keras_ltpa.build_model(10, width_multiplier=0.0625, variant="att2-indep-dp", class_names=names)
    randomize_batch_norm(model)
    model.compile(optimizer="sgd", loss="mse")
    folder = model.save_to_preset(str(tmp_path / "mine"), {"dataset": "mine", "recipe": "budget"})
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # No temporary folder left.
    loaded = AttentionClassifier.from_preset(folder)
    assert_same_model(loaded, model, _images((32, 32, 3)))
    assert getattr(loaded, "optimizer", None) is None
    assert keras_ltpa.describe(loaded) == keras_ltpa.describe(model)
    metadata = json.loads((tmp_path / "mine" / "metadata.json").read_text())
    assert KERAS_HUB_KEYS <= set(metadata)
    assert metadata["keras_version"] == keras.version()
    assert metadata["parameter_count"] == model.count_params()
    assert (metadata["variant"], metadata["backbone"]) == ("att2-indep-dp", "vgg")
    assert (metadata["input_shape"], metadata["class_names"]) == ([32, 32, 3], names)
    assert (metadata["dataset"], metadata["recipe"]) == ("mine", "budget")
    config = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert config["registered_name"] == "keras_ltpa>AttentionClassifier"
    assert "compile_config" not in json.dumps(config)


@pytest.mark.parametrize("source", ["backbone object", "preset folder"])
def test_a_keras_hub_backbone_round_trips(hub_preset, tmp_path, source):  # noqa: F811
    require_package("keras_hub", "hub")
    import keras_hub

    keras.utils.set_random_seed(5)
    backbone = hub_preset
    if source == "backbone object":
        backbone = keras_hub.models.Backbone.from_preset(hub_preset)
    model = keras_ltpa.build_model(4, IMAGE_SHAPE, backbone=backbone)
    randomize_batch_norm(model)
    folder = model.save_to_preset(tmp_path / "hub")
    config = (tmp_path / "hub" / "config.json").read_text()
    assert '"keras_hub>ResNetBackbone"' in config
    loaded = AttentionClassifier.from_preset(folder)
    assert_same_model(loaded, model, _images(IMAGE_SHAPE))
    assert keras_ltpa.describe(loaded) == keras_ltpa.describe(model)
    metadata = keras_ltpa.presets.layout.read_metadata(os.path.join(folder, "metadata.json"), "hub")
    assert metadata["backbone"] == keras_ltpa.describe(model)["backbone"]
    assert metadata["input_shape"] == list(IMAGE_SHAPE)


def test_a_preset_is_saved_in_float32_whatever_trained_it(hub_preset, tmp_path):  # noqa: F811
    require_package("keras_hub", "hub")
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras_ltpa.build_model(4, IMAGE_SHAPE, backbone=hub_preset)
    backbone_layers = [layer for layer in all_layers(model) if "block" in layer.name]
    assert backbone_layers and {layer.dtype_policy.name for layer in backbone_layers} == {"mixed_bfloat16"}
    folder = model.save_to_preset(tmp_path / "bf16-trained")
    keras.config.set_dtype_policy("float32")
    assert "mixed_bfloat16" not in (tmp_path / "bf16-trained" / "config.json").read_text()
    loaded = AttentionClassifier.from_preset(folder)
    assert {layer.dtype_policy.name for layer in all_layers(loaded)} == {"float32"}
    # Mixed-precision variables are float32 already: the weights are kept exactly.
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_the_first_layout_still_loads(tmp_path, monkeypatch):
    """A folder holding `model.keras` + `metadata.json` (a 0.1 model here)
    loads by folder, by name and as `preset:NAME`, answering as when saved."""
    from keras_ltpa.train import runs

    folder = tmp_path / "old-layout"
    folder.mkdir()
    shutil.copy(FIXTURES_ROOT / "legacy_att3_w0.0625.keras", folder / "model.keras")
    (folder / "metadata.json").write_text(json.dumps({"name": "old-layout"}))
    images = np.load(FIXTURES_ROOT / "legacy_images.npy").astype("float32")
    saved = np.load(FIXTURES_ROOT / "legacy_att3_w0.0625_logits.npy")
    monkeypatch.setattr(presets, "PRESETS_DIR", str(tmp_path))
    for model in (
        AttentionClassifier.from_preset(str(folder)),
        keras_ltpa.load_preset("old-layout"),
        runs.load_model("preset:old-layout"),
    ):
        # Saved under TensorFlow; another backend sums the same float32
        # products in another order: ~1e-6 relative, bounded by 1e-4 of the
        # logits' scale (as for the 0.1 files themselves in test_model.py).
        np.testing.assert_allclose(_logits(model, images), saved, atol=1e-4 * np.abs(saved).max())


# --- What is refused, in one line ---------------------------------------------


@pytest.mark.parametrize("file", layout.PRESET_FILES)
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_file_is_named(tmp_path, file, damage):
    folder = tmp_path / "broken"
    shutil.copytree(presets.preset_dir(PRESET), folder)
    if damage == "missing":
        (folder / file).unlink()
    else:
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[: len(data) // 2])
    message = one_line_error(AttentionClassifier.from_preset, str(folder))
    assert message.startswith(f"Preset {str(folder)!r}")
    assert f"{file} is missing" in message if damage == "missing" else file in message
    assert str(folder / file) in message


def test_unknown_names_and_foreign_configs_are_named(hub_preset, tmp_path):  # noqa: F811
    message = one_line_error(AttentionClassifier.from_preset, "no-such")
    assert f"a built-in preset ({', '.join(keras_ltpa.list_presets())})" in message
    assert "hf://OWNER/NAME" in message and message.endswith("received 'no-such' (no such folder).")
    message = one_line_error(keras_ltpa.load_preset, "no-such")
    assert message.startswith("Unknown preset 'no-such'; available: cifar10")
    # A keras-hub backbone preset is a backbone, not a classifier.
    shutil.copytree(hub_preset, tmp_path / "backbone")
    (tmp_path / "backbone" / "metadata.json").write_text("{}")
    message = one_line_error(AttentionClassifier.from_preset, str(tmp_path / "backbone"))
    assert "describes 'keras_hub>ResNetBackbone', not 'keras_ltpa>AttentionClassifier'" in message
    assert "build_model(backbone=FOLDER_OR_HANDLE)" in message


def test_safe_mode_refuses_code_in_a_config(tmp_path):
    """A backbone holding a Lambda layer (arbitrary code) is refused when the
    preset is read: the config is rebuilt with safe_mode=True."""
    def small_backbone(code=False):
        inputs = keras.Input((32, 32, 3))
        x = inputs
        for index in range(1, 6):
            x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name=f"stage{index}")(x)
        if code:
            x = keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(x)
        return keras.Model(inputs, x, name="small")

    model = keras_ltpa.build_model(3, (32, 32, 3), backbone=small_backbone())
    folder = model.save_to_preset(tmp_path / "code")
    with_code = small_backbone(code=True)
    config = json.loads((tmp_path / "code" / "config.json").read_text())
    config["config"]["backbone"] = keras.saving.serialize_keras_object(with_code)
    (tmp_path / "code" / "config.json").write_text(json.dumps(config))
    message = one_line_error(AttentionClassifier.from_preset, folder)
    assert "cannot be rebuilt in safe mode" in message and "config.json" in message
    assert "Lambda" in message or "safe_mode" in message


def test_an_existing_preset_is_replaced_only_by_a_complete_one(tmp_path, monkeypatch):
    model = AttentionClassifier.from_preset(PRESET)
    folder = model.save_to_preset(tmp_path / "kept")
    before = {name: (tmp_path / "kept" / name).read_bytes() for name in layout.PRESET_FILES}
    calls = []

    def failing_write(path, value):
        calls.append(path)
        raise OSError("disk full")

    monkeypatch.setattr(layout, "_write_json", failing_write)
    with pytest.raises(OSError, match="disk full"):
        model.save_to_preset(folder)
    assert calls and sorted(os.listdir(tmp_path)) == ["kept"]  # No temporary folder left.
    assert {name: (tmp_path / "kept" / name).read_bytes() for name in layout.PRESET_FILES} == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    message = one_line_error(model.save_to_preset, tmp_path / "other")
    assert "holds files a preset does not (notes.txt)" in message


# --- Model hub handles ------------------------------------------------------------


@pytest.fixture
def saved_preset(tmp_path):
    keras.utils.set_random_seed(7)
    model = keras_ltpa.build_model(10, width_multiplier=0.0625)
    randomize_batch_norm(model)
    return model, model.save_to_preset(tmp_path / "published")


@pytest.mark.parametrize(
    "handle, client, function",
    [("hf://someone/ltpa-tiny", "huggingface_hub", "hf_hub_download"),
     ("kaggle://someone/ltpa/keras/tiny/2", "kagglehub", "model_download")],
)
def test_a_handle_loads_through_the_hub_client(saved_preset, tmp_path, monkeypatch, handle, client, function):
    module = pytest.importorskip(client)
    model, folder = saved_preset
    cache = tmp_path / "cache"
    cache.mkdir()
    fetched = []

    def download(*args, **kwargs):
        # huggingface_hub: (repo_id=..., filename=...); kagglehub: (handle, path=...).
        name = kwargs.get("filename") or kwargs.get("path")
        fetched.append((kwargs.get("repo_id") or args[0], name))
        return shutil.copy(os.path.join(folder, name), cache / name)

    monkeypatch.setattr(module, function, download)
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=None: (True, None))
    loaded = AttentionClassifier.from_preset(handle)
    assert_same_model(loaded, model, _images((32, 32, 3)))
    where = handle.split("://", 1)[1]
    assert sorted(fetched) == sorted((where, name) for name in layout.PRESET_FILES)


def test_an_hf_handle_without_network_loads_from_the_client_s_cache(saved_preset, no_network,
                                                                   monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    model, folder = saved_preset
    asked = []

    def cached_only(repo_id, filename, local_files_only=False, **kwargs):
        asked.append((repo_id, filename, local_files_only))
        if not local_files_only:
            raise AssertionError("went to the network")
        return os.path.join(folder, filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached_only)
    loaded = AttentionClassifier.from_preset("hf://someone/ltpa-cached")
    assert_same_model(loaded, model, _images((32, 32, 3)))
    assert sorted(asked) == sorted(("someone/ltpa-cached", name, True) for name in layout.PRESET_FILES)

    # One file missing from the cache: the offline line, as without any.
    def partly_cached(repo_id, filename, local_files_only=False, **kwargs):
        if filename == layout.PRESET_FILES[-1]:
            raise FileNotFoundError(filename)
        return os.path.join(folder, filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", partly_cached)
    message = one_line_error(AttentionClassifier.from_preset, "hf://someone/ltpa-cached")
    assert message.startswith("Cannot download preset 'hf://someone/ltpa-cached' (")


@pytest.mark.parametrize("handle, client", [("hf://keras/ltpa-demo", "huggingface_hub"),
                                            ("kaggle://keras/ltpa/keras/demo/1", "kagglehub")])
def test_a_handle_without_network_fails_in_one_line(no_network, handle, client):
    require_package(client, "hub")
    start = time.monotonic()
    message = one_line_error(AttentionClassifier.from_preset, handle)
    assert time.monotonic() - start < 10
    assert message.startswith(f"Cannot download preset {handle!r} (")
    assert "Network is unreachable (simulated)" in message
    assert f"a built-in preset ({', '.join(keras_ltpa.list_presets())}) or a local preset folder" in message


@pytest.mark.parametrize("handle, client", [("hf://keras/ltpa-demo", "huggingface_hub"),
                                            ("kaggle://keras/ltpa/keras/demo/1", "kagglehub")])
def test_a_handle_without_its_hub_client_names_the_package(monkeypatch, handle, client):
    monkeypatch.setitem(sys.modules, client, None)  # a None entry makes the import fail
    message = one_line_error(AttentionClassifier.from_preset, handle)
    assert message == f"Preset {handle!r} is on a model hub, which needs {client}: pip install {client}."


@pytest.mark.parametrize("handle", ["hf://only-a-name", "kaggle://someone/ltpa"])
def test_a_malformed_handle_says_the_form(handle):
    message = one_line_error(AttentionClassifier.from_preset, handle)
    assert message.endswith(f"received {handle!r}.") and "handle is '" in message
