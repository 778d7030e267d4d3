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


# --- RandAugment's equalisation inside tf.data --------------------------------


def test_randaugment_histogram_in_a_graph_is_the_pixel_count_per_value():
    # On 0-255 pixels the bin of a value v is v itself (scaled by 255/255),
    # so the histogram is NumPy's bincount of the pixels, exactly.
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    equalization = augmentation._Equalization(value_range=(0, 255))
    histogram = tf.function(
        lambda channel: equalization._custom_histogram_fixed_width(channel, (0, 255), 256)
    )(tf.constant(pixels, tf.float32))
    np.testing.assert_array_equal(histogram.numpy(), np.bincount(pixels.ravel(), minlength=256))


def test_randaugment_traces_without_a_comparison_per_histogram_bin():
    # Counting a histogram one bin at a time takes 256 `Equal` ops per
    # channel; one `bincount` per channel takes none. Under the JAX backend
    # Keras' own Equalization counts bin by bin (3,100 `Equal` ops here, some
    # 20 s to trace); the rest of RandAugment holds a few dozen.
    augment = augmentation.image_augmenter(("randaugment",), (32, 32), seed=0)
    graph = tf.function(augment).get_concrete_function(tf.TensorSpec((32, 32, 3), tf.uint8)).graph
    equal_ops = sum(op.type == "Equal" for op in graph.get_operations())
    assert equal_ops < 256, equal_ops


def test_randaugment_changes_images_and_keeps_uint8(small_data_dir):
    paths = sorted((small_data_dir / "cifar10" / "train" / "cat").iterdir())[:8]
    images = np.stack([tf.io.decode_jpeg(tf.io.read_file(str(p))).numpy() for p in paths])
    augment = augmentation.image_augmenter(("randaugment",), (32, 32), seed=2)
    outputs = np.stack(list(tf.data.Dataset.from_tensor_slices(images).map(augment).as_numpy_iterator()))
    assert outputs.dtype == np.uint8 and outputs.shape == images.shape
    # Two random operations each; a few of them (a zero rotation, a
    # brightness factor of 1) may leave an image as it was, most do not.
    assert sum(not np.array_equal(a, b) for a, b in zip(outputs, images)) >= 4


# --- Through model.fit, under the running backend -----------------------------


@pytest.mark.slow
def test_mixup_cutmix_and_randaugment_train_an_epoch_through_fit(
    tiny_cifar_folder, tmp_path, monkeypatch
):
    """The tf.data pipeline feeds `fit` under every backend: the batches it
    receives carry one-hot mixes, and the run trains one epoch with the
    categorical cross-entropy to a finite loss."""
    import keras

    from keras_ltpa.data import pipelines
    from keras_ltpa.train import loop
    from keras_ltpa.train import runs

    seen = []
    load_dataset = pipelines.load_dataset

    def recording_load_dataset(split, **kwargs):
        dataset, class_names = load_dataset(split, **kwargs)
        if not kwargs.get("training"):  # The test split, the pixel statistics' pass.
            return dataset, class_names

        def record(images, labels):
            seen.append((images.numpy(), labels.numpy()))
            return labels

        def recorded(images, labels):
            # tf.py_function runs in the pipeline (TensorFlow), whatever
            # backend `fit` then hands the batches to.
            out = tf.py_function(record, [images, labels], labels.dtype)
            out.set_shape(labels.shape)
            return images, out

        return dataset.map(recorded), class_names

    monkeypatch.setattr(pipelines, "load_dataset", recording_load_dataset)
    run_dir = tmp_path / "run"
    result = loop.run_training(dict(
        data_dir=str(tiny_cifar_folder), output_dir=str(run_dir), augment="mixup,cutmix,randaugment",
        epochs=1, steps_per_epoch=2, batch_size=8, width_multiplier=0.0625, seed=0,
        precision="float32", jit_compile="auto" if keras.backend.backend() == "jax" else "off",
        export=False, tensorboard=False, verbose=0,
    ))

    assert len(seen) >= 2  # fit took its two steps from this pipeline.
    for images, labels in seen:
        assert images.dtype == np.uint8 and images.shape == (8, 32, 32, 3)
        assert labels.dtype == np.float32 and labels.shape == (8, 3)
        assert labels.min() >= 0.0 and labels.max() <= 1.0
        # A mix is w*a + (1-w)*b of one-hot rows, MixUp's then CutMix's, in
        # float32: a handful of roundings of terms <= 1, each <= 2^-24.
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=0, atol=8 * 2.0**-24)
    all_labels = np.concatenate([labels for _, labels in seen])
    assert ((all_labels > 0) & (all_labels < 1)).any(), "no label was mixed"

    model = result["model"]
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert result["epochs_trained"] == 1
    (row,) = runs.read_history(run_dir / "history.csv")
    assert np.isfinite(float(row["loss"])) and float(row["loss"]) > 0
    assert np.isfinite(result["metrics"]["loss"])
