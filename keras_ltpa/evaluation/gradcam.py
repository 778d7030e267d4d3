"""Grad-CAM (Selvaraju et al., ICCV 2017): the class-activation map of a layer.

For the paper's VGG the explained layer is one of the model's own (block 5's
last activation by default). For a model on a tapped backbone (keras-hub,
keras.applications, any functional model) the backbone is one nested model,
and the default explained map is its last stage: the 4D output that `g` is
average-pooled from (`global_layer`).
"""

import keras
import numpy as np

from keras_ltpa import backbones
from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import overlays as visualize
from keras_ltpa.evaluation.gradients import input_gradient
from keras_ltpa.evaluation.gradients import to_float32
from keras_ltpa.model import describe
from keras_ltpa.utils.batches import map_batches


def _own_layer_split(model, layer):
    """`(features, head)` at one of `model`'s own layers: `features(images)`
    gives the maps A and constants; `head(A, constants)` the logits."""
    features = model.get_layer(layer).output
    body = keras.Model(model.inputs[0], features)
    head = keras.Model(features, model.outputs[0])
    return (lambda batch: (body(batch, training=False), None)), (lambda a, _: head(a, training=False))


def _tapped_split(model):
    """`(features, head)` at the last stage of a tapped backbone.

    The tap model returns `[l_1, ..., l_S, g]` with `g = mean_hw(A)`, A the
    global layer's 4D output. The logits are a function of A through g and
    through each local tap that is that same layer; the other taps come
    before it in the backbone (its earlier stages) and are held fixed.
    """
    (taps,) = backbones.backbone_layers(model)
    global_layer = model.global_layer
    stage = taps.get_layer(global_layer).output
    if len(stage.shape) != 4:
        raise ValueError(
            f"Grad-CAM explains the 4D map g is pooled from; `global_layer` "
            f"{global_layer!r} of model {model.name!r} outputs {stage.shape}."
        )
    # The model's graph again, sharing its layers, to reach the tensors going
    # in and out of the nested tap model (its own graph is the backbone's).
    captured = {}

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if layer is taps:
            captured.update(inputs=args[0], outputs=outputs)
        return outputs

    graph = keras.models.clone_model(
        keras.Model(model.input, model.output), clone_function=lambda layer: layer, call_function=call
    )
    prepare = keras.Model(graph.input, captured["inputs"])
    *locals_, _ = taps.outputs
    stages = keras.Model(taps.inputs, [*locals_, stage])
    head = keras.Model(captured["outputs"], graph.output)
    same = [name == global_layer for name in model.attention_layers]

    def features(batch):
        outputs = stages(prepare(batch, training=False), training=False)
        *local_maps, a = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return a, local_maps

    def logits(a, local_maps):
        chosen = [a if is_stage else fixed for is_stage, fixed in zip(same, local_maps)]
        inputs = [*chosen, keras.ops.mean(a, axis=(1, 2))]
        return head(inputs if len(inputs) > 1 else inputs[0], training=False)

    return features, logits


def _split(model, layer):
    names = [each.name for each in model.layers]
    nested = [each for each in backbones.backbone_layers(model) if isinstance(each, keras.Model)]
    tapped = len(nested) == 1 and isinstance(getattr(model, "global_layer", None), str)
    if layer is None:
        layer = describe(model)["cam_layer"]
        if layer is None and tapped:
            return _tapped_split(model)
        if layer is None:
            raise ValueError(
                f"Model {model.name!r} has no default Grad-CAM layer (it is neither the "
                "VGG backbone nor a tapped backbone); pass `layer`, the name of a conv layer."
            )
    if layer in names:
        return _own_layer_split(model, layer)
    if tapped and layer == model.global_layer:
        return _tapped_split(model)
    allowed = f" or its backbone's last stage {model.global_layer!r}" if tapped else ""
    raise ValueError(
        f"`layer` {layer!r} is not a layer of model {model.name!r}; give one of its layers{allowed}."
    )


def grad_cam(model, images, layer=None, class_index=None, batch_size=64):
    """Grad-CAM maps of a classifier at one convolutional layer.

    `cam = relu(sum_c alpha_c * A_c)`, `A` the layer's output and `alpha_c`
    the spatial mean of the gradient of the class logit with respect to
    `A_c` (Selvaraju et al., "Grad-CAM", ICCV 2017).

    Args:
        model: a `build_model()` model (logits output).
        images: uint8 (N, H, W, 3) raw images, resized to the model input if
            needed.
        layer: name of the layer whose (N, h, w, C) output is explained;
            default: the model's own (`describe(model)["cam_layer"]`, block
            5's last activation for the VGG backbone; for a tapped backbone,
            where `cam_layer` is None, its last stage, `model.global_layer`).
        class_index: class to explain; None explains each image's predicted
            class.
        batch_size: images per model call.

    Returns:
        float32 (N, h, w) maps (not scaled).

    Example:
    >>> from keras_ltpa import build_model
    >>> baseline = build_model(10, variant="noatt", width_multiplier=0.0625)
    >>> grad_cam(baseline, np.zeros((2, 32, 32, 3), "uint8")).shape
    (2, 8, 8)
    >>> resnet = build_model(3, (64, 64, 3), backbone="resnet50", weights="none")
    >>> grad_cam(resnet, np.zeros((1, 64, 64, 3), "uint8")).shape
    (1, 2, 2)

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
    Networks via Gradient-based Localization", ICCV 2017.
    """
    images = visualize.check_image_batch(images)
    features, head = _split(model, layer)
    images = image_files.fit_to_model_input(images, model)

    def batch_maps(batch):
        activations, constants = features(batch.astype("float32"))
        logits = to_float32(head(activations, constants))
        classes = logits.argmax(axis=-1) if class_index is None else np.full(len(logits), class_index)
        selector = keras.ops.convert_to_tensor(np.eye(logits.shape[-1], dtype="float32")[classes])

        def class_score(a):
            return keras.ops.sum(head(a, constants) * selector)

        gradients = to_float32(input_gradient(class_score, activations))
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        return np.maximum((weights * to_float32(activations)).sum(axis=-1), 0.0)

    return map_batches(batch_maps, images, batch_size=batch_size)
