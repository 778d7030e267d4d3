"""keras-ltpa: "Learn To Pay Attention" (Jetley et al., ICLR 2018) in Keras 3."""

import importlib

# Before anything imports TensorFlow: its oneDNN kernels on x86 unless the
# user chose otherwise (see keras_ltpa/cpu_defaults.py).
from keras_ltpa import cpu_defaults

cpu_defaults.apply()

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

__version__ = "0.1.0"

# Modules and functions that pull in TensorFlow's data/serving stack or
# matplotlib load on first use, so `import keras_ltpa` stays light under the
# JAX and torch backends.
_LAZY_MODULES = (
    "callbacks",
    "convert",
    "data",
    "devices",
    "distribution",
    "evaluate",
    "export",
    "folding",
    "images",
    "optimizers",
    "rest",
    "runs",
    "training",
    "visualize",
)
_LAZY_FUNCTIONS = {
    "export_saved_model": "export",
    "build_model_from_torch": "convert",
    "run_training": "training",
    "TrainingConfig": "training",
}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_ltpa.{name}")
    if name in _LAZY_FUNCTIONS:
        module = importlib.import_module(f"keras_ltpa.{_LAZY_FUNCTIONS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'keras_ltpa' has no attribute {name!r}")
