"""Input pipelines: tensorflow-datasets names and image folders.

`load_dataset` returns a `tf.data.Dataset` of `(images, labels)` batches that
`model.fit` consumes under every Keras backend, and the list of class names.
Images stay raw RGB pixels, uint8 0..255: the models of this package
normalise inside (see `build_model`), so the same files serve training, the
exported model and the visualiser.

Two sources:

- `dataset="cifar10"` (or `"cifar100"`, `"svhn_cropped"`, any
  tensorflow-datasets image-classification set with `image` and `label`
  features);
- `data_dir="DIR"`, an image folder `DIR/<split>/<class>/<image>` (JPEG, PNG,
  BMP or GIF), the class list read from `DIR/train` (sorted folder names).

Augmentation is applied to each image with Keras core preprocessing layers
(inside `tf.data` Keras runs them on TensorFlow whatever the backend):

    crop         random crop after zero padding of 1/8 of the side (4 pixels
                 at 32x32), the paper's
    flip         random horizontal flip, the paper's
    randaugment  `keras.layers.RandAugment`
    mixup        `keras.layers.MixUp` on each batch (soft labels)
    cutmix       `keras.layers.CutMix` on each batch (soft labels)

Example:
>>> train, class_names = load_dataset(
...     "train", data_dir="../shared/data/cifar10", training=True, limit=256)
>>> images, labels = next(iter(train))
>>> images.dtype, labels.dtype
(tf.uint8, tf.int32)
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_ltpa.data import images
from keras_ltpa.utils.checks import check_size

AUGMENTATIONS = ("crop", "flip", "randaugment", "mixup", "cutmix")
PAPER_AUGMENTATION = ("crop", "flip")
BATCH_AUGMENTATIONS = ("mixup", "cutmix")
LABEL_MODES = ("int", "categorical")
# Files are listed in a fixed shuffled order (this seed) so that `limit`
# takes a mix of classes and an in-memory cache is not class-sorted.
FILE_ORDER_SEED = 1234
# Shuffle buffers after `cache()` hold decoded images: cap them in bytes.
SHUFFLE_BUFFER_BYTES = 64 * 2**20


class DataError(ValueError):
    """Bad input data: a missing folder, a folder without images, an
    unreadable image or an unknown dataset name. The message names it."""


def class_folders(directory):
    """Sorted names of the class folders in `directory` (hidden ones skipped).

    Raises:
        DataError: `directory` is missing or has no sub-folders.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(f"Image folder not found: {directory!r} is not a directory.")
    found = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not found:
        raise DataError(
            f"Image folder {directory!r} has no class folders; expected "
            f"{directory}/<class>/<image> with images ending in "
            f"{', '.join(images.IMAGE_EXTENSIONS)}."
        )
    return found


def list_image_folder(directory, class_names=None):
    """Lists an image folder laid out as `directory/<class>/<image>`.

    Args:
        directory: path of the folder (e.g. `DIR/train`).
        class_names: optional list of class names fixing the label ids (the
            training split's, when listing another split). Every class
            folder found must be in it; classes may be absent.

    Returns:
        `(paths, labels, class_names)`: a list of file paths (sorted by
        class, then name), an int32 array of label ids, and the list of
        class names (sorted folder names, or `class_names` when given).

    Raises:
        DataError: the folder is missing, has no class folders, a class
            folder holds no image files, or a class is not in `class_names`.
    """
    directory = os.fspath(directory)
    found = class_folders(directory)
    if class_names is None:
        class_names = found
    else:
        class_names = list(class_names)
        unknown = [name for name in found if name not in class_names]
        if unknown:
            raise DataError(
                f"Class folder(s) {', '.join(map(repr, unknown))} in {directory!r} "
                f"are not classes of the training split ({', '.join(class_names)})."
            )
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in found:
        class_dir = os.path.join(directory, name)
        with os.scandir(class_dir) as entries:
            files = sorted(
                e.path for e in entries if e.is_file() and images.is_image_file(e.name)
            )
        if not files:
            raise DataError(
                f"Class folder {class_dir!r} contains no image files "
                f"(looked for {', '.join(images.IMAGE_EXTENSIONS)})."
            )
        paths.extend(files)
        labels.extend([index[name]] * len(files))
    return paths, np.asarray(labels, dtype="int32"), list(class_names)


def check_images(paths):
    """Raises `DataError` naming the first unreadable file(s) among `paths`."""
    bad = sorted(images.find_unreadable_images(paths))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(
            f"Cannot decode image file {bad[0]!r}{more}: not a valid "
            "JPEG/PNG/BMP/GIF image. Remove or replace it."
        )


def parse_augment(augment, training=True):
    """Resolves the `augment` argument of `load_dataset` to a tuple of names.

    Args:
        augment: `None` (the paper's crop + flip when `training`, else
            nothing), `True`/`"paper"` (crop + flip), `False`/`"none"`/`""`,
            or names from `AUGMENTATIONS` as a sequence or a comma-separated
            string (e.g. `"crop,flip,mixup"`).
        training: whether this is a training pipeline.

    Returns:
        A tuple of augmentation names in `AUGMENTATIONS` order.
    """
    if augment is None:
        return PAPER_AUGMENTATION if training else ()
    if augment is True or augment == "paper":
        return PAPER_AUGMENTATION
    if augment is False or augment in ("none", ""):
        return ()
    names = augment.split(",") if isinstance(augment, str) else list(augment)
    names = [str(name).strip().lower() for name in names if str(name).strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"Unknown augmentation {unknown[0]!r} in augment={augment!r}. Allowed: "
            f"{', '.join(AUGMENTATIONS)}, 'paper' (= crop,flip) or 'none'."
        )
    return tuple(name for name in AUGMENTATIONS if name in names)


def image_augmenter(augment, image_size, seed=None):
    """A function augmenting one uint8 image (H, W, 3) inside `tf.data`.

    Args:
        augment: tuple of names from `parse_augment` (batch-level names,
            mixup/cutmix, are ignored here).
        image_size: (height, width) of the images.
        seed: optional int seed for the random layers.

    Returns:
        A function `image -> image` (uint8), or `None` when there is nothing
        to do per image.
    """
    height, width = check_size(image_size, "image_size")
    layers = []
    pad_y, pad_x = max(1, height // 8), max(1, width // 8)
    if "crop" in augment:
        layers.append(keras.layers.RandomCrop(height, width, seed=seed))
    if "flip" in augment:
        layers.append(
            keras.layers.RandomFlip(
                "horizontal", seed=None if seed is None else seed + 1
            )
        )
    if "randaugment" in augment:
        layers.append(
            keras.layers.RandAugment(
                value_range=(0, 255), seed=None if seed is None else seed + 2
            )
        )
    if not layers:
        return None

    def _augment(image):
        if "crop" in augment:
            image = tf.pad(image, [[pad_y, pad_y], [pad_x, pad_x], [0, 0]])
        image = tf.cast(image, "float32")
        for layer in layers:
            image = layer(image, training=True)
        return _to_uint8(image)

    return _augment


def batch_augmenter(augment, num_classes, seed=None):
    """A function mixing a batch `(images, one_hot_labels)` (MixUp/CutMix).

    Returns `None` when `augment` has neither.
    """
    layers = []
    if "mixup" in augment:
        layers.append(keras.layers.MixUp(seed=seed))
    if "cutmix" in augment:
        layers.append(keras.layers.CutMix(seed=None if seed is None else seed + 1))
    if not layers:
        return None

    def _mix(images, labels):
        data = {"images": tf.cast(images, "float32"), "labels": labels}
        for layer in layers:
            data = layer(data, training=True)
        return _to_uint8(data["images"]), tf.cast(data["labels"], "float32")

    del num_classes  # The labels arrive one-hot already.
    return _mix


def _to_uint8(images):
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


def _tfds_source(name, split, tfds_data_dir, shuffle_files, seed):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown tensorflow-datasets name dataset={name!r}; use a name "
            "from `tfds.list_builders()` such as 'cifar10', 'cifar100' or "
            "'svhn_cropped', or an image folder with data_dir=."
        ) from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(
            f"Dataset {name!r} has no 'image' and 'label' features (it has "
            f"{', '.join(features.keys())}); it is not an image-classification set."
        )
    label_feature = features["label"]
    class_names = list(getattr(label_feature, "names", None) or [])
    if not class_names:
        class_names = [str(i) for i in range(label_feature.num_classes)]
    try:
        builder.download_and_prepare()
    except Exception as error:  # Network or disk trouble, reported in one line.
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise DataError(
            f"Could not download or prepare tensorflow-datasets {name!r} in "
            f"{builder.data_dir!r} ({reason}). Without internet access, train on "
            "an image folder instead (data_dir=, --data-dir)."
        ) from None
    splits = builder.info.splits
    if splits and split.split("[")[0] not in splits:
        raise DataError(
            f"Dataset {name!r} has no split {split!r}; its splits: "
            f"{', '.join(splits.keys())}."
        )
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    source = builder.as_dataset(
        split=split, shuffle_files=shuffle_files, read_config=read_config
    )
    source = source.map(
        lambda example: (example["image"], tf.cast(example["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return source, class_names


def _folder_source(data_dir, split, limit, verify):
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"Data folder not found: {data_dir!r} is not a directory.")
    train_dir = os.path.join(data_dir, "train")
    if not os.path.isdir(train_dir):
        raise DataError(
            f"Data folder {data_dir!r} has no 'train' folder; expected "
            f"{data_dir}/train/<class>/<image> and {data_dir}/test/<class>/<image>."
        )
    if split == "train":
        paths, labels, class_names = list_image_folder(train_dir)
    else:
        class_names = class_folders(train_dir)
        paths, labels, _ = list_image_folder(
            os.path.join(data_dir, split), class_names=class_names
        )
    order = np.random.default_rng(FILE_ORDER_SEED).permutation(len(paths))
    if limit is not None:
        order = order[:limit]
    paths = [paths[i] for i in order]
    labels = labels[order]
    if verify:
        check_images(paths)
    source = tf.data.Dataset.from_tensor_slices((paths, labels))
    return source, class_names, len(paths)


def load_dataset(
    split,
    *,
    dataset=None,
    data_dir=None,
    image_size=(32, 32),
    batch_size=128,
    training=False,
    augment=None,
    shuffle=None,
    cache=False,
    limit=None,
    seed=None,
    label_mode=None,
    drop_remainder=False,
    verify=True,
    tfds_data_dir=None,
):
    """A batched `tf.data.Dataset` of raw images and labels, and the classes.

    Pipeline: read -> decode (parallel) -> resize when sizes differ ->
    [cache] -> [shuffle] -> [augment each image] -> batch -> [MixUp/CutMix]
    -> prefetch.

    Args:
        split: `"train"`, `"test"` (or any split name of the tfds set /
            sub-folder of `data_dir`).
        dataset: a tensorflow-datasets name, e.g. `"cifar10"`.
        data_dir: an image folder `DIR/<split>/<class>/<image>`; the class
            list comes from `DIR/train`. Give exactly one of `dataset` and
            `data_dir`.
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
            (N, K)); default `"categorical"` with mixup/cutmix (soft labels),
            else `"int"`.
        drop_remainder: drop the last incomplete batch.
        verify: image folders only: decode every listed file once up front
            and fail naming any unreadable one.
        tfds_data_dir: where tensorflow-datasets keeps its files (default:
            its own, `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).

    Returns:
        `(dataset, class_names)`: batches `(images, labels)` with images
        uint8 (N, H, W, 3) and labels as `label_mode` says, and the list of
        class names indexed by label id.

    Raises:
        DataError (a ValueError) for missing/empty folders, unreadable
        images and unknown dataset names; ValueError for bad arguments.
    """
    if (dataset is None) == (data_dir is None):
        raise ValueError(
            "Give exactly one of `dataset` (a tensorflow-datasets name) and "
            f"`data_dir` (an image folder); received dataset={dataset!r}, "
            f"data_dir={data_dir!r}."
        )
    image_size = check_size(image_size, "image_size")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive int or None; received {limit!r}.")
    augment = parse_augment(augment, training=training)
    mixing = any(name in BATCH_AUGMENTATIONS for name in augment)
    if label_mode is None:
        label_mode = "categorical" if mixing else "int"
    if label_mode not in LABEL_MODES:
        raise ValueError(
            f"`label_mode` must be one of {LABEL_MODES}; received {label_mode!r}."
        )
    if mixing and label_mode != "categorical":
        raise ValueError(
            "mixup/cutmix make soft labels: use label_mode='categorical' "
            f"(received label_mode={label_mode!r})."
        )
    shuffle = training if shuffle is None else bool(shuffle)

    if data_dir is not None:
        source, class_names, count = _folder_source(data_dir, split, limit, verify)
        decode = lambda path, label: (  # noqa: E731
            images.decode_image(tf.io.read_file(path), image_size),
            label,
        )
        if shuffle and not cache:
            # Shuffling file names is cheap; shuffle before decoding.
            source = source.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        source = source.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        source, class_names = _tfds_source(
            dataset, split, tfds_data_dir, shuffle and limit is None, seed
        )
        if limit is not None:
            source = source.take(limit)
        source = source.map(
            lambda image, label: (
                images.resize_image(images.to_rgb(image), image_size),
                label,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    num_classes = len(class_names)

    ds = source
    if cache:
        ds = ds.cache()
    if shuffle and (cache or data_dir is None):
        image_bytes = image_size[0] * image_size[1] * 3
        buffer = max(1024, SHUFFLE_BUFFER_BYTES // image_bytes)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    per_image = image_augmenter(augment, image_size, seed=seed)
    if per_image is not None:
        ds = ds.map(
            lambda image, label: (per_image(image), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if label_mode == "categorical":
        ds = ds.map(
            lambda image, label: (image, tf.one_hot(label, num_classes)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    mix = batch_augmenter(augment, num_classes, seed=seed)
    if mix is not None:
        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds, class_names


def dataset_arrays(dataset):
    """All `(images, labels)` of a finite batched dataset as NumPy arrays:
    uint8 (N, H, W, 3) and int64 (N,) (one-hot labels are turned to ids)."""
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
    """Number of batches of a finite dataset, or `None` when unknown."""
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else None


# The ten CIFAR-10 classes, by label id: a dataset with these classes is
# CIFAR-10 (tfds `cifar10`, or an image folder of it).
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


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
