"""keras-hub image backbones: a local preset folder, a built-in preset name,
or an `hf://` / `kaggle://` handle.

The backbone comes from `keras_hub.models.Backbone.from_preset`, with the
preset's own weights by default (`weights="preset"`), random ones from the
preset's config (`"none"`) or those of a weights file (a path). The pixel
map its weights expect is the scale and offset of the preset's image
converter, when it has one. keras-hub is an optional extra (`pip install
keras-hub`) and is imported only when a backbone needs it.
"""

import importlib
import importlib.util
import os

from keras_ltpa.backbones import downloads

HUB_SCHEMES = ("hf://", "kaggle://")
HUB_WEIGHTS = ("preset", "none")
CONFIG_FILE = "config.json"


def hub_installed():
    return importlib.util.find_spec("keras_hub") is not None


def import_keras_hub(backbone):
    """`keras_hub`, or a ValueError naming `backbone` and the install line."""
    if not hub_installed():
        raise ValueError(
            f"`backbone` {backbone!r} is a keras-hub preset, which needs keras-hub: "
            "pip install keras-hub (or pip install 'keras-ltpa[hub]')."
        )
    return importlib.import_module("keras_hub")


def builtin_presets():
    """Names of keras-hub's built-in backbone presets (empty without keras-hub)."""
    if not hub_installed():
        return ()
    return tuple(importlib.import_module("keras_hub").models.Backbone.presets)


def is_hub_preset(backbone):
    """True for an `hf://` or `kaggle://` handle, an existing folder, or a
    keras-hub built-in preset name."""
    if not isinstance(backbone, str):
        return False
    if backbone.startswith(HUB_SCHEMES) or os.path.isdir(backbone):
        return True
    return backbone in builtin_presets()


def check_hub_weights(weights):
    """`weights` of a keras-hub backbone: "preset" (its own; the default, for
    None), "none" (random, from its config) or a weights file path."""
    return downloads.check_weights(
        weights, HUB_WEIGHTS, "keras-hub", "'preset' (its own), 'none' (random)"
    )


def _server(preset):
    """The server a preset's files come from (what `reachable` asks)."""
    if preset.startswith("hf://"):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return os.environ.get("KAGGLE_API_ENDPOINT", "https://www.kaggle.com")


def _one_line(error):
    return " ".join(str(error).split())


def load_hub_backbone(preset, weights, *, load_weights=True, dtype=None):
    """The keras-hub backbone of `preset` with the chosen weights.

    Args:
        preset: a local preset folder, a built-in preset name, or an
            `hf://` / `kaggle://` handle.
        weights: "preset", "none" or a weights file path.
        load_weights: False skips any weights (random initialisation).
        dtype: the dtype policy to build under (None: the preset's).

    Returns:
        A `keras_hub.models.Backbone` (a functional `keras.Model`).
    """
    keras_hub = import_keras_hub(preset)
    if os.path.isdir(preset):
        if not os.path.isfile(os.path.join(preset, CONFIG_FILE)):
            raise ValueError(
                f"`backbone` folder {preset!r} is not a keras-hub preset: it has no "
                f"{CONFIG_FILE} (write one with `backbone.save_to_preset(folder)`)."
            )
    else:
        downloads.check_reachable(f"keras-hub preset {preset!r}", _server(preset))
    kwargs = {} if dtype is None else {"dtype": dtype}
    try:
        backbone = keras_hub.models.Backbone.from_preset(
            preset, load_weights=load_weights and weights == "preset", **kwargs
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise ValueError(
            f"`backbone` {preset!r} does not hold a keras-hub backbone: {_one_line(error)}"
        ) from None
    if load_weights and weights not in HUB_WEIGHTS:
        backbone.load_weights(weights)
    return backbone


def converter_preprocessing(preset):
    """The preset's image converter as `{"scale": ..., "offset": ...}`, or
    None when the preset has no image converter."""
    keras_hub = import_keras_hub(preset)
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):
        return None
    scale = 1.0 if converter.scale is None else converter.scale
    offset = 0.0 if converter.offset is None else converter.offset
    return {"scale": _plain(scale), "offset": _plain(offset)}


def _plain(value):
    """A converter's scale or offset as a float or a list of floats."""
    try:
        return [float(v) for v in value]
    except TypeError:
        return float(value)
