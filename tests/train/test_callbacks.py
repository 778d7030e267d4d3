"""The callbacks of a run: history, checkpoints, learning-rate logging."""

import json
import os

import keras
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
