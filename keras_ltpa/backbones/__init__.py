"""Backbones: where the local features `l^s` and the global feature `g` come from.

`vgg` builds the paper's CIFAR VGG with predictable layer names; `taps`
taps any functional Keras model at named layers. A new family (keras-hub,
keras.applications) adds a module here that builds the backbone and names
its taps.
"""

from keras_ltpa.backbones.taps import backbone_taps
from keras_ltpa.backbones.taps import tap_backbone
from keras_ltpa.backbones.vgg import VGG_BLOCK6_CONVS
from keras_ltpa.backbones.vgg import VGG_BLOCK6_FILTERS
from keras_ltpa.backbones.vgg import VGG_BLOCKS
from keras_ltpa.backbones.vgg import VGG_GLOBAL_UNITS
from keras_ltpa.backbones.vgg import VGG_REDUCTION
from keras_ltpa.backbones.vgg import VGG_TAPPABLE_BLOCKS
from keras_ltpa.backbones.vgg import apply_conv_bn_relu
from keras_ltpa.backbones.vgg import apply_vgg_backbone
from keras_ltpa.backbones.vgg import scaled_width

__all__ = [
    "VGG_BLOCK6_CONVS",
    "VGG_BLOCK6_FILTERS",
    "VGG_BLOCKS",
    "VGG_GLOBAL_UNITS",
    "VGG_REDUCTION",
    "VGG_TAPPABLE_BLOCKS",
    "apply_conv_bn_relu",
    "apply_vgg_backbone",
    "backbone_taps",
    "scaled_width",
    "tap_backbone",
]
