"""`map_batches`: one function over consecutive slices of arrays, outputs
joined back together. Every batched prediction of the package (evaluation,
overlays, Grad-CAM, FGSM, transfer features, preset scores) goes through it,
so batching, bfloat16 outputs and dict outputs are handled once."""

import keras
import numpy as np


def _to_numpy(value):
    """A backend tensor or array as NumPy; floating values as float32 (NumPy
    has no bfloat16 for torch tensors to map to)."""
    if hasattr(value, "dtype") and "float" in str(value.dtype):
        value = keras.ops.cast(value, "float32")
    return np.asarray(keras.ops.convert_to_numpy(value))


def _join(chunks):
    first = chunks[0]
    if isinstance(first, dict):
        return {key: _join([chunk[key] for chunk in chunks]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_join(list(parts)) for parts in zip(*chunks))
    return np.concatenate([_to_numpy(chunk) for chunk in chunks])


def map_batches(function, *arrays, batch_size=64):
    """`function(*slices)` on consecutive slices of `arrays`, concatenated.

    Args:
        function: called with one slice of each array (the same rows); it
            returns an array or tensor, or a tuple, list or dict of them.
        *arrays: arrays with the same first dimension.
        batch_size: rows per call (a positive int).

    Returns:
        The outputs of every call joined along the first axis, with the
        structure `function` returns; tensors become NumPy arrays and
        floating outputs float32.

    Example:
    >>> import numpy as np
    >>> map_batches(lambda x: x * 2, np.arange(5.0), batch_size=2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    if not arrays:
        raise ValueError("`map_batches` needs at least one array to slice.")
    count = len(arrays[0])
    if any(len(array) != count for array in arrays):
        raise ValueError(
            f"Arrays of different lengths: {[len(array) for array in arrays]}; "
            "every array needs one row per example."
        )
    if count == 0:
        raise ValueError("The arrays are empty: nothing to compute.")
    chunks = [
        function(*(array[start : start + batch_size] for array in arrays))
        for start in range(0, count, batch_size)
    ]
    return _join(chunks)
