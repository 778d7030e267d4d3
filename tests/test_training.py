"""Optimiser, schedule, precision choice, callbacks and `run_training`."""

import json
import os

import keras
import numpy as np
import pytest

from keras_ltpa import training
from keras_ltpa.data import DataError

STEPS = 391  # CIFAR-10: 50,000 / 128 rounded up.


# --- Schedule and optimiser ------------------------------------------------


@pytest.mark.parametrize("epoch, rate", [(0, 0.1), (24, 0.1), (25, 0.05), (50, 0.025)])
def test_paper_schedule(epoch, rate):
    schedule = training.learning_rate_schedule(STEPS)
    assert training.paper_learning_rate(epoch) == pytest.approx(rate)
    # First and last step of the epoch.
    for step in (epoch * STEPS, (epoch + 1) * STEPS - 1):
        assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(rate)


def test_schedule_serialises():
    schedule = training.learning_rate_schedule(10, 0.2, decay_epochs=3, decay_factor=0.1)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert float(keras.ops.convert_to_numpy(restored(30))) == pytest.approx(0.02)
    assert training.learning_rate_schedule(10, 0.2, decay_epochs=0) == 0.2


def _reference_sgd(weight, gradient, steps, lr, momentum, decay):
    """torch.optim.SGD(weight_decay=decay) with a constant gradient, in NumPy."""
    buffer = None
    for _ in range(steps):
        g = gradient + decay * weight
        buffer = g if buffer is None else momentum * buffer + g
        weight = weight - lr * buffer
    return weight


def test_coupled_weight_decay_matches_pytorch_sgd():
    initial = np.array([[1.0, -2.0], [0.5, 3.0]], "float32")
    gradient = np.array([[0.1, 0.2], [-0.3, 0.0]], "float32")
    variable = keras.Variable(initial)
    optimizer = training.CoupledWeightDecaySGD(0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(3):
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    expected = _reference_sgd(initial, gradient, 3, 0.1, 0.9, 0.05)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5)


@pytest.mark.parametrize("mode, expected", [("coupled", 0.95), ("decoupled", 0.95)])
def test_weight_decay_in_fit(mode, expected):
    """A loss with zero gradient: only the decay moves the weight, in the
    backend's real train step (stateless under JAX)."""
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    optimizer = training.make_optimizer(
        1, learning_rate=0.1, momentum=0.0, weight_decay=0.5,
        weight_decay_mode=mode, decay_epochs=0,
    )
    model.compile(optimizer=optimizer, loss=lambda y, p: 0.0 * keras.ops.mean(p))
    model.fit(np.ones((2, 1)), np.ones((2, 1)), batch_size=2, epochs=1, verbose=0)
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    # Coupled, no momentum: w - lr * wd * w; decoupled: w * (1 - lr * wd).
    np.testing.assert_allclose(kernel, [[expected]], rtol=1e-6)


def test_coupled_and_decoupled_differ_with_momentum():
    initial = np.ones((1,), "float32")
    results = {}
    for mode in training.WEIGHT_DECAY_MODES:
        variable = keras.Variable(initial)
        optimizer = training.make_optimizer(
            1, momentum=0.9, weight_decay=0.1, weight_decay_mode=mode, decay_epochs=0
        )
        for _ in range(5):
            optimizer.apply([keras.ops.zeros((1,))], [variable])
        results[mode] = float(keras.ops.convert_to_numpy(variable)[0])
    # Decoupled: (1 - 0.1 * 0.1) ** 5; coupled goes through the momentum.
    assert results["decoupled"] == pytest.approx(0.99**5, rel=1e-5)
    expected = _reference_sgd(1.0, 0.0, 5, 0.1, 0.9, 0.1)
    assert results["coupled"] == pytest.approx(expected, rel=1e-5)
    assert results["coupled"] < results["decoupled"]


def test_optimizer_config_round_trip():
    optimizer = training.make_optimizer(STEPS)
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, training.CoupledWeightDecaySGD)
    assert restored.l2_weight_decay == pytest.approx(5e-4)
    assert restored.momentum == pytest.approx(0.9)


# --- Precision and XLA ---------------------------------------------------------


def test_choose_precision_explicit_and_invalid():
    assert training.choose_precision("float32") == "float32"
    assert training.choose_precision("mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError, match="precision.*'float64'"):
        training.choose_precision("float64")


@pytest.mark.parametrize(
    "capability, flags, backend, expected",
    [
        ((9, 0), set(), "jax", "mixed_bfloat16"),
        ((8, 0), set(), "torch", "mixed_bfloat16"),
        ((7, 5), set(), "tensorflow", "mixed_float16"),
        ((6, 1), {"amx_bf16"}, "tensorflow", "float32"),
        (None, {"amx_bf16", "avx512_bf16", "amx_tile"}, "tensorflow", "mixed_bfloat16"),
        (None, {"avx512_bf16", "avx2"}, "tensorflow", "float32"),
        (None, {"amx_bf16"}, "jax", "float32"),
        (None, {"avx2"}, "tensorflow", "float32"),
    ],
)
def test_choose_precision_auto(monkeypatch, capability, flags, backend, expected):
    monkeypatch.setattr(training, "gpu_compute_capability", lambda backend=None: capability)
    monkeypatch.setattr(training, "_cpu_flags", lambda: flags)
    assert training.choose_precision("auto", backend=backend) == expected


def test_resolve_jit_compile(monkeypatch):
    assert training.resolve_jit_compile("on") is True
    assert training.resolve_jit_compile("off") is False
    assert training.resolve_jit_compile("auto", backend="torch") is False
    assert training.resolve_jit_compile("auto", backend="jax") is True
    monkeypatch.setattr(training, "gpu_compute_capability", lambda backend=None: None)
    assert training.resolve_jit_compile("auto", backend="tensorflow") is False
    monkeypatch.setattr(training, "gpu_compute_capability", lambda backend=None: (8, 0))
    assert training.resolve_jit_compile("auto", backend="tensorflow") is True
    with pytest.raises(ValueError, match="jit_compile"):
        training.resolve_jit_compile("maybe")


# --- Callbacks -------------------------------------------------------------


def test_history_csv_replaces_a_retrained_epoch(tmp_path):
    path = tmp_path / "history.csv"
    history = training.HistoryCSV(path)
    history.on_epoch_end(0, {"loss": 2.0, "accuracy": 0.1})
    history.on_epoch_end(1, {"loss": 1.5, "accuracy": 0.2})
    # Killed before the backup of epoch 1: epoch 1 is trained again.
    history = training.HistoryCSV(path)
    history.on_epoch_end(1, {"loss": 1.4, "accuracy": 0.25, "learning_rate": 0.1})
    history.on_epoch_end(2, {"loss": 1.2, "accuracy": 0.3, "learning_rate": 0.1})
    rows = training.read_history(path)
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
    checkpoints = training.ModelCheckpoints(tmp_path)
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
    checkpoints = training.ModelCheckpoints(tmp_path)
    checkpoints.set_model(model)
    checkpoints.on_train_begin()
    checkpoints.on_epoch_end(2, {"val_accuracy": 0.45})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == best_time
    checkpoints.on_epoch_end(3, {"val_accuracy": 0.6})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 4
    assert isinstance(keras.saving.load_model(tmp_path / "last.keras"), keras.Model)


def test_learning_rate_logger_logs_the_rate_of_the_epoch():
    model = _tiny_model()
    model.optimizer = training.make_optimizer(2, learning_rate=0.1, decay_epochs=1)
    model.optimizer.build(model.trainable_variables)
    logger = training.LearningRateLogger()
    logger.set_model(model)
    logger.on_epoch_begin(0)
    model.optimizer.iterations.assign(2)  # The epoch's two steps are done.
    logs = {}
    logger.on_epoch_end(0, logs)
    assert logs["learning_rate"] == pytest.approx(0.1)


# --- Config and run_training -----------------------------------------------


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(variant="att4"), "att4"),
        (dict(image_size=48), "multiple of 32"),
        (dict(dataset="cifar10", data_dir="x"), "not both"),
        (dict(epochs=0), "epochs"),
        (dict(augment="zoom"), "zoom"),
        (dict(lr_decay_factor=2.0), "lr_decay_factor"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        training.TrainingConfig(**changes).validate()


def test_config_defaults_are_the_paper_s():
    config = training.TrainingConfig().validate()
    assert config.dataset == "cifar10"
    assert (config.learning_rate, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert (config.batch_size, config.epochs) == (128, 300)
    assert (config.lr_decay_epochs, config.lr_decay_factor) == (25, 0.5)
    assert config.variant == "att3-concat-pc"


def test_bad_data_fails_before_writing(tmp_path, tiny_cifar_folder):
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match="missing"):
        training.run_training(dict(data_dir=str(tmp_path / "missing"), output_dir=str(run_dir)))
    assert not run_dir.exists()
    with pytest.raises(training.SetupError, match="width_multiplier"):
        training.run_training(
            dict(data_dir=str(tiny_cifar_folder), output_dir=str(run_dir), width_multiplier=-1)
        )
    assert not run_dir.exists()


def test_resuming_another_model_is_refused(tmp_path, tiny_cifar_folder):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"variant": "att2-indep-dp"}))
    with pytest.raises(training.SetupError, match="variant='att2-indep-dp'"):
        training.run_training(
            dict(data_dir=str(tiny_cifar_folder), output_dir=str(run_dir), width_multiplier=0.0625)
        )
