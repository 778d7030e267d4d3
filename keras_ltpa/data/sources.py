"""Where examples come from: image folders and tensorflow-datasets sets.

Both sources give `(image, label)` pairs, image uint8 RGB (H, W, 3) at the
requested size and label an int32 class id, and the list of class names;
`load_dataset` (in `keras_ltpa.data.pipelines`) batches and augments them.

- An image folder `DIR/<split>/<class>/<image>` (JPEG, PNG, BMP or GIF): the
  class list is read from `DIR/train` (sorted folder names), so every split
  uses the training split's label ids; files are taken in a fixed shuffled
  order (`FILE_ORDER_SEED`), so the first `limit` of them mix the classes.
- A single image folder `DIR/<class>/<image>` with a `validation_split`:
  each class is split in a fixed seeded order (`split_image_folder`), the
  held-out part serving as the validation and test split.
- A tensorflow-datasets name (`"cifar10"`, `"cifar100"`, `"svhn_cropped"`,
  any image-classification set with `image` and `label` features).

Bad input raises `DataError` (a ValueError) naming the folder, file or
dataset.
"""

import os
import zlib

import numpy as np
import tensorflow as tf

from keras_ltpa.data import images

# Files are listed in a fixed shuffled order (this seed) so that `limit`
# takes a mix of classes and an in-memory cache is not class-sorted.
FILE_ORDER_SEED = 1234
# The seed of `split_image_folder`'s per-class order: fixed, so that a run,
# its resumption and its evaluation hold out the same files.
VALIDATION_SPLIT_SEED = 2018


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


def _check_known_classes(found, class_names, directory):
    unknown = [name for name in found if name not in class_names]
    if unknown:
        raise DataError(
            f"Class folder(s) {', '.join(map(repr, unknown))} in {directory!r} "
            f"are not classes of the training split ({', '.join(class_names)})."
        )


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
    class_names = found if class_names is None else list(class_names)
    _check_known_classes(found, class_names, directory)
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


def _held_out_count(count, fraction):
    """Files of a class of `count` held out: `fraction` of them rounded half
    up, at least 1 and at most `count - 1` (a lone file stays for training)."""
    if count < 2:
        return 0
    return min(max(int(np.floor(fraction * count + 0.5)), 1), count - 1)


def split_image_folder(directory, fraction, seed=VALIDATION_SPLIT_SEED):
    """Splits a single folder `directory/<class>/<image>` per class.

    Each class's files (sorted by name) are put in an order drawn from
    `seed` and the class name alone, so a class keeps its split when other
    classes are added or removed; the first `round(fraction * n)` files of
    that order are held out (at least one, at most all but one).

    Args:
        directory: the image folder.
        fraction: float in (0, 1), the share of each class held out.
        seed: int, the seed of the per-class orders.

    Returns:
        A dict: `class_names`, `train` and `validation` (each a
        `(paths, labels)` pair: a list of paths sorted by class then name,
        and an int32 array), `counts` ({class: [train, validation]}).

    Example:
    >>> split = split_image_folder("tests/fixtures/data/caltech101", 0.25)  # doctest: +SKIP
    >>> split["counts"]["airplanes"]  # doctest: +SKIP
    [6, 2]
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(
            f"`validation_split` must be a number in (0, 1); received validation_split={fraction!r}."
        )
    paths, labels, class_names = list_image_folder(directory)
    parts = {"train": ([], []), "validation": ([], [])}
    counts = {}
    for index, name in enumerate(class_names):
        files = [path for path, label in zip(paths, labels) if label == index]
        class_seed = zlib.crc32(name.encode("utf-8"))
        order = np.random.default_rng([seed, class_seed]).permutation(len(files))
        held = set(order[: _held_out_count(len(files), fraction)].tolist())
        for position, path in enumerate(files):
            part = parts["validation" if position in held else "train"]
            part[0].append(path)
            part[1].append(index)
        counts[name] = [len(files) - len(held), len(held)]
    result = {key: (value[0], np.asarray(value[1], "int32")) for key, value in parts.items()}
    result.update(class_names=class_names, counts=counts)
    return result


def describe_split(data_dir, fraction, seed=VALIDATION_SPLIT_SEED):
    """What a run records of its validation split: the seed, the fraction,
    the per-class counts and the held-out files (relative to `data_dir`)."""
    split = split_image_folder(data_dir, fraction, seed)
    held = [os.path.relpath(path, data_dir).replace(os.sep, "/") for path in split["validation"][0]]
    return {"seed": seed, "fraction": fraction, "counts": split["counts"], "validation_files": held}


def _split_files(data_dir, split, validation_split=None):
    """(paths, labels, class_names) of `data_dir/split`, ids from `train`;
    with `validation_split`, the part of the single folder `data_dir` that
    `split` names ("train", else the held-out part)."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"Data folder not found: {data_dir!r} is not a directory.")
    train_dir = os.path.join(data_dir, "train")
    if validation_split is not None:
        if os.path.isdir(train_dir):
            raise DataError(
                f"Data folder {data_dir!r} has a 'train' folder; validation_split "
                "(--validation-split) splits a single folder DIR/<class>/<image>. Drop it to "
                "train on DIR/train and test on DIR/test."
            )
        parts = split_image_folder(data_dir, validation_split)
        part = "train" if split == "train" else "validation"
        paths, labels = parts[part]
        if not paths:
            raise DataError(
                f"validation_split={validation_split!r} leaves the {part} part of {data_dir!r} "
                "empty (a class of one file stays for training); use a larger folder."
            )
        return paths, labels, parts["class_names"]
    if not os.path.isdir(train_dir):
        raise DataError(
            f"Data folder {data_dir!r} has no 'train' folder; expected "
            f"{data_dir}/train/<class>/<image> and {data_dir}/test/<class>/<image>, or a "
            f"single folder {data_dir}/<class>/<image> with validation_split (--validation-split)."
        )
    if split == "train":
        return list_image_folder(train_dir)
    class_names = class_folders(train_dir)
    paths, labels, _ = list_image_folder(os.path.join(data_dir, split), class_names=class_names)
    return paths, labels, class_names


def _ordered_files(data_dir, split, limit, validation_split):
    """The files of a split in the fixed mixed order, cut to `limit`."""
    paths, labels, class_names = _split_files(data_dir, split, validation_split)
    order = np.random.default_rng(FILE_ORDER_SEED).permutation(len(paths))
    if limit is not None:
        order = order[:limit]
    return [paths[i] for i in order], labels[order], class_names


def folder_labels(data_dir, split, *, limit=None, validation_split=None):
    """The labels `folder_examples` yields for the same arguments (in its
    file order, before any shuffle), and the class names; nothing decoded."""
    _, labels, class_names = _ordered_files(data_dir, split, limit, validation_split)
    return labels, class_names


def folder_examples(
    data_dir, split, image_size, *, limit=None, verify=True, shuffle=False, seed=None,
    validation_split=None,
):
    """Decoded `(image, label)` pairs of an image folder's split.

    Args:
        data_dir: the folder `DIR` of `DIR/<split>/<class>/<image>`, or with
            `validation_split` a single folder `DIR/<class>/<image>`.
        split: the sub-folder, e.g. `"train"` or `"test"`; with
            `validation_split`, `"train"` or any other name for the
            held-out part.
        image_size: (height, width) the images are resized to.
        limit: take only the first `limit` files of the fixed order.
        verify: decode every file once up front; fail naming a bad one.
        shuffle: shuffle the file names every epoch (before decoding, where
            it is cheap).
        seed: optional int seed of that shuffle.
        validation_split: None, or the share of each class held out (see
            `split_image_folder`).

    Returns:
        `(dataset, class_names)`: unbatched uint8 images and int32 labels.
    """
    paths, labels, class_names = _ordered_files(data_dir, split, limit, validation_split)
    if verify:
        check_images(paths)
    source = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        source = source.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    source = source.map(
        lambda path, label: (images.decode_image(tf.io.read_file(path), image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return source, class_names


def _tfds_builder(name, tfds_data_dir):
    """A prepared tfds builder of an image-classification set, and its classes."""
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
        if not _is_prepared(builder):
            # Offline, tfds would retry its downloads for minutes: a short
            # check first, through the HTTP stack tfds downloads with.
            _check_download_hosts()
        builder.download_and_prepare()
    except Exception as error:  # Network or disk trouble, reported in one line.
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise DataError(
            f"Could not download or prepare tensorflow-datasets {name!r} in "
            f"{builder.data_dir!r} ({reason}). Without internet access, train on "
            "an image folder instead (data_dir=, --data-dir)."
        ) from None
    return builder, class_names


# Where tensorflow-datasets fetches sets from: its own mirror, then the
# sets' home pages (CIFAR's among them).
DOWNLOAD_HOSTS = ("https://storage.googleapis.com", "https://www.cs.toronto.edu")
DOWNLOAD_CHECK_SECONDS = 4


def _is_prepared(builder):
    """Whether the set is on disk already (tfds writes its info file last)."""
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _check_download_hosts(hosts=DOWNLOAD_HOSTS, timeout=DOWNLOAD_CHECK_SECONDS):
    """Raises ConnectionError unless one of `hosts` answers within `timeout`
    seconds. Uses `requests`, as tfds' downloader does, so proxy settings
    (`HTTPS_PROXY`, ...) apply the same way."""
    import requests

    for host in hosts:
        try:
            requests.head(host, timeout=timeout)
            return
        except requests.RequestException:
            continue
    raise ConnectionError(f"no network: none of {', '.join(hosts)} answered")


def tfds_examples(name, split, image_size, *, tfds_data_dir=None, limit=None, shuffle_files=False, seed=None):
    """Decoded `(image, label)` pairs of a tensorflow-datasets split.

    Args:
        name: the tfds name, e.g. `"cifar10"`.
        split: a split name of the set (slicing like `"train[:10%]"` works).
        image_size: (height, width) the images are resized to.
        tfds_data_dir: where tfds keeps its files (default: its own).
        limit: take only the first `limit` examples.
        shuffle_files: read the set's files in a shuffled order.
        seed: optional int seed of that order.

    Returns:
        `(dataset, class_names)`: unbatched uint8 RGB images and int32 labels.
    """
    import tensorflow_datasets as tfds

    builder, class_names = _tfds_builder(name, tfds_data_dir)
    splits = builder.info.splits
    if splits and split.split("[")[0] not in splits:
        raise DataError(
            f"Dataset {name!r} has no split {split!r}; its splits: {', '.join(splits.keys())}."
        )
    source = builder.as_dataset(
        split=split, shuffle_files=shuffle_files, read_config=tfds.ReadConfig(shuffle_seed=seed)
    )
    source = source.map(
        lambda example: (example["image"], tf.cast(example["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if limit is not None:
        source = source.take(limit)
    source = source.map(
        lambda image, label: (images.resize_image(images.to_rgb(image), image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return source, class_names


def tfds_labels(name, split, *, tfds_data_dir=None, limit=None):
    """The labels of a tensorflow-datasets split (the images not decoded), in
    the order `tfds_examples` reads them unshuffled, cut to `limit`, and the
    class names."""
    import tensorflow_datasets as tfds

    builder, class_names = _tfds_builder(name, tfds_data_dir)
    source = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    source = source.map(lambda example: tf.cast(example["label"], tf.int32))
    if limit is not None:
        source = source.take(limit)
    return np.fromiter(source.as_numpy_iterator(), dtype="int32"), class_names
