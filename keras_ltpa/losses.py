"""Cross-entropy with label smoothing for integer labels.

`keras.losses.SparseCategoricalCrossentropy` has no `label_smoothing`; the
budget recipe (`keras_ltpa.optimizers.RECIPES["budget"]`) smooths the
targets, so integer labels are turned into one-hot rows here and passed to
`keras.losses.categorical_crossentropy`, which smooths them as
`y * (1 - s) + s / num_classes`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ltpa")
class SparseCrossentropyWithSmoothing(keras.losses.Loss):
    """Softmax cross-entropy on logits for int labels, with label smoothing.

    With `label_smoothing=0` it equals
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

    Args:
        label_smoothing: float in [0, 1): the mass spread evenly over all
            classes.
        name: the loss name.

    Example:
    >>> loss = SparseCrossentropyWithSmoothing(label_smoothing=0.1)
    >>> round(float(loss([0], [[0.0, 0.0]])), 4)
    0.6931
    """

    def __init__(self, label_smoothing=0.0, name="sparse_crossentropy_with_smoothing", **kwargs):
        if not 0 <= label_smoothing < 1:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1); received {label_smoothing!r}."
            )
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config["label_smoothing"] = self.label_smoothing
        return config
