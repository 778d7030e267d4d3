"""The callbacks of a run: history, checkpoints, learning-rate logging."""

import json
import os

import keras
import numpy as np
import pytest

from keras_ltpa.train import callbacks
from keras_ltpa.train import optimizers
from keras_ltpa.train import runs


def test_history_csv_replaces_a_retrained_epoch(tmp_path):
    path = tmp_path / "history.csv"
    history = callbacks.HistoryCSV(path)
    history.on_epoch_end(0, {"loss": 2.0, "accuracy": 0.1})
    history.on_epoch_end(1, {"loss": 1.5, "accuracy": 0.2})
    # Killed before the backup of epoch 1: epoch 1 is trained again.
    history = callbacks.HistoryCSV(path)
    history.on_epoch_end(1, {"loss": 1.4, "accuracy": 0.25, "learning_rate": 0.1})
    history.on_epoch_end(2, {"loss": 1.2, "accuracy": 0.3, "learning_rate": 0.1})
    rows = runs.read_history(path)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["loss"]) for r in rows] == [2.0, 1.4, 1.2]
    assert rows[0]["learning_rate"] == "" and float(rows[2]["learning_rate"]) == 0.1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_model_checkpoints_keep_the_best_across_a_restart(tmp_path):
    model = _tiny_model()
    checkpoints = callbacks.ModelCheckpoints(tmp_path)
    checkpoints.set_model(model)
    checkpoints.on_train_begin()
    checkpoints.on_epoch_end(0, {"val_accuracy": 0.5})
    checkpoints.on_epoch_end(1, {"val_accuracy": 0.4})
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "epoch": 1,
        "val_accuracy": 0.5,
    }
    best_time = (tmp_path / "best.keras").stat().st_mtime_ns
    # A resumed run starts below the earlier best: best.keras is kept.
    checkpoints = callbacks.ModelCheckpoints(tmp_path)
    checkpoints.set_model(model)
    checkpoints.on_train_begin()
    checkpoints.on_epoch_end(2, {"val_accuracy": 0.45})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == best_time
    checkpoints.on_epoch_end(3, {"val_accuracy": 0.6})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 4
    assert isinstance(keras.saving.load_model(tmp_path / "last.keras"), keras.Model)


def test_learning_rate_logger_logs_the_rate_of_the_epoch():
    model = _tiny_model()
    model.optimizer = optimizers.make_optimizer(2, learning_rate=0.1, decay_epochs=1)
    model.optimizer.build(model.trainable_variables)
    logger = callbacks.LearningRateLogger()
    logger.set_model(model)
    logger.on_epoch_begin(0)
    model.optimizer.iterations.assign(2)  # The epoch's two steps are done.
    logs = {}
    logger.on_epoch_end(0, logs)
    assert logs["learning_rate"] == pytest.approx(0.1)


def test_epoch_time_estimate_from_the_steps_after_the_first(monkeypatch):
    import io

    from keras_ltpa.train import callbacks as ltpa_callbacks

    clock = iter([100.0, 100.0 + 4 * 0.5])  # step 1 ends at 100 s; 4 steps of 0.5 s later
    monkeypatch.setattr(ltpa_callbacks.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    estimate = ltpa_callbacks.EpochTimeEstimate(steps_per_epoch=390, epochs=300, after_steps=4, stream=stream)
    estimate.on_epoch_begin(0)
    for batch in range(6):
        estimate.on_train_batch_end(batch)
    # 0.5 s x 390 steps = 195 s = 3.25 min per epoch; x 300 epochs = 16.25 h.
    assert stream.getvalue() == "estimated 3.2 min per epoch, 16.2 h for the 300 epoch(s) left\n"


def test_epoch_time_estimate_points_at_shorter_runs_when_it_takes_days():
    from keras_ltpa.train.callbacks import EpochTimeEstimate

    estimate = EpochTimeEstimate(steps_per_epoch=390, epochs=300)
    estimate.on_epoch_begin(0)
    # 2 s x 390 x 300 = 65 h.
    line = estimate.message(2.0)
    assert line.startswith("estimated 13.0 min per epoch, 65.0 h for the 300 epoch(s) left")
    assert "--recipe budget" in line and "--width" in line
    assert "--recipe" not in estimate.message(0.1)  # 3.25 h: no advice


# Weight averaging (`make_optimizer(ema=True)`, `make_callbacks(ema=True)`).
# Keras' SwapEMAWeights swaps the weights w and the averages e in place; on
# TensorFlow by adding and subtracting (w + e, then differences). Each of
# those float32 operations rounds to within half an ulp of a value no larger
# than |w| + |e|, and a swap there and back leaves both w and e within
# 2.5 eps (|w| + |e|) of where they were (eps = 2^-23, float32's ulp at 1):
# SWAP_BOUND * eps * (|w| + |e|) with a margin. The other backends swap by
# copying, exactly: a bound of 0.
SWAP_BOUND = 4 if keras.backend.backend() == "tensorflow" else 0
EPS = float(np.finfo("float32").eps)


def _swap_tolerance(raw, averages):
    return [SWAP_BOUND * EPS * (np.abs(w) + np.abs(e)) for w, e in zip(raw, averages)]


def _assert_close(actual, expected, tolerances):
    for a, b, tolerance in zip(actual, expected, tolerances):
        assert np.all(np.abs(a - b) <= tolerance), np.max(np.abs(a - b) - tolerance)


def _numpy(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _averages(model):
    return _numpy(model.optimizer._model_variables_moving_average)


class _Recorder(keras.callbacks.Callback):
    """What the model holds at each hook: {(hook, epoch): (weights, averages)}."""

    def __init__(self):
        super().__init__()
        self.seen, self._epoch = {}, None

    def _record(self, hook):
        self.seen[hook, self._epoch] = (
            _numpy(self.model.trainable_variables), _averages(self.model)
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._record("epoch_begin")

    def on_test_begin(self, logs=None):
        self._record("test_begin")

    def on_epoch_end(self, epoch, logs=None):
        self._record("epoch_end")


class _StopAt(keras.callbacks.Callback):
    """Interrupts `fit` as epoch `epoch` begins, as a kill would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _averaging_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    # A large rate and a short average: the raw weights and the averages
    # differ from the first epoch on.
    optimizer = optimizers.make_optimizer(
        2, learning_rate=0.5, momentum=0.9, weight_decay=0.0, decay_epochs=0,
        ema=True, ema_momentum=0.5,
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.optimizer.build(model.trainable_variables)  # For the recorders (TF builds it lazily).
    return model


def _averaging_data():
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")
    return x, rng.integers(0, 3, 8), xv, rng.integers(0, 3, 6)


def _averaging_fit(model, run_dir, epochs, extra=(), before=()):
    x, y, xv, yv = _averaging_data()
    run_callbacks = callbacks.make_callbacks(
        run_dir, epochs=epochs, tensorboard=False, progress_bar=False, ema=True
    )
    return model.fit(
        x, y, validation_data=(xv, yv), batch_size=4, epochs=epochs, shuffle=False,
        callbacks=list(before) + run_callbacks + list(extra), verbose=0,
    )


def test_make_callbacks_swaps_the_averages_in_first_only_with_ema(tmp_path):
    with_ema = callbacks.make_callbacks(tmp_path, epochs=2, tensorboard=False, ema=True)
    assert isinstance(with_ema[0], keras.callbacks.SwapEMAWeights)
    assert isinstance(with_ema[0], callbacks.SwapEMAWeights)
    assert not with_ema[0].swap_on_epoch  # The epoch-end backup keeps the raw weights.
    plain = callbacks.make_callbacks(tmp_path, epochs=2, tensorboard=False)
    assert [type(c) for c in with_ema[1:]] == [type(c) for c in plain]
    assert not any(isinstance(c, keras.callbacks.SwapEMAWeights) for c in plain)


def test_ema_validates_and_saves_the_averages_and_trains_on_the_raw_weights(tmp_path):
    model = _averaging_model()
    before, after = _Recorder(), _Recorder()
    history = _averaging_fit(model, tmp_path, 3, extra=[after], before=[before])
    for epoch in range(3):
        raw, averages = before.seen["test_begin", epoch]
        # Not vacuous: the raw weights and the averages differ.
        assert max(np.max(np.abs(w - e)) for w, e in zip(raw, averages)) > 1e-3
        tolerance = _swap_tolerance(raw, averages)
        # Validation runs with the averages in the model...
        _assert_close(after.seen["test_begin", epoch][0], averages, tolerance)
        # ...and the epoch's callbacks after it (and the next epoch) see the
        # raw weights and the averages back, exact but for TF's swap.
        weights_after, averages_after = after.seen["epoch_end", epoch]
        _assert_close(weights_after, raw, tolerance)
        _assert_close(averages_after, averages, tolerance)
    # The checkpoints hold the averages of the last epoch's end, exactly.
    last = keras.saving.load_model(tmp_path / "checkpoints" / "last.keras")
    weights_after, averages_after = after.seen["epoch_end", 2]
    for saved, expected in zip(_numpy(last.trainable_variables), averages_after):
        np.testing.assert_array_equal(saved, expected)
    # `fit` ends with the averages in the model, as `model.keras` records.
    for final, expected in zip(_numpy(model.trainable_variables), averages_after):
        np.testing.assert_array_equal(final, expected)
    # The model's weights are copies: evaluating it (JAX hands the weights'
    # arrays to the compiled step) leaves the optimizer's averages intact.
    _, _, xv, yv = _averaging_data()
    model.evaluate(xv, yv, batch_size=4, verbose=0)
    for average, expected in zip(_averages(model), averages_after):
        np.testing.assert_array_equal(average, expected)
    # Each validation loss is its checkpoint's loss (last.keras, best.keras):
    # validation ran with weights within the swap bound d of the saved
    # averages. Logits z = x W + b move by at most |x| d_W + d_b, and
    # cross-entropy by at most 2 max_j |dz_j| (its gradient p - y has an L1
    # norm <= 2); each loss is a float32 mean of a few terms, and 8 eps
    # (1 + loss) covers its rounding.
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert history.history["val_accuracy"][best["epoch"] - 1] == best["val_accuracy"]
    for name, epoch in (("last", 2), ("best", best["epoch"] - 1)):
        saved = keras.saving.load_model(tmp_path / "checkpoints" / f"{name}.keras")
        loss = saved.evaluate(xv, yv, batch_size=4, verbose=0, return_dict=True)["loss"]
        d_kernel, d_bias = _swap_tolerance(*after.seen["epoch_end", epoch])
        logit_bound = np.max(np.abs(xv) @ d_kernel + d_bias, axis=1)
        bound = np.mean(2 * logit_bound) + 8 * EPS * (1 + loss)
        assert abs(history.history["val_loss"][epoch] - loss) <= bound, name


def test_ema_resumes_with_the_raw_weights_and_the_averages(tmp_path):
    """Killed as epoch 3 of 4 begins, then resumed by a new model and
    optimizer: the backup restores the raw weights and the averages of
    epoch 2's end, and the run ends where an uninterrupted one does. The
    data come in a fixed order: both runs take the same steps, exactly."""
    whole = _averaging_model()
    recorded = _Recorder()
    _averaging_fit(whole, tmp_path / "whole", 4, extra=[recorded])

    with pytest.raises(KeyboardInterrupt):
        _averaging_fit(_averaging_model(), tmp_path / "killed", 4, before=[_StopAt(2)])
    resumed = _averaging_model(seed=1)  # Other initial weights: all restored.
    restored = _Recorder()
    _averaging_fit(resumed, tmp_path / "killed", 4, extra=[restored])
    assert min(epoch for _, epoch in restored.seen) == 2
    for got, expected in zip(restored.seen["epoch_begin", 2], recorded.seen["epoch_begin", 2]):
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)  # Raw weights, then the averages.
    for a, b in zip(_numpy(resumed.trainable_variables), _numpy(whole.trainable_variables)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_averages(resumed), _averages(whole)):
        np.testing.assert_array_equal(a, b)


def test_every_process_swaps_the_averages_in_for_validation(tmp_path):
    from types import SimpleNamespace

    made = callbacks.make_callbacks(tmp_path, epochs=2, tensorboard=False, ema=True)
    other = SimpleNamespace(is_chief=False, num_processes=1)
    kept = callbacks.distributed_callbacks(made, tmp_path, other)
    assert kept[0] is made[0] and isinstance(kept[0], callbacks.SwapEMAWeights)
    plain = callbacks.make_callbacks(tmp_path, epochs=2, tensorboard=False)
    assert not any(
        isinstance(c, keras.callbacks.SwapEMAWeights)
        for c in callbacks.distributed_callbacks(plain, tmp_path, other)
    )


def test_epoch_timer_logs_the_epochs_wall_time_into_history(monkeypatch, tmp_path):
    clock = iter([10.0, 13.5, 20.0, 21.25])  # epoch 0: 3.5 s, epoch 1: 1.25 s
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    timer, history = callbacks.EpochTimer(), callbacks.HistoryCSV(tmp_path / "history.csv")
    for epoch in (0, 1):
        logs = {"loss": 1.0}
        timer.on_epoch_begin(epoch)
        timer.on_epoch_end(epoch, logs)
        history.on_epoch_end(epoch, logs)  # after the timer, as make_callbacks orders them
    rows = runs.read_history(tmp_path / "history.csv")
    assert [float(r["epoch_seconds"]) for r in rows] == [3.5, 1.25]
    names = [type(c).__name__ for c in callbacks.make_callbacks(tmp_path, epochs=1, tensorboard=False)]
    assert names.index("EpochTimer") < names.index("HistoryCSV")
