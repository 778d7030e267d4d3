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
>>> "cifar10-att3-w0125" in keras_ltpa.list_presets()
True
>>> model = keras_ltpa.load_preset("cifar10-att3-w0125")
>>> model.input_shape
(None, 32, 32, 3)

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
    """The names of the presets shipped with the package, sorted.

    Example:
    >>> "cifar10-vgg-w0125" in list_presets()
    True
    """
    return sorted(
        entry
        for entry in os.listdir(PRESETS_DIR)
        if os.path.isfile(os.path.join(PRESETS_DIR, entry, METADATA_FILE))
    )


def preset_dir(name):
    """The folder of preset `name` (a leading `preset:` is allowed).

    Raises:
        ValueError: naming an unknown preset and the available ones.

    Example:
    >>> os.path.basename(preset_dir("preset:cifar10-att3-w0125"))
    'cifar10-att3-w0125'
    """
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
    """The `metadata.json` of preset `name` as a dict.

    Raises:
        ValueError: an unknown preset, or a metadata file that is not a
            JSON object.

    Example:
    >>> preset_metadata("cifar10-att3-w0125")["variant"]
    'att3-concat-pc'
    """
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


def _write_metadata(path, metadata):
    from keras_ltpa.utils.files import write_json

    write_json(path, metadata)


def save_preset(model, name, metadata, presets_dir=None):
    """Writes preset `name` (model without optimizer + metadata) atomically.

    The folder is built under a temporary name and renamed into place, so
    an interrupted call leaves no half-written preset.

    Args:
        model: the trained model (its optimizer is not saved).
        name: the preset's name, e.g. `"cifar10-att3-w0125"`.
        metadata: a JSON-serialisable dict (see the module docstring).
        presets_dir: where to write (default: the package's presets).

    Returns:
        The preset's folder.

    Example:
    >>> import tempfile, keras_ltpa
    >>> model = keras_ltpa.build_model(10, width_multiplier=0.0625)
    >>> folder = save_preset(model, "tiny", {"name": "tiny"}, tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['metadata.json', 'model.keras']
    """
    from keras_ltpa.utils.files import set_usual_mode

    presets_dir = presets_dir or PRESETS_DIR
    target = os.path.join(presets_dir, name)
    temporary = tempfile.mkdtemp(prefix=f".{name}.", dir=presets_dir)
    try:
        set_usual_mode(temporary)
        # Re-created from its config (same class, class names, pixel
        # statistics) and left uncompiled: the preset carries no optimizer.
        # Always float32, whatever precision trained it: users pick their
        # own policy when they load it.
        config = model.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        plain = type(model).from_config(config)
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
