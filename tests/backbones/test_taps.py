"""Default taps: strides 8, 16 and 32 for every listed family and a keras-hub
ResNet, found from the backbone's structure; refusals name what is wrong."""

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import backbones
from tests.backbones.conftest import IMAGE_SHAPE
from tests.conftest import require_package

FAMILIES = ["vgg16", "resnet50", "resnet50v2", "efficientnetv2b0", "convnexttiny", "mobilenetv3small"]
IMAGES = np.random.default_rng(0).uniform(0, 255, (2, *IMAGE_SHAPE)).astype("float32")
# Stage outputs of two families, from their published architectures
# (keras.applications' layer names).
KNOWN_TAPS = {
    "vgg16": (("block4_conv3", "block5_conv3", "block5_pool"), "block5_pool"),
    "resnet50": (("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"), "conv5_block3_out"),
}


def map_sizes(model):
    outputs = keras_ltpa.attention_model(model)(IMAGES)
    return [tuple(outputs[f"attention_{k}"].shape[1:]) for k in (1, 2, 3)]


def strided(side=IMAGE_SHAPE[0]):
    return [(side // stride, side // stride) for stride in (8, 16, 32)]


@pytest.mark.parametrize("name", FAMILIES)
def test_default_taps_of_each_family_have_strides_8_16_32(name):
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=name, weights="none")
    assert map_sizes(model) == strided()
    # g: the last stage's map (stride 32), average-pooled.
    (taps,) = backbones.backbone_layers(model)  # the nested model of taps
    assert tuple(taps.get_layer(model.global_layer).output.shape[1:3]) == (2, 2)
    if name in KNOWN_TAPS:
        assert (model.attention_layers, model.global_layer) == KNOWN_TAPS[name]


def test_keras_hub_resnet_is_tapped_at_its_pyramid_levels(hub_preset):
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=hub_preset, weights="none")
    # keras-hub's ResNet names its P3, P4, P5 stack outputs like this.
    assert model.attention_layers == ("stack1_block0_out", "stack2_block0_out", "stack3_block0_out")
    assert model.global_layer == "stack3_block0_out"
    assert map_sizes(model) == strided()


def unnamed_backbone():
    """Five stride-2 convolutions, each followed by an unnamed activation,
    taking images of any size."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for filters in (4, 4, 8, 8, 8):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same")(x)
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, x, name="unnamed")


def test_unnamed_layers_are_found_from_output_shapes():
    backbone = unnamed_backbone()
    activations = [layer.name for layer in backbone.layers if isinstance(layer, keras.layers.Activation)]
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=backbone)
    # Strides 2, 4, 8, 16, 32: the last layer at 8, 16 and 32 is the
    # activation after the 3rd, 4th and 5th convolution.
    assert model.attention_layers == tuple(activations[2:])
    assert model.global_layer == activations[4]
    assert map_sizes(model) == strided()
    # Any input size the backbone accepts: 96 pixels give maps of 12, 6, 3.
    larger = keras_ltpa.build_model(3, (96, 96, 3), backbone=backbone)
    outputs = keras_ltpa.attention_model(larger)(np.zeros((1, 96, 96, 3), "float32"))
    assert [tuple(outputs[f"attention_{k}"].shape[1:]) for k in (1, 2, 3)] == strided(96)


def test_explicit_taps_override_the_default(hub_preset):
    model = keras_ltpa.build_model(
        3,
        IMAGE_SHAPE,
        backbone=hub_preset,
        weights="none",
        attention_layers=("stack2_block0_out",),
        global_layer="stack3_block0_out",
    )
    assert model.attention_layers == ("stack2_block0_out",)
    outputs = keras_ltpa.attention_model(model)(IMAGES)
    assert tuple(outputs["attention_1"].shape[1:]) == (4, 4)
    # Only g given: the local taps are the default ones.
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=hub_preset, weights="none",
                                   global_layer="stack2_block0_out")
    assert model.attention_layers == ("stack1_block0_out", "stack2_block0_out", "stack3_block0_out")
    assert model.global_layer == "stack2_block0_out"


def test_plain_baseline_on_a_named_backbone_pools_the_last_stage():
    model = keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=unnamed_backbone(), attention=False)
    assert keras_ltpa.describe(model)["attention_count"] == 0
    assert model.get_layer("classifier").kernel.shape == (8, 3)  # g: the last stage's 8 channels


def test_vit_like_backbone_is_refused_in_one_line():
    require_package("keras_hub", "hub")
    import keras_hub

    vit = keras_hub.models.ViTBackbone(
        image_shape=IMAGE_SHAPE, patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8
    )
    with pytest.raises(ValueError) as error:
        keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=vit)
    message = str(error.value)
    assert "\n" not in message
    assert f"`backbone` {vit.name!r} has no feature map at stride 8, 16, 32" in message
    assert "ViT-like backbones without strided stages are not supported" in message
    assert "`attention_layers` and `global_layer`" in message


def test_a_missing_tap_is_named_with_the_layers_there_are(hub_preset):
    with pytest.raises(ValueError) as error:
        keras_ltpa.build_model(
            3,
            IMAGE_SHAPE,
            backbone=hub_preset,
            weights="none",
            attention_layers=("stack1_block0_out", "stack9_out"),
            global_layer="stack3_block0_out",
        )
    message = str(error.value)
    assert "\n" not in message
    assert "`attention_layers` names a layer that is not in backbone" in message
    assert "'stack9_out'" in message and "stack3_block0_out" in message


def test_layer_strides_measure_every_feature_map():
    backbone = unnamed_backbone()
    measured = backbones.layer_strides(backbone, IMAGE_SHAPE)
    convs = [layer.name for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [stride for name, stride in measured if name in convs] == [2, 4, 8, 16, 32]
