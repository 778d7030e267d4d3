"""keras_ltpa's fused BatchNormalization against batch normalisation computed by hand in
NumPy float64: outputs, moving statistics and (TensorFlow, where the fused
kernel runs) gradients; float32 and mixed bfloat16; a saved model loads with
safe_mode on; the VGG backbone builds with it."""

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa.backbones import batch_norm

EPSILON, MOMENTUM = 1e-5, 0.9
# n = 4 * 5 * 5 = 100 values per channel; three channels of different scale.
X = (np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 5, 3)) * [1.0, 0.1, 10.0]).astype("float32")
GAMMA = np.array([1.5, -0.5, 2.0], "float32")
BETA = np.array([0.1, 0.2, -0.3], "float32")
MOVING_MEAN = np.array([0.5, -1.0, 2.0], "float32")
MOVING_VARIANCE = np.array([2.0, 0.5, 9.0], "float32")
# Each statistic sums 100 float32 values (relative error <= 100 * 2**-24 ~
# 6e-6 in the worst case); normalised outputs are at most ~4 in magnitude
# and gamma at most 2, so outputs agree with float64 within 8 * 6e-6 ~ 5e-5.
FLOAT32_ATOL = 5e-5


def reference(x, training):
    """Batch normalisation in float64: outputs, new moving mean and variance."""
    x = x.astype("float64")
    if training:
        mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased
        new_mean = MOMENTUM * MOVING_MEAN + (1 - MOMENTUM) * mean
        new_variance = MOMENTUM * MOVING_VARIANCE + (1 - MOMENTUM) * variance
    else:
        mean, variance = MOVING_MEAN.astype("float64"), MOVING_VARIANCE.astype("float64")
        new_mean, new_variance = MOVING_MEAN, MOVING_VARIANCE
    outputs = GAMMA * (x - mean) / np.sqrt(variance + EPSILON) + BETA
    return outputs, new_mean, new_variance


def built_layer(dtype=None):
    layer = batch_norm.BatchNormalization(epsilon=EPSILON, momentum=MOMENTUM, dtype=dtype)
    layer.build(X.shape)
    layer.set_weights([GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE])
    return layer


@pytest.mark.parametrize("training", [True, False])
def test_float32_outputs_and_moving_statistics_match_numpy(training):
    layer = built_layer()
    outputs = keras.ops.convert_to_numpy(layer(X, training=training))
    expected, new_mean, new_variance = reference(X, training)
    np.testing.assert_allclose(outputs, expected, atol=FLOAT32_ATOL)
    # Moving statistics are O(10); one update sums 100 values.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), new_mean, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), new_variance, rtol=1e-5)


def test_mixed_bfloat16_outputs_within_bfloat16_rounding():
    layer = built_layer(dtype="mixed_bfloat16")
    inputs = keras.ops.cast(X, "bfloat16")
    outputs = layer(inputs, training=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    # The reference from the same bfloat16-rounded inputs; the output is
    # rounded once to bfloat16 (relative 2**-8), outputs at most ~4.
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(inputs, "float32"))
    expected, new_mean, new_variance = reference(rounded, True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")), expected, atol=4 * 2**-8)
    # Statistics stay float32, whatever the compute dtype.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), new_variance, rtol=1e-5)


def test_single_value_per_channel_keeps_variance_zero():
    # n = 1: the biased variance is 0 (no division by n - 1 = 0 anywhere).
    layer = batch_norm.BatchNormalization(epsilon=EPSILON, momentum=MOMENTUM)
    layer(np.full((1, 1, 1, 2), 3.0, "float32"), training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), [MOMENTUM] * 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), [0.3, 0.3], rtol=1e-6)


def test_without_scale_and_center_and_for_other_ranks():
    layer = batch_norm.BatchNormalization(scale=False, center=False, epsilon=EPSILON)
    outputs = keras.ops.convert_to_numpy(layer(X, training=True))
    mean, variance = X.astype("float64").mean((0, 1, 2)), X.astype("float64").var((0, 1, 2))
    np.testing.assert_allclose(outputs, (X - mean) / np.sqrt(variance + EPSILON), atol=FLOAT32_ATOL)
    # Rank 2 takes the parent's path: same maths.
    flat = X.reshape(-1, 3)
    outputs = keras.ops.convert_to_numpy(batch_norm.BatchNormalization(epsilon=EPSILON)(flat, training=True))
    np.testing.assert_allclose(outputs, (flat - mean) / np.sqrt(variance + EPSILON), atol=FLOAT32_ATOL)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel runs on TensorFlow only")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tensorflow_gradients_match_the_analytic_ones(jit_compile):
    import tensorflow as tf

    layer = built_layer()
    weights = np.random.default_rng(1).normal(size=X.shape).astype("float32")
    inputs = tf.constant(X)

    @tf.function(jit_compile=jit_compile)
    def gradients(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(layer(inputs, training=True) * weights)
        return tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])

    dx, dgamma, dbeta = (g.numpy() for g in gradients(inputs))
    # d loss / d y = weights; the batch-norm backward pass in float64.
    x = X.astype("float64")
    normalised = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + EPSILON)
    expected_dx = GAMMA / np.sqrt(x.var((0, 1, 2)) + EPSILON) * (
        weights - weights.mean((0, 1, 2)) - normalised * (weights * normalised).mean((0, 1, 2)))
    # Sums of 100 products of O(3) values: about 100 * 3 * 6e-6 ~ 2e-3 worst case.
    np.testing.assert_allclose(dgamma, (weights * normalised).sum((0, 1, 2)), atol=2e-3)
    np.testing.assert_allclose(dbeta, weights.sum((0, 1, 2)), atol=2e-3)
    # dx: gamma / std is at most ~1.7 (the 0.1-scale channel) times O(3) terms.
    np.testing.assert_allclose(dx, expected_dx, atol=4 * FLOAT32_ATOL)


def test_saved_model_loads_with_safe_mode(tmp_path):
    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, batch_norm.BatchNormalization(epsilon=EPSILON)(inputs))
    model.layers[-1].set_weights([GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE])
    model.save(tmp_path / "bn.keras")
    loaded = keras.saving.load_model(tmp_path / "bn.keras", safe_mode=True)
    assert type(loaded.layers[-1]) is batch_norm.BatchNormalization
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(X)), reference(X, False)[0], atol=FLOAT32_ATOL)


def test_weights_files_interchange_with_keras_batch_norm(tmp_path):
    # Weights saved from Keras' own layer load into ours and back (the
    # presets' model.weights.h5 were written by models with Keras' layer).
    def model_with(layer_class):
        inputs = keras.Input((5, 5, 3))
        return keras.Model(inputs, layer_class(epsilon=EPSILON)(inputs))

    theirs, ours = model_with(keras.layers.BatchNormalization), model_with(batch_norm.BatchNormalization)
    theirs.layers[-1].set_weights([GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE])
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours.load_weights(tmp_path / "theirs.weights.h5")
    for loaded, expected in zip(ours.layers[-1].get_weights(), [GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE]):
        np.testing.assert_array_equal(loaded, expected)


def test_vgg_backbone_uses_it_and_it_is_still_a_keras_batch_norm():
    model = keras_ltpa.build_model(10, (32, 32, 3), width_multiplier=0.0625)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is batch_norm.BatchNormalization for layer in norms)
