"""Batch-norm folding: the algebra, what folds, and outputs kept (every backend)."""

import keras
import numpy as np
import pytest

from keras_ltpa.serving import folding
from tests.conftest import FOLD_BOUND
from tests.conftest import PROBE_IMAGES
from tests.conftest import float64_outputs
from tests.conftest import keras_outputs
from tests.conftest import relative_to_peak


def test_fold_batch_norm_removes_bn_and_keeps_outputs(serving_model):
    folded, names = folding.fold_batch_norm(serving_model)
    # 13 VGG convolutions + 2 in block 6, each followed by its own BN.
    assert len(names) == 15 and "block3_conv3" in names
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    assert all(folded.get_layer(name).use_bias for name in names)
    expected, actual = keras_outputs(serving_model, PROBE_IMAGES), keras_outputs(folded, PROBE_IMAGES)
    exact = float64_outputs(serving_model, PROBE_IMAGES)
    for key in ("probabilities", "attention_1", "attention_2", "attention_3"):
        assert relative_to_peak(actual[key], exact[key]) <= FOLD_BOUND, key
    # The original is untouched and still usable.
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in serving_model.layers)
    np.testing.assert_allclose(keras_outputs(serving_model, PROBE_IMAGES)["logits"], expected["logits"])


def test_folded_weights_equal_batch_norm_algebra(serving_model):
    conv, bn = serving_model.get_layer("block4_conv2"), serving_model.get_layer("block4_bn2")
    kernel, bias = folding.folded_weights(conv, bn)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, conv.kernel.shape[2])).astype("float32")
    expected = keras.ops.convert_to_numpy(bn(conv(x), training=False))
    fresh = keras.layers.Conv2D(conv.filters, 3, padding="same")
    fresh.build(x.shape)
    fresh.set_weights([kernel, bias])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(x)), expected, atol=1e-5)


def test_fold_leaves_shared_or_activated_convolutions_alone():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="shared_conv")(inputs)
    b = keras.layers.BatchNormalization(name="bn_a")(a)
    c = keras.layers.Add()([a, b])  # the conv output feeds BN and Add
    d = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(c)
    e = keras.layers.BatchNormalization(name="bn_b")(d)
    f = keras.layers.Conv2D(4, 3, padding="same", name="plain_conv")(e)
    g = keras.layers.BatchNormalization(name="bn_c")(f)
    model = keras.Model(inputs, g)
    folded, names = folding.fold_batch_norm(model)
    assert names == ["plain_conv"]
    assert {"bn_a", "bn_b"} <= {layer.name for layer in folded.layers}
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_fold_batch_norm_rejects_non_functional():
    with pytest.raises(ValueError, match="functional keras.Model"):
        folding.fold_batch_norm(keras.layers.Dense(2))


def test_a_nested_model_with_bare_ops_between_layers_folds():
    """A backbone nested in the model, with an op applied to a tensor between
    its layers (as MobileNetV3's `x + 3.0`): its conv+BN pairs fold and the
    outputs are kept, against a float64 evaluation of the same weights."""

    def build(dtype):
        keras.config.set_dtype_policy(dtype)
        try:
            inner_in = keras.Input((8, 8, 3))
            x = keras.layers.Conv2D(6, 3, padding="same", name="conv_a")(inner_in)
            x = keras.layers.BatchNormalization(name="bn_a")(x)
            x = keras.layers.ReLU(6.0, name="relu6")(x + 3.0)
            x = keras.layers.Conv2D(5, 3, padding="same", name="conv_b")(x)
            x = keras.layers.BatchNormalization(name="bn_b")(x)
            inner = keras.Model(inner_in, x, name="inner")
            outer_in = keras.Input((8, 8, 3))
            y = keras.layers.GlobalAveragePooling2D(name="pool")(inner(outer_in))
            return keras.Model(outer_in, keras.layers.Dense(4, name="dense")(y))
        finally:
            keras.config.set_dtype_policy("float32")

    keras.utils.set_random_seed(2)
    model = build("float32")
    rng = np.random.default_rng(0)
    for name in ("bn_a", "bn_b"):
        bn = model.get_layer("inner").get_layer(name)
        channels = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels),
                        rng.normal(0, 0.5, channels), rng.uniform(0.2, 2.0, channels)])
    folded, names = folding.fold_batch_norm(model)
    assert sorted(names) == ["conv_a", "conv_b"]
    exact = build("float64")
    exact.set_weights([np.asarray(w, "float64") for w in model.get_weights()])
    images = rng.uniform(0, 255, (3, 8, 8, 3))
    reference = keras.ops.convert_to_numpy(exact(images))
    outputs = keras.ops.convert_to_numpy(folded(images.astype("float32")))
    # Four layers with weights between input and output, each rounding by at
    # most ~4 float32 eps of its peak, twice over for the folded kernels.
    bound = 2 * 4 * 4 * float(np.finfo(np.float32).eps)
    assert relative_to_peak(outputs, reference) <= bound
