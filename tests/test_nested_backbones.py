"""Everything downstream of a model whose backbone is one nested model: a
keras-hub ResNet (basic blocks, its preset's image converter) and a
keras.applications MobileNetV3Small (random weights, pixel statistics), both
at 64x64 with trained-like batch-norm statistics: `.keras` in safe mode,
`attention_model`, `describe`, Grad-CAM, overlays, the SavedModel export
with both signatures (TensorFlow only) and a preset."""

import json

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import backbones
from keras_ltpa.evaluation import gradcam
from keras_ltpa.evaluation import overlays
from tests.backbones.conftest import IMAGE_SHAPE
from tests.backbones.conftest import all_layers
from tests.backbones.conftest import hub_preset  # noqa: F401  (the fixture)
from tests.backbones.conftest import randomize_batch_norm
from tests.conftest import require_package

EPS32 = float(np.finfo("float32").eps)
CLASS_NAMES = ["cat", "dog", "horse", "ship"]
KINDS = ["keras-hub", "keras.applications"]
# Map sizes at strides 8, 16 and 32 of a 64x64 input.
MAP_SIZES = [(8, 8), (4, 4), (2, 2)]


def _depth(model):
    """Layers with weights a value passes through, at most (the bound's depth)."""
    return sum(1 for layer in all_layers(model) if layer.weights and not isinstance(layer, keras.Model))


def _images(count=3, seed=0, shape=IMAGE_SHAPE):
    # Smooth random images (blocks of 8 pixels plus noise): attention maps
    # of photos are not flat, nor are these.
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, shape[0] // 8, shape[1] // 8, 3))
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2) + rng.normal(0, 10, (count, *shape))
    return np.clip(images, 0, 255).astype("uint8")


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value), "float64")


@pytest.fixture(scope="module", params=KINDS)
def nested(request):
    """(kind, model): 4 classes, 64x64, the backbone one nested model."""
    keras.utils.set_random_seed(11)
    if request.param == "keras-hub":
        require_package("keras_hub", "hub")
        model = keras_ltpa.build_model(
            4, IMAGE_SHAPE, backbone=request.getfixturevalue("hub_preset"), class_names=CLASS_NAMES
        )
    else:
        model = keras_ltpa.build_model(
            4, IMAGE_SHAPE, backbone="mobilenetv3small", weights="none", class_names=CLASS_NAMES
        )
    randomize_batch_norm(model)
    return request.param, model


def test_the_backbone_is_one_nested_model(nested):
    _, model = nested
    (taps,) = backbones.backbone_layers(model)
    assert isinstance(taps, keras.Model) and taps.name.endswith("_taps")


def test_a_keras_file_loads_in_safe_mode_with_equal_logits(nested, tmp_path):
    _, model = nested
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    assert isinstance(loaded, keras_ltpa.AttentionClassifier)
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    images = _images().astype("float32")
    expected = _numpy(model(images))
    # Same weights and graph; only the summation order of a kernel may
    # differ: ~4 eps of a layer's peak per layer, over the model's depth.
    bound = 4 * _depth(model) * EPS32 * np.abs(expected).max()
    np.testing.assert_allclose(_numpy(loaded(images)), expected, rtol=0, atol=bound)
    assert keras_ltpa.describe(loaded) == keras_ltpa.describe(model)


def test_a_preset_round_trips_with_equal_logits(nested, tmp_path):
    _, model = nested
    folder = model.save_to_preset(tmp_path / "preset")
    loaded = keras_ltpa.AttentionClassifier.from_preset(folder)
    images = _images().astype("float32")
    expected = _numpy(model(images))
    bound = 4 * _depth(model) * EPS32 * np.abs(expected).max()  # as for the .keras file
    np.testing.assert_allclose(_numpy(loaded(images)), expected, rtol=0, atol=bound)
    metadata = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert metadata["class_names"] == CLASS_NAMES and metadata["input_shape"] == list(IMAGE_SHAPE)


def test_describe_says_what_the_model_is(nested, hub_preset):  # noqa: F811
    kind, model = nested
    facts = keras_ltpa.describe(model)
    assert facts["input_shape"] == IMAGE_SHAPE and facts["num_classes"] == 4
    assert facts["class_names"] == CLASS_NAMES and facts["attention_count"] == 3
    assert facts["cam_layer"] is None  # Grad-CAM explains the backbone's last stage instead.
    if kind == "keras-hub":
        # The preset's image converter: pretrained preprocessing, no pixel statistics.
        assert facts["backbone"] == hub_preset and facts["backbone_weights"] == "preset"
        assert isinstance(facts["preprocessing"], dict)
        assert facts["pixel_mean"] is None and facts["pixel_std"] is None
    else:
        assert (facts["backbone"], facts["backbone_weights"]) == ("mobilenetv3small", "none")
        assert facts["preprocessing"] == "pixel_stats" and len(facts["pixel_mean"]) == 3


def test_attention_model_gives_softmax_maps_of_its_scores(nested):
    _, model = nested
    images = _images().astype("float32")
    outputs = {key: _numpy(value) for key, value in keras_ltpa.attention_model(model)(images).items()}
    np.testing.assert_allclose(outputs["logits"], _numpy(model(images)), rtol=0,
                               atol=4 * _depth(model) * EPS32 * np.abs(outputs["logits"]).max())
    for index, size in enumerate(MAP_SIZES, 1):
        scores, attention = outputs[f"scores_{index}"], outputs[f"attention_{index}"]
        assert attention.shape == (3, *size)
        # The paper's softmax over all positions, re-derived in float64:
        # float32 exp and sum are within a few eps of the map's peak.
        flat = scores.reshape(3, -1)
        expected = np.exp(flat - flat.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(attention.reshape(3, -1), expected, rtol=0, atol=8 * EPS32 * expected.max())
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=8 * EPS32)


def test_grad_cam_explains_the_last_stage(nested):
    _, model = nested
    images = _images(2)
    maps = gradcam.grad_cam(model, images, class_index=1)
    assert maps.shape == (2, *MAP_SIZES[-1]) and maps.dtype == np.float32
    assert (maps >= 0).all()
    np.testing.assert_array_equal(gradcam.grad_cam(model, images, layer=model.global_layer, class_index=1), maps)
    # The split the maps come from computes the model itself: the logits
    # rebuilt from the last stage's map equal the model's.
    features, head = gradcam._tapped_split(model)
    activations, constants = features(images.astype("float32"))
    expected = _numpy(model(images.astype("float32")))
    np.testing.assert_allclose(_numpy(head(activations, constants)), expected, rtol=0,
                               atol=4 * _depth(model) * EPS32 * np.abs(expected).max())
    with pytest.raises(ValueError, match=f"is not a layer of model .*last stage '{model.global_layer}'"):
        gradcam.grad_cam(model, images, layer="no_such_layer")


def test_grad_cam_of_the_plain_baseline_is_its_classifier_on_the_map():
    """With the classifier on g = mean_hw(A) alone, d logit_c / dA_k =
    W[k, c] / (h w) everywhere, so cam = relu(sum_k W[k, c] A_k / (h w)):
    re-derived here in NumPy from the backbone's own map."""
    keras.utils.set_random_seed(3)
    model = keras_ltpa.build_model(4, IMAGE_SHAPE, backbone="mobilenetv3small", weights="none",
                                   attention_layers=())
    randomize_batch_norm(model)
    images = _images(2)
    maps = gradcam.grad_cam(model, images, class_index=2)
    (taps,) = backbones.backbone_layers(model)
    stage = keras.Model(taps.inputs, taps.get_layer(model.global_layer).output)
    activations = _numpy(stage(model.get_layer("pixel_normalization")(images.astype("float32"))))
    kernel = _numpy(model.get_layer("classifier").kernel)
    height, width = activations.shape[1:3]
    expected = np.maximum((activations * kernel[:, 2]).sum(axis=-1) / (height * width), 0)
    # float32 products and sums over C channels: a few eps of the peak term.
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-5 * np.abs(activations * kernel[:, 2]).max())


def test_overlays_are_drawn_at_the_models_resolution(nested, tmp_path):
    _, model = nested
    images = _images(2)
    probabilities, maps = overlays.attention_maps(model, images)
    assert probabilities.shape == (2, 4) and [m.shape[1:] for m in maps] == MAP_SIZES
    # A photo of another size is resized to the model's 64x64 first.
    larger = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    again, resized_maps = overlays.attention_maps(model, larger)
    assert [m.shape[1:] for m in resized_maps] == MAP_SIZES
    grid = overlays.attention_grid(model, images, class_names=CLASS_NAMES, tile_size=64)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[0] >= 2 * 64
    (path,) = overlays.save_attention_grids(model, images, tmp_path, class_names=CLASS_NAMES)
    assert path.endswith(".png")


@pytest.mark.tf_only
@pytest.mark.slow
def test_the_export_answers_both_signatures_with_the_maps(nested, tmp_path):
    import tensorflow as tf

    from keras_ltpa.serving import export

    _, model = nested
    path = export.export_saved_model(model, tmp_path, name="nested", top_k=2, warmup_requests=False)
    info = export.read_metadata(path)
    loaded = tf.saved_model.load(path)
    images = _images(2)
    by_pixels = loaded.signatures["serving_default"](images=tf.constant(images))
    encoded = tf.stack([tf.io.encode_png(image) for image in images])
    by_bytes = loaded.signatures["serve_bytes"](image_bytes=encoded)
    keras_out = {key: _numpy(value) for key, value in keras_ltpa.attention_model(model)(
        images.astype("float32")).items()}
    # Batch norm folded into the convolutions (also inside the nested
    # backbone) reorders float32 products: 2 x 4 eps of each output's peak
    # per layer over the model's depth.
    bound = 2 * 4 * _depth(model) * EPS32
    for out in (by_pixels, by_bytes):
        out = {key: value.numpy() for key, value in out.items()}
        for key in ["probabilities"] + [f"attention_{k}" for k in (1, 2, 3)]:
            reference = keras_out[key]
            assert out[key].shape == reference.shape
            difference = np.abs(out[key] - reference).max(axis=tuple(range(1, reference.ndim)))
            assert (difference <= bound * np.abs(reference).max(axis=tuple(range(1, reference.ndim)))).all(), key
        for index, size in enumerate(MAP_SIZES, 1):
            assert out[f"attention_{index}_full"].shape == (2, 64, 64)
        names = out["class_names"].astype(str)
        assert names.shape == (2, 2) and set(names.ravel()) <= set(CLASS_NAMES)
    # PNG is lossless: both signatures saw the same pixels.
    np.testing.assert_array_equal(by_bytes["probabilities"].numpy(), by_pixels["probabilities"].numpy())
    # Folded, nested batch norms included, and said so in the export's metadata.
    assert info["batch_norm_folded"] is True and info["folded_layers"], info
    assert info["fold_max_relative_difference"] <= bound


def test_a_saved_model_keeps_the_trainable_flags_of_its_current_stage(tmp_path):
    # Stage 1 freezes the backbone (and a checkpoint records the config),
    # stage 2 unfreezes it but for batch norm: a file saved then must
    # reload with stage 2's flags, so that training it goes on as it was.
    model = keras_ltpa.build_model(4, IMAGE_SHAPE, backbone="mobilenetv3small", weights="none")
    backbones.freeze_backbone(model)
    frozen_trainable = len(model.trainable_weights)
    model.get_config()
    backbones.unfreeze_backbone(model)
    assert len(model.trainable_weights) > frozen_trainable
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    trainable = lambda m: sorted(v.path for v in m.trainable_weights)  # noqa: E731
    assert trainable(loaded) == trainable(model)
    batch_norms = [layer for layer in all_layers(loaded) if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
