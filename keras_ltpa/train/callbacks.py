"""The callbacks of a training run: resumable backups, checkpoints, history,
TensorBoard scalars and attention images, and the per-epoch summary line.

`make_callbacks(run_dir, epochs=...)` gives them in the order a run needs;
`distributed_callbacks` adapts that list to the process of a multi-process
run (only the chief writes).
"""

import csv
import json
import math
import os
import sys
import time

import keras
import numpy as np

from keras_ltpa.train import runs
from keras_ltpa.train.distribution import outside_distribution
from keras_ltpa.utils.files import write_atomically
from keras_ltpa.utils.files import write_json
from keras_ltpa.utils.keras_internals import BackupAndRestoreHooks
from keras_ltpa.utils.keras_internals import TensorBoardHooks
from keras_ltpa.utils.keras_internals import clear_restored_epoch


def _learning_rate(optimizer):
    # Loss scaling wraps the optimizer whose schedule counts the applied
    # steps; a `LearningRateMultiplier` runs its schedule itself.
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate used during the epoch) to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = _learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._rate


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (the epoch's wall time, validation included) to
    the logs, so `history.csv` records it beside the epoch's metrics."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


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
        rows = [row for row in runs.read_history(self.path) if int(row["epoch"]) < epoch]
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


def _averaging_optimizer(model):
    """The model's optimizer that keeps weight averages (`use_ema`), looking
    through loss scaling; None without averages."""
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer if getattr(optimizer, "use_ema", False) else None


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' `SwapEMAWeights` (validation with the averaged weights), which
    also gives the model's weights arrays of their own when training ends.

    `fit` ends by assigning the averages to the weights; under JAX a weight
    then holds the very array of its average, and a later `evaluate`, which
    hands the weights' arrays over to its compiled step, would delete the
    optimizer's averages with them (the final save would then fail).
    """

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        for variable in self.model.trainable_variables:
            variable.assign(np.array(keras.ops.convert_to_numpy(variable), copy=True))


class ModelCheckpoints(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` on a new best.

    Each file is written to a temporary name and renamed. The best score so
    far is kept in `best.json`, so a resumed run does not replace a better
    `best.keras` of its earlier part. With an optimizer that averages the
    weights (`use_ema`) both files hold the averages, as `model.keras` does
    at the end; the model gets its raw weights back after each save.

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
        value = logs.get(self.monitor)
        best = value is not None and float(value) > self.best
        if _averaging_optimizer(self.model) is None:
            self._save(best)
        else:
            variables = self.model.trainable_variables
            # A copy: on torch a CPU tensor's NumPy view would follow the assignments.
            raw = [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]
            self.model.optimizer.finalize_variable_values(variables)
            try:
                self._save(best)
            finally:
                for variable, saved in zip(variables, raw):
                    variable.assign(saved)
        if best:
            self.best = float(value)
            write_json(self._best_path, {"epoch": epoch + 1, self.monitor: self.best})

    def _save(self, best):
        runs.save_model(self.model, os.path.join(self.directory, runs.LAST_CHECKPOINT))
        if best:
            runs.save_model(self.model, os.path.join(self.directory, runs.BEST_CHECKPOINT))


class TensorBoard(TensorBoardHooks):
    """Keras' TensorBoard, logging the learning rate used during each epoch
    (Keras' own logs the one for the next step, which differs at a decay)."""

    def collect_learning_rate(self, logs):
        if "learning_rate" in logs:
            return logs
        return super().collect_learning_rate(logs)


class AttentionImages(keras.callbacks.Callback):
    """Logs an attention-overlay grid of a fixed batch to TensorBoard.

    One image per epoch (tag `attention`): rows of image | map 1 | map 2 |
    map 3 with the predicted and true class, from
    `keras_ltpa.evaluation.overlays.attention_grid`.

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

        from keras_ltpa.evaluation.overlays import attention_grid

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


class EpochTimeEstimate(keras.callbacks.Callback):
    """After the first steps, prints how long an epoch and the run will take.

    The first step (tracing, compilation) is left out of the rate. When the
    run would take days, the line points at the shorter options.

    Args:
        steps_per_epoch: optimizer steps per epoch.
        epochs: the run's total epochs.
        after_steps: steps timed before the estimate (after the first).
        stream: where to print (default: stdout).
    """

    DAY_SECONDS = 24 * 3600

    def __init__(self, steps_per_epoch, epochs, after_steps=20, stream=None):
        super().__init__()
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.after_steps, self.stream = max(1, min(after_steps, steps_per_epoch - 1)), stream
        self._done = steps_per_epoch < 2

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._steps, self._start = epoch, 0, None

    def on_train_batch_end(self, batch, logs=None):
        if self._done:
            return
        self._steps += 1
        if self._steps == 1:
            self._start = time.perf_counter()
        elif self._steps == self.after_steps + 1:
            self._done = True
            seconds = (time.perf_counter() - self._start) / self.after_steps
            print(self.message(seconds), file=self.stream or sys.stdout, flush=True)

    def message(self, step_seconds):
        """The estimate's line for `step_seconds` per step."""
        epoch_seconds = step_seconds * self.steps_per_epoch
        left = self.epochs - self._epoch
        total = epoch_seconds * left
        line = (
            f"estimated {epoch_seconds / 60:.1f} min per epoch, "
            f"{total / 3600:.1f} h for the {left} epoch(s) left"
        )
        if total > self.DAY_SECONDS:
            line += (
                "; a run of days: `--recipe budget` (a short schedule) or a "
                "smaller `--width` trains in hours"
            )
        return line


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
    steps_per_epoch=None,
    backup_dir=None,
    ema=False,
):
    """The callbacks of a resumable run writing into `run_dir`.

    In order: with `ema`, `SwapEMAWeights` (validation with the averaged
    weights); learning-rate and epoch-time logging, TerminateOnNaN, the progress bar, the
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
        steps_per_epoch: print the estimated epoch and run time after the
            first steps (`EpochTimeEstimate`); None: no estimate.
        backup_dir: the BackupAndRestore folder (default: `run_dir/backup`;
            each training stage has its own, see `keras_ltpa.train.stages`).
        ema: the optimizer averages the weights (`make_optimizer(ema=True)`):
            validation runs with the averages swapped in (what the callbacks
            see during validation), the raw weights back after it. The
            checkpoints hold the averages, the backup the raw weights and
            the averages (a resumed run trains on from the raw weights).

    Returns:
        A list of callbacks for `fit`.
    """
    run_dir = os.fspath(run_dir)
    callbacks = [LearningRateLogger(), EpochTimer(), keras.callbacks.TerminateOnNaN()]
    if ema:
        # First, so that validation's other callbacks see the averages. Not
        # `swap_on_epoch`: the epoch-end backup must hold the raw weights.
        callbacks.insert(0, SwapEMAWeights(swap_on_epoch=False))
    if progress_bar:
        # Listed here (Keras would append its own last) so that the bar ends
        # its line before the summary line is printed.
        callbacks.append(keras.callbacks.ProgbarLogger())
    callbacks += [EpochSummary(epochs), HistoryCSV(os.path.join(run_dir, runs.HISTORY_FILE))]
    if steps_per_epoch:
        callbacks.append(EpochTimeEstimate(steps_per_epoch, epochs))
    if tensorboard:
        log_dir = os.path.join(run_dir, runs.TENSORBOARD_DIR)
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
    callbacks.append(ModelCheckpoints(os.path.join(run_dir, runs.CHECKPOINT_DIR), monitor))
    # Last: its epoch-end backup follows the history row and checkpoints, so
    # a kill never leaves a backed-up epoch without them.
    backup_dir = backup_dir or os.path.join(run_dir, runs.BACKUP_DIR)
    callbacks.append(BackupAndRestore(backup_dir, save_freq=save_freq))
    return callbacks


class BackupAndRestore(BackupAndRestoreHooks):
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
            self.save_backup()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        # Keras keeps the restored epoch on the model, where the next `fit`
        # of a later training stage would start from it instead of its own.
        clear_restored_epoch(self.model)

    def save_backup(self):
        with outside_distribution():  # Also when one process of several saves.
            super().save_backup()


class _RestoreOnlyBackup(BackupAndRestore):
    """BackupAndRestore for the processes other than the chief: resumes from
    the chief's backup (the run directory must be one folder every process
    sees, as on a shared file system) and never writes."""

    def on_train_begin(self, logs=None):
        self.restore_backup()

    def save_backup(self):
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


def distributed_callbacks(callbacks, run_dir, distribution, save_freq=None, backup_dir=None):
    """The callbacks of this process: the chief's are `callbacks` (they
    write the run directory); another process only restores the backup
    (`backup_dir`, default `run_dir/backup`). Multi-process runs also check
    that all processes resume alike."""
    backup_dir = backup_dir or os.path.join(run_dir, runs.BACKUP_DIR)
    if not distribution.is_chief:
        # The learning-rate logger reads a device value: every process runs
        # it, as the chief does.
        # Validation swaps the averages in on every process.
        callbacks = [c for c in callbacks if isinstance(c, keras.callbacks.SwapEMAWeights)] + [
            LearningRateLogger(),
            keras.callbacks.TerminateOnNaN(),
            _RestoreOnlyBackup(backup_dir, save_freq=save_freq),
        ]
    if distribution.num_processes > 1:
        callbacks = [_SameStartEverywhere(backup_dir)] + list(callbacks)
    return callbacks
