"""Batch normalisation that runs as one kernel on the TensorFlow backend.

Keras 3 writes `BatchNormalization` as separate ops (moments, subtract,
multiply, add, and a cast on each side under mixed precision). XLA fuses them
on JAX; on TensorFlow without XLA they stay separate kernels, and on 2-core
CPUs they took about 40% of a training step's op time (see
docs/benchmarks.md). This `BatchNormalization` is Keras' layer with the same
weights and config; on TensorFlow it calls `FusedBatchNormV3`, one kernel
forward and one backward. On JAX and PyTorch, and for inputs the fused
kernel does not take (masks, renorm, synchronized statistics, ranks other
than 4, channels not last, float64), it is Keras' layer unchanged.

The class keeps Keras' name (registered as `keras_ltpa>BatchNormalization`):
Keras names a layer's entry in a weights file after its class, so
`model.weights.h5` files (the presets') stay interchangeable between models
built with this layer and with Keras' own.
"""

import keras

_FUSED_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="keras_ltpa")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with TensorFlow's fused kernel.

    Training normalises with the batch's biased variance and updates the
    moving statistics exactly as the parent layer does:

        moving_mean <- momentum * moving_mean + (1 - momentum) * mean
        moving_variance <- momentum * moving_variance + (1 - momentum) * var

    (the fused kernel returns the unbiased variance for the moving average;
    it is scaled back by (n - 1) / n so all three backends keep the same
    statistics). Inference uses the moving statistics.

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:
    >>> import numpy as np
    >>> layer = BatchNormalization(epsilon=1e-5, momentum=0.9)
    >>> tuple(layer(np.ones((2, 4, 4, 3), "float32"), training=True).shape)
    (2, 4, 4, 3)

    Reference: Ioffe and Szegedy, "Batch Normalization", ICML 2015.
    """

    def _fusable(self, inputs, mask):
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = (
            tf.cast(self.gamma, "float32")
            if self.scale
            else tf.ones([channels], "float32")
        )
        offset = (
            tf.cast(self.beta, "float32")
            if self.center
            else tf.zeros([channels], "float32")
        )
        if training and self.trainable:
            empty = tf.constant([], "float32")
            outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=scale,
                offset=offset,
                mean=empty,
                variance=empty,
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=True,
            )
            # The kernel's variance output is unbiased (n / (n - 1)); the
            # parent layer averages the biased one. n = 1 gives 0 either way.
            count = tf.cast(tf.size(inputs) // channels, "float32")
            variance = variance * tf.maximum(count - 1.0, 0.0) / count
            self.moving_mean.assign(
                self.moving_mean * self.momentum + mean * (1.0 - self.momentum)
            )
            self.moving_variance.assign(
                self.moving_variance * self.momentum
                + variance * (1.0 - self.momentum)
            )
        else:
            outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=scale,
                offset=offset,
                mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=False,
            )
        return tf.cast(outputs, self.compute_dtype)
