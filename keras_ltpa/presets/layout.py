"""A preset folder in keras-hub's layout: writing one and reading one back.

    <folder>/
        config.json        the model, serialized (`keras.saving.serialize_keras_object`)
        model.weights.h5   its weights (`model.save_weights`)
        metadata.json      keras-hub's keys (keras_version, keras_hub_version,
                           parameter_count, date_saved, tasks) and ours at the
                           top level (variant, backbone, input_shape, ...)

`write_preset` builds the folder under a temporary name beside its target
and renames it into place, so a preset is never half-written. `read_preset`
rebuilds the model from `config.json` with `safe_mode=True` (no Lambda, no
arbitrary code) and loads its weights; a folder of the first layout
(`model.keras` + `metadata.json`) still loads. Every failure is one line
naming the file.
"""

import datetime
import importlib.metadata
import json
import os
import shutil
import tempfile

import keras

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
LEGACY_MODEL_FILE = "model.keras"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
# The class a preset's config.json must describe.
REGISTERED_NAME = "keras_ltpa>AttentionClassifier"
_FLOAT32_POLICY = {"module": "keras", "class_name": "DTypePolicy",
                   "config": {"name": "float32"}, "registered_name": None}
# What a folder may already hold for `write_preset` to replace it.
_REPLACEABLE = set(PRESET_FILES) | {LEGACY_MODEL_FILE, "README.md"}


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _float32_policies(value):
    """A serialized object with every dtype policy in it set to float32."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and value.get("module") == "keras":
            return dict(_FLOAT32_POLICY)
        return {
            key: "float32" if key == "dtype" and isinstance(item, str) and item.startswith("mixed_")
            else _float32_policies(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_float32_policies(item) for item in value]
    return value


def float32_copy(model):
    """An uncompiled copy of `model` built under the float32 policy, nested
    backbone included, holding the same weights: what a preset stores,
    whatever precision trained it (users choose theirs when they load it)."""
    config = model.get_config()
    config["dtype"] = "float32"
    if isinstance(config.get("backbone"), dict):
        config["backbone"] = _float32_policies(config["backbone"])
    plain = type(model).from_config(config)
    plain.set_weights(model.get_weights())
    return plain


def _without_build_state(value):
    """`value` less `compile_config` and `build_config` entries (a preset
    carries no training state, as keras-hub's presets)."""
    if isinstance(value, dict):
        return {
            key: _without_build_state(item)
            for key, item in value.items()
            if key not in ("compile_config", "build_config")
        }
    if isinstance(value, list):
        return [_without_build_state(item) for item in value]
    return value


def keras_hub_metadata(model):
    """The keys keras-hub's `save_to_preset` writes in metadata.json."""
    try:
        hub_version = importlib.metadata.version("keras-hub")
    except importlib.metadata.PackageNotFoundError:
        hub_version = None
    return {
        "keras_version": keras.version(),
        "keras_hub_version": hub_version,
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "tasks": [],
    }


def model_metadata(model):
    """Our keys that the model itself knows: what it is, as `describe` says."""
    from keras_ltpa.model import describe

    facts = describe(model)
    return {
        "variant": facts["variant"],
        "backbone": facts["backbone"],
        "backbone_weights": facts["backbone_weights"],
        "preprocessing": facts["preprocessing"],
        "width_multiplier": facts["width_multiplier"],
        "input_shape": list(facts["input_shape"]),
        "num_classes": facts["num_classes"],
        "class_names": facts["class_names"],
    }


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
        file.write("\n")


def _check_replaceable(folder):
    if not os.path.exists(folder):
        return
    if not os.path.isdir(folder):
        raise ValueError(f"Cannot save a preset to {folder!r}: it is a file, not a folder.")
    others = sorted(set(os.listdir(folder)) - _REPLACEABLE)
    if others:
        raise ValueError(
            f"Cannot save a preset to {folder!r}: it holds files a preset does not "
            f"({', '.join(others[:5])}); give an empty or new folder, or a preset folder."
        )


def write_preset(model, folder, metadata=None):
    """Writes `model` as a preset folder, atomically.

    The files are written into a temporary folder beside `folder`, which is
    then renamed into place; a preset already at `folder` is replaced only
    once the new one is complete. An interrupted call leaves no trace.

    Args:
        model: an `AttentionClassifier` (saved in float32, uncompiled).
        folder: the preset folder to write.
        metadata: a JSON-serialisable dict of further top-level entries
            (dataset, recipe, accuracy, command, ...); they override the
            computed ones of the same name.

    Returns:
        `folder`.
    """
    from keras_ltpa.model import AttentionClassifier
    from keras_ltpa.utils.files import set_usual_mode

    if not isinstance(model, AttentionClassifier):
        raise ValueError(
            "A preset holds a keras_ltpa AttentionClassifier (from build_model or a "
            f"loaded .keras file of this version); received a {type(model).__name__}."
        )
    folder = os.path.abspath(os.fspath(folder))
    _check_replaceable(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    plain = float32_copy(model)
    entries = {**keras_hub_metadata(plain), **model_metadata(plain), **dict(metadata or {})}
    json.dumps(entries)  # Not JSON-serialisable: fails before anything is written.
    base = os.path.basename(folder)
    temporary = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    previous = None
    try:
        set_usual_mode(temporary)
        config = _without_build_state(keras.saving.serialize_keras_object(plain))
        _write_json(os.path.join(temporary, CONFIG_FILE), config)
        plain.save_weights(os.path.join(temporary, WEIGHTS_FILE))
        _write_json(os.path.join(temporary, METADATA_FILE), entries)
        if os.path.exists(folder):
            previous = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.replace(folder, os.path.join(previous, base))
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        if previous is not None and not os.path.exists(folder):
            os.replace(os.path.join(previous, base), folder)
        raise
    finally:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    return folder


def _read_json(path, label, file_name):
    """The JSON in a preset's file `path`, or a one-line ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        raise ValueError(f"Preset {label} is incomplete: {file_name} is missing ({path}).") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"Preset {label} has a corrupt {file_name} ({path}): {_one_line(error)}") from None


def read_metadata(path, label):
    """The JSON object in metadata file `path`, or a one-line ValueError."""
    metadata = _read_json(path, label, METADATA_FILE)
    if not isinstance(metadata, dict):
        raise ValueError(f"Preset {label}: {METADATA_FILE} ({path}) does not hold a JSON object.")
    return metadata


def read_config(path, label):
    """The AttentionClassifier config in `path`, checked, or a one-line ValueError."""
    config = _read_json(path, label, CONFIG_FILE)
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if registered != REGISTERED_NAME:
        what = registered or (config.get("class_name") if isinstance(config, dict) else None)
        raise ValueError(
            f"Preset {label}: {CONFIG_FILE} ({path}) describes {what!r}, not {REGISTERED_NAME!r} "
            "(a keras-hub backbone preset is a backbone: build_model(backbone=FOLDER_OR_HANDLE))."
        )
    return config


def build_from_files(paths, label):
    """The model of a new-layout preset: `paths` maps each of `PRESET_FILES`
    to a local file. The config is rebuilt with `safe_mode=True`."""
    read_metadata(paths[METADATA_FILE], label)
    config = read_config(paths[CONFIG_FILE], label)
    weights = paths[WEIGHTS_FILE]
    if not os.path.isfile(weights):
        raise ValueError(f"Preset {label} is incomplete: {WEIGHTS_FILE} is missing ({weights}).")
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as error:  # unknown class, Lambda refused by safe mode, bad arguments...
        raise ValueError(
            f"Preset {label}: the model in {CONFIG_FILE} ({paths[CONFIG_FILE]}) cannot be "
            f"rebuilt in safe mode: {_one_line(error)}"
        ) from None
    try:
        model.load_weights(weights)
    except Exception as error:  # truncated file, wrong shapes, missing variables...
        raise ValueError(
            f"Preset {label}: {WEIGHTS_FILE} ({weights}) cannot be loaded: {_one_line(error)}"
        ) from None
    return model


def read_preset(folder, label):
    """The model of the preset in local `folder` (either layout)."""
    from keras_ltpa.model import load_model_file

    paths = {name: os.path.join(folder, name) for name in PRESET_FILES}
    legacy = os.path.join(folder, LEGACY_MODEL_FILE)
    if not os.path.isfile(paths[CONFIG_FILE]) and os.path.isfile(legacy):
        read_metadata(paths[METADATA_FILE], label)
        try:
            return load_model_file(legacy)
        except ValueError as error:
            raise ValueError(
                f"Preset {label}: {LEGACY_MODEL_FILE} ({legacy}) cannot be loaded: {error}"
            ) from None
    return build_from_files(paths, label)
