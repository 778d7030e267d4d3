"""Classification accuracy: top-1, top-k and each class's, on a split, with
optional flip test-time augmentation; and the fixed CIFAR-10 subset score
each preset records and reproduces."""

import keras
import numpy as np

from keras_ltpa.data.images import model_input_size
from keras_ltpa.data.pipelines import dataset_arrays
from keras_ltpa.data.pipelines import load_dataset
from keras_ltpa.presets import SUBSET_SIZE
from keras_ltpa.presets import SUBSET_SPLIT
from keras_ltpa.utils.batches import map_batches
from keras_ltpa.utils.checks import check_tta

# --- Classification ------------------------------------------------------


def _batches(dataset):
    if hasattr(dataset, "as_numpy_iterator"):
        return dataset.as_numpy_iterator()
    return iter(dataset)


def flip_images(images):
    """Mirrors a batch of images (N, H, W, C) left to right."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"`images` must be a batch (N, H, W, C) to flip; received shape {images.shape}."
        )
    return images[:, :, ::-1, :]


def flip_tta_outputs(predict, images):
    """The mean of the model's outputs for `images` and their mirror images.

    The outputs (the logits of the models here) are averaged as they come,
    not turned into probabilities first: the mean of two logit vectors is
    the logit vector of the normalised geometric mean of the two softmax
    distributions (a product of the two views), its softmax is a
    distribution again, and a model that outputs probabilities gets their
    arithmetic mean, with nothing to guess about which kind it outputs.

    Args:
        predict: a callable from a batch of images to a batch of outputs,
            e.g. `model.predict_on_batch`.
        images: a batch (N, H, W, C), channels last.

    Returns:
        float64 array (N, num_classes): `(predict(images) +
        predict(flip_images(images))) / 2`.

    Example:
    >>> predict = lambda x: x[:, 0, :, 0]  # "logits": the first row of pixels
    >>> images = np.arange(6.0).reshape(1, 1, 6, 1)
    >>> flip_tta_outputs(predict, images).tolist()
    [[2.5, 2.5, 2.5, 2.5, 2.5, 2.5]]
    """
    plain = _to_numpy(predict(images))
    mirrored = _to_numpy(predict(flip_images(images)))
    return (plain + mirrored) / 2.0


def _to_numpy(outputs):
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)


class _Tally:
    """Counts of top-1, top-k and per-class hits over batches."""

    def __init__(self, top_k):
        self.top_k = top_k
        self.correct = self.topk_correct = self.total = 0
        self.class_correct, self.class_total = {}, {}

    def add(self, outputs, labels):
        k = min(self.top_k, outputs.shape[-1])
        self.k = k
        top = np.argsort(-outputs, axis=-1, kind="stable")[:, :k]
        hits = top[:, 0] == labels
        self.correct += int(hits.sum())
        self.topk_correct += int((top == labels[:, None]).any(axis=-1).sum())
        self.total += len(labels)
        for label, hit in zip(labels, hits):
            self.class_total[label] = self.class_total.get(label, 0) + 1
            self.class_correct[label] = self.class_correct.get(label, 0) + int(hit)

    def result(self, name):
        return {
            "count": self.total,
            "accuracy": self.correct / self.total,
            "top_k": self.k,
            "top_k_accuracy": self.topk_correct / self.total,
            "per_class": {
                name(label): self.class_correct[label] / self.class_total[label]
                for label in sorted(self.class_total)
            },
            "per_class_count": {
                name(label): self.class_total[label] for label in sorted(self.class_total)
            },
        }


def evaluate_classification(model, dataset, class_names=None, top_k=5, tta=None):
    """Top-1, top-k and per-class accuracy of `model` on a dataset.

    Args:
        model: a model whose output is the class logits (or probabilities).
        dataset: a `tf.data.Dataset` of `(images, labels)` batches (e.g. from
            `keras_ltpa.data.load_dataset`) or any iterable of such NumPy
            pairs; images channels last.
        class_names: optional names for the per-class entries.
        top_k: k of the top-k accuracy (capped at the number of classes).
        tta: None (or `"none"`): the plain score only. `"flip"`: also the
            score of the outputs averaged over each image and its left-right
            mirror (`flip_tta_outputs`), reported apart under `"flip_tta"`;
            the plain figures are unchanged.

    Returns:
        A dict: `count`, `accuracy`, `top_k`, `top_k_accuracy`,
        `per_class` ({name: accuracy}, classes never seen are left out) and
        `per_class_count` ({name: number of images}); with `tta="flip"`,
        also `flip_tta`: `accuracy`, `top_k_accuracy` and `per_class` of the
        averaged outputs.

    Example:
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Identity()(inputs))  # logits in, logits out
    >>> batches = [(np.array([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]]), np.array([0, 2]))]
    >>> result = evaluate_classification(model, batches, top_k=2)
    >>> result["accuracy"], result["top_k_accuracy"], result["per_class"]
    (0.5, 1.0, {'0': 1.0, '2': 0.0})
    """
    tta = check_tta(tta)
    plain, flipped = _Tally(top_k), _Tally(top_k) if tta else None
    for images, labels in _batches(dataset):
        logits = _to_numpy(model.predict_on_batch(images))
        labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot labels
            labels = labels.argmax(axis=-1)
        labels = labels.reshape(-1).astype(np.int64)
        plain.add(logits, labels)
        if flipped is not None:
            mirrored = _to_numpy(model.predict_on_batch(flip_images(images)))
            flipped.add((logits + mirrored) / 2.0, labels)
    if plain.total == 0:
        raise ValueError("`dataset` yielded no images to evaluate.")

    def name(label):
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(int(label))

    result = plain.result(name)
    if flipped is not None:
        averaged = flipped.result(name)
        result["flip_tta"] = {
            key: averaged[key] for key in ("accuracy", "top_k_accuracy", "per_class")
        }
    return result


# --- Reports ------------------------------------------------------------------


def format_classification(result):
    """A plain-text table of an `evaluate_classification` result.

    Args:
        result: the dict `evaluate_classification` returns.

    Returns:
        The table as a string: counts, accuracies, then one line per class.
    """
    lines = [
        f"images: {result['count']}",
        f"accuracy: {result['accuracy']:.4f}",
        f"top-{result['top_k']} accuracy: {result['top_k_accuracy']:.4f}",
    ]
    if "flip_tta" in result:
        lines += [
            f"accuracy, flip TTA: {result['flip_tta']['accuracy']:.4f}",
            f"top-{result['top_k']} accuracy, flip TTA: {result['flip_tta']['top_k_accuracy']:.4f}",
        ]
    lines.append("per class:")
    width = max(len(name) for name in result["per_class"])
    for name, accuracy in result["per_class"].items():
        lines.append(
            f"  {name:<{width}}  {accuracy:.4f}  ({result['per_class_count'][name]} images)"
        )
    return "\n".join(lines)


# --- The presets' fixed subset ---------------------------------------------


def subset_scores(model, data_dir, batch_size=250):
    """Correct predictions of `model` on the fixed subset, and its near-ties.

    The subset is the first `presets.SUBSET_SIZE` images of `data_dir`'s
    `presets.SUBSET_SPLIT` split in `load_dataset`'s fixed order: each
    preset records its score there, and the tests reproduce it.

    Args:
        model: a model whose output is the class logits.
        data_dir: an image folder `DIR/<split>/<class>/<image>`.
        batch_size: images per model call.

    Returns:
        A dict: `count`, `correct`, `accuracy`, and `near_ties`: images
        whose two largest logits differ by less than 1e-4 of the largest
        logit magnitude (their prediction may differ between backends by
        float rounding).

    Example:
    >>> scores = subset_scores(model, "../shared/data/cifar10")  # doctest: +SKIP
    >>> scores["count"]  # doctest: +SKIP
    2000
    """
    dataset, _ = load_dataset(
        SUBSET_SPLIT,
        data_dir=data_dir,
        image_size=model_input_size(model),
        batch_size=batch_size,
        limit=SUBSET_SIZE,
    )
    images, labels = dataset_arrays(dataset)
    logits = map_batches(model.predict_on_batch, images, batch_size=batch_size).astype("float64")
    top_two = np.sort(logits, axis=-1)[:, -2:]
    gap = top_two[:, 1] - top_two[:, 0]
    near_ties = int((gap < 1e-4 * np.abs(logits).max(axis=-1)).sum())
    correct = int((logits.argmax(-1) == labels).sum())
    count = len(labels)
    return {"count": count, "correct": correct, "accuracy": correct / count, "near_ties": near_ties}
