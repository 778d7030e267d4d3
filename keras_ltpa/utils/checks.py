"""Argument checks shared by the package: each error names the argument,
the value received and what is allowed."""

import numpy as np


def check_choice(argument, value, allowed):
    """Raises ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(map(repr, allowed))}; "
            f"received {argument}={value!r}."
        )
    return value


# Test-time augmentations of the accuracy (`evaluate.py --tta`): here, not in
# keras_ltpa.evaluation, so that the command-line parsers can name them
# without loading the evaluation and data code (and TensorFlow).
TTA_CHOICES = ("none", "flip")


def check_tta(tta):
    """Validates a test-time augmentation: None, `"none"` or `"flip"`."""
    if tta is None or tta == "none":
        return None
    if tta == "flip":
        return tta
    raise ValueError(f"`tta` must be one of {TTA_CHOICES} (or None); received tta={tta!r}.")


def is_positive_int(value):
    """True for an int (not a bool) >= 1, NumPy integers included."""
    return (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
    )


def check_size(size, argument="size"):
    """`size` as (height, width) of Python ints; a single int means a square.

    Raises:
        ValueError naming `argument` unless `size` is a positive int or a
        pair of them.
    """
    if is_positive_int(size):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(is_positive_int(s) for s in size)
    ):
        raise ValueError(
            f"`{argument}` must be an int or (height, width) of positive ints; "
            f"received {argument}={size!r}."
        )
    return int(size[0]), int(size[1])
