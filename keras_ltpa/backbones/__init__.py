"""Backbones: where the local features `l^s` and the global feature `g` come from.

- `vgg`: the paper's CIFAR VGG, built into the classifier's graph with
  predictable layer names.
- `applications`: `keras.applications` models by lower-case name
  (`resnet50`, `efficientnetv2b0`, ...), with the preprocessing their
  ImageNet weights expect.
- `hub`: keras-hub image backbones from a preset folder, name or handle.
- `resolve`: from what the caller names to a backbone, its weights and its
  preprocessing (`resolve_backbone`).
- `taps`: tapping any functional model, by layer names or by default at
  strides 8, 16 and 32.
- `preprocessing`: the pixel maps, as registered layers.
- `downloads`: pretrained weights that fail fast without a network.
- `finetune`: freezing, unfreezing, and a learning-rate multiplier for the
  backbone.

A new family adds a module here that builds the backbone and says its
preprocessing; `resolve` dispatches to it.
"""

from keras_ltpa.backbones.applications import APPLICATIONS
from keras_ltpa.backbones.finetune import LearningRateMultiplier
from keras_ltpa.backbones.finetune import backbone_layers
from keras_ltpa.backbones.finetune import backbone_learning_rate
from keras_ltpa.backbones.finetune import freeze_backbone
from keras_ltpa.backbones.finetune import set_backbone_trainable
from keras_ltpa.backbones.finetune import unfreeze_backbone
from keras_ltpa.backbones.preprocessing import PREPROCESSING_MODES
from keras_ltpa.backbones.preprocessing import PixelAffine
from keras_ltpa.backbones.preprocessing import preprocessing_layer
from keras_ltpa.backbones.resolve import ResolvedBackbone
from keras_ltpa.backbones.resolve import architecture_only
from keras_ltpa.backbones.resolve import resolve_backbone
from keras_ltpa.backbones.resolve import uses_pixel_stats
from keras_ltpa.backbones.taps import TAP_STRIDES
from keras_ltpa.backbones.taps import backbone_taps
from keras_ltpa.backbones.taps import choose_taps
from keras_ltpa.backbones.taps import default_taps
from keras_ltpa.backbones.taps import layer_strides
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
    "APPLICATIONS",
    "LearningRateMultiplier",
    "PREPROCESSING_MODES",
    "PixelAffine",
    "ResolvedBackbone",
    "TAP_STRIDES",
    "VGG_BLOCK6_CONVS",
    "VGG_BLOCK6_FILTERS",
    "VGG_BLOCKS",
    "VGG_GLOBAL_UNITS",
    "VGG_REDUCTION",
    "VGG_TAPPABLE_BLOCKS",
    "apply_conv_bn_relu",
    "apply_vgg_backbone",
    "architecture_only",
    "backbone_layers",
    "backbone_learning_rate",
    "backbone_taps",
    "choose_taps",
    "default_taps",
    "freeze_backbone",
    "layer_strides",
    "preprocessing_layer",
    "resolve_backbone",
    "scaled_width",
    "set_backbone_trainable",
    "tap_backbone",
    "unfreeze_backbone",
    "uses_pixel_stats",
]
