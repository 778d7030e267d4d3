"""Training: optimizers and schedules, losses, distribution over devices and
processes, callbacks, the run directory, the training configuration (the
one source of every `fit.py` flag) and `run_training`."""

from keras_ltpa.train.config import PIXEL_STATS
from keras_ltpa.train.config import TrainingConfig
from keras_ltpa.train.loop import SetupError
from keras_ltpa.train.loop import run_training

__all__ = [
    "PIXEL_STATS",
    "SetupError",
    "TrainingConfig",
    "run_training",
]
