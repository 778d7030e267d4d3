"""Label-smoothed cross-entropy for integer labels."""

import keras
import numpy as np
import pytest

from keras_ltpa.train.losses import SparseCrossentropyWithSmoothing

LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], "float32")
LABELS = np.array([0, 2])


def _reference(logits, labels, smoothing):
    """Mean over the batch of -sum(q * log softmax), q the smoothed target, in float64."""
    logits = logits.astype("float64")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full_like(log_p, smoothing / logits.shape[-1])
    target[np.arange(len(labels)), labels] += 1 - smoothing
    return float(-(target * log_p).sum(-1).mean())


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_matches_the_smoothed_target_formula(smoothing):
    loss = SparseCrossentropyWithSmoothing(smoothing)
    value = float(keras.ops.convert_to_numpy(loss(LABELS, LOGITS)))
    # float32 log-softmax of logits of magnitude <= 3: error ~ 10 * eps.
    assert value == pytest.approx(_reference(LOGITS, LABELS, smoothing), abs=1e-5)


def test_without_smoothing_equals_keras_sparse_crossentropy():
    ours = SparseCrossentropyWithSmoothing(0.0)(LABELS[:, None], LOGITS)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(keras_loss), atol=1e-6
    )


def test_round_trips_through_its_config_and_rejects_bad_values():
    loss = SparseCrossentropyWithSmoothing(0.2)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SparseCrossentropyWithSmoothing)
    assert restored.label_smoothing == pytest.approx(0.2)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            SparseCrossentropyWithSmoothing(bad)


def test_balanced_class_weight_is_scikit_learn_s():
    from sklearn.utils.class_weight import compute_class_weight

    from keras_ltpa.train.losses import balanced_class_weight

    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=997, p=[0.6, 0.25, 0.1, 0.04, 0.01])
    expected = compute_class_weight("balanced", classes=np.unique(labels), y=labels)
    weights = balanced_class_weight(np.bincount(labels, minlength=5))
    assert sorted(weights) == np.unique(labels).tolist()
    np.testing.assert_allclose([weights[c] for c in sorted(weights)], expected, rtol=1e-12)
    # A class the training split lacks gets no weight (Keras then uses 1).
    assert balanced_class_weight([4, 0, 2]) == {0: 0.75, 2: 1.5}
    with pytest.raises(ValueError, match="every class count is 0"):
        balanced_class_weight([0, 0])
