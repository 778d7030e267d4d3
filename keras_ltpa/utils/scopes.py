"""Context managers that change one piece of Keras' global state for a
block and put it back after: the dtype policy, the distribution."""

import contextlib

import keras


@contextlib.contextmanager
def dtype_policy_scope(name):
    """Builds under the dtype policy `name` (None: leave the current one).

    Example:
    >>> with dtype_policy_scope("mixed_bfloat16"):
    ...     keras.config.dtype_policy().name
    'mixed_bfloat16'
    >>> keras.config.dtype_policy().name
    'float32'
    """
    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def no_distribution():
    """Runs the block with no Keras distribution active (the previous one,
    if any, is restored after)."""
    previous = keras.distribution.distribution()
    if previous is not None:
        keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        if previous is not None:
            keras.distribution.set_distribution(previous)
