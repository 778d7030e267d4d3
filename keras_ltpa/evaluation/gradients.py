"""Gradients with respect to a model's inputs, on every Keras backend.

Keras 3 has no backend-neutral `gradient` op, so the three backends' own
machinery is used: `tf.GradientTape`, `jax.grad` and torch autograd. Grad-CAM
(gradients at a feature map) and FGSM (gradients at the raw pixels) share it.
"""

import keras


def input_gradient(function, inputs):
    """d function(inputs) / d inputs for a scalar-valued `function`.

    Args:
        function: maps a tensor like `inputs` to a scalar tensor, built from
            `keras.ops` and Keras models.
        inputs: a NumPy array or backend tensor.

    Returns:
        The gradient, a backend tensor of the shape of `inputs`.

    Example:
    >>> import numpy as np
    >>> g = input_gradient(lambda x: keras.ops.sum(x * x), np.ones(3, "float32"))
    >>> keras.ops.convert_to_numpy(g).tolist()
    [2.0, 2.0, 2.0]
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = function(inputs)
        return tape.gradient(value, inputs)
    if backend == "jax":
        import jax

        return jax.grad(function)(keras.ops.convert_to_tensor(inputs))
    if backend == "torch":
        inputs = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
        function(inputs).backward()
        return inputs.grad
    raise ValueError(
        f"Input gradients need the tensorflow, jax or torch backend; running {backend}."
    )


def to_float32(tensor):
    """A backend tensor as a float32 NumPy array (via a cast: NumPy has no
    bfloat16 for torch tensors to map to)."""
    return keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32"))
