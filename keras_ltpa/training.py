"""Training: the paper's optimiser and schedule, callbacks, and `run_training`.

`run_training(config)` is what `training/fit.py` calls: it loads the data,
builds and compiles the model, trains it with `model.fit` into a run
directory that can be resumed after a kill, evaluates it on the test split
and exports it. Everything else here is a piece of that run usable on its
own: `compile_model`, `learning_rate_schedule`, `make_callbacks`,
`choose_precision`.

The paper's setting (Jetley et al., ICLR 2018, section 4, and the public
PyTorch implementation): SGD, learning rate 0.1, momentum 0.9, weight decay
5e-4, batch 128, learning rate halved every 25 epochs, 300 epochs.

Weight decay: PyTorch's `SGD(weight_decay=w)`, which the reference code
uses, adds `w * theta` to the gradient before momentum (an L2 penalty of
`w / 2 * |theta|^2`). Keras' `SGD(weight_decay=w)` is decoupled instead: it
shrinks `theta` by `lr * w` outside the momentum, which with momentum 0.9 is
about ten times weaker at the same `w`. To reproduce the paper's numbers with
the paper's `w = 5e-4`, the default here is the coupled form,
`CoupledWeightDecaySGD`, applied to every trainable weight as in the
reference; `weight_decay_mode="decoupled"` selects Keras' own.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import sys
import time

import keras
import numpy as np

from keras_ltpa import data as ltpa_data
from keras_ltpa import files
from keras_ltpa.files import write_atomically
from keras_ltpa.files import write_json
from keras_ltpa.model import _check_choice
from keras_ltpa.model import build_model
from keras_ltpa.model import parse_variant

PAPER_LEARNING_RATE = 0.1
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 5e-4
PAPER_BATCH_SIZE = 128
PAPER_LR_DECAY_EPOCHS = 25
PAPER_LR_DECAY_FACTOR = 0.5
PAPER_EPOCHS = 300

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "on", "off")
WEIGHT_DECAY_MODES = ("coupled", "decoupled")

# File names inside a run directory.
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
FINAL_MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "saved_models"

# Settings a resumed run must share with the run it continues: they fix the
# weights' shapes and the meaning of the labels.
RESUME_KEYS = ("variant", "width_multiplier", "dropout", "image_size", "class_names")


@keras.saving.register_keras_serializable(package="keras_ltpa")
class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay is added to the gradient (PyTorch's form).

    For each weight `theta` with gradient `g`:

        g' = g + weight_decay * theta
        v  = momentum * v - learning_rate * g'
        theta <- theta + v            (Nesterov: as in `keras.optimizers.SGD`)

    which is SGD on the loss plus `weight_decay / 2 * |theta|^2`, as
    `torch.optim.SGD(weight_decay=...)` computes it (the decay goes through
    the momentum). `keras.optimizers.SGD(weight_decay=...)` is the decoupled
    variant instead. Weights named by `exclude_from_weight_decay` are left out.

    Args:
        learning_rate: float or a `LearningRateSchedule`.
        momentum: float >= 0.
        nesterov: bool.
        weight_decay: float >= 0, the L2 coefficient.
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:
    >>> optimizer = CoupledWeightDecaySGD(0.1, momentum=0.9, weight_decay=5e-4)
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
        name="coupled_weight_decay_sgd",
        **kwargs,
    ):
        kwargs.pop("weight_decay", None)
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=None,
            name=name,
            **kwargs,
        )
        if weight_decay is None or weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be a number >= 0; received {weight_decay!r}."
            )
        self.l2_weight_decay = float(weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        # Per variable, after any cross-replica gradient reduction: adding the
        # decay here keeps it from being summed over replicas.
        if self.l2_weight_decay and self._use_weight_decay(variable):
            gradient = keras.ops.add(
                gradient,
                keras.ops.multiply(
                    keras.ops.cast(variable, gradient.dtype), self.l2_weight_decay
                ),
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.l2_weight_decay
        return config


def learning_rate_schedule(
    steps_per_epoch,
    learning_rate=PAPER_LEARNING_RATE,
    decay_epochs=PAPER_LR_DECAY_EPOCHS,
    decay_factor=PAPER_LR_DECAY_FACTOR,
):
    """The paper's step schedule: `learning_rate * decay_factor ** (epoch // decay_epochs)`.

    As a `keras.optimizers.schedules.ExponentialDecay` over optimizer steps
    (staircase), so it is saved with the model and follows the restored step
    count on resume.

    Args:
        steps_per_epoch: optimizer steps in one epoch.
        learning_rate: the initial rate (paper: 0.1).
        decay_epochs: epochs between two decays (paper: 25); 0 = constant.
        decay_factor: the multiplier at each decay (paper: 0.5).

    Returns:
        A `LearningRateSchedule`, or the float `learning_rate` when constant.

    Example:
    >>> schedule = learning_rate_schedule(steps_per_epoch=391)
    >>> float(schedule(25 * 391))
    0.05
    """
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(
            f"`steps_per_epoch` must be a positive int; received {steps_per_epoch!r}."
        )
    if not decay_epochs or decay_factor == 1.0:
        return float(learning_rate)
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=float(learning_rate),
        decay_steps=int(decay_epochs) * steps_per_epoch,
        decay_rate=float(decay_factor),
        staircase=True,
    )


def paper_learning_rate(epoch):
    """The paper's learning rate during (0-based) `epoch`: 0.1 * 0.5**(epoch // 25)."""
    return PAPER_LEARNING_RATE * PAPER_LR_DECAY_FACTOR ** (epoch // PAPER_LR_DECAY_EPOCHS)


def make_optimizer(
    steps_per_epoch,
    learning_rate=PAPER_LEARNING_RATE,
    momentum=PAPER_MOMENTUM,
    weight_decay=PAPER_WEIGHT_DECAY,
    weight_decay_mode="coupled",
    decay_epochs=PAPER_LR_DECAY_EPOCHS,
    decay_factor=PAPER_LR_DECAY_FACTOR,
):
    """SGD with momentum, weight decay and the paper's step schedule.

    Args:
        steps_per_epoch: optimizer steps per epoch (for the schedule).
        learning_rate, momentum, weight_decay: the paper's 0.1, 0.9, 5e-4.
        weight_decay_mode: `"coupled"` (L2 in the gradient, PyTorch's and
            the paper's; `CoupledWeightDecaySGD`) or `"decoupled"`
            (`keras.optimizers.SGD(weight_decay=...)`).
        decay_epochs, decay_factor: see `learning_rate_schedule`.

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    _check_choice("weight_decay_mode", weight_decay_mode, WEIGHT_DECAY_MODES)
    schedule = learning_rate_schedule(
        steps_per_epoch, learning_rate, decay_epochs, decay_factor
    )
    if weight_decay_mode == "coupled":
        return CoupledWeightDecaySGD(
            schedule, momentum=momentum, weight_decay=weight_decay
        )
    return keras.optimizers.SGD(
        schedule, momentum=momentum, weight_decay=weight_decay or None
    )


def compile_model(model, optimizer, *, label_mode="int", jit_compile="auto"):
    """Compiles a logits model with cross-entropy and accuracy.

    Args:
        model: a `build_model()` model (logits output).
        optimizer: e.g. from `make_optimizer`.
        label_mode: `"int"` (sparse labels) or `"categorical"` (one-hot or
            soft labels from MixUp/CutMix).
        jit_compile: `"auto"`, `"on"`/True or `"off"`/False (see
            `resolve_jit_compile`).

    Returns:
        The model, compiled.
    """
    if label_mode == "categorical":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=resolve_jit_compile(jit_compile),
    )
    return model


def resolve_jit_compile(jit_compile="auto", backend=None):
    """`--jit-compile` to `compile(jit_compile=...)`.

    `"auto"`: XLA under JAX (its eager mode is far slower); under
    TensorFlow on a GPU only (on this project's 2-core CPU an XLA train step
    of the width-0.25 model took 1.5x as long as the plain graph, after a
    30-50 s compile); never under torch, where `torch.compile` takes minutes
    for this model on a CPU. `"on"`/`"off"` force it.
    """
    backend = backend or keras.backend.backend()
    if jit_compile in (True, "on"):
        return True
    if jit_compile in (False, "off"):
        return False
    _check_choice("jit_compile", jit_compile, JIT_COMPILE)
    if backend == "tensorflow":
        return gpu_compute_capability(backend) is not None
    return backend == "jax"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_compute_capability(backend=None):
    """(major, minor) of the first GPU the backend sees, or None."""
    backend = backend or keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return tuple(details.get("compute_capability", (0, 0)))
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                major, minor = str(gpus[0].compute_capability).split(".")[:2]
                return int(major), int(minor)
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except Exception:  # A probe must never stop training.
        return None
    return None


def choose_precision(precision="auto", backend=None):
    """The Keras dtype policy name for `--precision`.

    `"auto"` picks the fastest this machine trains in:
    - a GPU with compute capability >= 8 (Ampere and later):
      `"mixed_bfloat16"`; 7.x (Volta/Turing): `"mixed_float16"`;
    - a CPU with AMX bfloat16 tiles (`amx_bf16` in /proc/cpuinfo) under
      the TensorFlow backend, whose oneDNN kernels use them:
      `"mixed_bfloat16"`;
    - otherwise `"float32"`. A CPU with `avx512_bf16` but no AMX is not
      enough: on this project's 2-core AVX512-BF16 CPU, bfloat16 trained
      at 0.58x (TensorFlow), 0.64x (torch) and 0.97x (JAX) the float32
      speed (`benchmarks/compare.py`).

    Args:
        precision: one of `PRECISIONS`.
        backend: the Keras backend name (default: the current one).

    Returns:
        `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`.
    """
    _check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    backend = backend or keras.backend.backend()
    capability = gpu_compute_capability(backend)
    if capability is not None:
        if capability >= (8, 0):
            return "mixed_bfloat16"
        if capability >= (7, 0):
            return "mixed_float16"
        return "float32"
    if backend == "tensorflow" and "amx_bf16" in _cpu_flags():
        return "mixed_bfloat16"
    return "float32"


# --- Callbacks -------------------------------------------------------------


def save_model(model, path):
    """`model.save(path)` (a `.keras` file), atomically."""
    with outside_distribution():  # Also when one process of several saves.
        return write_atomically(path, model.save)


def _learning_rate(optimizer):
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate used during the epoch) to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = _learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._rate


class HistoryCSV(keras.callbacks.Callback):
    """Keeps `history.csv`: one row per finished epoch, across resumes.

    Unlike `keras.callbacks.CSVLogger(append=True)`, a row for an epoch that
    is trained again after a kill replaces the earlier one, and the file is
    rewritten atomically, so it never holds a partial row.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        rows = [row for row in read_history(self.path) if int(row["epoch"]) < epoch]
        row = {"epoch": epoch}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        rows.append(row)
        fields = ["epoch"]
        for previous in rows:
            fields += [key for key in previous if key not in fields]

        def _write(temporary):
            with open(temporary, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(self.path, _write)


def read_history(path):
    """The rows of a `history.csv` as dicts (an empty list if none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


class ModelCheckpoints(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` on a new best.

    Each file is written to a temporary name and renamed. The best score so
    far is kept in `best.json`, so a resumed run does not replace a better
    `best.keras` of its earlier part.

    Args:
        directory: where to write the files.
        monitor: the logged quantity to maximise (e.g. `"val_accuracy"`).
    """

    def __init__(self, directory, monitor="val_accuracy"):
        super().__init__()
        self.directory = os.fspath(directory)
        self.monitor = monitor
        self._best_path = os.path.join(self.directory, "best.json")

    def on_train_begin(self, logs=None):
        self.best = -math.inf
        if os.path.exists(self._best_path):
            with open(self._best_path) as file:
                self.best = json.load(file).get(self.monitor, -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_model(self.model, os.path.join(self.directory, LAST_CHECKPOINT))
        value = logs.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            save_model(self.model, os.path.join(self.directory, BEST_CHECKPOINT))
            write_json(self._best_path, {"epoch": epoch + 1, self.monitor: self.best})


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, logging the learning rate used during each epoch
    (Keras' own logs the one for the next step, which differs at a decay)."""

    def _collect_learning_rate(self, logs):
        if "learning_rate" in logs:
            return logs
        return super()._collect_learning_rate(logs)


class AttentionImages(keras.callbacks.Callback):
    """Logs an attention-overlay grid of a fixed batch to TensorBoard.

    One image per epoch (tag `attention`): rows of image | map 1 | map 2 |
    map 3 with the predicted and true class, from
    `keras_ltpa.visualize.attention_grid`.

    Args:
        log_dir: TensorBoard folder of this image series.
        images: uint8 (N, H, W, 3).
        labels: int (N,) true classes.
        class_names: class names by id.
    """

    def __init__(self, log_dir, images, labels=None, class_names=None):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.images = np.asarray(images)
        self.labels = None if labels is None else np.asarray(labels)
        self.class_names = class_names
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from keras_ltpa.visualize import attention_grid

        grid = attention_grid(
            self.model, self.images, labels=self.labels, class_names=self.class_names
        )
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image("attention", grid[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class EpochSummary(keras.callbacks.Callback):
    """Prints one line per finished epoch: the logs, the rate and the time."""

    def __init__(self, epochs, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key} {float(logs[key]):.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.4g}")
        parts.append(f"{time.time() - self._start:.1f}s")
        print(" - ".join(parts), file=self.stream or sys.stdout, flush=True)


def make_callbacks(
    run_dir,
    *,
    epochs,
    overlay_images=None,
    overlay_labels=None,
    class_names=None,
    save_freq=None,
    tensorboard=True,
    monitor="val_accuracy",
    progress_bar=True,
):
    """The callbacks of a resumable run writing into `run_dir`.

    In order: learning-rate logging, TerminateOnNaN, the progress bar, the
    per-epoch summary line, `history.csv`, TensorBoard (+ attention images),
    `checkpoints/{best,last}.keras`, and BackupAndRestore (`backup/`).

    Args:
        run_dir: the run directory.
        epochs: total epochs (for the summary line).
        overlay_images, overlay_labels: a fixed batch for the TensorBoard
            attention grid (None: no images).
        class_names: class names for the grid.
        save_freq: None (back up every epoch) or a number of steps between
            backups (the epoch-end backup still happens).
        tensorboard: write TensorBoard logs.
        monitor: quantity that picks `best.keras`.
        progress_bar: include Keras' progress bar (`fit(verbose=1 or 2)`).

    Returns:
        A list of callbacks for `fit`.
    """
    run_dir = os.fspath(run_dir)
    callbacks = [LearningRateLogger(), keras.callbacks.TerminateOnNaN()]
    if progress_bar:
        # Listed here (Keras would append its own last) so that the bar ends
        # its line before the summary line is printed.
        callbacks.append(keras.callbacks.ProgbarLogger())
    callbacks += [EpochSummary(epochs), HistoryCSV(os.path.join(run_dir, HISTORY_FILE))]
    if tensorboard:
        log_dir = os.path.join(run_dir, TENSORBOARD_DIR)
        callbacks.append(TensorBoard(log_dir, write_graph=False, profile_batch=0))
        if overlay_images is not None and len(overlay_images):
            callbacks.append(
                AttentionImages(
                    os.path.join(log_dir, "attention"),
                    overlay_images,
                    overlay_labels,
                    class_names,
                )
            )
    callbacks.append(ModelCheckpoints(os.path.join(run_dir, CHECKPOINT_DIR), monitor))
    # Last: its epoch-end backup follows the history row and checkpoints, so
    # a kill never leaves a backed-up epoch without them.
    callbacks.append(
        BackupAndRestore(os.path.join(run_dir, BACKUP_DIR), save_freq=save_freq)
    )
    return callbacks


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, kept after the last epoch, and saving at the
    end of every epoch also when it saves every `save_freq` steps.

    Keeping the backup means that running a finished command again trains
    nothing more, and a larger `--epochs` continues where the run ended. A
    step backup restores the weights of that step; Keras then trains the
    interrupted epoch from its first batch.

    Args:
        backup_dir: the folder of the backup.
        save_freq: None (every epoch) or a number of steps between backups.
    """

    def __init__(self, backup_dir, save_freq=None):
        super().__init__(
            backup_dir,
            save_freq="epoch" if save_freq is None else int(save_freq),
            double_checkpoint=True,
            delete_checkpoint=False,
        )

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()

    def _save_model(self):
        with outside_distribution():  # Also when one process of several saves.
            super()._save_model()


# --- The run ---------------------------------------------------------------


@dataclasses.dataclass
class TrainingConfig:
    """Everything a training run needs; `training/fit.py` flags map 1:1.

    Data: `dataset` (a tensorflow-datasets name) or `data_dir` (an image
    folder), `image_size`, `augment`, `cache`, `limit`/`test_limit`
    (examples), `tfds_data_dir`.
    Model: `variant`, `width_multiplier`, `dropout`.
    Optimisation: the paper's defaults (see the module docstring),
    `steps_per_epoch`, `precision`, `jit_compile`, `seed`.
    Distribution (see `resolve_distribution`): `strategy`, `lr_scaling`,
    `coordinator_address`, `num_processes`, `process_id`; `batch_size` is
    per replica.
    Output: `output_dir` (the run directory), `save_freq` (steps between
    backups; None = every epoch), `tensorboard`, `overlay_images` (images
    in the TensorBoard attention grid), `export`, `export_dir` (TF Serving
    model root; default `<output_dir>/saved_models`), `export_name`,
    `verbose`.
    """

    # Data.
    dataset: str | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    image_size: int = 32
    augment: str = "paper"
    cache: bool = False
    limit: int | None = None
    test_limit: int | None = None
    # Model.
    variant: str = "att3-concat-pc"
    width_multiplier: float = 1.0
    dropout: float = 0.0
    # Optimisation.
    epochs: int = PAPER_EPOCHS
    batch_size: int = PAPER_BATCH_SIZE
    learning_rate: float = PAPER_LEARNING_RATE
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY
    weight_decay_mode: str = "coupled"
    lr_decay_epochs: int = PAPER_LR_DECAY_EPOCHS
    lr_decay_factor: float = PAPER_LR_DECAY_FACTOR
    steps_per_epoch: int | None = None
    precision: str = "auto"
    jit_compile: str = "auto"
    seed: int | None = None
    # Distribution.
    strategy: str = "auto"
    lr_scaling: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    # Output.
    output_dir: str = "runs/ltpa"
    save_freq: int | None = None
    tensorboard: bool = True
    overlay_images: int = 8
    export: bool = True
    export_dir: str | None = None
    export_name: str = "ltpa"
    verbose: int = 1

    @classmethod
    def from_any(cls, config):
        """A `TrainingConfig` from itself, a dict or an argparse Namespace
        (unknown keys are ignored)."""
        if isinstance(config, cls):
            return dataclasses.replace(config)
        if not isinstance(config, dict):
            config = vars(config)
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def validate(self):
        """Raises ValueError naming the first bad setting."""
        if self.dataset is None and self.data_dir is None:
            self.dataset = "cifar10"
        if self.dataset is not None and self.data_dir is not None:
            raise ValueError(
                "Give either a tensorflow-datasets name (dataset) or an image "
                f"folder (data_dir), not both; received dataset={self.dataset!r}, "
                f"data_dir={self.data_dir!r}."
            )
        parse_variant(self.variant)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("jit_compile", self.jit_compile, JIT_COMPILE)
        _check_choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        ltpa_data.parse_augment(self.augment, training=True)
        positive_ints = ("image_size", "epochs", "batch_size")
        optional_positive_ints = ("limit", "test_limit", "steps_per_epoch", "save_freq")
        for name in positive_ints + optional_positive_ints:
            value = getattr(self, name)
            if value is None and name in optional_positive_ints:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
        if self.image_size % 32:
            raise ValueError(
                f"`image_size` must be a multiple of 32 (the VGG backbone pools "
                f"five times); received {self.image_size}."
            )
        for name in ("learning_rate", "width_multiplier"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0; received {getattr(self, name)!r}.")
        for name in ("momentum", "weight_decay", "lr_decay_epochs", "overlay_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0; received {getattr(self, name)!r}.")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(
                f"`lr_decay_factor` must be in (0, 1]; received {self.lr_decay_factor!r}."
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1); received {self.dropout!r}.")
        return self


def _check_resume(run_dir, settings):
    """Refuses to continue a run of another model in the same folder."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as file:
        previous = json.load(file)
    for key in RESUME_KEYS:
        if key in previous and previous[key] != settings[key]:
            raise ValueError(
                f"The run directory {run_dir!r} holds a run with {key}="
                f"{previous[key]!r}, but this run has {key}={settings[key]!r}. "
                "Use another --output-dir to start a new run, or the same "
                "settings to resume it."
            )


def _fixed_batch(dataset, count):
    """The first `count` (images, int labels) of a dataset, as NumPy."""
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(np.asarray(batch_images))
        labels.append(np.asarray(batch_labels))
        if sum(len(x) for x in images) >= count:
            break
    images = np.concatenate(images)[:count]
    labels = np.concatenate(labels)[:count]
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    return images, labels


def run_training(config):
    """Trains, evaluates and exports one model into a run directory.

    Running it again with the same settings resumes after the last finished
    epoch (or step backup); a finished run trains no further and is
    evaluated and exported again.

    Run directory (`config.output_dir`):

        config.json            the settings (and the seed, classes, precision)
        history.csv            one row per finished epoch (kept across resumes)
        checkpoints/best.keras best validation accuracy so far (+ best.json)
        checkpoints/last.keras the end of the last finished epoch
        backup/                BackupAndRestore state (resume)
        tensorboard/           train/ and validation/ scalars, attention/ grids
        model.keras            the final model
        metrics.json           test loss and accuracy of the final model
        saved_models/ltpa/1/   TF Serving export (unless `export=False`)

    Args:
        config: a `TrainingConfig`, a dict of its fields or an argparse
            Namespace.

    Returns:
        A dict: `run_dir`, `metrics` (test loss/accuracy), `model_path`,
        `export_path` (or None), `epochs_trained` (in this call),
        `wall_time_s`, and the trained `model`. On a process other than the
        chief of a multi-process run (see `resolve_distribution`) nothing is
        written and `model_path`/`export_path` are None.

    Raises:
        SetupError (bad settings) or `keras_ltpa.data.DataError` (bad data),
        both ValueErrors, before anything is written.
    """
    start = time.time()
    try:
        setup = _set_up(config)
    except ltpa_data.DataError:
        raise
    except ValueError as error:
        raise SetupError(str(error)) from error
    return _train(setup, start)


class SetupError(ValueError):
    """A bad setting or bad data found before training starts (nothing has
    been written to the run directory then)."""


def _set_up(config):
    """Reads and checks everything: config, data, model; writes nothing."""
    config = TrainingConfig.from_any(config).validate()
    # First: joining a process group must precede any JAX computation.
    distribution = resolve_distribution(
        config.strategy,
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes,
        process_id=config.process_id,
    )
    jit_compile = check_jit_compile(config.jit_compile, distribution)
    precision = choose_precision(config.precision)
    keras.config.set_dtype_policy(precision)
    seed = config.seed if config.seed is not None else random.randrange(2**31)
    seed = distribution.shared_seed(seed)
    keras.utils.set_random_seed(seed)

    # Data: everything is read and checked before the run directory is touched.
    source = dict(
        dataset=config.dataset,
        data_dir=config.data_dir,
        tfds_data_dir=config.tfds_data_dir,
        image_size=(config.image_size, config.image_size),
        batch_size=distribution.global_batch_size(config.batch_size),
        # Replicas need equal shares of every batch.
        drop_remainder=distribution.num_replicas > 1,
    )
    augment = ltpa_data.parse_augment(config.augment, training=True)
    label_mode = (
        "categorical"
        if any(name in ltpa_data.BATCH_AUGMENTATIONS for name in augment)
        else "int"
    )
    train, class_names = ltpa_data.load_dataset(
        "train",
        training=True,
        augment=augment,
        cache=config.cache,
        limit=config.limit,
        seed=seed,
        label_mode=label_mode,
        **source,
    )
    test, _ = ltpa_data.load_dataset(
        "test", cache=config.cache, limit=config.test_limit, label_mode=label_mode, **source
    )
    batches = ltpa_data.dataset_size(train)
    steps_per_epoch = config.steps_per_epoch or batches
    if steps_per_epoch is None:
        raise ValueError(
            "The number of training batches is unknown; give --steps-per-epoch."
        )
    if config.steps_per_epoch is not None:
        train = train.repeat()
    if distribution.num_replicas > 1 and ltpa_data.dataset_size(test) == 0:
        raise ValueError(
            f"The test split has fewer examples than one global batch of "
            f"{source['batch_size']} ({config.batch_size} per replica x "
            f"{distribution.num_replicas} replicas); lower --batch-size."
        )

    run_dir = os.fspath(config.output_dir)
    settings = dataclasses.asdict(config)
    settings.update(
        seed=seed,
        class_names=class_names,
        precision_policy=precision,
        backend=keras.backend.backend(),
        steps_per_epoch=steps_per_epoch,
        distribution=distribution.describe(),
        global_batch_size=source["batch_size"],
        learning_rate_used=scaled_learning_rate(
            config.learning_rate, distribution, config.lr_scaling
        ),
    )
    _check_resume(run_dir, settings)

    with distribution.scope():
        model = build_model(
            len(class_names),
            input_shape=(config.image_size, config.image_size, 3),
            variant=config.variant,
            width_multiplier=config.width_multiplier,
            dropout=config.dropout,
        )
        optimizer = make_optimizer(
            steps_per_epoch,
            learning_rate=settings["learning_rate_used"],
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            weight_decay_mode=config.weight_decay_mode,
            decay_epochs=config.lr_decay_epochs,
            decay_factor=config.lr_decay_factor,
        )
        compile_model(model, optimizer, label_mode=label_mode, jit_compile=jit_compile)

    overlay_images = overlay_labels = None
    # The attention grid runs the model on the chief alone, which a
    # multi-process model (its weights live on every process) cannot do.
    if config.tensorboard and config.overlay_images and distribution.num_processes == 1:
        overlay_images, overlay_labels = _fixed_batch(test, config.overlay_images)
    return dict(
        config=config,
        settings=settings,
        run_dir=run_dir,
        model=model,
        train=train,
        test=test,
        class_names=class_names,
        precision=precision,
        overlay_images=overlay_images,
        overlay_labels=overlay_labels,
        distribution=distribution,
    )


def _train(setup, start):
    """Trains, evaluates, saves and exports a run prepared by `_set_up`."""
    config, run_dir, model = setup["config"], setup["run_dir"], setup["model"]
    train, test, class_names = setup["train"], setup["test"], setup["class_names"]
    precision, distribution = setup["precision"], setup["distribution"]
    if distribution.is_chief:  # Only the chief process writes the run directory.
        os.makedirs(run_dir, exist_ok=True)
        _remove_temporaries(run_dir)
        write_json(os.path.join(run_dir, CONFIG_FILE), setup["settings"])
    callbacks = make_callbacks(
        run_dir,
        epochs=config.epochs,
        overlay_images=setup["overlay_images"],
        overlay_labels=setup["overlay_labels"],
        class_names=class_names,
        save_freq=config.save_freq,
        tensorboard=config.tensorboard,
        progress_bar=config.verbose != 0,
    )
    callbacks = distributed_callbacks(callbacks, run_dir, distribution, config.save_freq)
    with distribution.scope():
        history = model.fit(
            train,
            validation_data=test,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            callbacks=callbacks,
            verbose=config.verbose if distribution.is_chief else 0,
            shuffle=False,  # The pipeline shuffles.
        )
    if model.stop_training and any(
        not np.isfinite(v) for v in history.history.get("loss", [])[-1:]
    ):
        raise FloatingPointError(
            "Training stopped: the loss became NaN/inf (TerminateOnNaN). Try a "
            "lower --learning-rate or --precision float32."
        )

    with distribution.scope():
        metrics = model.evaluate(test, return_dict=True, verbose=0)
    metrics = {key: float(value) for key, value in metrics.items()}
    metrics.update(
        epochs=len(read_history(os.path.join(run_dir, HISTORY_FILE))),
        test_examples=int(
            sum(int(np.shape(labels)[0]) for _, labels in test)
        ),
        class_names=class_names,
        variant=config.variant,
        width_multiplier=config.width_multiplier,
        precision=precision,
        backend=keras.backend.backend(),
    )
    epochs_trained = len(history.history.get("loss", []))
    model_path = export_path = None
    if distribution.is_chief:  # The other processes of a group write nothing.
        model_path = save_model(model, os.path.join(run_dir, FINAL_MODEL_FILE))
        write_json(os.path.join(run_dir, METRICS_FILE), metrics)
    if distribution.is_chief and config.export:
        export_root = config.export_dir or os.path.join(run_dir, EXPORT_DIR)
        existing = _latest_export(export_root, config.export_name)
        if epochs_trained == 0 and existing is not None:
            export_path = existing  # Nothing new since the last export.
        else:
            # A distributed model is exported from its file, on one device.
            in_memory = keras.backend.backend() == "tensorflow" and (
                distribution.tf_strategy is None
            )
            export_path = export_model(
                model if in_memory else model_path,
                export_root,
                name=config.export_name,
                class_names=class_names,
            )
    return {
        "run_dir": run_dir,
        "metrics": metrics,
        "model_path": model_path,
        "export_path": export_path,
        "epochs_trained": epochs_trained,
        "wall_time_s": time.time() - start,
        "model": model,
    }


def _remove_temporaries(run_dir):
    """Deletes `.tmp-*` files a killed run left mid-write (never read)."""
    for folder, _, names in os.walk(run_dir):
        for name in names:
            if name.startswith(files.TEMPORARY_PREFIX):
                os.remove(os.path.join(folder, name))


def _latest_export(export_root, name):
    """The newest version folder of `<export_root>/<name>`, or None."""
    from keras_ltpa import export

    folder = os.path.join(export_root, name)
    versions = export.model_versions(folder)
    return os.path.join(folder, str(versions[-1])) if versions else None


def export_model(model, export_root, name="ltpa", class_names=None):
    """Exports a TF Serving SavedModel `<export_root>/<name>/<version>/`.

    Calls `keras_ltpa.export.export_saved_model` (the next free version).
    `model` may be a `.keras` path: under JAX or torch the export runs in a
    TensorFlow child process from that file.
    """
    from keras_ltpa import export

    return export.export_saved_model(
        model, export_root, name=name, class_names=class_names
    )


# === Distribution ===========================================================
#
# One place decides how a run is spread over devices and processes (`--strategy`):
#
#   TensorFlow  `tf.distribute.MirroredStrategy` over this machine's GPUs (its
#               logical CPU devices when it has no GPU). Several machines are
#               refused: Keras 3's `fit` fails under
#               `MultiWorkerMirroredStrategy` (keras-team/keras#20585).
#   JAX         `keras.distribution.DataParallel` over the local devices, or
#               over the devices of several processes (machines) joined by
#               `jax.distributed`: the path for several machines.
#   torch       one device.
#
# `--batch-size` is per replica (device): a step takes `batch_size * replicas`
# examples, the global batch. With `--lr-scaling` the learning rate is
# multiplied by the number of replicas (the linear scaling rule).

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")

# Multi-process settings are read from these environment variables when no
# flag gives them (first found wins): JAX's own, then Keras' (see
# `keras.distribution.initialize`). JAX itself also recognises SLURM (srun),
# Open MPI (mpirun) and Kubernetes launches when a setting is left unset.
COORDINATOR_ADDRESS_ENV = ("JAX_COORDINATOR_ADDRESS", "KERAS_DISTRIBUTION_JOB_ADDRESSES")
NUM_PROCESSES_ENV = ("JAX_NUM_PROCESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
PROCESS_ID_ENV = ("JAX_PROCESS_ID", "KERAS_DISTRIBUTION_PROCESS_ID")
# Cluster managers: (name, number of processes, this process' id, a variable
# present only in a launched step).
CLUSTER_MANAGERS = (
    ("SLURM", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_STEP_NODELIST"),
    ("Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)

TF_MULTI_WORKER_MESSAGE = (
    "Training on several machines is not available with the TensorFlow "
    "backend: Keras 3's model.fit fails under "
    "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585). Use "
    "the JAX backend, one process per machine: KERAS_BACKEND=jax python "
    "training/fit.py --strategy multi_worker --coordinator-address HOST:PORT "
    "--num-processes N --process-id I ... (README, section 'Distributed "
    "training'). For several GPUs in one machine use --strategy mirrored."
)


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """The processes (usually one per machine) that train one model together.

    Attributes:
        coordinator_address: `"host:port"` of process 0's coordination
            service, or None to let `jax.distributed` find it (SLURM, Open MPI).
        num_processes: number of processes, > 1.
        process_id: this process' rank in `[0, num_processes)`; 0 is the chief.
        source: where the settings came from (for the run's config.json).
    """

    coordinator_address: str | None
    num_processes: int
    process_id: int
    source: str


def _first_env(environ, names):
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return value, name
    return None, None


def _as_int(value, what, where):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer; received {value!r} ({where}).")


def process_group_settings(
    coordinator_address=None, num_processes=None, process_id=None, environ=None
):
    """The multi-process settings of this run, or None for one process.

    Each setting comes from its argument (the `--coordinator-address`,
    `--num-processes`, `--process-id` flags) when given, else from the
    environment: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
    `JAX_PROCESS_ID`, then Keras' `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
    `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`, then
    a SLURM step (`SLURM_NTASKS`, `SLURM_PROCID`) or an Open MPI launch
    (`OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_RANK`), whose coordinator
    address `jax.distributed` works out itself.

    Args:
        coordinator_address: `"host:port"` of process 0 (any free port there).
        num_processes: the number of processes.
        process_id: this process' id, 0 .. num_processes - 1.
        environ: the environment (default `os.environ`).

    Returns:
        A `ProcessGroup`, or None when there is one process.

    Raises:
        ValueError naming the missing or bad setting.

    Example:
    >>> process_group_settings("10.0.0.1:8476", 2, 1)
    ProcessGroup(coordinator_address='10.0.0.1:8476', num_processes=2, process_id=1, source='flags')
    """
    environ = os.environ if environ is None else environ
    sources = set()
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        sources.add("flags")
    if coordinator_address is None:
        coordinator_address, name = _first_env(environ, COORDINATOR_ADDRESS_ENV)
        if name:
            sources.add(name)
            # Keras' variable lists every job; the first is the coordinator.
            coordinator_address = coordinator_address.split(",")[0].strip()
    manager = None
    for candidate in CLUSTER_MANAGERS:
        if candidate[3] in environ and candidate[1] in environ:
            manager = candidate
            break
    if num_processes is None:
        num_processes, name = _first_env(environ, NUM_PROCESSES_ENV)
        if name is None and manager is not None:
            num_processes, name = environ[manager[1]], manager[1]
        if name:
            sources.add(name)
            num_processes = _as_int(num_processes, "The number of processes", name)
    if process_id is None:
        process_id, name = _first_env(environ, PROCESS_ID_ENV)
        if name is None and manager is not None and manager[2] in environ:
            process_id, name = environ[manager[2]], manager[2]
        if name:
            sources.add(name)
            process_id = _as_int(process_id, "The process id", name)

    if num_processes is None or num_processes == 1:
        if num_processes is None and (coordinator_address is not None or process_id is not None):
            raise ValueError(
                "A coordinator address or process id was given without the "
                "number of processes: give --num-processes (or JAX_NUM_PROCESSES)."
            )
        if process_id not in (None, 0):
            raise ValueError(
                f"`process_id` must be 0 with one process; received {process_id!r}."
            )
        return None
    if not isinstance(num_processes, int) or isinstance(num_processes, bool) or num_processes < 1:
        raise ValueError(
            f"`num_processes` must be a positive integer; received {num_processes!r}."
        )
    if process_id is None:
        raise ValueError(
            f"{num_processes} processes but no process id: give each process "
            "--process-id 0 .. N-1 (or JAX_PROCESS_ID); 0 is the chief."
        )
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"`process_id` must be in [0, {num_processes - 1}] for "
            f"{num_processes} processes; received {process_id!r}."
        )
    if coordinator_address is None and manager is None:
        raise ValueError(
            f"{num_processes} processes but no coordinator address: give "
            "--coordinator-address HOST:PORT (process 0's host, a free port; "
            "or JAX_COORDINATOR_ADDRESS), the same on every process."
        )
    if coordinator_address is not None:
        host, _, port = str(coordinator_address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                "`coordinator_address` must be HOST:PORT (e.g. 10.0.0.1:8476); "
                f"received {coordinator_address!r}."
            )
    if manager is not None and not sources - {manager[1], manager[2]}:
        source = manager[0]
    else:
        source = ", ".join(sorted(sources))
    return ProcessGroup(coordinator_address, num_processes, process_id, source)


class TrainingDistribution:
    """How one run is spread over devices and processes: a resolved `--strategy`.

    Made by `resolve_distribution`. Build, compile and fit the model inside
    `scope()`; write files only where `is_chief`.

    Attributes:
        strategy: `"one_device"`, `"mirrored"` (several devices of one
            machine) or `"multi_worker"` (several processes).
        backend: the Keras backend.
        num_replicas: model replicas in sync (devices, all processes).
        tf_strategy: the `tf.distribute.Strategy` (TensorFlow), else None.
        keras_distribution: the `keras.distribution.DataParallel` (JAX),
            else None.
        process_group: the `ProcessGroup` of a multi-process run, else None.
    """

    def __init__(
        self,
        strategy,
        backend,
        num_replicas=1,
        tf_strategy=None,
        keras_distribution=None,
        process_group=None,
    ):
        self.strategy = strategy
        self.backend = backend
        self.num_replicas = int(num_replicas)
        self.tf_strategy = tf_strategy
        self.keras_distribution = keras_distribution
        self.process_group = process_group

    @property
    def num_processes(self):
        return self.process_group.num_processes if self.process_group else 1

    @property
    def is_chief(self):
        """Whether this process writes the run directory (process 0)."""
        return self.process_group is None or self.process_group.process_id == 0

    def global_batch_size(self, batch_size):
        """Examples per step over all replicas for a per-replica `batch_size`."""
        return int(batch_size) * self.num_replicas

    def scope(self):
        """The context in which to build, compile, fit and evaluate."""
        if self.tf_strategy is not None:
            return self.tf_strategy.scope()
        if self.keras_distribution is not None:
            return self.keras_distribution.scope()
        return contextlib.nullcontext()

    def shared_seed(self, seed):
        """`seed` as process 0 has it, on every process: all processes must
        shuffle alike (Keras gives each process its own slice of every global
        batch) and initialise the same weights."""
        if self.num_processes == 1:
            return seed
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int32(seed)))

    def describe(self):
        """A JSON-able summary for the run's config.json."""
        engine = None
        if self.tf_strategy is not None:
            engine = f"tf.distribute.{type(self.tf_strategy).__name__}"
        elif self.keras_distribution is not None:
            engine = f"keras.distribution.{type(self.keras_distribution).__name__}"
        return {
            "strategy": self.strategy,
            "engine": engine,
            "replicas": self.num_replicas,
            "processes": self.num_processes,
            "process_group_source": (
                self.process_group.source if self.process_group else None
            ),
        }

    def __repr__(self):
        return (
            f"TrainingDistribution(strategy={self.strategy!r}, "
            f"backend={self.backend!r}, num_replicas={self.num_replicas}, "
            f"num_processes={self.num_processes})"
        )


def resolve_distribution(
    strategy="auto",
    *,
    coordinator_address=None,
    num_processes=None,
    process_id=None,
    backend=None,
    environ=None,
):
    """Chooses the engine for `--strategy` on the current backend.

    `"auto"`: several processes when a process group is configured (JAX),
    else every local device when there are several (TensorFlow: GPUs
    only), else one device. `"one_device"`: the default device.
    `"mirrored"`: every device of this machine (TensorFlow:
    `MirroredStrategy` over the GPUs, or over the logical CPU devices when
    there is no GPU; JAX: `DataParallel` over `jax.local_devices()`).
    `"multi_worker"`: several processes, one per machine (JAX only, see
    `process_group_settings`); this calls `jax.distributed.initialize`, so
    it must come before any JAX computation in the process.

    Args:
        strategy: one of `STRATEGIES`.
        coordinator_address, num_processes, process_id: the process group
            (see `process_group_settings`; also read from the environment).
        backend: the Keras backend (default: the current one).
        environ: the environment (default `os.environ`).

    Returns:
        A `TrainingDistribution`.

    Raises:
        ValueError: an unknown strategy, a strategy the backend cannot run
            (TensorFlow multi-worker: see `TF_MULTI_WORKER_MESSAGE`), or bad
            process settings.

    Example:
    >>> distribution = resolve_distribution("auto")
    >>> with distribution.scope():
    ...     model = build_model(10, width_multiplier=0.0625)
    """
    _check_choice("strategy", strategy, STRATEGIES)
    backend = backend or keras.backend.backend()
    environ = os.environ if environ is None else environ
    group = process_group_settings(coordinator_address, num_processes, process_id, environ)
    if backend == "tensorflow":
        return _tensorflow_distribution(strategy, group, environ)
    if backend == "jax":
        return _jax_distribution(strategy, group)
    if strategy in ("mirrored", "multi_worker") or group is not None:
        raise ValueError(
            f"--strategy {strategy}"
            + (f" with {group.num_processes} processes" if group else "")
            + f" is not available with the {backend} backend: use "
            "KERAS_BACKEND=tensorflow (several GPUs of one machine) or "
            "KERAS_BACKEND=jax (several GPUs, several machines)."
        )
    return TrainingDistribution("one_device", backend)


def _tf_config_workers(environ):
    """Number of tasks in a TF_CONFIG cluster (0 when there is none)."""
    text = environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError):
        return 0
    return sum(len(tasks) for tasks in cluster.values())


def _tensorflow_distribution(strategy, group, environ):
    if strategy == "multi_worker" or group is not None or _tf_config_workers(environ) > 1:
        raise ValueError(TF_MULTI_WORKER_MESSAGE)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "one_device" or (strategy == "auto" and len(gpus) < 2):
        return TrainingDistribution("one_device", "tensorflow")
    devices = [device.name for device in gpus] or [
        device.name for device in tf.config.list_logical_devices("CPU")
    ]
    mirrored = tf.distribute.MirroredStrategy(devices)
    return TrainingDistribution(
        "mirrored",
        "tensorflow",
        num_replicas=mirrored.num_replicas_in_sync,
        tf_strategy=mirrored,
    )


def _jax_distribution(strategy, group):
    import jax

    if group is not None:
        if strategy in ("one_device", "mirrored"):
            raise ValueError(
                f"--strategy {strategy} trains in one process, but "
                f"{group.num_processes} processes are configured ({group.source}); "
                "use --strategy multi_worker (or auto)."
            )
        initialize_processes(group)
        devices = jax.devices()
        name = "multi_worker"
    else:
        if strategy == "multi_worker":
            raise ValueError(
                "--strategy multi_worker needs the process group: "
                "--coordinator-address HOST:PORT, --num-processes N and "
                "--process-id I on each process (or JAX_COORDINATOR_ADDRESS, "
                "JAX_NUM_PROCESSES, JAX_PROCESS_ID, or a SLURM / Open MPI launch)."
            )
        devices = jax.local_devices()
        if strategy == "one_device" or (strategy == "auto" and len(devices) < 2):
            return TrainingDistribution("one_device", "jax")
        name = "mirrored"
    data_parallel = keras.distribution.DataParallel(devices=devices)
    return TrainingDistribution(
        name,
        "jax",
        num_replicas=len(devices),
        keras_distribution=data_parallel,
        process_group=group,
    )


def initialize_processes(group):
    """Joins this process to `group` with `jax.distributed.initialize`.

    Must run before any JAX computation of the process. On CPUs the
    cross-process collectives go through gloo (TCP); GPUs use NCCL.
    A second call in the same process is a no-op.
    """
    import jax

    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
    )


def scaled_learning_rate(learning_rate, distribution, lr_scaling=False):
    """The learning rate to train with: `learning_rate * replicas` with
    `lr_scaling` (the linear scaling rule for a global batch that grows with
    the replicas), else `learning_rate`."""
    if lr_scaling:
        return float(learning_rate) * distribution.num_replicas
    return float(learning_rate)


def check_jit_compile(jit_compile, distribution):
    """`--jit-compile` under `distribution`: XLA cannot compile a
    `MirroredStrategy` step (it spans devices; TensorFlow's XLA known issue
    "tf.Variable on a different device"), so "auto" turns it off there and
    "on" is refused."""
    if distribution.tf_strategy is None or distribution.num_replicas < 2:
        return jit_compile
    if jit_compile in (True, "on"):
        raise ValueError(
            "--jit-compile on cannot be used with --strategy mirrored on the "
            "TensorFlow backend (XLA cannot compile a step spanning several "
            "devices); use --jit-compile auto or off."
        )
    return "off"


class _RestoreOnlyBackup(BackupAndRestore):
    """BackupAndRestore for the processes other than the chief: resumes from
    the chief's backup (the run directory must be one folder every process
    sees, as on a shared file system) and never writes."""

    def on_train_begin(self, logs=None):
        self._load_model()

    def _save_model(self):
        pass


class _SameStartEverywhere(keras.callbacks.Callback):
    """Stops every process with an error, instead of a hang, when they would
    resume from different backups (e.g. a run directory that is not shared):
    restoring is a step all processes take together. Runs before the
    backup callbacks."""

    def __init__(self, backup_dir):
        super().__init__()
        self.metadata_path = os.path.join(backup_dir, "training_metadata.json")

    def on_train_begin(self, logs=None):
        from jax.experimental import multihost_utils

        state = (-1, -1)  # No backup: a new run.
        if os.path.exists(self.metadata_path):
            with open(self.metadata_path) as file:
                metadata = json.load(file)
            state = (int(metadata.get("epoch", 0)), int(metadata.get("batch", 0)))
        multihost_utils.assert_equal(
            np.asarray(state, dtype=np.int32),
            f"The processes see different backups in {self.metadata_path!r} "
            "(epoch, batch): the run directory must be one folder that every "
            "process reads, e.g. on a shared file system.",
        )


def distributed_callbacks(callbacks, run_dir, distribution, save_freq=None):
    """The callbacks of this process: the chief's are `callbacks` (they
    write the run directory); another process only restores the backup.
    Multi-process runs also check that all processes resume alike."""
    if not distribution.is_chief:
        # The learning-rate logger reads a device value: every process runs
        # it, as the chief does.
        callbacks = [
            LearningRateLogger(),
            keras.callbacks.TerminateOnNaN(),
            _RestoreOnlyBackup(os.path.join(run_dir, BACKUP_DIR), save_freq=save_freq),
        ]
    if distribution.num_processes > 1:
        backup_dir = os.path.join(run_dir, BACKUP_DIR)
        callbacks = [_SameStartEverywhere(backup_dir)] + list(callbacks)
    return callbacks


@contextlib.contextmanager
def outside_distribution():
    """Runs the body with no Keras distribution active (JAX).

    For what one process does alone, like the chief writing a `.keras` file:
    Keras' saving creates a throwaway optimizer, and under a multi-process
    distribution creating a variable is a step every process must take.
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)
