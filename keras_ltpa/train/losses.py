"""The training objective: cross-entropy (with label smoothing) and `compile_model`.

`keras.losses.SparseCategoricalCrossentropy` has no `label_smoothing`; the
budget recipe (`keras_ltpa.train.optimizers.RECIPES["budget"]`) smooths the
targets, so integer labels are turned into one-hot rows here and passed to
`keras.losses.categorical_crossentropy`, which smooths them as
`y * (1 - s) + s / num_classes`.
"""

import keras
from keras import ops

from keras_ltpa.devices.precision import resolve_jit_compile


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
    >>> round(float(loss(ops.array([0]), ops.array([[0.0, 0.0]]))), 4)
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


def compile_model(
    model, optimizer, *, label_mode="int", jit_compile="auto", label_smoothing=0.0
):
    """Compiles a logits model with cross-entropy and accuracy.

    Args:
        model: a `build_model()` model (logits output).
        optimizer: e.g. from `make_optimizer`.
        label_mode: `"int"` (sparse labels) or `"categorical"` (one-hot or
            soft labels from MixUp/CutMix).
        jit_compile: `"auto"`, `"on"`/True or `"off"`/False (see
            `resolve_jit_compile`).
        label_smoothing: float in [0, 1), spread over all classes.

    Returns:
        The model, compiled.
    """
    if label_mode == "categorical":
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    elif label_smoothing:
        loss = SparseCrossentropyWithSmoothing(label_smoothing)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=resolve_jit_compile(jit_compile),
    )
    return model


def balanced_class_weight(counts):
    """Keras `class_weight` that balances the classes: `n / (k * n_c)` for a
    class of `n_c` examples, `n` examples in all and `k` classes present
    (scikit-learn's `compute_class_weight("balanced")`). A class without
    examples gets no entry (Keras then weighs it 1).

    Args:
        counts: the number of training examples of each class id.

    Returns:
        A dict {class id: weight}.

    Example:
    >>> balanced_class_weight([6, 2, 0])
    {0: 0.6666666666666666, 1: 2.0}
    """
    counts = [int(count) for count in counts]
    present = [count for count in counts if count > 0]
    if not present:
        raise ValueError("`class_weight` needs training examples; every class count is 0.")
    total, classes = sum(present), len(present)
    return {index: total / (classes * count) for index, count in enumerate(counts) if count > 0}
