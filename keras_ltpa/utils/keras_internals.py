"""The private Keras APIs this package relies on, in one place.

Keras offers no public hook for these; each is wrapped here so that the rest
of the package uses only public names, and `tests/utils/test_keras_internals.py`
fails loudly, naming the attribute, when a Keras release changes one:

- `keras.callbacks.TensorBoard._collect_learning_rate(logs)`: where Keras'
  TensorBoard adds the learning rate to the epoch logs.
- `keras.callbacks.BackupAndRestore._save_model()` / `_load_model()`: its
  save and restore steps.
- `keras.optimizers.Optimizer._use_weight_decay(variable)`: whether a
  variable is excluded from weight decay (`exclude_from_weight_decay`).
- `keras.Model._nodes_by_depth`: present on functional models only (their
  layer graph can be cloned and rewired).
- `keras.layers.Equalization._custom_histogram_fixed_width(values,
  value_range, nbins)`: the histogram RandAugment's equalisation uses, which
  `keras_ltpa.data.augmentation` computes in-graph inside `tf.data`.
- `keras.Model._initial_epoch`: the epoch `BackupAndRestore` restored, which
  `fit` starts from; Keras never clears it (`clear_restored_epoch`).
- `keras.optimizers.Optimizer._model_variables_moving_average`: a built
  averaging optimizer's averages (`moving_averages`), one per trained
  variable in order; Keras fills them from the weights at step 0 only.
- `keras.optimizers.Optimizer._exclude_from_weight_decay*`: what
  `exclude_from_weight_decay` recorded, which no config holds
  (`copy_weight_decay_exclusions`).
"""

import keras

# (class, attribute) pairs the wrappers below use.
PRIVATE_ATTRIBUTES = (
    (keras.callbacks.TensorBoard, "_collect_learning_rate"),
    (keras.callbacks.BackupAndRestore, "_save_model"),
    (keras.callbacks.BackupAndRestore, "_load_model"),
    (keras.optimizers.Optimizer, "_use_weight_decay"),
    (keras.layers.Equalization, "_custom_histogram_fixed_width"),
)


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer` applies weight decay to `variable` (not excluded)."""
    return optimizer._use_weight_decay(variable)


def moving_averages(optimizer):
    """The weight averages of a built optimizer with `use_ema=True`, one per
    variable it trains, in the order of those variables."""
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if averages is None:
        raise AttributeError(
            f"Optimizer {optimizer.name!r} keeps no `_model_variables_moving_average` (not built "
            f"with use_ema=True, or Keras {keras.__version__} changed it: update "
            "keras_ltpa/utils/keras_internals.py)"
        )
    return list(averages)


_WEIGHT_DECAY_EXCLUSIONS = ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern")


def copy_weight_decay_exclusions(source, target):
    """Gives `target` the variables and name patterns `source` excludes from
    weight decay (`exclude_from_weight_decay` keeps them outside the config)."""
    # Set by `exclude_from_weight_decay` only: absent means nothing excluded.
    # (tests/utils/test_keras_internals.py fails if Keras renames them.)
    for name in _WEIGHT_DECAY_EXCLUSIONS:
        if hasattr(source, name):
            setattr(target, name, getattr(source, name))


def is_functional(model):
    """True for a functional `keras.Model` (a graph of layers), including
    subclasses built with `super().__init__(inputs, outputs)`."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def clear_restored_epoch(model):
    """Forgets the epoch a `BackupAndRestore` restored into `model`, so that
    a later `fit` (the next training stage) starts from its own
    `initial_epoch`."""
    if not hasattr(model, "_initial_epoch"):
        raise AttributeError(
            f"Keras {keras.__version__} keeps no `_initial_epoch` on models: update "
            "keras_ltpa/utils/keras_internals.py"
        )
    model._initial_epoch = None


class BackupAndRestoreHooks(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` with its save and restore steps as public
    methods: subclasses override `save_backup` and call `restore_backup`."""

    def _save_model(self):
        self.save_backup()

    def save_backup(self):
        """Writes the backup (Keras' own step)."""
        super()._save_model()

    def restore_backup(self):
        """Loads the backup into the model, when one exists."""
        self._load_model()


class TensorBoardHooks(keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` with its learning-rate step as a public method."""

    def _collect_learning_rate(self, logs):
        return self.collect_learning_rate(logs)

    def collect_learning_rate(self, logs):
        """Returns `logs` with the learning rate added (Keras' own step)."""
        return super()._collect_learning_rate(logs)
