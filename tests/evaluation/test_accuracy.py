"""Flip test-time augmentation of keras_ltpa.evaluation.accuracy (the plain
scores: tests/evaluation/test_localisation.py)."""

import keras
import numpy as np
import pytest

from keras_ltpa import evaluation as evaluate
from keras_ltpa.evaluation import accuracy


def _pixel_logits_model():
    """Images (1, 3, 1) of pixels (a, b, c); logits [2a, c, b].

    Mirroring swaps a and c, so the flipped image's logits are [2c, a, b]
    and the flip-averaged logits [a + c, (a + c) / 2, b].
    """
    inputs = keras.Input((1, 3, 1))
    pixels = keras.layers.Reshape((3,))(inputs)
    dense = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, dense(pixels))
    kernel = np.zeros((3, 3), np.float32)
    kernel[0, 0] = 2.0  # logit 0 = 2a
    kernel[2, 1] = 1.0  # logit 1 = c
    kernel[1, 2] = 1.0  # logit 2 = b
    dense.set_weights([kernel])
    return model


def _images(rows):
    return np.array(rows, np.float32).reshape(len(rows), 1, 3, 1)


def test_flip_images_mirrors_the_width_axis():
    images = np.arange(12).reshape(1, 2, 3, 2)
    np.testing.assert_array_equal(accuracy.flip_images(images)[0, 0], [[4, 5], [2, 3], [0, 1]])
    with pytest.raises(ValueError, match=r"batch \(N, H, W, C\)"):
        accuracy.flip_images(np.zeros((2, 3, 1)))


def test_flip_tta_on_a_model_that_flipping_changes_matches_a_hand_computation():
    model = _pixel_logits_model()
    images = _images([[1, 0, 3], [3, 5, 0], [0, 1, 4], [2, 9, 1]])
    labels = np.array([0, 0, 1, 2])
    # By hand, logits [2a, c, b] and flip-averaged [a + c, (a + c) / 2, b]:
    #   (1, 0, 3): plain [2, 3, 0] -> 1 (wrong);  averaged [4, 2, 0]   -> 0 (right)
    #   (3, 5, 0): plain [6, 0, 5] -> 0 (right);  averaged [3, 1.5, 5] -> 2 (wrong)
    #   (0, 1, 4): plain [0, 4, 1] -> 1 (right);  averaged [4, 2, 1]   -> 0 (wrong)
    #   (2, 9, 1): plain [4, 1, 9] -> 2 (right);  averaged [3, 1.5, 9] -> 2 (right)
    averaged = accuracy.flip_tta_outputs(model.predict_on_batch, images)
    np.testing.assert_allclose(
        averaged, [[4, 2, 0], [3, 1.5, 5], [4, 2, 1], [3, 1.5, 9]], rtol=0, atol=1e-6
    )
    batches = [(images[:2], labels[:2]), (images[2:], labels[2:])]
    result = evaluate.evaluate_classification(model, batches, ["x", "y", "z"], top_k=2, tta="flip")
    assert result["accuracy"] == pytest.approx(3 / 4)  # plain, unchanged by TTA
    assert result["per_class"] == pytest.approx({"x": 0.5, "y": 1.0, "z": 1.0})
    tta = result["flip_tta"]
    assert tta["accuracy"] == pytest.approx(2 / 4)
    assert tta["per_class"] == pytest.approx({"x": 0.5, "y": 0.0, "z": 1.0})
    # Top-2 of the averaged logits: {0, 1}, {2, 0}, {0, 1}, {2, 0}: all hit.
    assert tta["top_k_accuracy"] == pytest.approx(1.0)
    text = evaluate.format_classification(result)
    assert "accuracy: 0.7500" in text and "accuracy, flip TTA: 0.5000" in text
    # Without TTA the result has no flip_tta entry and the same plain figures.
    plain = evaluate.evaluate_classification(model, batches, ["x", "y", "z"], top_k=2)
    assert "flip_tta" not in plain and plain["accuracy"] == result["accuracy"]


def test_flip_tta_equals_plain_on_a_mirror_invariant_model():
    # Global average pooling forgets where a pixel was: mirroring changes nothing.
    inputs = keras.Input((4, 5, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, kernel_initializer="glorot_uniform")(pooled))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (12, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 12)
    plain_logits = np.asarray(model.predict_on_batch(images), np.float64)
    np.testing.assert_allclose(
        accuracy.flip_tta_outputs(model.predict_on_batch, images), plain_logits, rtol=1e-5, atol=1e-4
    )
    result = evaluate.evaluate_classification(model, [(images, labels)], top_k=2, tta="flip")
    assert result["flip_tta"]["accuracy"] == result["accuracy"]
    assert result["flip_tta"]["top_k_accuracy"] == result["top_k_accuracy"]
    assert result["flip_tta"]["per_class"] == result["per_class"]


def test_tta_choice_is_checked():
    assert accuracy.check_tta(None) is None and accuracy.check_tta("none") is None
    assert accuracy.check_tta("flip") == "flip"
    with pytest.raises(ValueError, match=r"`tta` must be one of \('none', 'flip'\).*'rotate'"):
        accuracy.check_tta("rotate")
