"""Presets in keras-hub's layout: built-in, in a local folder, or on a model hub.

A preset is a folder, as keras-hub writes and reads them:

    <name>/
        config.json        the model's constructor arguments, serialized
                           (`keras.saving.serialize_keras_object`)
        model.weights.h5   its weights, float32, no optimizer state
        metadata.json      keras-hub's keys (keras_version, keras_hub_version,
                           parameter_count, date_saved, tasks) and ours:
                           name, description, dataset, variant, backbone,
                           width_multiplier, input_shape, class_names,
                           recipe, test accuracy, the accuracy on a fixed
                           subset, command, training settings, code version

`keras_ltpa.AttentionClassifier.from_preset(NAME_OR_FOLDER_OR_HANDLE)` loads
one (a built-in name from `list_presets()`, a local folder, an `hf://` or
`kaggle://` handle), always in safe mode; `model.save_to_preset(folder)`
writes one, atomically; `keras_hub.upload_preset(handle, folder)` publishes
one. A folder of the first layout (`model.keras` + `metadata.json`) still
loads. The command-line scripts take `--model preset:<name>`; `make_preset`
builds a built-in one from a finished run (`training/make_preset.py`).

Example:
>>> import keras_ltpa
>>> "cifar10-att3-w0125" in keras_ltpa.list_presets()
True
>>> model = keras_ltpa.AttentionClassifier.from_preset("cifar10-att3-w0125")
>>> model.input_shape
(None, 32, 32, 3)

Reference: keras-hub's preset format, https://keras.io/keras_hub/guides/upload/
"""

import os

from keras_ltpa.presets import layout
from keras_ltpa.presets import remote

PRESETS_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_FILE = layout.CONFIG_FILE
WEIGHTS_FILE = layout.WEIGHTS_FILE
METADATA_FILE = layout.METADATA_FILE
LEGACY_MODEL_FILE = layout.LEGACY_MODEL_FILE
PRESET_FILES = layout.PRESET_FILES
# The file holding a preset's trained weights (was `model.keras` in 0.1).
MODEL_FILE = WEIGHTS_FILE
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
    """The folder of built-in preset `name` (a leading `preset:` is allowed).

    Raises:
        ValueError: naming an unknown preset and the available ones.

    Example:
    >>> os.path.basename(preset_dir("preset:cifar10-att3-w0125"))
    'cifar10-att3-w0125'
    """
    if name.startswith(PRESET_PREFIX):
        name = name[len(PRESET_PREFIX):]
    available = list_presets()
    if name not in available:
        raise ValueError(
            f"Unknown preset {name!r}; available: "
            f"{', '.join(available) if available else 'none'}."
        )
    return os.path.join(PRESETS_DIR, name)


def preset_metadata(name):
    """The `metadata.json` of built-in preset `name` as a dict.

    Raises:
        ValueError: an unknown preset, or a metadata file that is missing or
            not a JSON object.

    Example:
    >>> preset_metadata("cifar10-att3-w0125")["variant"]
    'att3-concat-pc'
    """
    folder = preset_dir(name)
    return layout.read_metadata(os.path.join(folder, METADATA_FILE), repr(os.path.basename(folder)))


def load_preset(name):
    """The trained model of built-in preset `name`, loaded in safe mode.

    Args:
        name: a name from `list_presets()` (a leading `preset:` is allowed).

    Returns:
        A `keras_ltpa.AttentionClassifier` (not compiled), with its class
        names and pixel statistics.

    Example:
    >>> load_preset("preset:cifar10-vgg-w0125").output_shape
    (None, 10)
    """
    folder = preset_dir(name)
    return layout.read_preset(folder, repr(os.path.basename(folder)))


def _local_options():
    names = ", ".join(list_presets()) or "none"
    return f"a built-in preset ({names}) or a local preset folder"


def from_preset(preset):
    """The model of a preset: a built-in name, a local folder or a handle.

    Args:
        preset: a name from `list_presets()` (`preset:` prefix allowed), a
            local preset folder (either layout), or a model hub handle:
            `hf://OWNER/NAME` or
            `kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]`.

    Returns:
        A `keras_ltpa.AttentionClassifier` (not compiled), rebuilt from its
        config with `safe_mode=True`.

    Raises:
        ValueError: one line naming what is wrong: an unknown name, a
            missing or corrupt file (named), a config that is not a
            keras_ltpa classifier, or a handle without network.

    Example:
    >>> model = from_preset("cifar10-att3-w0125")
    >>> model.class_names[:2]
    ['airplane', 'automobile']
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(f"`preset` must be a name, a folder or a handle; received {preset!r}.")
    preset = os.fspath(preset)
    if remote.is_handle(preset):
        paths = remote.fetch_files(preset, PRESET_FILES, _local_options())
        return layout.build_from_files(paths, repr(preset))
    if os.path.isdir(preset):
        return layout.read_preset(preset, repr(preset))
    name = preset[len(PRESET_PREFIX):] if preset.startswith(PRESET_PREFIX) else preset
    if name in list_presets():
        return load_preset(name)
    raise ValueError(
        f"`preset` must be {_local_options()}, or an hf://OWNER/NAME or "
        f"kaggle://OWNER/MODEL/keras/VARIATION handle; received {preset!r} (no such folder)."
    )


def save_to_preset(model, folder, metadata=None):
    """Writes `model` as a preset folder in keras-hub's layout, atomically.

    Args:
        model: an `AttentionClassifier`; saved in float32, uncompiled.
        folder: the folder to write (created; a preset already there is
            replaced once the new one is complete).
        metadata: further top-level metadata.json entries (dataset, recipe,
            accuracy, command, ...).

    Returns:
        `folder`, as an absolute path.

    Example:
    >>> import tempfile, keras_ltpa
    >>> model = keras_ltpa.build_model(10, width_multiplier=0.0625)
    >>> folder = save_to_preset(model, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> sorted(os.listdir(folder))
    ['config.json', 'metadata.json', 'model.weights.h5']
    """
    return layout.write_preset(model, folder, metadata)


def save_preset(model, name, metadata, presets_dir=None):
    """Writes preset `name` into `presets_dir` (default: the package's).

    `save_to_preset(model, presets_dir/name, metadata)`: keras-hub's layout,
    float32, no optimizer, written atomically.

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
    ['config.json', 'metadata.json', 'model.weights.h5']
    """
    return save_to_preset(model, os.path.join(os.fspath(presets_dir or PRESETS_DIR), name), metadata)
