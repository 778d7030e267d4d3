"""Robustness to the fast gradient sign method (FGSM).

The paper (Jetley et al., ICLR 2018, Sec. 5.3) reports that attention makes
the classifier more robust to adversarial images made by FGSM (Goodfellow
et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015). Here,
untargeted and white-box, on the raw 0..255 pixels the model takes:

    x' = clip(x + eps * sign(d loss(model(x), y) / d x), 0, 255)

with `loss` the softmax cross-entropy of the true label `y` and `eps` in
pixel units. `x'` is then rounded to whole pixel values (a no-op for integer
`eps`), so every adversarial image is an 8-bit image a client could send.
Each model is attacked with its own gradients. The gradient is taken once
per image; each `eps` moves the image along the same sign pattern.
"""

import keras
import numpy as np

from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation.gradients import input_gradient
from keras_ltpa.evaluation.gradients import to_float32

MAX_EPSILON = 255.0


def check_epsilons(epsilons):
    """`epsilons` as a sorted list of floats in [0, 255]; a ValueError names
    a bad one."""
    if isinstance(epsilons, (int, float)):
        epsilons = [epsilons]
    values = []
    for eps in epsilons:
        try:
            value = float(eps)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0.0 <= value <= MAX_EPSILON:
            raise ValueError(
                f"FGSM epsilon {eps!r} is out of range: give pixel units in "
                f"[0, {MAX_EPSILON:g}] (the model's raw 0..255 input)."
            )
        values.append(value)
    if not values:
        raise ValueError("No FGSM epsilon given: pass at least one value in [0, 255].")
    return sorted(set(values))


def _inputs_and_labels(model, images, labels):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"`images` must be (N, H, W, 3) raw pixels; received shape {images.shape}."
        )
    labels = np.asarray(labels).reshape(-1).astype("int64")
    if len(labels) != len(images):
        raise ValueError(
            f"{len(images)} images but {len(labels)} labels: give one label per image."
        )
    size = tuple(model.input_shape[1:3])
    if None not in size and images.shape[1:3] != size:
        images = image_files.resize_images(images.astype("uint8"), size)
    return images.astype("float32"), labels


def gradient_sign(model, images, labels):
    """sign(d loss / d x) for one batch of float32 raw pixels (N, H, W, 3)."""
    labels = keras.ops.convert_to_tensor(labels.astype("int32"))

    def total_loss(x):
        logits = keras.ops.cast(model(x, training=False), "float32")
        # Summed: each image's gradient is that of its own loss.
        return keras.ops.sum(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )

    return np.sign(to_float32(input_gradient(total_loss, images)))


def perturb(images, sign, epsilon):
    """`clip(round(x + eps * sign), 0, 255)` as float32 (whole pixel values)."""
    return np.clip(np.round(images + np.float32(epsilon) * sign), 0.0, 255.0).astype("float32")


def fgsm_images(model, images, labels, epsilon, batch_size=64):
    """FGSM adversarial versions of `images` at one `epsilon`.

    Args:
        model: a classifier whose output is the class logits.
        images: (N, H, W, 3) raw 0..255 pixels (resized to the model input
            when their size differs).
        labels: (N,) int true labels.
        epsilon: the step in pixel units, in [0, 255].
        batch_size: images per gradient call.

    Returns:
        uint8 (N, H, W, 3) adversarial images.

    Example:
    >>> adversarial = fgsm_images(model, images, labels, epsilon=4)  # doctest: +SKIP
    """
    (epsilon,) = check_epsilons([epsilon])
    inputs, labels = _inputs_and_labels(model, images, labels)
    batches = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        sign = gradient_sign(model, batch, labels[start : start + batch_size])
        batches.append(perturb(batch, sign, epsilon).astype("uint8"))
    return np.concatenate(batches)


def fgsm_robustness(model, images, labels, epsilons, batch_size=64):
    """Accuracy of `model` under FGSM at each epsilon, and how predictions flip.

    Args:
        model: a classifier whose output is the class logits.
        images: (N, H, W, 3) raw 0..255 pixels.
        labels: (N,) int true labels.
        epsilons: pixel-unit steps in [0, 255] (eps 0 gives clean accuracy).
        batch_size: images per model call.

    Returns:
        A dict: `count`, `clean_accuracy`, `epsilons` (sorted), `accuracy`
        (one per epsilon), `flipped_fraction` (per epsilon: the fraction of
        the cleanly correct images that are wrong at it), `correct_count`
        (cleanly correct images), `flipped_count` (of those, wrong at some
        epsilon given) and `mean_flip_epsilon` (their mean smallest such
        epsilon; None when none flips).

    Example:
    >>> result = fgsm_robustness(model, images, labels, [0, 1, 2, 4, 8])  # doctest: +SKIP
    >>> result["accuracy"]  # doctest: +SKIP
    [0.81, 0.52, 0.33, 0.17, 0.08]
    """
    epsilons = check_epsilons(epsilons)
    inputs, labels = _inputs_and_labels(model, images, labels)
    if not len(inputs):
        raise ValueError("`images` is empty: no images to attack.")
    clean_correct = []
    correct_at = [[] for _ in epsilons]
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        batch_labels = labels[start : start + batch_size]
        logits = to_float32(model(batch, training=False))
        clean_correct.append(logits.argmax(-1) == batch_labels)
        sign = gradient_sign(model, batch, batch_labels)
        for index, epsilon in enumerate(epsilons):
            adversarial = perturb(batch, sign, epsilon)
            logits = to_float32(model(adversarial, training=False))
            correct_at[index].append(logits.argmax(-1) == batch_labels)
    clean_correct = np.concatenate(clean_correct)
    correct_at = np.stack([np.concatenate(c) for c in correct_at])  # (E, N)
    flipped = clean_correct[None, :] & ~correct_at
    ever_flipped = flipped.any(axis=0)
    first_flip = np.asarray(epsilons)[flipped.argmax(axis=0)]
    correct_count = int(clean_correct.sum())
    return {
        "count": len(inputs),
        "clean_accuracy": float(clean_correct.mean()),
        "epsilons": epsilons,
        "accuracy": [float(c.mean()) for c in correct_at],
        "flipped_fraction": [
            float(f.sum() / correct_count) if correct_count else 0.0 for f in flipped
        ],
        "correct_count": correct_count,
        "flipped_count": int(ever_flipped.sum()),
        "mean_flip_epsilon": float(first_flip[ever_flipped].mean()) if ever_flipped.any() else None,
    }


def format_robustness(results):
    """A plain-text table of `fgsm_robustness` results, one column per model.

    Args:
        results: {model name: result}.
    """
    names = list(results)
    first = results[names[0]]
    lines = [
        f"FGSM accuracy over {first['count']} images (eps in pixel units 0..255)",
        f"{'eps':>6}  " + "  ".join(f"{n:>14}" for n in names),
    ]
    for index, epsilon in enumerate(first["epsilons"]):
        lines.append(
            f"{epsilon:>6g}  "
            + "  ".join(f"{results[n]['accuracy'][index]:>14.4f}" for n in names)
        )
    lines.append(
        "mean flip eps  "
        + "  ".join(
            f"{'-':>8}" if results[n]["mean_flip_epsilon"] is None
            else f"{results[n]['mean_flip_epsilon']:>8.3f}"
            for n in names
        )
    )
    return "\n".join(lines)
