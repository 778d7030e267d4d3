"""The backbone's own preprocessing inside the model: equal to the family's
`preprocess_input` (or keras-hub's image converter) on the same pixels, never
applied twice, and replaced by the pixel statistics for a random backbone."""

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import backbones
from keras_ltpa.backbones import applications
from tests.backbones.conftest import IMAGE_SHAPE

RNG = np.random.default_rng(0)
PIXELS = RNG.uniform(0, 255, (2, *IMAGE_SHAPE)).astype("float32")
# Each family's own preprocessing function, as keras.applications documents it.
PREPROCESS_INPUT = {
    "vgg16": keras.applications.vgg16.preprocess_input,
    "vgg19": keras.applications.vgg19.preprocess_input,
    "resnet50": keras.applications.resnet50.preprocess_input,
    "resnet50v2": keras.applications.resnet_v2.preprocess_input,
    "mobilenetv2": keras.applications.mobilenet_v2.preprocess_input,
    "mobilenetv3small": keras.applications.mobilenet_v3.preprocess_input,
    "densenet121": keras.applications.densenet.preprocess_input,
    "efficientnetv2b0": keras.applications.efficientnet_v2.preprocess_input,
    "convnexttiny": keras.applications.convnext.preprocess_input,
}
# Ours is one multiply-add per value, the families' own one to three float32
# operations: each side rounds a few times, each rounding within half an
# ulp of values of magnitude <= 255.
TOLERANCE = 4 * np.finfo("float32").eps * 255


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("name", sorted(PREPROCESS_INPUT))
def test_each_family_preprocessing_equals_its_own_function(name):
    mode = applications.application_preprocessing(name)
    layer = backbones.preprocessing_layer(mode, IMAGE_SHAPE, (0.5,), (0.25,))
    expected = PREPROCESS_INPUT[name](PIXELS.copy())
    np.testing.assert_allclose(as_numpy(layer(PIXELS)), expected, rtol=0, atol=TOLERANCE)
    if mode == "raw":  # The family rescales inside: its function is the identity.
        np.testing.assert_array_equal(expected, PIXELS)


def test_a_pretrained_backbone_brings_its_preprocessing(tmp_path):
    weights = tmp_path / "vgg16.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=IMAGE_SHAPE).save_weights(weights)
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone="vgg16", weights=str(weights))
    facts = keras_ltpa.describe(model)
    assert (facts["backbone_weights"], facts["preprocessing"]) == (str(weights), "caffe")
    assert facts["pixel_mean"] is None and "pixel_normalization" not in [layer.name for layer in model.layers]
    first = model.get_layer("backbone_preprocessing")
    expected = keras.applications.vgg16.preprocess_input(PIXELS.copy())
    np.testing.assert_allclose(as_numpy(first(PIXELS)), expected, rtol=0, atol=TOLERANCE)
    # The weights are those of the file.
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=IMAGE_SHAPE)
    reference.load_weights(weights)
    (taps,) = backbones.backbone_layers(model)
    np.testing.assert_array_equal(
        as_numpy(taps.get_layer("block1_conv1").kernel), as_numpy(reference.get_layer("block1_conv1").kernel)
    )


def own_rescaling_layers(model):
    (taps,) = backbones.backbone_layers(model)
    return [layer for layer in taps.layers if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))]


def test_families_that_preprocess_inside_do_it_once(tmp_path):
    weights = tmp_path / "mobilenet.weights.h5"
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=IMAGE_SHAPE).save_weights(
        weights
    )
    pretrained = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone="mobilenetv3small", weights=str(weights))
    assert keras_ltpa.describe(pretrained)["preprocessing"] == "raw"
    # Raw pixels into the backbone, which rescales them itself.
    np.testing.assert_array_equal(as_numpy(pretrained.get_layer("backbone_preprocessing")(PIXELS)), PIXELS)
    assert len(own_rescaling_layers(pretrained)) == 1
    # From scratch: the model's pixel statistics, and no rescaling inside.
    scratch = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone="mobilenetv3small", weights="none")
    assert keras_ltpa.describe(scratch)["preprocessing"] == "pixel_stats"
    assert own_rescaling_layers(scratch) == []
    assert "pixel_normalization" in [layer.name for layer in scratch.layers]


def test_keras_hub_preprocessing_is_the_presets_image_converter(hub_preset):
    import keras_hub

    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=hub_preset)  # the preset's weights
    facts = keras_ltpa.describe(model)
    assert facts["backbone"] == hub_preset and facts["backbone_weights"] == "preset"
    converter = keras_hub.layers.ImageConverter.from_preset(hub_preset)
    assert facts["preprocessing"] == {"scale": list(converter.scale), "offset": list(converter.offset)}
    ours = as_numpy(model.get_layer("backbone_preprocessing")(PIXELS))
    np.testing.assert_allclose(ours, as_numpy(converter(PIXELS)), rtol=0, atol=TOLERANCE / 255 * 3)
    # Random weights keep the pixel statistics.
    scratch = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=hub_preset, weights="none")
    assert keras_ltpa.describe(scratch)["preprocessing"] == "pixel_stats"


def test_uint8_pixels_give_the_same_logits():
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone="mobilenetv3small", weights="none", preprocessing="tf")
    as_uint8 = PIXELS.round().astype("uint8")
    np.testing.assert_allclose(
        as_numpy(model(as_uint8)), as_numpy(model(as_uint8.astype("float32"))), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(
    "preprocessing, pattern",
    [
        ("imagenet", r"`preprocessing` must be one of 'pixel_stats', 'caffe', 'tf', 'torch', 'raw'.*'imagenet'"),
        ({"scale": 2.0}, r"`preprocessing` dict needs the keys 'scale' and 'offset'"),
    ],
)
def test_bad_preprocessing_is_named(preprocessing, pattern):
    with pytest.raises(ValueError, match=pattern):
        keras_ltpa.build_model(3, width_multiplier=0.0625, preprocessing=preprocessing)


def test_uses_pixel_stats_says_what_the_built_model_does(hub_preset):
    for backbone, weights in [("vgg", None), ("mobilenetv3small", "none"), (hub_preset, None), (hub_preset, "none")]:
        options = {"width_multiplier": 0.0625} if backbone == "vgg" else {}
        model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=backbone, weights=weights, **options)
        built = keras_ltpa.describe(model)["preprocessing"] == "pixel_stats"
        assert backbones.uses_pixel_stats(backbone, weights) == built, (backbone, weights)
