"""Trained models shipped inside the package, loadable without a download.

Each preset is a folder beside this file, in the keras-hub manner but
offline:

    keras_ltpa/presets/<name>/
        model.keras       the model's config and weights (no optimizer state)
        metadata.json     dataset, variant, width, input size, class names,
                          test accuracy, the accuracy on a fixed subset, the
                          training command, wall time and code version

Example:
>>> import keras_ltpa
>>> keras_ltpa.list_presets()  # doctest: +SKIP
['cifar10-att3-w0125', 'cifar10-vgg-w0125']
>>> model = keras_ltpa.load_preset("cifar10-att3-w0125")  # doctest: +SKIP

The command-line scripts take `--model preset:<name>`. `make_preset` builds
one from a finished run (`training/make_preset.py`).
"""

import json
import os
import shutil
import tempfile

PRESETS_DIR = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
PRESET_PREFIX = "preset:"

# The fixed subset every preset's recorded accuracy is measured on.
SUBSET_SPLIT = "test"
SUBSET_SIZE = 2000


def list_presets():
    """The names of the presets shipped with the package, sorted."""
    return sorted(
        entry
        for entry in os.listdir(PRESETS_DIR)
        if os.path.isfile(os.path.join(PRESETS_DIR, entry, METADATA_FILE))
    )


def preset_dir(name):
    """The folder of preset `name`; a ValueError names an unknown one."""
    if name.startswith(PRESET_PREFIX):
        name = name[len(PRESET_PREFIX):]
    available = list_presets()
    folder = os.path.join(PRESETS_DIR, name)
    if name not in available:
        raise ValueError(
            f"Unknown preset {name!r}; available: "
            f"{', '.join(available) if available else 'none'}."
        )
    return folder


def preset_metadata(name):
    """The `metadata.json` of preset `name` as a dict."""
    path = os.path.join(preset_dir(name), METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Preset {name!r} has a corrupt {METADATA_FILE} ({path}): {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"Preset {name!r}: {path} does not hold a JSON object.")
    return metadata


def load_preset(name):
    """The trained model of preset `name`, loaded with `safe_mode=True`.

    Args:
        name: a name from `list_presets()` (a leading `preset:` is allowed).

    Returns:
        A `keras_ltpa.AttentionClassifier` (not compiled), with its class
        names and pixel statistics.
    """
    from keras_ltpa.model import load_model_file

    folder = preset_dir(name)
    preset_metadata(name)  # a corrupt preset is refused before loading
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"Preset {name!r} is incomplete: {path} is missing.")
    try:
        return load_model_file(path)
    except ValueError as error:
        raise ValueError(f"Preset {name!r} cannot be loaded from {path}: {error}") from None


def subset_scores(model, data_dir, batch_size=250):
    """Correct predictions of `model` on the fixed subset (the first
    `SUBSET_SIZE` of `data_dir`'s test split in `load_dataset`'s fixed
    order), and how many of them are near-ties.

    Returns:
        A dict: `count`, `correct`, `accuracy`, and `near_ties`: images
        whose two largest logits differ by less than 1e-4 of the largest
        logit magnitude (their prediction may differ between backends by
        float rounding).
    """
    import keras
    import numpy as np

    from keras_ltpa import data

    dataset, _ = data.load_dataset(
        SUBSET_SPLIT,
        data_dir=data_dir,
        image_size=tuple(model.input_shape[1:3]),
        batch_size=batch_size,
        limit=SUBSET_SIZE,
    )
    correct = near_ties = count = 0
    for images, labels in dataset.as_numpy_iterator():
        logits = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(images)), "float64")
        top_two = np.sort(logits, axis=-1)[:, -2:]
        gap = top_two[:, 1] - top_two[:, 0]
        near_ties += int((gap < 1e-4 * np.abs(logits).max(axis=-1)).sum())
        correct += int((logits.argmax(-1) == labels.reshape(-1)).sum())
        count += len(labels)
    return {"count": count, "correct": correct, "accuracy": correct / count, "near_ties": near_ties}


def _write_metadata(path, metadata):
    from keras_ltpa.files import write_json

    write_json(path, metadata)


def save_preset(model, name, metadata, presets_dir=None):
    """Writes preset `name` (model without optimizer + metadata) atomically.

    The folder is built under a temporary name and renamed into place, so
    an interrupted call leaves no half-written preset.

    Returns:
        The preset's folder.
    """
    from keras_ltpa.files import set_usual_mode

    presets_dir = presets_dir or PRESETS_DIR
    target = os.path.join(presets_dir, name)
    temporary = tempfile.mkdtemp(prefix=f".{name}.", dir=presets_dir)
    try:
        set_usual_mode(temporary)
        # Re-created from its config (same class, class names, pixel
        # statistics) and left uncompiled: the preset carries no optimizer.
        plain = type(model).from_config(model.get_config())
        plain.set_weights(model.get_weights())
        plain.save(os.path.join(temporary, MODEL_FILE))
        _write_metadata(os.path.join(temporary, METADATA_FILE), metadata)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target
