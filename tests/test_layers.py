"""Each layer against a NumPy re-derivation of the paper's equation."""

import keras
import numpy as np
import pytest

from keras_ltpa.layers import AttentionPool
from keras_ltpa.layers import CompatibilityScore
from keras_ltpa.layers import LinearProjector
from keras_ltpa.layers import ProbabilityAverage

RNG = np.random.default_rng(7)


def random(*shape):
    return RNG.normal(size=shape).astype("float32")


def numpy_softmax_map(scores):
    flat = scores.reshape(scores.shape[0], -1).astype("float64")
    flat = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (flat / flat.sum(axis=1, keepdims=True)).reshape(scores.shape)


def dynamic_model(layer_call, *input_shapes):
    """A functional model with batch, height and width all unknown."""
    inputs = [keras.Input(shape=shape) for shape in input_shapes]
    outputs = layer_call(*inputs)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs)


# --- LinearProjector: l' = W l ---------------------------------------------


def test_linear_projector_matches_numpy():
    layer = LinearProjector(6)
    local = random(2, 5, 4, 3)
    output = keras.ops.convert_to_numpy(layer(local))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(output, np.einsum("nhwc,cu->nhwu", local, kernel), atol=1e-5)
    assert len(layer.weights) == 1  # no bias


def test_linear_projector_dynamic_shapes_and_config():
    layer = LinearProjector(4, name="projector")
    model = dynamic_model(layer, (None, None, 3))
    for shape in [(1, 8, 8, 3), (3, 5, 7, 3)]:
        assert tuple(model(random(*shape)).shape) == shape[:3] + (4,)
    clone = LinearProjector.from_config(layer.get_config())
    assert clone.units == 4 and clone.name == "projector"


def test_linear_projector_rejects_bad_units():
    with pytest.raises(ValueError, match="units"):
        LinearProjector(0)


# --- CompatibilityScore: c = <u, l + g> or <l, g> -------------------------


@pytest.mark.parametrize("use_bias", [False, True])
def test_pc_score_matches_numpy(use_bias):
    layer = CompatibilityScore("pc", use_bias=use_bias)
    local, glob = random(2, 4, 3, 5), random(2, 5)
    layer.build(local.shape, glob.shape)
    if use_bias:
        layer.bias.assign(0.75)
    output = keras.ops.convert_to_numpy(layer(local, glob))
    u = keras.ops.convert_to_numpy(layer.kernel)
    expected = np.einsum("nhwc,c->nhw", local + glob[:, None, None, :], u)
    if use_bias:
        expected = expected + 0.75
    np.testing.assert_allclose(output, expected, atol=1e-5)
    assert output.shape == (2, 4, 3)


def test_dp_score_matches_numpy_and_has_no_weights():
    layer = CompatibilityScore("dp")
    local, glob = random(2, 4, 3, 5), random(2, 5)
    output = keras.ops.convert_to_numpy(layer(local, glob))
    np.testing.assert_allclose(
        output, np.einsum("nhwc,nc->nhw", local, glob), atol=1e-5
    )
    assert layer.weights == []


def test_score_dynamic_shapes():
    model = dynamic_model(CompatibilityScore("pc"), (None, None, 6), (6,))
    for shape in [(1, 4, 4), (2, 3, 9)]:
        out = model([random(*shape, 6), random(shape[0], 6)])
        assert tuple(out.shape) == shape


def test_score_rejects_bad_mode_and_width_mismatch():
    with pytest.raises(ValueError, match=r"`mode`.*'pc', 'dp'.*mode='cosine'"):
        CompatibilityScore("cosine")
    with pytest.raises(ValueError, match="LinearProjector"):
        CompatibilityScore("dp")(random(1, 2, 2, 3), random(1, 4))


# --- AttentionPool: a = softmax(c), g_a = sum a l; or sigmoid and mean ------


def test_softmax_pool_matches_numpy_and_sums_to_one():
    local, scores = random(3, 4, 5, 6), 3 * random(3, 4, 5)
    pooled, attention = AttentionPool("softmax")(local, scores)
    attention = keras.ops.convert_to_numpy(attention)
    expected_map = numpy_softmax_map(scores)
    np.testing.assert_allclose(attention, expected_map, atol=1e-6)
    np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled),
        np.einsum("nhw,nhwc->nc", expected_map, local),
        atol=1e-5,
    )


def test_softmax_is_stable_for_large_scores():
    scores = np.zeros((1, 2, 2), "float32")
    scores[0, 1, 1] = 1e4
    _, attention = AttentionPool("softmax")(random(1, 2, 2, 3), scores)
    attention = keras.ops.convert_to_numpy(attention)
    assert np.isfinite(attention).all()
    np.testing.assert_allclose(attention[0], [[0, 0], [0, 1]], atol=1e-6)


def test_sigmoid_pool_matches_numpy():
    local, scores = random(2, 3, 4, 5), random(2, 3, 4)
    pooled, attention = AttentionPool("sigmoid")(local, scores)
    sigmoid = 1 / (1 + np.exp(-scores.astype("float64")))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(attention), sigmoid, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled),
        (sigmoid[..., None] * local).mean(axis=(1, 2)),
        atol=1e-5,
    )


@pytest.mark.parametrize("normalization", ["softmax", "sigmoid"])
def test_pool_dynamic_batch_height_width(normalization):
    model = dynamic_model(AttentionPool(normalization), (None, None, 4), (None, None))
    for n, h, w in [(1, 2, 3), (4, 7, 5)]:
        pooled, attention = model([random(n, h, w, 4), random(n, h, w)])
        assert tuple(pooled.shape) == (n, 4)
        assert tuple(attention.shape) == (n, h, w)
        if normalization == "softmax":
            sums = keras.ops.convert_to_numpy(attention).sum(axis=(1, 2))
            np.testing.assert_allclose(sums, 1.0, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_pool_mixed_precision_keeps_float32_map(policy):
    pool = AttentionPool("softmax", dtype=policy)
    pooled, attention = pool(random(2, 8, 8, 4), 5 * random(2, 8, 8))
    assert keras.backend.standardize_dtype(pooled.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(attention.dtype) == "float32"
    sums = keras.ops.convert_to_numpy(attention).sum(axis=(1, 2))
    np.testing.assert_allclose(sums, 1.0, atol=1e-3)


def test_pool_rejects_bad_normalization():
    with pytest.raises(ValueError, match=r"`normalization`.*'softmax', 'sigmoid'"):
        AttentionPool("relu")


# --- ProbabilityAverage (indep aggregation) ---------------------------------


def test_probability_average_softmax_is_mean_of_softmaxes():
    logits = [3 * random(4, 5) for _ in range(3)]
    output = keras.ops.convert_to_numpy(ProbabilityAverage()(logits))

    def softmax(z):
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    expected = np.mean([softmax(z) for z in logits], axis=0)
    np.testing.assert_allclose(softmax(output), expected, atol=1e-6)
    np.testing.assert_allclose(np.exp(output).sum(axis=1), 1.0, atol=1e-5)


# --- Serialisation ------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        LinearProjector(3, name="p"),
        CompatibilityScore("dp", name="c"),
        CompatibilityScore("pc", use_bias=True, name="c"),
        AttentionPool("sigmoid", name="a"),
    ],
)
def test_layers_serialize(layer):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
