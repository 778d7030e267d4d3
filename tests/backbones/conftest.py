"""Small backbones the backbone tests share: a keras-hub ResNet with basic
blocks, built from its config (random weights) and saved as a local preset
folder, with an image converter holding ImageNet's scale and offset."""

import keras
import numpy as np
import pytest

from tests.conftest import require_package

IMAGE_SHAPE = (64, 64, 3)
# ImageNet statistics a keras-hub ResNet preset's converter holds.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HUB_RESNET = dict(
    input_conv_filters=[64],
    input_conv_kernel_sizes=[7],
    stackwise_num_filters=[64, 16, 16, 16],
    stackwise_num_blocks=[1, 1, 1, 1],
    stackwise_num_strides=[1, 2, 2, 2],
    block_type="basic_block",
)


@pytest.fixture(scope="session")
def hub_preset(tmp_path_factory):
    """A local keras-hub preset folder: ResNetBackbone + ResNetImageConverter."""
    require_package("keras_hub", "hub")
    import keras_hub

    keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("hub_resnet")
    backbone = keras_hub.models.ResNetBackbone(**HUB_RESNET)
    backbone.save_to_preset(str(folder))
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=IMAGE_SHAPE[:2],
        scale=[1 / (255 * s) for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
    )
    converter.save_to_preset(str(folder))
    return str(folder)


def all_layers(model):
    """Every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def randomize_batch_norm(model, seed=0):
    """Trained-like BN statistics in every layer, nested backbones included,
    so that a preset that dropped them would answer differently."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.2, channels))
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, channels))
