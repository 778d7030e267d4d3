"""TF Serving's REST `:predict` contract, replayed against a loaded export.

`rest_predict(loaded, body)` returns the body TF Serving's REST API would
answer to the request `body`, following its documented JSON mapping, so
clients and tests can check requests and responses without the server
binary. `load_export(path)` loads an export version folder.
"""

import base64
import json
import os
import re

import numpy as np
import tensorflow as tf

# The signature TF Serving answers when a request names none.
SERVING_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


class _RestError(Exception):
    """An error TF Serving reports as `{"error": message}`."""


def _json_value_text(value):
    return json.dumps(value, allow_nan=True)[:200]


def _json_type(value):
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _json_leaf(value, dtype):
    """One JSON value converted to `dtype` as TF Serving's JSON mapping does."""
    def type_error():
        return _RestError(
            f"JSON Value: {_json_value_text(value)} Type: {_json_type(value)} is "
            f"not of expected type: {dtype.name}"
        )

    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise _RestError("Unable to base64 decode") from None
        if isinstance(value, dict):
            raise _RestError(
                f"JSON Value: {_json_value_text(value)} not formatted correctly for "
                "base64 data"
            )
        raise type_error()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error()
    if dtype.is_integer:
        if not isinstance(value, int):
            raise type_error()
        if not dtype.min <= value <= dtype.max:
            raise _RestError(
                f"JSON Value: {value} is out of range for {dtype.name} "
                f"[{dtype.min}, {dtype.max}]"
            )
        return value
    if dtype.is_floating:
        return float(value)
    raise _RestError(f"Conversion of JSON Value: {_json_value_text(value)} to type: {dtype.name}")


def _json_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _json_to_array(value, dtype):
    """A dense tensor from nested JSON lists, checked level by level."""
    shape = _json_shape(value)
    leaves = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _RestError(
                    f"JSON Value: {_json_value_text(item)} found at incorrect level: "
                    f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}"
                )
            leaves.append(_json_leaf(item, dtype))
            return
        if level >= len(shape):
            raise _RestError(
                f"Encountered list at unexpected level: {level} expected < {len(shape)}"
            )
        if len(item) != shape[level]:
            raise _RestError(
                f"Encountered list at unexpected size: {len(item)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    return np.array(leaves, dtype=numpy_dtype).reshape(shape)


def _inputs_from_instances(instances, specs):
    """Row format: one JSON item per example, stacked along a new batch axis."""
    names = sorted(specs)

    def is_object(item):
        return isinstance(item, dict) and not _is_b64(item)

    if not is_object(instances[0]) and len(names) > 1:
        raise _RestError(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    named = is_object(instances[0])
    columns = {name: [] for name in names}
    for index, item in enumerate(instances):
        if named:
            if not is_object(item):
                raise _RestError(f"Expecting object but got list at item {index} of input list")
            if set(item) != set(names):
                raise _RestError(
                    f"Failed to process element: {index} of 'instances' list. JSON "
                    f"object: {_json_value_text(item)} keys must be equal to: "
                    f"{','.join(names)}"
                )
            pairs = [(name, item[name]) for name in names]
        else:
            if is_object(item):
                raise _RestError(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            pairs = [(names[0], item)]
        for name, value in pairs:
            try:
                array = _json_to_array(value, specs[name].dtype)
            except _RestError as error:
                key = f" key: {name}" if named else ""
                raise _RestError(
                    f"Failed to process element: {index}{key} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {error}"
                ) from None
            if columns[name] and array.shape != columns[name][0].shape:
                raise _RestError(
                    f"Failed to process element: {index} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: Expecting shape {list(columns[name][0].shape)} "
                    f"but got: {list(array.shape)}"
                )
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _inputs_from_columns(inputs, specs):
    """Columnar format: the whole tensor per input name."""
    names = sorted(specs)
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise _RestError(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        return {names[0]: _json_to_array(inputs, specs[names[0]].dtype)}
    arrays = {}
    for name in names:
        if name not in inputs:
            raise _RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _json_to_array(inputs[name], specs[name].dtype)
    extra = sorted(set(inputs) - set(names))
    if extra:
        raise _RestError(
            f"input size does not match signature: {len(inputs)}!={len(names)} "
            f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(names)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{}}."
        )
    return arrays


def _b64_json(value):
    return {"b64": base64.b64encode(value).decode("ascii")}


def _text_json(value):
    return value.decode("utf-8", errors="replace")


def _float_json(value):
    # Shortest decimal that reads back as the same float32, as TF Serving
    # writes floats (0.2, not 0.20000000298023224).
    return float(str(np.float32(value)))


def _to_json(array, binary):
    """A numpy array as nested JSON lists (bytes as UTF-8 or {"b64": ...})."""
    if array.dtype == object or array.dtype.kind == "S":
        convert = _b64_json if binary else _text_json
    elif array.dtype.kind == "f":
        convert = _float_json
    elif array.dtype.kind == "b":
        convert = bool
    else:
        convert = int

    def walk(item):
        if isinstance(item, np.ndarray):
            return [walk(element) for element in item]
        return convert(item)

    return walk(array)


def _error_text(error):
    """TF's error message without the Python-side execution banner."""
    message = getattr(error, "message", None) or str(error)
    lines = [
        line
        for line in message.splitlines()
        if line.strip()
        and not line.startswith(("Graph execution error", "Detected at node"))
        and line.strip() != "<stack traces unavailable>"
        and not line.lstrip().startswith("[[")
    ]
    text = " ".join(line.strip() for line in lines)
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text)


def load_export(path):
    """`tf.saved_model.load` of an export directory, with a clear error."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"No SavedModel (saved_model.pb) found in {path!r}.")
    return tf.saved_model.load(path)


def rest_predict(loaded, request_body, signature_name=None):
    """The body TF Serving's REST `:predict` would answer to `request_body`.

    Follows TF Serving's documented JSON mapping: the `instances` row format
    (a list with one item per example; objects keyed by input name when a
    signature has several inputs) and the `inputs` columnar format, binary
    strings as `{"b64": "..."}`, an optional `"signature_name"`. The answer
    is `{"predictions": [...]}` for the row format (one object per example,
    keyed by output name, when there are several outputs) or
    `{"outputs": {...}}` for the columnar format; errors are
    `{"error": "..."}`. Output names ending in `_bytes` are sent as
    `{"b64": ...}`; other strings as text. Integer values out of the input
    dtype's range are reported as errors (the server would wrap them).

    Args:
        loaded: the object returned by `tf.saved_model.load`, or the path of
            an export (version) directory.
        request_body: the request, a JSON string/bytes or an already decoded
            dict.
        signature_name: signature used when the body names none; default
            `"serving_default"`.

    Returns:
        The response body as a dict (serialise with `json.dumps`).

    Example:
    >>> import tempfile
    >>> from keras_ltpa import build_model, export_saved_model
    >>> path = export_saved_model(build_model(10, width_multiplier=0.0625), tempfile.mkdtemp())
    >>> image = [[[0, 0, 0]] * 32] * 32  # one black 32x32 RGB image
    >>> answer = rest_predict(path, {"instances": [image, image]})
    >>> len(answer["predictions"]), len(answer["predictions"][0]["class_names"])
    (2, 5)
    >>> rest_predict(path, {"instances": []})
    {'error': "No values in 'instances' array"}
    """
    if isinstance(loaded, (str, os.PathLike)):
        loaded = load_export(loaded)
    try:
        return _rest_predict(loaded, request_body, signature_name)
    except _RestError as error:
        return {"error": str(error)}


def _rest_predict(loaded, request_body, signature_name):
    body = _parse_body(request_body)
    function = _signature(loaded, body, signature_name)
    specs = function.structured_input_signature[1]
    if _is_columnar(body):
        outputs = _run(function, specs, _inputs_from_columns(body["inputs"], specs))
        return _columnar_response(outputs)
    outputs = _run(function, specs, _inputs_from_instances(body["instances"], specs))
    return _row_response(outputs)


def _parse_body(request_body):
    """The request as a dict, from JSON text, bytes or a decoded dict."""
    if isinstance(request_body, (bytes, bytearray)):
        request_body = request_body.decode("utf-8", errors="replace")
    if isinstance(request_body, str):
        if not request_body.strip():
            raise _RestError("JSON Parse error: The document is empty")
        try:
            request_body = json.loads(request_body)
        except json.JSONDecodeError as error:
            raise _RestError(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    if not isinstance(request_body, dict):
        raise _RestError(f"JSON Value: {_json_value_text(request_body)} Is not object")
    return request_body


def _signature(loaded, body, signature_name):
    """The signature the body names, else `signature_name`, else the default."""
    name = body.get("signature_name", signature_name or SERVING_SIGNATURE)
    if not isinstance(name, str):
        raise _RestError(
            f"JSON Value: {_json_value_text(body)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    if name not in loaded.signatures:
        raise _RestError(f'Serving signature key "{name}" not found.')
    return loaded.signatures[name]


def _is_columnar(body):
    """True for `inputs` (columnar), False for a non-empty `instances` list (rows)."""
    if "instances" in body and "inputs" in body:
        raise _RestError(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' "
            "keys to exist"
        )
    if "inputs" in body:
        return True
    if "instances" not in body:
        raise _RestError("Missing 'inputs' or 'instances' key")
    if not isinstance(body["instances"], list):
        raise _RestError("Excepting 'instances' to be an list/array")
    if not body["instances"]:
        raise _RestError("No values in 'instances' array")
    return False


def _run(function, specs, arrays):
    """The signature's outputs (NumPy, sorted by name); TF errors as TF Serving's."""
    try:
        tensors = {
            key: tf.constant(value, dtype=specs[key].dtype) for key, value in arrays.items()
        }
        outputs = function(**tensors)
    except (tf.errors.OpError, TypeError, ValueError) as error:
        raise _RestError(_error_text(error)) from None
    return {key: value.numpy() for key, value in sorted(outputs.items())}


def _outputs_json(outputs):
    """Each output as JSON; names ending in `_bytes` as `{"b64": ...}`."""
    return {key: _to_json(value, key.endswith("_bytes")) for key, value in outputs.items()}


def _columnar_response(outputs):
    """`{"outputs": ...}`: the one output's value, or an object of them."""
    columns = _outputs_json(outputs)
    return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}


def _row_response(outputs):
    """`{"predictions": [...]}`: one item per example (an object of the
    outputs when there are several), all outputs batched alike."""
    batch_sizes = {key: value.shape[0] if value.ndim else None for key, value in outputs.items()}
    for key, size in batch_sizes.items():
        if size is None:
            raise _RestError(f"Tensor name: {key} has no shape information ")
    first = next(iter(batch_sizes.values()))
    for key, size in batch_sizes.items():
        if size != first:
            raise _RestError(
                f"Tensor name: {key} has inconsistent batch size: {size} expecting: {first}"
            )
    columns = _outputs_json(outputs)
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {
        "predictions": [{key: column[i] for key, column in columns.items()} for i in range(first)]
    }
