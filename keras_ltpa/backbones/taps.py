"""Taps into a backbone: the local features `l^s` and the global feature `g`.

- `tap_backbone`: any functional Keras model, tapped at named layers.
- `backbone_taps`: the taps the attention model is built on, from the
  paper's VGG (built into the graph) or from a given backbone.
"""

import keras

from keras_ltpa.backbones.vgg import apply_vgg_backbone


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
    if not isinstance(backbone, keras.Model) or not hasattr(backbone, "inputs"):
        raise ValueError(
            "`backbone` must be 'vgg' or a functional keras.Model; received "
            f"backbone={backbone!r}."
        )
    try:
        backbone_inputs = backbone.inputs
    except (AttributeError, ValueError):
        backbone_inputs = None
    if not backbone_inputs:
        raise ValueError(
            "`backbone` must be a functional keras.Model (built from "
            f"keras.Input); received an unbuilt or subclassed {type(backbone).__name__}."
        )
    names = [layer.name for layer in backbone.layers]

    def output_of(argument, name):
        if name not in names:
            shown = ", ".join(names[-30:])
            raise ValueError(
                f"`{argument}` names a layer that is not in backbone "
                f"{backbone.name!r}: {name!r}. Layer names include: {shown}."
            )
        return backbone.get_layer(name).output

    local_outputs = []
    for name in local_layers:
        output = output_of("attention_layers", name)
        if len(output.shape) != 4:
            raise ValueError(
                f"`attention_layers` entry {name!r} must output (N, H, W, C) "
                f"local features; its output shape is {output.shape}."
            )
        local_outputs.append(output)
    global_output = output_of("global_layer", global_layer)
    if len(global_output.shape) == 4:
        global_output = keras.layers.GlobalAveragePooling2D(name="global_pool")(
            global_output
        )
    elif len(global_output.shape) != 2:
        raise ValueError(
            f"`global_layer` {global_layer!r} must output (N, C) or (N, H, W, C); "
            f"its output shape is {global_output.shape}."
        )
    return keras.Model(
        backbone_inputs, local_outputs + [global_output], name=f"{backbone.name}_taps"
    )


def backbone_taps(x, backbone, attention_layers, global_layer, attention_position, **vgg):
    """The local features `[l^1, ..., l^S]` and the global feature `g`.

    The VGG backbone is built into the graph (`vgg` holds its options); any
    other functional model is tapped at the named layers.
    """
    if isinstance(backbone, str):
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
