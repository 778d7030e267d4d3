"""Taps into a backbone: the local features `l^s` and the global feature `g`.

- `tap_backbone`: any functional Keras model, tapped at named layers.
- `default_taps`: the layers to tap when the caller names none: one at each
  of the strides 8, 16 and 32 (the paper's three stages), and `g` from the
  last stage. keras-hub's `pyramid_outputs` P3-P5 are used where a backbone
  has them; otherwise each stride's last layer, measured from the output
  shapes (so unnamed activations work too).
- `backbone_taps`: the taps the attention model is built on, from the
  paper's VGG (built into the graph) or from a given backbone.
"""

import keras

from keras_ltpa.backbones.vgg import VGG_TAPPABLE_BLOCKS
from keras_ltpa.backbones.vgg import apply_vgg_backbone
from keras_ltpa.backbones.vgg import check_vgg_taps

TAP_STRIDES = (8, 16, 32)
# Strides a layer's output may have (input size / output size).
_POWERS_OF_TWO = tuple(2**k for k in range(10))


def _functional_inputs(backbone):
    if not isinstance(backbone, keras.Model) or not hasattr(backbone, "inputs"):
        raise ValueError(
            "`backbone` must be 'vgg' or a functional keras.Model; received "
            f"backbone={backbone!r}."
        )
    try:
        inputs = backbone.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            "`backbone` must be a functional keras.Model (built from "
            f"keras.Input); received an unbuilt or subclassed {type(backbone).__name__}."
        )
    return inputs


def _layer_output(backbone, argument, name):
    names = [layer.name for layer in backbone.layers]
    if name not in names:
        shown = ", ".join(names[-30:])
        raise ValueError(
            f"`{argument}` names a layer that is not in backbone "
            f"{backbone.name!r}: {name!r}. Layer names include: {shown}."
        )
    return backbone.get_layer(name).output


def tap_backbone(backbone, local_layers, global_layer):
    """A model that returns a functional backbone's chosen intermediate outputs.

    Args:
        backbone: a functional `keras.Model`.
        local_layers: names of the layers whose outputs (N, H, W, C) are the
            local features, in order.
        global_layer: name of the layer giving `g`. A 4D output is reduced
            to (N, C) with global average pooling.

    Returns:
        A `keras.Model` named `"{backbone.name}_taps"` taking the backbone's
        input and returning `[l_1, ..., l_S, g]`.
    """
    inputs = _functional_inputs(backbone)
    local_outputs = []
    for name in local_layers:
        output = _layer_output(backbone, "attention_layers", name)
        if len(output.shape) != 4:
            raise ValueError(
                f"`attention_layers` entry {name!r} must output (N, H, W, C) "
                f"local features; its output shape is {output.shape}."
            )
        local_outputs.append(output)
    global_output = _layer_output(backbone, "global_layer", global_layer)
    if len(global_output.shape) == 4:
        global_output = keras.layers.GlobalAveragePooling2D(name="global_pool")(
            global_output
        )
    elif len(global_output.shape) != 2:
        raise ValueError(
            f"`global_layer` {global_layer!r} must output (N, C) or (N, H, W, C); "
            f"its output shape is {global_output.shape}."
        )
    return keras.Model(inputs, local_outputs + [global_output], name=f"{backbone.name}_taps")


def _stride(size, full):
    """The power-of-two stride that takes `full` pixels to `size` (rounded
    either way, as "same" and "valid" padding do), else None."""
    if size is None:
        return None
    for stride in _POWERS_OF_TWO:
        if size in (full // stride, -(-full // stride)):
            return stride
    return None


def _output(layer):
    """A layer's (first) output in its model's graph, else None."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def layer_strides(backbone, input_shape):
    """`[(layer name, stride), ...]`, in layer order, for every layer of
    `backbone` whose output is a feature map (N, H, W, C) a power-of-two
    stride below an `input_shape` image."""
    inputs = _functional_inputs(backbone)
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ValueError(
            f"`backbone` {backbone.name!r} must take one (N, H, W, C) image input; "
            f"its inputs are {[tuple(i.shape) for i in inputs]}."
        )
    maps = []
    for layer in backbone.layers:
        # Inputs and padding (a map grown by a border) are not features.
        skipped = isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D))
        output = None if skipped else _output(layer)
        if isinstance(output, keras.KerasTensor) and len(output.shape) == 4:
            maps.append((layer.name, output))
    if not maps:
        return []
    # The shapes at this input size (the backbone may take any size).
    probe = keras.Model(inputs, [output for _, output in maps])
    specs = probe.compute_output_spec(keras.KerasTensor((1, *input_shape)))
    found = []
    for (name, _), spec in zip(maps, specs):
        strides = {_stride(spec.shape[1], input_shape[0]), _stride(spec.shape[2], input_shape[1])}
        if len(strides) == 1 and None not in strides:
            found.append((name, strides.pop()))
    return found


def _pyramid_layers(backbone):
    """keras-hub's `pyramid_outputs` as {stride: layer name}."""
    pyramid = getattr(backbone, "pyramid_outputs", None) or {}
    layers = {}
    for level, tensor in pyramid.items():
        for layer in backbone.layers:
            if _output(layer) is tensor and level[1:].isdigit():
                layers[2 ** int(level[1:])] = layer.name
    return layers


def default_taps(backbone, input_shape, name=None):
    """The layers to tap at strides 8, 16 and 32, and the layer giving `g`.

    Args:
        backbone: a functional `keras.Model` taking images.
        input_shape: (height, width, channels) of the images.
        name: how errors name the backbone (default: its model name).

    Returns:
        `(local_layers, global_layer)`: three layer names, one per stride
        8, 16, 32 (keras-hub's pyramid level where it has one, else that
        stride's last layer), and the last layer at stride 32 (its output,
        average-pooled, is `g`).

    Raises:
        ValueError naming the backbone when it has no feature map at one of
        the strides (a ViT-like backbone without strided stages).
    """
    measured = layer_strides(backbone, input_shape)
    last = {}
    for layer_name, stride in measured:
        last[stride] = layer_name
    missing = [stride for stride in TAP_STRIDES if stride not in last]
    if missing:
        found = ", ".join(str(s) for s in sorted(last)) or "none"
        raise ValueError(
            f"`backbone` {name or backbone.name!r} has no feature map at stride "
            f"{', '.join(map(str, missing))} of a {tuple(input_shape)} input (strides "
            f"found: {found}): the attention needs a convolutional backbone with "
            "stages at strides 8, 16 and 32; ViT-like backbones without strided "
            "stages are not supported. Name the layers to tap with `attention_layers` "
            "and `global_layer`."
        )
    strides = dict(measured)
    pyramid = _pyramid_layers(backbone)
    local = tuple(
        pyramid[s] if strides.get(pyramid.get(s)) == s else last[s] for s in TAP_STRIDES
    )
    return local, last[TAP_STRIDES[-1]]


def check_named_taps(attention_layers, global_layer, attention_position):
    """The taps of a backbone other than the VGG: layer names (None: the
    default taps). Naming local layers requires naming `global_layer`."""
    if attention_position != "before":
        raise ValueError(
            "`attention_position` applies to the VGG backbone only; tap the "
            "layer you want with `attention_layers`. Received "
            f"attention_position={attention_position!r}."
        )
    if attention_layers is None:
        return
    if len(set(attention_layers)) != len(attention_layers):
        raise ValueError(f"`attention_layers` lists a layer twice: {attention_layers!r}.")
    if any(not isinstance(name, str) for name in attention_layers):
        raise ValueError(
            "With a custom backbone `attention_layers` must be layer names; "
            f"received attention_layers={attention_layers!r}."
        )
    if attention_layers and global_layer is None:
        raise ValueError(
            "`global_layer` is required with a custom backbone when "
            "`attention_layers` names its layers: name the layer whose output is "
            "the global feature g, or leave both unset for the default taps at "
            "strides 8, 16 and 32."
        )


def choose_taps(resolved, input_shape, attention_layers, global_layer, attention_position):
    """`(attention_layers, global_layer)` as a model records them: VGG blocks
    (None: the paper's (3, 4, 5)), or layer names (None: `default_taps`).

    Args:
        resolved: a `ResolvedBackbone`.
        input_shape: (height, width, channels) of the images.
        attention_layers, global_layer, attention_position: as given to
            `build_model`.
    """
    if resolved.kind == "vgg":
        attention_layers = VGG_TAPPABLE_BLOCKS if attention_layers is None else tuple(attention_layers)
        check_vgg_taps(input_shape, attention_layers, global_layer)
        return attention_layers, None
    if attention_layers is not None:
        attention_layers = tuple(attention_layers)
    check_named_taps(attention_layers, global_layer, attention_position)
    if attention_layers is None or global_layer is None:
        local, default_global = default_taps(resolved.model, input_shape, name=resolved.name)
        attention_layers = local if attention_layers is None else attention_layers
        global_layer = default_global if global_layer is None else global_layer
    return attention_layers, global_layer


def backbone_taps(x, backbone, attention_layers, global_layer, attention_position, **vgg):
    """The local features `[l^1, ..., l^S]` and the global feature `g`.

    The VGG backbone (`backbone=None`) is built into the graph (`vgg` holds
    its options); any other functional model is tapped at the named layers.
    """
    if backbone is None:
        taps = apply_vgg_backbone(x, **vgg)
        suffix = "" if attention_position == "before" else "_pool"
        local_features = [taps[f"block{block}{suffix}"] for block in attention_layers]
        return local_features, taps["global"]
    extractor = tap_backbone(backbone, attention_layers, global_layer)
    expected = tuple(extractor.input_shape[1:])
    if any(e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise ValueError(
            f"`input_shape` {tuple(x.shape[1:])} does not fit backbone "
            f"{backbone.name!r}, which takes {expected}."
        )
    *local_features, global_features = extractor(x)
    return local_features, global_features
