"""Classification accuracy: top-1, top-k and each class's, on a split; and
the fixed CIFAR-10 subset score each preset records and reproduces."""

import keras
import numpy as np

from keras_ltpa.data.images import model_input_size
from keras_ltpa.data.pipelines import dataset_arrays
from keras_ltpa.data.pipelines import load_dataset
from keras_ltpa.presets import SUBSET_SIZE
from keras_ltpa.presets import SUBSET_SPLIT
from keras_ltpa.utils.batches import map_batches

# --- Classification ------------------------------------------------------


def _batches(dataset):
    if hasattr(dataset, "as_numpy_iterator"):
        return dataset.as_numpy_iterator()
    return iter(dataset)


def evaluate_classification(model, dataset, class_names=None, top_k=5):
    """Top-1, top-k and per-class accuracy of `model` on a dataset.

    Args:
        model: a model whose output is the class logits (or probabilities).
        dataset: a `tf.data.Dataset` of `(images, labels)` batches (e.g. from
            `keras_ltpa.data.load_dataset`) or any iterable of such NumPy
            pairs.
        class_names: optional names for the per-class entries.
        top_k: k of the top-k accuracy (capped at the number of classes).

    Returns:
        A dict: `count`, `accuracy`, `top_k`, `top_k_accuracy`,
        `per_class` ({name: accuracy}, classes never seen are left out) and
        `per_class_count` ({name: number of images}).

    Example:
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Identity()(inputs))  # logits in, logits out
    >>> batches = [(np.array([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]]), np.array([0, 2]))]
    >>> result = evaluate_classification(model, batches, top_k=2)
    >>> result["accuracy"], result["top_k_accuracy"], result["per_class"]
    (0.5, 1.0, {'0': 1.0, '2': 0.0})
    """
    correct = topk_correct = total = 0
    class_correct, class_total = {}, {}
    for images, labels in _batches(dataset):
        logits = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(images)))
        labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot labels
            labels = labels.argmax(axis=-1)
        labels = labels.reshape(-1).astype(np.int64)
        k = min(top_k, logits.shape[-1])
        top = np.argsort(-logits, axis=-1)[:, :k]
        hits = top[:, 0] == labels
        correct += int(hits.sum())
        topk_correct += int((top == labels[:, None]).any(axis=-1).sum())
        total += len(labels)
        for label, hit in zip(labels, hits):
            class_total[label] = class_total.get(label, 0) + 1
            class_correct[label] = class_correct.get(label, 0) + int(hit)
    if total == 0:
        raise ValueError("`dataset` yielded no images to evaluate.")

    def name(label):
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(int(label))

    return {
        "count": total,
        "accuracy": correct / total,
        "top_k": min(top_k, logits.shape[-1]),
        "top_k_accuracy": topk_correct / total,
        "per_class": {
            name(label): class_correct[label] / class_total[label]
            for label in sorted(class_total)
        },
        "per_class_count": {name(label): class_total[label] for label in sorted(class_total)},
    }


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
        "per class:",
    ]
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
