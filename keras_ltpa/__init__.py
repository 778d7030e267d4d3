"""keras-ltpa: "Learn To Pay Attention" (Jetley et al., ICLR 2018) in Keras 3."""

import importlib

# Before anything imports TensorFlow: its oneDNN kernels on x86 unless the
# user chose otherwise (importing keras_ltpa.devices sets them first; see
# keras_ltpa/devices/cpu_kernels.py).
from keras_ltpa import _moved
from keras_ltpa import devices  # noqa: F401
from keras_ltpa import layers  # noqa: E402
from keras_ltpa.layers import AttentionPool  # noqa: E402
from keras_ltpa.layers import CompatibilityScore  # noqa: E402
from keras_ltpa.layers import LinearProjector  # noqa: E402
from keras_ltpa.model import AttentionClassifier  # noqa: E402
from keras_ltpa.model import attention_model  # noqa: E402
from keras_ltpa.model import build_model  # noqa: E402
from keras_ltpa.model import describe  # noqa: E402
from keras_ltpa.model import load_model_file  # noqa: E402
from keras_ltpa.presets import list_presets  # noqa: E402
from keras_ltpa.presets import load_preset  # noqa: E402
from keras_ltpa.presets import preset_metadata  # noqa: E402
from keras_ltpa.variants import parse_variant  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "layers",
    "AttentionPool",
    "CompatibilityScore",
    "LinearProjector",
    "AttentionClassifier",
    "attention_model",
    "build_model",
    "describe",
    "load_model_file",
    "list_presets",
    "load_preset",
    "preset_metadata",
    "parse_variant",
    "__version__",
]

# Subpackages and functions that pull in TensorFlow's data/serving stack or
# matplotlib load on first use, so `import keras_ltpa` stays light under the
# JAX and torch backends.
_LAZY_MODULES = ("backbones", "cli", "convert", "data", "evaluation", "serving", "train", "utils")
_LAZY_FUNCTIONS = {
    "export_saved_model": "serving.export",
    "build_model_from_torch": "convert",
    "run_training": "train.loop",
    "TrainingConfig": "train.config",
    "choose_precision": "devices.precision",
    "precision_record": "devices.precision",
}

# The module paths of 0.1 (`keras_ltpa.training`, `keras_ltpa.export`, ...)
# still import, with a DeprecationWarning (keras_ltpa/_moved.py).
_moved.install()


def __getattr__(name):
    if name in _LAZY_MODULES or name in _moved.MOVED:
        return importlib.import_module(f"keras_ltpa.{name}")
    if name in _LAZY_FUNCTIONS:
        module = importlib.import_module(f"keras_ltpa.{_LAZY_FUNCTIONS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'keras_ltpa' has no attribute {name!r}")
