"""Backbones that give the local features `l^s` and the global feature `g`.

- `apply_vgg_backbone`: the paper's CIFAR VGG-16 with batch norm, built layer
  by layer into the caller's functional graph with predictable names
  (`block3_conv2`, `block4_pool`, `global_dense`), which the weight converter
  and the taps rely on.
"""

import keras

from keras_ltpa.backbones import batch_norm

# Widths and depths of the paper's CIFAR VGG: (block, convs, filters).
# Blocks 1-2 never pool; blocks 3-5 are followed by one 2x2 max-pool
# (their outputs before that pool are the local features); block 6 pools
# after each of its convolutions and feeds the dense layer that gives `g`.
VGG_BLOCKS = (
    (1, 2, 64),
    (2, 2, 128),
    (3, 3, 256),
    (4, 3, 512),
    (5, 3, 512),
)
VGG_BLOCK6_CONVS = 2
VGG_BLOCK6_FILTERS = 512
VGG_GLOBAL_UNITS = 512
VGG_TAPPABLE_BLOCKS = (3, 4, 5)
# Spatial reduction from input to the dense layer: five 2x2 max-pools.
VGG_REDUCTION = 32


def check_vgg_taps(input_shape, attention_layers, global_layer):
    """ValueError naming the argument unless the input reduces to `g` and the
    taps are blocks from (3, 4, 5) with no `global_layer`."""
    height, width, _ = input_shape
    if height % VGG_REDUCTION or width % VGG_REDUCTION:
        raise ValueError(
            f"`input_shape` {tuple(input_shape)} cannot be reduced to the "
            f"global feature by the VGG backbone: height and width must be "
            f"positive multiples of {VGG_REDUCTION} (five 2x2 max-pools), "
            "e.g. (32, 32, 3) or (64, 64, 3)."
        )
    if len(set(attention_layers)) != len(attention_layers):
        raise ValueError(f"`attention_layers` lists a layer twice: {attention_layers!r}.")
    for block in attention_layers:
        if block not in VGG_TAPPABLE_BLOCKS:
            raise ValueError(
                f"`attention_layers` entries must be VGG blocks from "
                f"{VGG_TAPPABLE_BLOCKS}; received {block!r} in "
                f"attention_layers={attention_layers!r}."
            )
    if global_layer is not None:
        raise ValueError(
            "`global_layer` applies to a custom backbone only; the VGG "
            f"backbone's g is its dense layer. Received global_layer={global_layer!r}."
        )


def scaled_width(filters, width_multiplier):
    """Channel count of a layer of `filters` channels under a width multiplier."""
    return max(1, int(round(filters * width_multiplier)))


def apply_conv_bn_relu(x, filters, name, *, conv_bias, epsilon, momentum):
    """Conv3x3 (padding "same") -> BatchNorm -> ReLU, named `{name}`, `..._bn`."""
    x = keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=conv_bias,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    x = batch_norm.BatchNormalization(
        epsilon=epsilon, momentum=momentum, name=name.replace("conv", "bn")
    )(x)
    return keras.layers.ReLU(name=name.replace("conv", "relu"))(x)


def _apply_feature_blocks(x, width_multiplier, dropout, conv_kwargs):
    """Blocks 1-5; returns `x` after block 5's pool and the taps of blocks 3-5."""
    taps = {}
    for block, convs, filters in VGG_BLOCKS:
        for index in range(1, convs + 1):
            x = apply_conv_bn_relu(
                x,
                scaled_width(filters, width_multiplier),
                f"block{block}_conv{index}",
                **conv_kwargs,
            )
        if block in VGG_TAPPABLE_BLOCKS:
            taps[f"block{block}"] = x
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            taps[f"block{block}_pool"] = x
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"block{block}_dropout")(x)
    return x, taps


def _apply_global_block(x, width_multiplier, dropout, conv_kwargs):
    """Block 6 and the dense layer: `g`, (N, 512 * width_multiplier)."""
    for index in range(1, VGG_BLOCK6_CONVS + 1):
        x = apply_conv_bn_relu(
            x,
            scaled_width(VGG_BLOCK6_FILTERS, width_multiplier),
            f"block6_conv{index}",
            **conv_kwargs,
        )
        x = keras.layers.MaxPooling2D(2, name=f"block6_pool{index}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="block6_dropout")(x)
    # The paper's "dense" layer: a convolution whose kernel covers the whole
    # remaining map (1x1 at 32x32 input), giving one vector per image.
    x = keras.layers.Conv2D(
        scaled_width(VGG_GLOBAL_UNITS, width_multiplier),
        kernel_size=(x.shape[1], x.shape[2]),
        padding="valid",
        kernel_initializer="he_normal",
        name="global_dense",
    )(x)
    return keras.layers.Flatten(name="global_features")(x)


def apply_vgg_backbone(
    x,
    *,
    width_multiplier=1.0,
    conv_bias=True,
    batch_norm_epsilon=1e-5,
    batch_norm_momentum=0.9,
    dropout=0.0,
):
    """Builds the paper's CIFAR VGG on the functional tensor `x`.

    Args:
        x: symbolic (N, H, W, C) tensor, already normalised.
        width_multiplier: float. Scales every width (1.0 = the paper's).
        conv_bias: bool. Convolutions with a bias, as in the public PyTorch
            implementation (kept for parameter parity, redundant with BN).
        batch_norm_epsilon: float. 1e-5, PyTorch's default.
        batch_norm_momentum: float. Keras convention (0.9 = PyTorch's 0.1).
        dropout: float. Dropout rate after blocks 3, 4, 5 and 6 (0 = none).

    Returns:
        A dict of symbolic tensors: `"block{k}"` (block k's output before its
        pool) and `"block{k}_pool"` for k in 3, 4, 5, and `"global"`: `g`,
        (N, 512 * width_multiplier).
    """
    conv_kwargs = dict(
        conv_bias=conv_bias, epsilon=batch_norm_epsilon, momentum=batch_norm_momentum
    )
    x, taps = _apply_feature_blocks(x, width_multiplier, dropout, conv_kwargs)
    taps["global"] = _apply_global_block(x, width_multiplier, dropout, conv_kwargs)
    return taps
