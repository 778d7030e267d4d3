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
