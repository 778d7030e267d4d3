"""Input pipelines: tensorflow-datasets names and image folders.

`load_dataset` returns a `tf.data.Dataset` of `(images, labels)` batches that
`model.fit` consumes under every Keras backend, and the list of class names.
Images stay raw RGB pixels, uint8 0..255: the models of this package
normalise inside (see `build_model`), so the same files serve training, the
exported model and the visualiser.

The examples come from `keras_ltpa.data.sources` (an image folder
`DIR/<split>/<class>/<image>`, or a tensorflow-datasets name); augmentation
and the label-mode rule from `keras_ltpa.data.augmentation`. Their public
names are importable from here too.

Example:
>>> train, class_names = load_dataset(
...     "train", data_dir="tests/fixtures/data/cifar10", training=True, limit=256)
>>> images, labels = next(iter(train))
>>> images.dtype, labels.dtype
(tf.uint8, tf.int32)
"""

import numpy as np
import tensorflow as tf

from keras_ltpa.data.augmentation import AUGMENTATIONS
from keras_ltpa.data.augmentation import BATCH_AUGMENTATIONS
from keras_ltpa.data.augmentation import LABEL_MODES
from keras_ltpa.data.augmentation import PAPER_AUGMENTATION
from keras_ltpa.data.augmentation import batch_augmenter
from keras_ltpa.data.augmentation import image_augmenter
from keras_ltpa.data.augmentation import parse_augment
from keras_ltpa.data.augmentation import resolve_label_mode
from keras_ltpa.data.sources import FILE_ORDER_SEED
from keras_ltpa.data.sources import VALIDATION_SPLIT_SEED
from keras_ltpa.data.sources import DataError
from keras_ltpa.data.sources import check_images
from keras_ltpa.data.sources import class_folders
from keras_ltpa.data.sources import describe_split
from keras_ltpa.data.sources import folder_examples
from keras_ltpa.data.sources import folder_labels
from keras_ltpa.data.sources import list_image_folder
from keras_ltpa.data.sources import split_image_folder
from keras_ltpa.data.sources import tfds_examples
from keras_ltpa.data.sources import tfds_labels
from keras_ltpa.utils.checks import check_size

__all__ = [
    "AUGMENTATIONS",
    "BATCH_AUGMENTATIONS",
    "CIFAR10_CLASS_NAMES",
    "DataError",
    "FILE_ORDER_SEED",
    "LABEL_MODES",
    "PAPER_AUGMENTATION",
    "SHUFFLE_BUFFER_BYTES",
    "VALIDATION_SPLIT_SEED",
    "batch_augmenter",
    "check_images",
    "class_folders",
    "dataset_arrays",
    "dataset_size",
    "describe_split",
    "image_augmenter",
    "label_counts",
    "list_image_folder",
    "load_dataset",
    "parse_augment",
    "pixel_statistics",
    "resolve_label_mode",
    "split_image_folder",
]

# Shuffle buffers after `cache()` hold decoded images: cap them in bytes.
SHUFFLE_BUFFER_BYTES = 64 * 2**20

# The ten CIFAR-10 classes, by label id: a dataset with these classes is
# CIFAR-10 (tfds `cifar10`, or an image folder of it).
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _check_source(dataset, data_dir, validation_split):
    if (dataset is None) == (data_dir is None):
        raise ValueError(
            "Give exactly one of `dataset` (a tensorflow-datasets name) and "
            f"`data_dir` (an image folder); received dataset={dataset!r}, "
            f"data_dir={data_dir!r}."
        )
    if validation_split is not None and data_dir is None:
        raise ValueError(
            "`validation_split` splits an image folder (`data_dir`); a tensorflow-datasets "
            f"set has its own splits. Received dataset={dataset!r}, "
            f"validation_split={validation_split!r}."
        )


def _check_arguments(dataset, data_dir, image_size, batch_size, limit, validation_split=None):
    """`image_size` as (height, width); a ValueError names a bad argument."""
    _check_source(dataset, data_dir, validation_split)
    image_size = check_size(image_size, "image_size")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive int or None; received {limit!r}.")
    return image_size


def _shuffle_buffer(image_size):
    """Examples a shuffle buffer of decoded images holds (at least 1024)."""
    return max(1024, SHUFFLE_BUFFER_BYTES // (image_size[0] * image_size[1] * 3))


def _examples(
    split, dataset, data_dir, image_size, tfds_data_dir, limit, verify, shuffle, cache, seed, validation_split
):
    """Decoded `(image, label)` pairs of the one source given, and its classes."""
    if data_dir is not None:
        # Without a cache, the file names are shuffled (cheap, before decoding).
        return folder_examples(
            data_dir, split, image_size, limit=limit, verify=verify, shuffle=shuffle and not cache, seed=seed,
            validation_split=validation_split,
        )
    return tfds_examples(
        dataset, split, image_size, tfds_data_dir=tfds_data_dir, limit=limit,
        shuffle_files=shuffle and limit is None, seed=seed,
    )


def _augment_and_batch(ds, augment, label_mode, num_classes, image_size, batch_size, drop_remainder, seed):
    """Per-image augmentation, one-hot labels, batching, then MixUp/CutMix."""
    per_image = image_augmenter(augment, image_size, seed=seed)
    if per_image is not None:
        ds = ds.map(lambda image, label: (per_image(image), label), num_parallel_calls=tf.data.AUTOTUNE)
    if label_mode == "categorical":
        ds = ds.map(
            lambda image, label: (image, tf.one_hot(label, num_classes)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    mix = batch_augmenter(augment, num_classes, seed=seed)
    if mix is not None:
        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def load_dataset(
    split, *, dataset=None, data_dir=None, image_size=(32, 32), batch_size=128, training=False,
    augment=None, shuffle=None, cache=False, limit=None, seed=None, label_mode=None,
    drop_remainder=False, verify=True, tfds_data_dir=None, validation_split=None,
):
    """A batched `tf.data.Dataset` of raw images and labels, and the classes.

    Pipeline: read -> decode (parallel) -> resize when sizes differ ->
    [cache] -> [shuffle] -> [augment each image] -> batch -> [MixUp/CutMix]
    -> prefetch. See the module docstring for an example.

    Args:
        split: `"train"`, `"test"`, or any split of the tfds set / folder.
        dataset: a tensorflow-datasets name, e.g. `"cifar10"`.
        data_dir: an image folder `DIR/<split>/<class>/<image>`; the class
            list comes from `DIR/train`. Give exactly one of the two.
            With `validation_split`, a single folder `DIR/<class>/<image>`
            whose `"train"` split is the part kept for training and any
            other split the held-out part.
        image_size: (height, width) (or one int) of the output images.
        batch_size: examples per batch.
        training: a training pipeline (shuffled and augmented by default).
        augment: see `parse_augment`; default: the paper's crop + flip when
            `training`, nothing otherwise.
        shuffle: shuffle the examples every epoch; default `training`.
        cache: keep decoded images in memory after the first epoch.
        limit: use only this many examples (a fixed mix of classes).
        seed: optional int seed for shuffling and augmentation.
        label_mode: `"int"` (int32 (N,)) or `"categorical"` (float32 one-hot
            (N, K)); default as `resolve_label_mode` says.
        drop_remainder: drop the last incomplete batch.
        verify: image folders only: decode every listed file once up front
            and fail naming any unreadable one.
        tfds_data_dir: where tensorflow-datasets keeps its files (default:
            `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
        validation_split: None, or the share of each class of a single
            folder held out (`keras_ltpa.data.sources.split_image_folder`).

    Returns:
        `(dataset, class_names)`: batches `(images, labels)`, images uint8
        (N, H, W, 3), and the class names indexed by label id.

    Raises:
        DataError: a missing or empty folder, an unreadable image, an
            unknown dataset name; ValueError: a bad argument.
    """
    image_size = _check_arguments(dataset, data_dir, image_size, batch_size, limit, validation_split)
    augment = parse_augment(augment, training=training)
    label_mode = resolve_label_mode(augment, label_mode)
    shuffle = training if shuffle is None else bool(shuffle)
    ds, class_names = _examples(
        split, dataset, data_dir, image_size, tfds_data_dir, limit, verify, shuffle, cache, seed,
        validation_split,
    )
    if cache:
        ds = ds.cache()
    # A folder without a cache was shuffled by file name already.
    if shuffle and (cache or data_dir is None):
        ds = ds.shuffle(_shuffle_buffer(image_size), seed=seed, reshuffle_each_iteration=True)
    ds = _augment_and_batch(
        ds, augment, label_mode, len(class_names), image_size, batch_size, drop_remainder, seed
    )
    return ds.prefetch(tf.data.AUTOTUNE), class_names


def label_counts(
    split, *, dataset=None, data_dir=None, limit=None, validation_split=None, tfds_data_dir=None, **_
):
    """Examples of each class in a split, as `load_dataset` with the same
    source arguments reads it (other keywords are ignored).

    Returns:
        `(counts, class_names)`: an int64 array with one count per class
        (0 for a class the split lacks), and the class names.

    Example:
    >>> counts, names = label_counts("train", data_dir="tests/fixtures/data/cifar10", limit=20)
    >>> int(counts.sum()), len(names)
    (20, 10)
    """
    _check_source(dataset, data_dir, validation_split)
    if data_dir is not None:
        labels, class_names = folder_labels(
            data_dir, split, limit=limit, validation_split=validation_split
        )
    else:
        labels, class_names = tfds_labels(dataset, split, tfds_data_dir=tfds_data_dir, limit=limit)
    return np.bincount(labels, minlength=len(class_names)).astype("int64"), class_names


def dataset_arrays(dataset):
    """All `(images, labels)` of a finite batched dataset as NumPy arrays.

    Args:
        dataset: batches `(images, labels)`, e.g. from `load_dataset`.

    Returns:
        `(images, labels)`: uint8 (N, H, W, 3) and int64 (N,) (one-hot
        labels are turned to ids).

    Example:
    >>> batches = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((3, 2, 2, 3), "uint8"), np.eye(2)[[0, 1, 1]])).batch(2)
    >>> dataset_arrays(batches)[1].tolist()
    [0, 1, 1]
    """
    images, labels = [], []
    for batch_images, batch_labels in dataset.as_numpy_iterator():
        images.append(np.asarray(batch_images))
        labels.append(np.asarray(batch_labels))
    if not images:
        raise DataError("The dataset yielded no images.")
    images = np.concatenate(images)
    labels = np.concatenate(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    return np.clip(np.round(images), 0, 255).astype(np.uint8), labels.astype(np.int64)


def dataset_size(dataset):
    """Number of batches of a finite dataset, or `None` when unknown.

    Example:
    >>> dataset_size(tf.data.Dataset.range(5).batch(2))
    3
    """
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else None


def pixel_statistics(dataset):
    """Per-channel mean and standard deviation of a dataset's pixels.

    One pass over the batches, accumulated in float64, in [0, 1] units (the
    units of `build_model`'s `pixel_mean` and `pixel_std`).

    Args:
        dataset: batches `(images, labels)` (or images alone) of uint8
            (N, H, W, C) pixels, e.g. from `load_dataset(training=False)`.

    Returns:
        `(mean, std)`: two tuples of C floats.

    Raises:
        DataError: the dataset has no pixels.

    Example:
    >>> pixels = np.full((2, 4, 4, 3), 51, "uint8")
    >>> mean, std = pixel_statistics([(pixels, None)])
    >>> [round(m, 3) for m in mean], std
    ([0.2, 0.2, 0.2], (0.001, 0.001, 0.001))
    """
    total = total_squares = None
    count = 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        pixels = np.asarray(images, dtype="float64").reshape(-1, np.shape(images)[-1]) / 255.0
        if total is None:
            total = np.zeros(pixels.shape[1])
            total_squares = np.zeros(pixels.shape[1])
        total += pixels.sum(axis=0)
        total_squares += np.square(pixels).sum(axis=0)
        count += pixels.shape[0]
    if not count:
        raise DataError("Cannot compute pixel statistics: the dataset has no images.")
    mean = total / count
    variance = np.maximum(total_squares / count - np.square(mean), 0.0)
    # A constant channel would make the normalisation divide by zero.
    std = np.maximum(np.sqrt(variance), 1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
