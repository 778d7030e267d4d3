"""Grad-CAM (Selvaraju et al., ICCV 2017): the plain baseline's class-activation map."""

import keras
import numpy as np

from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import overlays as visualize
from keras_ltpa.evaluation.gradients import input_gradient
from keras_ltpa.evaluation.gradients import to_float32
from keras_ltpa.model import describe
from keras_ltpa.utils.batches import map_batches


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
            5's last activation for the VGG backbone).
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
    """
    images = visualize.check_image_batch(images)
    if layer is None:
        layer = describe(model)["cam_layer"]
        if layer is None:
            raise ValueError(
                f"Model {model.name!r} has no default Grad-CAM layer (it is not "
                "the VGG backbone); pass `layer`, the name of a conv layer."
            )
    if layer not in [each.name for each in model.layers]:
        raise ValueError(f"`layer` {layer!r} is not a layer of model {model.name!r}.")
    features = model.get_layer(layer).output
    body = keras.Model(model.inputs[0], features)
    head = keras.Model(features, model.outputs[0])
    images = image_files.fit_to_model_input(images, model)

    def batch_maps(batch):
        activations = body(batch.astype("float32"), training=False)
        logits = to_float32(head(activations, training=False))
        classes = logits.argmax(axis=-1) if class_index is None else np.full(len(logits), class_index)
        selector = keras.ops.convert_to_tensor(np.eye(logits.shape[-1], dtype="float32")[classes])

        def class_score(a):
            return keras.ops.sum(head(a, training=False) * selector)

        gradients = to_float32(input_gradient(class_score, activations))
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        return np.maximum((weights * to_float32(activations)).sum(axis=-1), 0.0)

    return map_batches(batch_maps, images, batch_size=batch_size)
