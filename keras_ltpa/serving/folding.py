"""Batch-norm folding, checked against the Keras model.

In inference, `BN(conv(x)) = gamma * (conv(x) - mean) / sqrt(var + eps) +
beta` is one convolution with kernel `W * s` and bias `(b - mean) * s +
beta`, where `s = gamma / sqrt(var + eps)` per output channel.
`fold_batch_norm` rewrites a functional model that way (one layer less per
pair); `serving_model` folds the model to export and accepts the fold only
when its outputs match the Keras model's (see `FOLD_TOLERANCE`).
"""

import collections
import warnings

import keras
import numpy as np

from keras_ltpa.model import AttentionClassifier
from keras_ltpa.model import attention_model
from keras_ltpa.utils.keras_internals import is_functional

# Difference allowed between the folded graph and the Keras model, relative
# to each output's scale: per image, the largest difference over a map (or
# the probabilities) divided by that map's peak. A 32x32 softmax map averages
# ~1e-3, so an absolute bound would allow 10% per pixel. Folding reorders
# float32 products and sums: on the paper's model (random weights, randomised
# BN statistics) the folded outputs moved by up to 4.5e-5 of the peak, while
# the float32 Keras model itself is up to 4.6e-5 from a float64 evaluation.
# Beyond it, the fold must be as close to float64 as Keras is (see
# `serving_model`).
FOLD_TOLERANCE = 1e-4
_FOLDABLE_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def functional_view(model):
    """`model` as a plain functional `keras.Model` sharing its layers: its
    `get_config()` describes the layer graph, which an
    `AttentionClassifier`'s own config (its constructor arguments) does not."""
    if not isinstance(model, AttentionClassifier):
        return model
    return keras.Model(model.input, model.output, name=model.name)


def _keras_history_names(value):
    """Names of the layers whose outputs appear in a serialised call."""
    if isinstance(value, dict):
        if "keras_history" in value:
            return [value["keras_history"][0]]
        return [n for item in value.values() for n in _keras_history_names(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _keras_history_names(item)]
    return []


def _conv_batch_norm_pairs(model):
    """(conv, batch_norm) layer pairs of one functional model that can fold.

    A pair folds when the BN layer normalises the channel axis of a plain
    convolution (no activation), and that convolution's output feeds nothing
    else: then `BN(conv(x))` is exactly one convolution.
    """
    config = functional_view(model).get_config()
    consumers = collections.Counter()
    calls = {}
    for layer_config in config["layers"]:
        calls[layer_config["name"]] = len(layer_config["inbound_nodes"])
        for name in _keras_history_names(layer_config["inbound_nodes"]):
            consumers[name] += 1
    for name in _keras_history_names(config["output_layers"]):
        consumers[name] += 1

    # The graph's nodes are layers and, where a model applies an op to a
    # tensor (`x + 3.0` in MobileNetV3's hard sigmoid), bare operations.
    nodes = {operation.name: operation for operation in functional_view(model).operations}
    pairs = []
    for layer_config in config["layers"]:
        layer = nodes.get(layer_config["name"])
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        sources = _keras_history_names(layer_config["inbound_nodes"])
        if calls[layer.name] != 1 or len(sources) != 1:
            continue
        conv = nodes.get(sources[0])
        if type(conv) not in _FOLDABLE_CONVOLUTIONS:
            continue
        channel_axis = -1 if conv.data_format == "channels_last" else 1
        rank = len(conv.output.shape)
        axis = layer.axis if isinstance(layer.axis, int) else None
        if (
            calls[conv.name] != 1
            or consumers[conv.name] != 1
            or conv.get_config()["activation"] != "linear"
            or axis is None
            or axis % rank != channel_axis % rank
        ):
            continue
        pairs.append((conv, layer))
    return pairs


def folded_weights(conv, batch_norm):
    """Kernel and bias of the one convolution equal to `batch_norm(conv(x))`.

    With s = gamma / sqrt(var + eps): W' = W * s (per output channel) and
    b' = (b - mean) * s + beta, computed in float64.
    """
    def value(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float64")

    kernel = value(conv.kernel)
    filters = kernel.shape[-1]
    bias = value(conv.bias) if conv.use_bias else np.zeros(filters)
    gamma = value(batch_norm.gamma) if batch_norm.scale else np.ones(filters)
    beta = value(batch_norm.beta) if batch_norm.center else np.zeros(filters)
    mean = value(batch_norm.moving_mean)
    variance = value(batch_norm.moving_variance)
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    dtype = conv.kernel.dtype
    return [(kernel * scale).astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]


def _clone_functional(model, folded, fold=True, dtype=None):
    """Clones functional `model`, folding its foldable BN layers if `fold`.

    The clone has its own weights (copied, or folded); `dtype` optionally
    replaces every layer's dtype policy. `folded` collects the names of the
    convolutions that absorbed a batch norm.
    """
    model = functional_view(model)
    pairs = _conv_batch_norm_pairs(model) if fold else []
    conv_of = {id(conv): bn for conv, bn in pairs}
    skipped = {id(bn) for _, bn in pairs}
    weights = {}

    def layer_config(layer):
        config = layer.get_config()
        if dtype is not None and "dtype" in config:
            config["dtype"] = dtype
        return config

    def clone_layer(layer):
        if is_functional(layer):
            return _clone_functional(layer, folded, fold, dtype)
        if id(layer) in conv_of:
            config = layer_config(layer)
            config["use_bias"] = True
            clone = layer.__class__.from_config(config)
            weights[id(clone)] = folded_weights(layer, conv_of[id(layer)])
            return clone
        clone = layer.__class__.from_config(layer_config(layer))
        if id(layer) in skipped:
            skipped.add(id(clone))
        weights[id(clone)] = layer
        return clone

    def call_layer(layer, *args, **kwargs):
        # A folded BN passes its input through: the conv before it already
        # applies the normalisation.
        if id(layer) in skipped:
            return args[0]
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer
    )
    for layer in clone.layers:
        source = weights.get(id(layer))
        if isinstance(source, list):
            layer.set_weights(source)
            folded.append(layer.name)
        elif source is not None:
            layer.set_weights(source.get_weights())
    return clone


def fold_batch_norm(model):
    """A copy of `model` with each Conv -> BatchNormalization pair folded.

    In inference, `BN(conv(x)) = gamma * (conv(x) - mean) / sqrt(var + eps)
    + beta` is one convolution with kernel `W * s` and bias
    `(b - mean) * s + beta`, where `s = gamma / sqrt(var + eps)` per output
    channel. The copy computes the same function (up to float rounding) with
    one layer less per pair; the original model is not modified.

    Args:
        model: a functional `keras.Model` (nested functional models are
            folded too).

    Returns:
        A tuple `(folded_model, folded_layers)`: the new model and the names
        of the convolutions that absorbed a batch norm.

    Example:
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> folded, names = fold_batch_norm(model)
    >>> len(names), any("bn" in layer.name for layer in folded.layers)
    (15, False)
    """
    _check_functional(model)
    folded = []
    clone = _clone_functional(model, folded)
    return clone, folded


def _check_functional(model):
    if not is_functional(model):
        raise ValueError(
            "`model` must be a functional keras.Model from build_model() or a "
            f"path to its .keras file; received {model!r}."
        )


def _checked_outputs(model, images):
    """Probabilities and attention maps of `model` on `images`, as float64."""
    outputs = attention_model(model)(images, training=False)
    return {
        key: np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")
        for key, value in outputs.items()
        if key == "probabilities" or key.startswith("attention_")
    }


def relative_difference(outputs, reference):
    """The largest difference between two dicts of (N, ...) outputs, per
    image relative to the reference output's peak magnitude there."""
    worst = 0.0
    for key, value in reference.items():
        value = np.asarray(value, "float64").reshape(len(value), -1)
        other = np.asarray(outputs[key], "float64").reshape(len(value), -1)
        scale = np.maximum(np.abs(value).max(axis=1), np.finfo("float64").tiny)
        worst = max(worst, float((np.abs(other - value).max(axis=1) / scale).max()))
    return worst


def probe_images(height, width, count=4, seed=1234):
    """Smooth random uint8 images (count, height, width, 3) for output checks."""
    rng = np.random.default_rng(seed)
    # Smooth random images: closer to photos than white noise, so the check
    # exercises attention maps that are not flat.
    coarse = rng.uniform(0, 255, (count, max(1, height // 4), max(1, width // 4), 3))
    images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :height, :width]
    images = images + rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype("uint8")


def serving_model(model, fold=True):
    """The model to export and the metadata of its batch-norm folding.

    The fold is accepted when the folded model's outputs are within
    `FOLD_TOLERANCE` of the Keras model's (relative to each output's peak,
    `relative_difference`), or no further from a float64 evaluation than
    twice the Keras model's own float32 error (a model with
    huge logits has float32 noise above any fixed tolerance). The check runs
    in float32 whatever the model's policy: folding is a property of the
    weights, and bfloat16 noise would hide a wrong fold.
    """
    info = {
        "batch_norm_folded": False,
        "folded_layers": [],
        "fold_max_relative_difference": None,
    }
    if not fold:
        return model, info
    folded, names = fold_batch_norm(model)
    if not names:
        return model, info
    if model.dtype_policy.compute_dtype == "float32":
        reference, candidate = model, folded
    else:
        reference = _clone_functional(model, [], fold=False, dtype="float32")
        candidate = _clone_functional(model, [], fold=True, dtype="float32")
    exact = _clone_functional(model, [], fold=False, dtype="float64")
    images = probe_images(*model.input_shape[1:3]).astype("float32")
    outputs = {
        key: _checked_outputs(each, images)
        for key, each in (("keras", reference), ("folded", candidate), ("exact", exact))
    }
    difference = relative_difference(outputs["folded"], outputs["keras"])
    float32_error = relative_difference(outputs["keras"], outputs["exact"])
    folded_error = relative_difference(outputs["folded"], outputs["exact"])
    info.update(
        fold_max_relative_difference=difference,
        keras_float32_error=float32_error,
        folded_float32_error=folded_error,
    )
    if not (difference <= FOLD_TOLERANCE or folded_error <= 2 * float32_error):
        warnings.warn(
            f"Batch norm folding changed the outputs by {difference:.3g} of their "
            f"scale (more than {FOLD_TOLERANCE:g}, and {folded_error:.3g} from a "
            "float64 evaluation "
            f"where the Keras model is {float32_error:.3g} away); exporting the "
            "unfolded model instead.",
            stacklevel=3,
        )
        return model, info
    info.update(batch_norm_folded=True, folded_layers=names)
    return folded, info


