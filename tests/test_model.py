"""build_model / attention_model: every variant, parameter counts, saving."""

import itertools
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import backbones
from keras_ltpa.model import build_model
from keras_ltpa.model import load_model_file
from tests.conftest import require_backend_package

WIDTH = 0.0625  # 4..32 channels: seconds per model on a CPU
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 1])

ALL_VARIANTS = ["noatt"] + [
    "-".join(tokens)
    for tokens in itertools.product(
        ["att3", "att2"],
        ["concat", "indep"],
        ["pc", "dp"],
        ["softmax", "sigmoid"],
        ["before", "after"],
    )
]


def count_parameters(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def hand_count(variant, num_classes, width=1.0):
    """Trainable parameters of a VGG variant, derived layer by layer."""
    w = lambda filters: backbones.scaled_width(filters, width)  # noqa: E731
    total, channels = 0, 3
    convs = [(b, f) for b, n, f in backbones.VGG_BLOCKS for _ in range(n)]
    convs += [(6, backbones.VGG_BLOCK6_FILTERS)] * backbones.VGG_BLOCK6_CONVS
    widths = {}
    for block, filters in convs:
        out = w(filters)
        total += 9 * channels * out + out  # 3x3 kernel + bias
        total += 2 * out  # batch norm gamma, beta
        channels = widths[block] = out
    g = w(backbones.VGG_GLOBAL_UNITS)
    total += channels * g + g  # dense layer at 32x32 input (1x1 kernel)
    if variant == "noatt":
        return total + g * num_classes + num_classes
    tokens = variant.split("-")
    blocks = {"att3": (3, 4, 5), "att2": (4, 5)}[tokens[0]]
    for block in blocks:
        if widths[block] != g:
            total += widths[block] * g  # LinearProjector, no bias
        if "pc" in tokens:
            total += g  # u
    if "concat" in tokens:
        total += len(blocks) * g * num_classes + num_classes
    else:
        total += len(blocks) * (g * num_classes + num_classes)
    return total


def compile_for_test(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_paper_default_parameter_counts_match_reference():
    assert count_parameters(build_model(10).trainable_weights) == 19_855_434
    assert count_parameters(build_model(100).trainable_weights) == 19_993_764
    assert hand_count("att3-concat-pc", 10) == 19_855_434


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_variant_builds_predicts_and_fits(variant):
    model = build_model(3, variant=variant, width_multiplier=WIDTH)
    assert count_parameters(model.trainable_weights) == hand_count(variant, 3, WIDTH)
    attention = keras_ltpa.attention_model(model)
    outputs = attention(IMAGES)
    expected_maps = 0 if variant == "noatt" else int(variant[3])
    assert keras_ltpa.describe(model)["attention_count"] == expected_maps
    probabilities = keras.ops.convert_to_numpy(outputs["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    after = variant.endswith("after")
    sizes = {3: [32, 16, 8], 2: [16, 8]}.get(expected_maps, [])
    if after:
        sizes = [s // 2 for s in sizes]
    for k, size in enumerate(sizes, start=1):
        attention_map = keras.ops.convert_to_numpy(outputs[f"attention_{k}"])
        assert attention_map.shape == (4, size, size)
        if "sigmoid" in variant:
            scores = keras.ops.convert_to_numpy(outputs[f"scores_{k}"]).astype("float64")
            np.testing.assert_allclose(attention_map, 0.5 * (1 + np.tanh(scores / 2)), atol=1e-6)
        else:
            np.testing.assert_allclose(attention_map.sum(axis=(1, 2)), 1.0, atol=1e-5)

    compile_for_test(model)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Every trainable weight moves, except conv biases followed by batch norm,
    # whose gradient is zero up to rounding (BN removes any constant shift).
    # With "pc" and softmax, <u, l_i + g> = <u, l_i> + <u, g>: g adds the
    # same score at every position, which the softmax cancels, so nothing
    # that only feeds g (block 6, the dense layer) gets a gradient, as in the
    # paper's formulation.
    g_cancels = "pc" in variant and "sigmoid" not in variant
    for weight, old in zip(model.weights, before):
        conv_bias_before_bn = "_conv" in weight.path and weight.path.endswith("bias")
        if not weight.trainable or conv_bias_before_bn:
            continue
        change = np.abs(keras.ops.convert_to_numpy(weight) - old).max()
        feeds_only_g = weight.path.startswith(("block6_", "global_dense"))
        if g_cancels and feeds_only_g:
            assert change < 1e-6, weight.path  # rounding only
        else:
            assert change > 0, weight.path


def test_variant_string_matches_keyword_arguments():
    by_string = build_model(5, variant="att2-indep-dp-sigmoid-after", width_multiplier=WIDTH)
    by_kwargs = build_model(
        5,
        attention_layers=(4, 5),
        aggregation="indep",
        compatibility="dp",
        normalization="sigmoid",
        attention_position="after",
        width_multiplier=WIDTH,
    )
    assert by_string.name == by_kwargs.name == "ltpa_att2_indep_dp_sigmoid_after"
    assert [layer.name for layer in by_string.layers] == [
        layer.name for layer in by_kwargs.layers
    ]


def test_attention_false_is_the_plain_baseline():
    model = build_model(10, attention=False, width_multiplier=WIDTH)
    assert keras_ltpa.describe(model)["attention_count"] == 0
    assert count_parameters(model.trainable_weights) == hand_count("noatt", 10, WIDTH)
    assert sorted(keras_ltpa.attention_model(model).output) == ["logits", "probabilities"]


def test_attention_model_shares_weights():
    model = build_model(4, width_multiplier=WIDTH)
    attention = keras_ltpa.attention_model(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(attention(IMAGES)["logits"]),
        keras.ops.convert_to_numpy(model(IMAGES)),
        atol=1e-6,
    )
    classifier = model.get_layer("classifier")
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel, bias + 3.0])
    shifted = keras.ops.convert_to_numpy(attention(IMAGES)["logits"])
    np.testing.assert_allclose(
        shifted, keras.ops.convert_to_numpy(model(IMAGES)), atol=1e-6
    )


def test_raw_uint8_pixels_are_normalised_inside():
    model = build_model(3, width_multiplier=WIDTH)
    as_uint8 = IMAGES.round().astype("uint8")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(as_uint8)),
        keras.ops.convert_to_numpy(model(as_uint8.astype("float32"))),
        atol=1e-5,
    )
    layer = model.get_layer("pixel_normalization")
    normalised = keras.ops.convert_to_numpy(layer(np.full((1, 1, 1, 3), 255.0)))
    expected = [(1 - m) / s for m, s in zip(keras_ltpa.model.CIFAR10_MEAN, keras_ltpa.model.CIFAR10_STD)]
    np.testing.assert_allclose(normalised[0, 0, 0], expected, rtol=1e-5)


def test_larger_input_and_width():
    model = build_model(7, input_shape=(64, 64, 3), width_multiplier=WIDTH)
    outputs = keras_ltpa.attention_model(model)(
        RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    )
    assert tuple(outputs["attention_1"].shape) == (2, 64, 64)
    assert tuple(outputs["logits"].shape) == (2, 7)


def tiny_functional_backbone():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stage2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stage3")(x)
    return keras.Model(inputs, x, name="tiny")


def test_custom_backbone_taps_named_layers():
    model = build_model(
        5,
        backbone=tiny_functional_backbone(),
        attention_layers=("stage1", "stage2"),
        global_layer="stage3",
    )
    outputs = keras_ltpa.attention_model(model)(IMAGES)
    assert tuple(outputs["attention_1"].shape) == (4, 32, 32)
    assert tuple(outputs["attention_2"].shape) == (4, 16, 16)
    # stage1 has 8 channels, g has 16: projected; stage2 already has 16.
    assert model.get_layer("projector_1").kernel.shape == (8, 16)
    assert "projector_2" not in [layer.name for layer in model.layers]


def test_keras_applications_vgg16_backbone():
    vgg16 = keras.applications.VGG16(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    model = build_model(
        10,
        backbone=vgg16,
        attention_layers=("block3_conv3", "block4_conv3", "block5_conv3"),
        global_layer="block5_pool",
    )
    outputs = keras_ltpa.attention_model(model)(IMAGES[:2])
    assert tuple(outputs["attention_1"].shape) == (2, 8, 8)
    assert tuple(outputs["attention_3"].shape) == (2, 2, 2)
    assert tuple(outputs["logits"].shape) == (2, 10)


def save_and_reload(model, path):
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


@pytest.mark.parametrize("variant", ["att3-concat-pc", "att2-indep-dp-sigmoid-after"])
def test_keras_file_round_trip_safe_mode(tmp_path, variant):
    model = build_model(3, variant=variant, width_multiplier=WIDTH)
    compile_for_test(model).fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    restored = save_and_reload(model, tmp_path / "model.keras")
    expected = keras_ltpa.attention_model(model)(IMAGES)
    actual = keras_ltpa.attention_model(restored)(IMAGES)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual[key]),
            keras.ops.convert_to_numpy(expected[key]),
        )


def test_custom_backbone_round_trip(tmp_path):
    model = build_model(
        5,
        backbone=tiny_functional_backbone(),
        attention_layers=("stage1", "stage2"),
        global_layer="stage3",
        aggregation="indep",
    )
    restored = save_and_reload(model, tmp_path / "custom.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(IMAGES)),
        keras.ops.convert_to_numpy(model(IMAGES)),
    )


NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_keras_file_loads_under_another_backend(tmp_path):
    model = build_model(3, width_multiplier=WIDTH)
    compile_for_test(model).fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "images.npy", IMAGES)
    expected = keras_ltpa.attention_model(model).predict(IMAGES, verbose=0)
    other = NEXT_BACKEND[keras.backend.backend()]
    require_backend_package(other)
    script = textwrap.dedent(
        f"""
        import keras, numpy as np, keras_ltpa
        assert keras.backend.backend() == {other!r}
        model = keras.saving.load_model({str(tmp_path / "model.keras")!r}, safe_mode=True)
        out = keras_ltpa.attention_model(model).predict(
            np.load({str(tmp_path / "images.npy")!r}), verbose=0)
        np.savez({str(tmp_path / "out.npz")!r}, **out)
        """
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    actual = np.load(tmp_path / "out.npz")
    assert sorted(actual.files) == sorted(expected)
    channels = backbones.scaled_width(512, WIDTH)

    def centred(scores):
        return scores - scores.mean(axis=(1, 2), keepdims=True)

    for key in expected:
        if key.startswith("scores_"):
            # The raw scores c_i = <u, l_i> + <u, g> are compared up to a
            # per-image constant: <u, g> shifts a whole map, the softmax
            # cancels it, and another backend's float32 kernels may shift it
            # by its rounding (seen: 1.2e-5 on an AVX2-only CPU). What is
            # left, <u, l_i>, is a dot product over the C channels: float32
            # exact to about C * eps * sum|terms|, bounded by the map's scale.
            scale = np.abs(centred(expected[key])).max()
            bound = channels * np.finfo("float32").eps * scale
            np.testing.assert_allclose(
                centred(actual[key]), centred(expected[key]), atol=bound, rtol=0
            )
        elif key.startswith("attention_"):
            # a = softmax(c): a change d in the centred scores (bounded as
            # above) moves each a_i by a_i * (d_i - sum_j a_j d_j), at most
            # 2 * max|d| * max(a); the softmax's own float32 rounding adds a
            # few eps of values <= 1 (4 eps).
            scores = expected[key.replace("attention_", "scores_")]
            score_bound = channels * np.finfo("float32").eps * np.abs(centred(scores)).max()
            eps = np.finfo("float32").eps
            bound = 2 * score_bound * expected[key].max() + 4 * eps
            np.testing.assert_allclose(actual[key], expected[key], atol=bound, rtol=0)
        else:
            # Probabilities in [0, 1]: float32 rounding of the softmax, a few
            # eps of values <= 1.
            np.testing.assert_allclose(actual[key], expected[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_maps_sum_to_one(policy):
    keras.config.set_dtype_policy(policy)
    model = build_model(3, width_multiplier=WIDTH)
    assert model.get_layer("block3_conv1").compute_dtype == policy.split("_")[1]
    outputs = keras_ltpa.attention_model(model)(IMAGES)
    assert keras.backend.standardize_dtype(outputs["logits"].dtype) == "float32"
    for k in (1, 2, 3):
        attention_map = keras.ops.convert_to_numpy(outputs[f"attention_{k}"])
        assert np.isfinite(attention_map).all()
        np.testing.assert_allclose(attention_map.sum(axis=(1, 2)), 1.0, atol=1e-3)
    compile_for_test(model)
    history = model.fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"variant": "att4-concat"}, r"token 'att4'.*variant='att4-concat'.*att3"),
        ({"variant": "att3-pc-dp"}, r"sets `compatibility` twice"),
        ({"compatibility": "cos"}, r"`compatibility`.*'pc', 'dp'.*'cos'"),
        ({"normalization": "relu"}, r"`normalization`.*'softmax', 'sigmoid'.*'relu'"),
        ({"aggregation": "sum"}, r"`aggregation`.*'concat', 'indep'.*'sum'"),
        ({"attention_position": "middle"}, r"`attention_position`.*'before', 'after'"),
        ({"backbone": "resnet"}, r"`backbone`.*'vgg'.*'resnet'"),
        ({"attention_layers": (2, 3)}, r"`attention_layers`.*\(3, 4, 5\).*2"),
        ({"attention_layers": (3, 3)}, r"`attention_layers` lists a layer twice"),
        ({"input_shape": (48, 48, 3)}, r"`input_shape` \(48, 48, 3\).*multiples of 32"),
        ({"input_shape": (16, 16, 3)}, r"`input_shape` \(16, 16, 3\).*multiples of 32"),
        ({"input_shape": (32, 32)}, r"`input_shape`.*\(height, width, channels\)"),
        ({"width_multiplier": 0}, r"`width_multiplier`.*positive.*0"),
        ({"projector": False}, r"256 channels but g has 512.*projector=False"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_model(10, **kwargs)


@pytest.mark.parametrize("num_classes", [1, 0, 2.5, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=r"`num_classes`.*>= 2"):
        build_model(num_classes)


def test_bad_tap_names():
    backbone = tiny_functional_backbone()
    with pytest.raises(ValueError, match=r"`attention_layers`.*'nope'.*stage1"):
        build_model(5, backbone=backbone, attention_layers=("nope",), global_layer="stage3")
    with pytest.raises(ValueError, match=r"`global_layer`.*'missing'"):
        build_model(5, backbone=backbone, attention_layers=("stage1",), global_layer="missing")
    with pytest.raises(ValueError, match=r"`global_layer` is required"):
        build_model(5, backbone=backbone, attention_layers=("stage1",))
    with pytest.raises(ValueError, match=r"projector=False"):
        build_model(
            5,
            backbone=backbone,
            attention_layers=("stage1",),
            global_layer="stage3",
            projector=False,
        )


def test_load_model_file_round_trip_and_clear_errors(tmp_path):
    model = build_model(10, width_multiplier=0.0625)
    path = tmp_path / "model.keras"
    model.save(path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    loaded = load_model_file(path)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)

    with pytest.raises(ValueError, match="Model file not found: .*missing.keras"):
        load_model_file(tmp_path / "missing.keras")
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="must be a `.keras` file; received .*model.h5"):
        load_model_file(weights)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="Cannot load the Keras model in .*corrupt.keras"):
        load_model_file(corrupt)


# --- A saved model describes itself --------------------------------------------------


def test_saved_model_describes_itself(tmp_path):
    model = build_model(
        3,
        (64, 64, 3),
        variant="att2-indep-dp",
        width_multiplier=WIDTH,
        pixel_mean=(0.5, 0.4, 0.3),
        pixel_std=(0.2, 0.25, 0.3),
        class_names=["cat", "dog", "horse"],
    )
    assert isinstance(model, keras_ltpa.AttentionClassifier)
    restored = save_and_reload(model, tmp_path / "model.keras")
    assert isinstance(restored, keras_ltpa.AttentionClassifier)
    assert restored.get_config() == model.get_config()
    facts = keras_ltpa.describe(restored)
    assert facts == {
        "variant": "att2-indep-dp",
        "backbone": "vgg",
        "backbone_weights": None,
        "preprocessing": "pixel_stats",
        "width_multiplier": WIDTH,
        "input_shape": (64, 64, 3),
        "num_classes": 3,
        "class_names": ["cat", "dog", "horse"],
        "class_names_recorded": True,
        "pixel_mean": (0.5, 0.4, 0.3),
        "pixel_std": (0.2, 0.25, 0.3),
        "attention_count": 2,
        "cam_layer": "block5_relu3",
    }
    # The config rebuilds the same architecture (constructor args = config).
    rebuilt = keras_ltpa.AttentionClassifier.from_config(model.get_config())
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]


def test_class_names_must_match_the_classes():
    with pytest.raises(ValueError, match="`class_names` must name each of the 3 classes"):
        build_model(3, width_multiplier=WIDTH, class_names=["a", "b"])
    with pytest.raises(ValueError, match="`class_names` must be a list of strings"):
        build_model(3, width_multiplier=WIDTH, class_names="abc")


LEGACY = pathlib.Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "name, variant, maps",
    [("legacy_att3_w0.0625", "att3-concat-pc", 3), ("legacy_noatt_w0.0625", "noatt", 0)],
)
def test_files_saved_by_version_0_1_0_still_load(name, variant, maps):
    """Plain functional models written before models described themselves:
    they load in safe mode, answer as when saved, and are described from
    their layers."""
    model = load_model_file(LEGACY / f"{name}.keras")
    facts = keras_ltpa.describe(model)
    assert facts["variant"] == variant and facts["attention_count"] == maps
    assert facts["width_multiplier"] == WIDTH and facts["num_classes"] == 3
    assert facts["class_names"] == ["0", "1", "2"] and not facts["class_names_recorded"]
    np.testing.assert_allclose(facts["pixel_mean"], (0.5, 0.4, 0.3), rtol=1e-6)
    np.testing.assert_allclose(facts["pixel_std"], (0.2, 0.25, 0.3), rtol=1e-6)
    images = np.load(LEGACY / "legacy_images.npy").astype("float32")
    logits = keras.ops.convert_to_numpy(model(images))
    saved = np.load(LEGACY / f"{name}_logits.npy")
    # Saved under TensorFlow; another backend's float32 convolutions sum the
    # same products in another order. Each logit sums O(1e4) float32
    # products through 16 layers: ~1e-6 relative in practice, bounded here
    # by 1e-4 of the logits' scale.
    np.testing.assert_allclose(logits, saved, atol=1e-4 * np.abs(saved).max())
    assert sorted(keras_ltpa.attention_model(model).output) == sorted(
        ["logits", "probabilities"]
        + [f"{kind}_{k}" for k in range(1, maps + 1) for kind in ("attention", "scores")]
    )


# --- Named backbones: keras.applications and keras-hub ------------------------------

from tests.backbones.conftest import hub_preset  # noqa: E402,F401  (the fixture)


@pytest.mark.parametrize("backbone", ["mobilenetv3small", "keras-hub"])
def test_named_backbone_round_trip_safe_mode(tmp_path, request, backbone):
    """Saved and loaded in safe mode (with layers built in between, which
    shifts Keras' automatic layer names): same config, facts and logits."""
    if backbone == "keras-hub":
        backbone = request.getfixturevalue("hub_preset")
        options = {}  # the preset's own weights and image converter
    else:
        options = {"weights": "none", "preprocessing": "tf"}
    images = RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    model = build_model(3, (64, 64, 3), backbone=backbone, class_names=["a", "b", "c"], **options)
    model.save(tmp_path / "model.keras")
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(64, 64, 3))
    restored = load_model_file(tmp_path / "model.keras")
    assert isinstance(restored, keras_ltpa.AttentionClassifier)
    assert restored.get_config() == model.get_config()
    assert keras_ltpa.describe(restored) == keras_ltpa.describe(model)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(images)), keras.ops.convert_to_numpy(model(images))
    )
    facts = keras_ltpa.describe(restored)
    assert facts["attention_count"] == 3 and facts["class_names"] == ["a", "b", "c"]
    assert facts["backbone"] == backbone and facts["cam_layer"] is None


def test_keras_applications_name_builds_the_same_model_as_the_function():
    """`backbone="resnet50"` with random weights: the layers and parameter
    count of keras.applications.ResNet50 inside, tapped at its stages."""
    model = build_model(10, (64, 64, 3), backbone="resnet50", weights="none")
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    (taps,) = backbones.backbone_layers(model)
    assert count_parameters(taps.weights) == count_parameters(reference.weights)
    # Projections of the 512- and 1024-wide taps to g's 2048 channels, a u
    # per estimator, and the concat classifier.
    head = 512 * 2048 + 1024 * 2048 + 3 * 2048 + 3 * 2048 * 10 + 10
    assert count_parameters(model.trainable_weights) == count_parameters(reference.trainable_weights) + head
