"""Training: optimizers and schedules, losses, distribution over devices and
processes, callbacks, the run directory, the training configuration (the
one source of every `fit.py` flag) and `run_training`.

Its names load on first use: `keras_ltpa.train.options` (what the
command-line parsers need) imports nothing heavy, and `run_training` brings
in the data pipeline, the model and the exporter only when it is called for.
"""

import importlib

__all__ = [
    "PIXEL_STATS",
    "SetupError",
    "TrainingConfig",
    "run_training",
]

_LAZY = {
    "PIXEL_STATS": "keras_ltpa.train.config",
    "TrainingConfig": "keras_ltpa.train.config",
    "SetupError": "keras_ltpa.train.loop",
    "run_training": "keras_ltpa.train.loop",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # Later look-ups (and patches) see a plain attribute.
        return value
    raise AttributeError(f"module 'keras_ltpa.train' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
