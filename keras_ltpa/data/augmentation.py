"""Augmentation names and the label-mode rule, and the layers that apply them.

`parse_augment` and `resolve_label_mode` are the one place the rules live:
which names exist, what `None`/`"paper"`/`"none"` mean, and that the
batch-level mixes (MixUp, CutMix) make soft labels, so they need
`label_mode="categorical"`. `load_dataset`, the training configuration and
the training loop all ask these two functions.

Each name, applied with Keras core preprocessing layers (inside `tf.data`
Keras runs them on TensorFlow whatever the backend):

    crop         random crop after zero padding of 1/8 of the side (4 pixels
                 at 32x32), the paper's
    flip         random horizontal flip, the paper's
    randaugment  `keras.layers.RandAugment` (its equalisation counting
                 each channel's histogram with one `bincount` under every
                 backend: `_Equalization`)
    mixup        `keras.layers.MixUp` on each batch (soft labels)
    cutmix       `keras.layers.CutMix` on each batch (soft labels)
"""

import keras
import tensorflow as tf

from keras_ltpa.utils.checks import check_size

AUGMENTATIONS = ("crop", "flip", "randaugment", "mixup", "cutmix")
PAPER_AUGMENTATION = ("crop", "flip")
BATCH_AUGMENTATIONS = ("mixup", "cutmix")
LABEL_MODES = ("int", "categorical")


def parse_augment(augment, training=True):
    """Resolves an `augment` argument (of `load_dataset`, `--augment`) to names.

    Args:
        augment: `None` (the paper's crop + flip when `training`, else
            nothing), `True`/`"paper"` (crop + flip), `False`/`"none"`/`""`,
            or names from `AUGMENTATIONS` as a sequence or a comma-separated
            string (e.g. `"crop,flip,mixup"`).
        training: whether this is a training pipeline.

    Returns:
        A tuple of augmentation names in `AUGMENTATIONS` order.

    Raises:
        ValueError: naming an unknown augmentation and the allowed ones.

    Example:
    >>> parse_augment("mixup, flip")
    ('flip', 'mixup')
    >>> parse_augment(None, training=False)
    ()
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


def resolve_label_mode(augment, label_mode=None):
    """The label mode of a pipeline augmented with `augment`.

    MixUp and CutMix blend the labels of two images, so with either of them
    the labels are one-hot (`"categorical"`); otherwise they default to int
    ids.

    Args:
        augment: a tuple of names from `parse_augment`.
        label_mode: `"int"`, `"categorical"`, or `None` for the default.

    Returns:
        `"int"` or `"categorical"`.

    Raises:
        ValueError: an unknown `label_mode`, or `"int"` with mixup/cutmix.

    Example:
    >>> resolve_label_mode(parse_augment("crop,mixup"))
    'categorical'
    >>> resolve_label_mode(parse_augment("paper"))
    'int'
    """
    mixing = any(name in BATCH_AUGMENTATIONS for name in augment)
    if label_mode is None:
        return "categorical" if mixing else "int"
    if label_mode not in LABEL_MODES:
        raise ValueError(f"`label_mode` must be one of {LABEL_MODES}; received {label_mode!r}.")
    if mixing and label_mode != "categorical":
        raise ValueError(
            "mixup/cutmix make soft labels: use label_mode='categorical' "
            f"(received label_mode={label_mode!r})."
        )
    return label_mode


def _seed(seed, offset):
    # Each random layer gets its own seed, so two layers never draw alike.
    return None if seed is None else seed + offset


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

    Example:
    >>> flip = image_augmenter(("crop", "flip"), (8, 8), seed=0)
    >>> flip(tf.zeros((8, 8, 3), tf.uint8)).shape.as_list()
    [8, 8, 3]
    """
    height, width = check_size(image_size, "image_size")
    layers = []
    if "crop" in augment:
        layers.append(keras.layers.RandomCrop(height, width, seed=seed))
    if "flip" in augment:
        layers.append(keras.layers.RandomFlip("horizontal", seed=_seed(seed, 1)))
    if "randaugment" in augment:
        layers.append(_rand_augment(seed=_seed(seed, 2)))
    if not layers:
        return None
    pad_y, pad_x = max(1, height // 8), max(1, width // 8)

    def _augment(image):
        if "crop" in augment:
            image = tf.pad(image, [[pad_y, pad_y], [pad_x, pad_x], [0, 0]])
        image = tf.cast(image, "float32")
        for layer in layers:
            image = layer(image, training=True)
        return _to_uint8(image)

    return _augment


class _Equalization(keras.layers.Equalization):
    """`keras.layers.Equalization` whose histogram, inside a TensorFlow
    graph (`tf.data`), is one `tf.math.bincount` whatever the Keras backend.

    Keras chooses the histogram by the global backend: under JAX, where
    `bincount` does not compile, it adds one comparison per bin (256) and
    channel, and inside `tf.data`, which runs the layer on TensorFlow, those
    become some 20,000 graph ops (about 20 s to trace on two CPU cores). The
    counts are the same.
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        if not tf.inside_function():
            return super()._custom_histogram_fixed_width(values, value_range, nbins)
        low, high = (float(bound) for bound in value_range)
        scaled = (tf.cast(values, "float32") - low) * (nbins - 1) / (high - low)
        indices = tf.clip_by_value(tf.cast(scaled, "int32"), 0, nbins - 1)
        return tf.math.bincount(
            tf.reshape(indices, [-1]), minlength=nbins, maxlength=nbins, dtype=tf.int32
        )


def _rand_augment(seed=None):
    """`keras.layers.RandAugment` on 0-255 pixels, with `_Equalization`."""
    layer = keras.layers.RandAugment(value_range=(0, 255), seed=seed)
    if isinstance(getattr(layer, "equalization", None), keras.layers.Equalization):
        layer.equalization = _Equalization(value_range=(0, 255))
    return layer


def batch_augmenter(augment, num_classes, seed=None):
    """A function mixing a batch `(images, one_hot_labels)` (MixUp/CutMix).

    Args:
        augment: tuple of names from `parse_augment` (only mixup and cutmix
            act here).
        num_classes: the number of classes (the labels arrive one-hot).
        seed: optional int seed for the random layers.

    Returns:
        A function `(images, labels) -> (uint8 images, float32 labels)`, or
        `None` when `augment` has neither.

    Example:
    >>> batch_augmenter(("crop", "flip"), 10) is None
    True
    """
    layers = []
    if "mixup" in augment:
        layers.append(keras.layers.MixUp(seed=seed))
    if "cutmix" in augment:
        layers.append(keras.layers.CutMix(seed=_seed(seed, 1)))
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
