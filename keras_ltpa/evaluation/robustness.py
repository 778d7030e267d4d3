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
from keras_ltpa.utils.batches import map_batches

MAX_EPSILON = 255.0


def check_epsilons(epsilons):
    """`epsilons` as a sorted list of floats in [0, 255]; a ValueError names
    a bad one.

    Example:
    >>> check_epsilons([8, 0, 2, 2])
    [0.0, 2.0, 8.0]
    """
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
    # Images off the model's size are resized as the 8-bit images they
    # stand for; images at its size are attacked as given.
    fitted = image_files.fit_to_model_input(images.astype("uint8", copy=False), model)
    if fitted.shape != images.shape:
        images = fitted
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
    """`clip(round(x + eps * sign), 0, 255)` as float32 (whole pixel values).

    Example:
    >>> perturb(np.array([1.0, 254.0, 100.0]), np.array([-1.0, 1.0, 1.0]), 2.5).tolist()
    [0.0, 255.0, 102.0]
    """
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
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> images = np.full((2, 32, 32, 3), 128, "uint8")
    >>> adversarial = fgsm_images(model, images, [0, 1], epsilon=4)
    >>> adversarial.dtype, int(np.abs(adversarial.astype(int) - 128).max())
    (dtype('uint8'), 4)
    """
    (epsilon,) = check_epsilons([epsilon])
    inputs, labels = _inputs_and_labels(model, images, labels)

    def attack(batch, batch_labels):
        return perturb(batch, gradient_sign(model, batch, batch_labels), epsilon).astype("uint8")

    return map_batches(attack, inputs, labels, batch_size=batch_size)


def _predicted(model, images):
    return to_float32(model(images, training=False)).argmax(-1)


def _hits(model, images, labels, epsilons):
    """Whether each image is classified right: clean (N,), and under FGSM at
    each epsilon (N, E), all from one gradient."""
    sign = gradient_sign(model, images, labels)
    attacked = [_predicted(model, perturb(images, sign, eps)) == labels for eps in epsilons]
    return _predicted(model, images) == labels, np.stack(attacked, axis=-1)


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
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> images = np.full((3, 32, 32, 3), 128, "uint8")
    >>> result = fgsm_robustness(model, images, [0, 1, 2], [0, 8])
    >>> result["count"], result["epsilons"], len(result["accuracy"])
    (3, [0.0, 8.0], 2)
    """
    epsilons = check_epsilons(epsilons)
    inputs, labels = _inputs_and_labels(model, images, labels)
    if not len(inputs):
        raise ValueError("`images` is empty: no images to attack.")
    clean_correct, correct_at = map_batches(
        lambda batch, batch_labels: _hits(model, batch, batch_labels, epsilons),
        inputs,
        labels,
        batch_size=batch_size,
    )
    correct_at = correct_at.T  # (E, N)
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
