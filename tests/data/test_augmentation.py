"""The augmentation names, the label-mode rule, and what the layers do."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ltpa.data import augmentation


def test_parse_augment_orders_names_and_names_an_unknown_one():
    assert augmentation.parse_augment(["CutMix", "crop"]) == ("crop", "cutmix")
    assert augmentation.parse_augment(True) == augmentation.PAPER_AUGMENTATION
    assert augmentation.parse_augment(False, training=True) == ()
    assert augmentation.parse_augment("") == ()
    with pytest.raises(ValueError, match="'zoom'.*Allowed: crop, flip, randaugment, mixup, cutmix"):
        augmentation.parse_augment("flip,zoom")


def test_label_mode_follows_the_batch_mixes():
    assert augmentation.resolve_label_mode(()) == "int"
    assert augmentation.resolve_label_mode(("crop", "flip")) == "int"
    assert augmentation.resolve_label_mode(("mixup",)) == "categorical"
    assert augmentation.resolve_label_mode(("cutmix",), "categorical") == "categorical"
    assert augmentation.resolve_label_mode(("flip",), "categorical") == "categorical"
    with pytest.raises(ValueError, match="label_mode='categorical'.*received label_mode='int'"):
        augmentation.resolve_label_mode(("crop", "cutmix"), "int")
    with pytest.raises(ValueError, match="`label_mode` must be one of.*'soft'"):
        augmentation.resolve_label_mode((), "soft")


def test_crop_pads_an_eighth_of_the_side_and_keeps_the_size():
    crop = augmentation.image_augmenter(("crop",), (32, 32), seed=3)
    image = tf.fill((32, 32, 3), tf.constant(200, tf.uint8))
    for _ in range(5):
        out = crop(image).numpy()
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 200}
        rows = np.flatnonzero(out[:, :, 0].any(axis=1))
        columns = np.flatnonzero(out[:, :, 0].any(axis=0))
        # The image moved by at most the 4-pixel padding, and stayed whole.
        assert len(rows) >= 28 and len(columns) >= 28
        assert rows[-1] - rows[0] + 1 == len(rows) and columns[-1] - columns[0] + 1 == len(columns)


def test_nothing_to_do_gives_no_function():
    assert augmentation.image_augmenter(("mixup", "cutmix"), (8, 8)) is None
    assert augmentation.batch_augmenter(("crop", "flip", "randaugment"), 10) is None


def test_mixup_keeps_one_hot_label_sums_and_pixel_range():
    mix = augmentation.batch_augmenter(("mixup",), 3, seed=0)
    images = tf.constant(np.stack([np.full((4, 4, 3), v, np.uint8) for v in (0, 100, 255)]))
    labels = tf.constant(np.eye(3, dtype="float32"))
    mixed_images, mixed_labels = mix(images, labels)
    assert mixed_images.dtype == tf.uint8 and mixed_labels.dtype == tf.float32
    np.testing.assert_allclose(mixed_labels.numpy().sum(axis=-1), 1.0, atol=1e-6)
