"""`build_model()` for every variant of the paper, `attention_model()` and
`load_model_file()`.

The variants are data (`VARIANT_TOKENS`), read by one builder:

    att3 / att2 / noatt      which layers get an attention estimator
    concat / indep           one classifier on [g_a^1, ..., g_a^S], or one
                             per layer with averaged probabilities
    pc / dp                  compatibility <u, l + g> or <l, g>
    softmax / sigmoid        normalisation of the scores
    before / after           local features taken before or after max-pooling

Reference: Jetley, Lord, Lee, Torr. "Learn To Pay Attention". ICLR 2018.
"""

import os
import re

import keras

from keras_ltpa import backbones
from keras_ltpa import layers as ltpa_layers

# Per-channel mean and std of CIFAR-10 training pixels in [0, 1], as used by
# the public PyTorch implementation's input transform.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

PAPER_ATTENTION_LAYERS = (3, 4, 5)
ATTENTION_PRESETS = {"att3": (3, 4, 5), "att2": (4, 5), "noatt": ()}
AGGREGATIONS = ("concat", "indep")
POSITIONS = ("before", "after")
VARIANT_TOKENS = {
    **{name: ("attention_layers", layers) for name, layers in ATTENTION_PRESETS.items()},
    **{name: ("aggregation", name) for name in AGGREGATIONS},
    **{name: ("compatibility", name) for name in ltpa_layers.COMPATIBILITY_MODES},
    **{name: ("normalization", name) for name in ltpa_layers.NORMALIZATIONS},
    **{name: ("attention_position", name) for name in POSITIONS},
}


def parse_variant(variant):
    """Reads a paper-style variant string such as `"att2-indep-dp"`.

    Args:
        variant: tokens joined by `-`: att3|att2|noatt, concat|indep, pc|dp,
            softmax|sigmoid, before|after, in any order; each at most once.

    Returns:
        A dict of `build_model` keyword arguments.
    """
    if not isinstance(variant, str) or not variant:
        raise ValueError(
            f"`variant` must be a string like 'att3-concat-pc'; received {variant!r}."
        )
    options = {}
    for token in variant.lower().split("-"):
        if token not in VARIANT_TOKENS:
            raise ValueError(
                f"Unknown token {token!r} in variant={variant!r}. Allowed tokens: "
                f"{', '.join(VARIANT_TOKENS)}."
            )
        argument, value = VARIANT_TOKENS[token]
        if argument in options:
            raise ValueError(
                f"variant={variant!r} sets `{argument}` twice; use one of its tokens."
            )
        options[argument] = value
    return options


def variant_name(
    attention_layers, aggregation, compatibility, normalization, attention_position
):
    """The variant string of a configuration, e.g. `"att3-concat-pc"`."""
    if not attention_layers:
        return "noatt"
    parts = [f"att{len(attention_layers)}", aggregation, compatibility]
    if normalization != "softmax":
        parts.append(normalization)
    if attention_position != "before":
        parts.append(attention_position)
    return "-".join(parts)


def _check_choice(argument, value, allowed):
    if value not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(map(repr, allowed))}; "
            f"received {argument}={value!r}."
        )


def _check_input_shape(input_shape, backbone):
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive ints; "
            f"received input_shape={input_shape!r}."
        )
    if backbone == "vgg":
        height, width, _ = input_shape
        reduction = backbones.VGG_REDUCTION
        if height % reduction or width % reduction:
            raise ValueError(
                f"`input_shape` {tuple(input_shape)} cannot be reduced to the "
                f"global feature by the VGG backbone: height and width must be "
                f"positive multiples of {reduction} (five 2x2 max-pools), "
                "e.g. (32, 32, 3) or (64, 64, 3)."
            )


def _pixel_normalization(input_shape, pixel_mean, pixel_std):
    channels = input_shape[-1]
    mean = [float(m) for m in pixel_mean]
    std = [float(s) for s in pixel_std]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(
            f"`pixel_mean` and `pixel_std` need 1 or {channels} values (one per "
            f"channel); received pixel_mean={pixel_mean!r}, pixel_std={pixel_std!r}."
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"`pixel_std` must be positive; received {pixel_std!r}.")
    mean = mean * channels if len(mean) == 1 else mean
    std = std * channels if len(std) == 1 else std
    # (x / 255 - mean) / std as one affine map on raw 0..255 pixels.
    return keras.layers.Rescaling(
        scale=[1.0 / (255.0 * s) for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        name="pixel_normalization",
    )


def build_model(
    num_classes,
    input_shape=(32, 32, 3),
    *,
    variant=None,
    backbone="vgg",
    attention_layers=PAPER_ATTENTION_LAYERS,
    global_layer=None,
    compatibility="pc",
    normalization="softmax",
    aggregation="concat",
    attention_position="before",
    attention=True,
    projector=True,
    width_multiplier=1.0,
    dropout=0.0,
    conv_bias=True,
    batch_norm_epsilon=1e-5,
    batch_norm_momentum=0.9,
    pixel_mean=CIFAR10_MEAN,
    pixel_std=CIFAR10_STD,
    name=None,
):
    """Builds a "Learn To Pay Attention" classifier.

    The returned functional model takes raw pixels (0..255, uint8 or float)
    and outputs class logits, so `compile(loss=SparseCategoricalCrossentropy(
    from_logits=True))`, `fit` and metrics work with plain integer labels.
    Use `attention_model(model)` for the attention maps.

    Args:
        num_classes: int >= 2.
        input_shape: (height, width, channels). For the VGG backbone height
            and width must be multiples of 32.
        variant: optional paper-style string such as `"att2-indep-dp"` or
            `"att3-concat-pc-sigmoid-after"`; the settings it names replace
            `attention_layers`, `aggregation`, `compatibility`,
            `normalization` and `attention_position`.
        backbone: `"vgg"` (the paper's CIFAR VGG) or a functional
            `keras.Model` to tap.
        attention_layers: VGG: blocks that get an attention estimator, a
            subset of (3, 4, 5) (`(3, 4, 5)` = att3, `(4, 5)` = att2, `()` =
            the plain VGG baseline). Other backbones: layer names.
        global_layer: layer name giving `g` (other backbones only).
        compatibility: `"pc"` (<u, l + g>) or `"dp"` (<l, g>).
        normalization: `"softmax"` or `"sigmoid"`.
        aggregation: `"concat"` or `"indep"`.
        attention_position: `"before"` or `"after"` max-pooling (VGG only).
        attention: bool. False gives the plain baseline (same as
            `attention_layers=()`).
        projector: bool. Project local features whose width differs from g's
            with a `LinearProjector`. Without it those widths must match.
        width_multiplier: float > 0 scaling every VGG width.
        dropout: float in [0, 1). VGG dropout rate (0 = none, the paper's).
        conv_bias: bool. VGG convolutions with bias (the reference has them).
        batch_norm_epsilon, batch_norm_momentum: VGG batch norm settings
            (defaults match PyTorch's).
        pixel_mean, pixel_std: per-channel statistics in [0, 1] units; inputs
            are mapped to `(x / 255 - mean) / std` inside the model.
        name: model name; defaults to `"ltpa_" + variant`.

    Returns:
        A `keras.Model` with one output, the (N, num_classes) logits.

    Example:
    >>> model = build_model(10, width_multiplier=0.125)
    >>> model.output_shape
    (None, 10)

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018.
    """
    if variant is not None:
        options = parse_variant(variant)
        attention_layers = options.get("attention_layers", attention_layers)
        aggregation = options.get("aggregation", aggregation)
        compatibility = options.get("compatibility", compatibility)
        normalization = options.get("normalization", normalization)
        attention_position = options.get("attention_position", attention_position)
    if (
        not isinstance(num_classes, int)
        or isinstance(num_classes, bool)
        or num_classes < 2
    ):
        raise ValueError(
            f"`num_classes` must be an integer >= 2; received num_classes={num_classes!r}."
        )
    _check_choice("compatibility", compatibility, ltpa_layers.COMPATIBILITY_MODES)
    _check_choice("normalization", normalization, ltpa_layers.NORMALIZATIONS)
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    _check_choice("attention_position", attention_position, POSITIONS)
    if not (isinstance(width_multiplier, (int, float)) and width_multiplier > 0):
        raise ValueError(
            f"`width_multiplier` must be a positive number; received {width_multiplier!r}."
        )
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"`dropout` must be in [0, 1); received dropout={dropout!r}.")
    is_vgg = isinstance(backbone, str)
    if is_vgg:
        _check_choice("backbone", backbone, ("vgg",))
    _check_input_shape(input_shape, "vgg" if is_vgg else None)
    attention_layers = tuple(attention_layers) if attention else ()
    if len(set(attention_layers)) != len(attention_layers):
        raise ValueError(
            f"`attention_layers` lists a layer twice: {attention_layers!r}."
        )

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _pixel_normalization(input_shape, pixel_mean, pixel_std)(inputs)

    if is_vgg:
        for block in attention_layers:
            if block not in backbones.VGG_TAPPABLE_BLOCKS:
                raise ValueError(
                    f"`attention_layers` entries must be VGG blocks from "
                    f"{backbones.VGG_TAPPABLE_BLOCKS}; received {block!r} in "
                    f"attention_layers={attention_layers!r}."
                )
        if global_layer is not None:
            raise ValueError(
                "`global_layer` applies to a custom backbone only; the VGG "
                f"backbone's g is its dense layer. Received global_layer={global_layer!r}."
            )
        taps = backbones.apply_vgg_backbone(
            x,
            width_multiplier=width_multiplier,
            conv_bias=conv_bias,
            batch_norm_epsilon=batch_norm_epsilon,
            batch_norm_momentum=batch_norm_momentum,
            dropout=dropout,
        )
        suffix = "" if attention_position == "before" else "_pool"
        local_features = [taps[f"block{block}{suffix}"] for block in attention_layers]
        global_features = taps["global"]
    else:
        if attention_position != "before":
            raise ValueError(
                "`attention_position` applies to the VGG backbone only; tap the "
                "layer you want with `attention_layers`. Received "
                f"attention_position={attention_position!r}."
            )
        if global_layer is None:
            raise ValueError(
                "`global_layer` is required with a custom backbone: name the "
                "layer whose output is the global feature g."
            )
        if any(not isinstance(name, str) for name in attention_layers):
            raise ValueError(
                "With a custom backbone `attention_layers` must be layer names; "
                f"received attention_layers={attention_layers!r}."
            )
        extractor = backbones.tap_backbone(backbone, attention_layers, global_layer)
        expected = tuple(extractor.input_shape[1:])
        if any(e is not None and e != d for e, d in zip(expected, input_shape)):
            raise ValueError(
                f"`input_shape` {tuple(input_shape)} does not fit backbone "
                f"{backbone.name!r}, which takes {expected}."
            )
        *local_features, global_features = extractor(x)

    if not local_features:
        logits = keras.layers.Dense(num_classes, name="classifier", dtype="float32")(
            global_features
        )
    else:
        global_width = global_features.shape[-1]
        pooled = []
        for index, features in enumerate(local_features, start=1):
            if features.shape[-1] != global_width:
                if not projector:
                    raise ValueError(
                        f"Local features of attention layer {index} have "
                        f"{features.shape[-1]} channels but g has {global_width}, "
                        "and `projector=False`. Set projector=True (the paper "
                        "projects l to g's width) or tap layers of g's width."
                    )
                features = ltpa_layers.LinearProjector(
                    global_width, name=f"projector_{index}"
                )(features)
            scores = ltpa_layers.CompatibilityScore(
                compatibility, name=f"compatibility_{index}"
            )(features, global_features)
            vector, _ = ltpa_layers.AttentionPool(
                normalization, name=f"attention_pool_{index}"
            )(features, scores)
            pooled.append(vector)
        if aggregation == "concat":
            joined = (
                pooled[0]
                if len(pooled) == 1
                else keras.layers.Concatenate(name="concat_pooled")(pooled)
            )
            logits = keras.layers.Dense(
                num_classes, name="classifier", dtype="float32"
            )(joined)
        else:
            per_layer = [
                keras.layers.Dense(
                    num_classes, name=f"classifier_{index}", dtype="float32"
                )(vector)
                for index, vector in enumerate(pooled, start=1)
            ]
            logits = (
                per_layer[0]
                if len(per_layer) == 1
                else ltpa_layers.ProbabilityAverage(name="probability_average")(
                    per_layer
                )
            )
    if name is None:
        name = "ltpa_" + variant_name(
            attention_layers, aggregation, compatibility, normalization, attention_position
        ).replace("-", "_")
    return keras.Model(inputs, logits, name=name)


def load_model_file(path):
    """Loads a `.keras` file written by this package (safe mode, not compiled).

    The package's layers are registered on import, so no custom objects are
    needed.

    Raises:
        ValueError: naming `path` when it is missing, is not a `.keras` file,
            or cannot be loaded (a corrupt archive, an unknown layer, ...).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Model file not found: {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f"Model file must be a `.keras` file; received {path!r}.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # corrupt zip, unknown layer, bad weights...
        raise ValueError(f"Cannot load the Keras model in {path!r}: {error}") from None


def attention_layer_count(model):
    """Number of attention estimators (`attention_pool_<k>` layers) in `model`."""
    pattern = re.compile(r"attention_pool_(\d+)$")
    return sum(1 for layer in model.layers if pattern.match(layer.name))


def attention_model(model):
    """A model sharing `model`'s weights that also returns the attention maps.

    Args:
        model: a model from `build_model` (or loaded from its `.keras` file).

    Returns:
        A `keras.Model` with the same input and a dict output:
        `"logits"` (N, K), `"probabilities"` (N, K) and, for each attention
        estimator k = 1..S, `"attention_<k>"` (N, H_k, W_k), the normalised
        map, and `"scores_<k>"`, the raw compatibility scores. The plain
        baseline has no attention entries.

    Example:
    >>> model = build_model(10, width_multiplier=0.125)
    >>> sorted(attention_model(model).output)[:3]
    ['attention_1', 'attention_2', 'attention_3']
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {model!r}.")
    logits = model.outputs[0]
    outputs = {
        "logits": logits,
        "probabilities": keras.layers.Softmax(name="probabilities", dtype="float32")(
            logits
        ),
    }
    for index in range(1, attention_layer_count(model) + 1):
        pool = model.get_layer(f"attention_pool_{index}")
        outputs[f"attention_{index}"] = pool.output[1]
        outputs[f"scores_{index}"] = model.get_layer(f"compatibility_{index}").output
    return keras.Model(model.input, outputs, name=f"{model.name}_with_attention")
