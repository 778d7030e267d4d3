"""Import weights of the public PyTorch implementation of the paper.

That code (`AttnVGG_before` / `AttnVGG_after`) stores its parameters as a
PyTorch `state_dict` with names such as `conv_block3.op.4.running_mean`,
`projector.op.weight`, `attn2.op.weight` and `classify.weight`. This module
maps each of them onto the matching layer of a `build_model()` model
(`block3_bn2`, `projector_1`, `compatibility_2`, `classifier`), transposing
convolution kernels from (O, I, kH, kW) to (kH, kW, I, O) and linear weights
from (out, in) to (in, out).

Example:
```python
model = keras_ltpa.convert.build_model_from_torch("net.pth")
model.save("net.keras")
```
"""

import os
import re

import numpy as np

from keras_ltpa import backbones
from keras_ltpa.model import build_model

# Within `conv_blockK.op`, modules repeat as (Conv, BatchNorm, ReLU) for
# blocks 1-5 and (Conv, BatchNorm, ReLU, MaxPool) for block 6.
_MODULES_PER_CONV = {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: 4}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_state_dict_file(path):
    """Reads a reference `state_dict` from `.npz`, `.pt` or `.pth`.

    `.npz` keys may carry a `state_dict/` prefix (as the fixtures do); a
    `.pt`/`.pth` file may hold the state dict itself or a checkpoint dict
    with a `"state_dict"` / `"model"` entry. A `module.` prefix (saved from
    `nn.DataParallel`) is dropped.

    Returns:
        A dict of parameter name -> `np.ndarray`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at {path!r}.")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npz":
        with np.load(path) as archive:
            raw = {key: archive[key] for key in archive.files}
        if any(key.startswith("state_dict/") for key in raw):
            raw = {
                key[len("state_dict/") :]: value
                for key, value in raw.items()
                if key.startswith("state_dict/")
            }
    elif extension in (".pt", ".pth"):
        try:
            import torch
        except ImportError as error:
            raise ValueError(
                f"Reading {path!r} needs PyTorch: `pip install torch` or save the "
                "state_dict as .npz (numpy.savez) instead."
            ) from error
        raw = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(raw, dict) and isinstance(raw.get(key), dict):
                raw = raw[key]
        if not isinstance(raw, dict):
            raise ValueError(
                f"{path!r} holds a {type(raw).__name__}, not a state_dict."
            )
    else:
        raise ValueError(
            f"Unsupported checkpoint extension {extension!r} for {path!r}; "
            "allowed: .npz, .pt, .pth."
        )
    return {
        re.sub(r"^module\.", "", key): _to_numpy(value) for key, value in raw.items()
    }


def _keras_target(torch_name):
    """(keras layer name, weight index, transform) for one reference name."""
    match = re.fullmatch(r"conv_block(\d)\.op\.(\d+)\.(\w+)", torch_name)
    if match:
        block, index, kind = int(match[1]), int(match[2]), match[3]
        per_conv = _MODULES_PER_CONV.get(block)
        if per_conv is None:
            return None
        conv, offset = divmod(index, per_conv)
        if offset == 0:
            slot = {"weight": 0, "bias": 1}.get(kind)
            return f"block{block}_conv{conv + 1}", slot, "conv"
        if offset == 1:
            slot = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}
            return f"block{block}_bn{conv + 1}", slot.get(kind), None
        return None
    if torch_name in ("dense.weight", "dense.bias"):
        return "global_dense", 0 if torch_name.endswith("weight") else 1, "conv"
    if torch_name == "projector.op.weight":
        return "projector_1", 0, "pointwise"
    match = re.fullmatch(r"attn(\d)\.op\.weight", torch_name)
    if match:
        return f"compatibility_{match[1]}", 0, "score"
    if torch_name in ("classify.weight", "classify.bias"):
        return "classifier", 0 if torch_name.endswith("weight") else 1, "linear"
    return None


def _transform(array, kind):
    if kind == "conv":  # (O, I, kH, kW) -> (kH, kW, I, O)
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
    if kind == "pointwise":  # (O, I, 1, 1) -> (I, O)
        return array[:, :, 0, 0].T
    if kind == "score":  # (1, C, 1, 1) -> (C,)
        return array.reshape(-1)
    if kind == "linear":  # (out, in) -> (in, out)
        return array.T if array.ndim == 2 else array
    return array


def _converted_values(state_dict):
    """{keras layer name: {weight index: (reference name, converted array)}}."""
    values = {}
    for torch_name, array in state_dict.items():
        if torch_name.endswith(_IGNORED_SUFFIXES):
            continue
        target = _keras_target(torch_name)
        if target is None or target[1] is None:
            raise ValueError(
                f"Reference parameter {torch_name!r} has no counterpart in the "
                "keras_ltpa model."
            )
        layer_name, slot, kind = target
        values.setdefault(layer_name, {})[slot] = (
            torch_name,
            _transform(_to_numpy(array).astype("float32"), kind),
        )
    return values


def _layer_weights(layer, slots):
    """The arrays for each weight of `layer`, checked against its shapes."""
    weights = []
    for slot, variable in enumerate(layer.weights):
        if slot not in slots:
            raise ValueError(
                f"The state_dict has no value for weight {variable.path!r} "
                f"(layer {layer.name!r}, weight {slot})."
            )
        torch_name, array = slots[slot]
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch for {torch_name!r}: it gives {array.shape} "
                f"after conversion but {variable.path!r} has {tuple(variable.shape)}."
            )
        weights.append(array)
    if len(slots) > len(layer.weights):
        extra = [slots[s][0] for s in slots if s >= len(layer.weights)]
        raise ValueError(
            f"Reference parameters {extra} have no weight in layer {layer.name!r}."
        )
    return weights


def load_torch_state_dict(model, state_dict):
    """Copies a reference PyTorch `state_dict` into an equivalent model.

    Every reference parameter must find its layer and every weight of the
    model must be set, with matching shapes; anything else is a ValueError
    that names the parameter.

    Args:
        model: a `build_model()` model configured like the reference
            (same widths, classes, attention position and normalisation).
        state_dict: dict of reference names -> arrays (or torch tensors), or
            a path accepted by `load_state_dict_file`.

    Returns:
        `model`, with its weights replaced.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_state_dict_file(state_dict)
    values = _converted_values(state_dict)
    layers_with_weights = {
        layer.name: layer for layer in model.layers if layer.weights
    }
    missing_layers = sorted(set(layers_with_weights) - set(values))
    if missing_layers:
        raise ValueError(
            "The state_dict has no parameters for model layers "
            f"{missing_layers}; build the model with the reference's configuration "
            "(attention layers, widths, classes)."
        )
    for layer_name, slots in values.items():
        if layer_name not in layers_with_weights:
            names = ", ".join(repr(name) for name, _ in slots.values())
            raise ValueError(
                f"Reference parameters {names} map to layer {layer_name!r}, which "
                f"model {model.name!r} does not have."
            )
        layer = layers_with_weights[layer_name]
        layer.set_weights(_layer_weights(layer, slots))
    return model


def build_model_from_torch(
    state_dict,
    *,
    attention_position="before",
    normalization="softmax",
    pixel_mean=None,
    pixel_std=None,
    **kwargs,
):
    """Builds the equivalent model of a reference checkpoint and loads it.

    The number of classes, the width multiplier, the input size and whether
    attention is on are read from the parameter shapes. The attention
    position and normalisation are not visible in a state_dict: give them.

    Args:
        state_dict: dict of arrays, or a `.npz`/`.pt`/`.pth` path.
        attention_position: `"before"` (AttnVGG_before) or `"after"`.
        normalization: `"softmax"` or `"sigmoid"` (the reference's
            `normalize_attn=True` / `False`).
        pixel_mean, pixel_std: the normalisation the reference's inputs
            got, in [0, 1] units; defaults to `build_model`'s CIFAR-10
            statistics (the reference training script's transform).
        **kwargs: passed on to `build_model`.

    Returns:
        A `keras.Model` with the reference's weights.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_state_dict_file(state_dict)
    required = ("conv_block1.op.0.weight", "dense.weight", "classify.weight")
    for key in required:
        if key not in state_dict:
            raise ValueError(
                f"The state_dict has no {key!r}: it is not a checkpoint of the "
                "reference AttnVGG model."
            )
    first_width = _to_numpy(state_dict["conv_block1.op.0.weight"]).shape[0]
    dense_kernel = _to_numpy(state_dict["dense.weight"]).shape[-1]
    num_classes = _to_numpy(state_dict["classify.weight"]).shape[0]
    side = dense_kernel * backbones.VGG_REDUCTION
    attention = "attn1.op.weight" in state_dict
    options = dict(
        input_shape=(side, side, _to_numpy(state_dict["conv_block1.op.0.weight"]).shape[1]),
        width_multiplier=first_width / backbones.VGG_BLOCKS[0][2],
        attention=attention,
        attention_position=attention_position,
        normalization=normalization,
    )
    if pixel_mean is not None:
        options["pixel_mean"] = pixel_mean
    if pixel_std is not None:
        options["pixel_std"] = pixel_std
    options.update(kwargs)
    model = build_model(num_classes, **options)
    return load_torch_state_dict(model, state_dict)
