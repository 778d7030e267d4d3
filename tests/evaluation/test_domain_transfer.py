"""Transfer features are the model's own pooled vectors; the linear classifier."""

import keras
import numpy as np
import pytest

from keras_ltpa.evaluation import domain_transfer as transfer
from tests.conftest import tiny_model

rng = np.random.default_rng(0)
IMAGES = rng.integers(0, 256, (6, 32, 32, 3)).astype("uint8")


def _layer_output(model, name, index=None):
    layer = model.get_layer(name)
    output = layer.input if index is None else layer.output[index]
    probe = keras.Model(model.inputs[0], output)
    return np.asarray(keras.ops.convert_to_numpy(probe(IMAGES.astype("float32"))))


def _same_values(features, reference):
    """Equal up to float32 rounding: under JAX each sub-model is its own XLA
    program, which may sum in another order (measured: ~30 eps of the scale)."""
    bound = 64 * np.finfo("float32").eps * np.abs(reference).max()
    np.testing.assert_allclose(features, reference, rtol=0, atol=bound)


def test_attention_features_are_what_the_classifier_sees():
    model = tiny_model()
    features = transfer.transfer_features(model, IMAGES, batch_size=len(IMAGES))
    seen = _layer_output(model, "classifier")  # the concatenation [g_a^1, g_a^2, g_a^3]
    assert features.shape == seen.shape == (6, 3 * model.get_layer("attention_pool_1").output[0].shape[-1])
    _same_values(features, seen)
    pooled = np.concatenate([_layer_output(model, f"attention_pool_{k}", 0) for k in (1, 2, 3)], -1)
    _same_values(features, pooled)
    # Batching does not change them beyond rounding.
    _same_values(transfer.transfer_features(model, IMAGES, batch_size=4), seen)


def test_global_features_of_the_plain_vgg_and_the_wrong_kind():
    model = tiny_model(variant="noatt")
    features = transfer.transfer_features(model, IMAGES)
    _same_values(features, _layer_output(model, "classifier"))
    with pytest.raises(ValueError, match="no attention estimators"):
        transfer.transfer_features(model, IMAGES, kind="attention")
    with pytest.raises(ValueError, match="kind"):
        transfer.transfer_features(model, IMAGES, kind="pooled")
    with pytest.raises(ValueError, match="has attention"):
        transfer.transfer_features(tiny_model(), IMAGES, kind="global")


def test_images_are_resized_and_checked():
    model = tiny_model()
    larger = np.repeat(np.repeat(IMAGES, 2, axis=1), 2, axis=2)  # 64x64
    assert transfer.transfer_features(model, larger).shape[0] == 6
    with pytest.raises(ValueError, match="uint8"):
        transfer.transfer_features(model, IMAGES.astype("float32"))


def test_linear_classifier_separates_two_trivial_classes():
    labels = np.arange(60) % 2
    features = rng.normal(0, 1, (60, 8))
    features[:, 0] += 10 * labels  # one dimension tells the classes apart
    result = transfer.linear_classifier_scores(
        features[:40], labels[:40], features[40:], labels[40:], class_names=["a", "b"]
    )
    assert result["accuracy"] == 1.0 and result["mean_class_accuracy"] == 1.0
    assert result["per_class"] == {"a": 1.0, "b": 1.0}
    assert (result["train_count"], result["test_count"], result["feature_dim"]) == (40, 20, 8)


def test_mean_class_accuracy_weighs_each_class_equally():
    # 9 test images of class 0 all right, 1 image of class 1 wrong: 0.9 top-1, 0.5 mean.
    train = np.array([[0.0], [0.1], [10.0], [10.1]])
    train_labels = np.array([0, 0, 1, 1])
    test = np.concatenate([np.zeros((9, 1)), [[0.05]]])
    test_labels = np.array([0] * 9 + [1])
    result = transfer.linear_classifier_scores(train, train_labels, test, test_labels)
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["mean_class_accuracy"] == pytest.approx(0.5)


def test_empty_or_single_class_splits_are_refused():
    with pytest.raises(ValueError, match="both splits"):
        transfer.linear_classifier_scores(np.zeros((0, 2)), [], np.zeros((1, 2)), [0])
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        transfer.linear_classifier_scores(np.zeros((3, 2)), [1, 1, 1], np.zeros((1, 2)), [1])
