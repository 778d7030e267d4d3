"""The coupled-decay SGD and the paper's learning-rate schedule."""

import keras
import numpy as np
import pytest

from keras_ltpa.train import optimizers

STEPS = 391  # CIFAR-10: 50,000 / 128 rounded up.


@pytest.mark.parametrize("epoch, rate", [(0, 0.1), (24, 0.1), (25, 0.05), (50, 0.025)])
def test_paper_schedule(epoch, rate):
    schedule = optimizers.learning_rate_schedule(STEPS)
    assert optimizers.paper_learning_rate(epoch) == pytest.approx(rate)
    # First and last step of the epoch.
    for step in (epoch * STEPS, (epoch + 1) * STEPS - 1):
        assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(rate)


def test_schedule_serialises():
    schedule = optimizers.learning_rate_schedule(10, 0.2, decay_epochs=3, decay_factor=0.1)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert float(keras.ops.convert_to_numpy(restored(30))) == pytest.approx(0.02)
    assert optimizers.learning_rate_schedule(10, 0.2, decay_epochs=0) == 0.2


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
    optimizer = optimizers.CoupledWeightDecaySGD(0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(3):
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    expected = _reference_sgd(initial, gradient, 3, 0.1, 0.9, 0.05)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "mode, expected",
    [
        # Coupled: the decay goes through the momentum, as torch.optim.SGD.
        ("coupled", _reference_sgd(1.0, 0.0, 2, 0.1, 0.9, 0.5)),
        # Decoupled: w * (1 - lr * wd) per step, outside the momentum.
        ("decoupled", (1 - 0.1 * 0.5) ** 2),
    ],
)
def test_weight_decay_in_fit(mode, expected):
    """A loss with zero gradient: only the decay moves the weight, in the
    backend's real train step (stateless under JAX). Two steps at momentum
    0.9, where the two modes differ (0.8575 vs 0.9025)."""
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    optimizer = optimizers.make_optimizer(
        1, learning_rate=0.1, momentum=0.9, weight_decay=0.5,
        weight_decay_mode=mode, decay_epochs=0,
    )
    model.compile(optimizer=optimizer, loss=lambda y, p: 0.0 * keras.ops.mean(p))
    model.fit(np.ones((4, 1)), np.ones((4, 1)), batch_size=2, epochs=1, verbose=0)
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    # Two float32 multiply-adds on values near 1: rounding ~1e-7.
    np.testing.assert_allclose(kernel, [[expected]], rtol=1e-6)


def test_coupled_and_decoupled_differ_with_momentum():
    initial = np.ones((1,), "float32")
    results = {}
    for mode in optimizers.WEIGHT_DECAY_MODES:
        variable = keras.Variable(initial)
        optimizer = optimizers.make_optimizer(
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
    optimizer = optimizers.make_optimizer(STEPS)
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, optimizers.CoupledWeightDecaySGD)
    assert restored.l2_weight_decay == pytest.approx(5e-4)
    assert restored.momentum == pytest.approx(0.9)


def _cosine_with_warmup(step, peak, warmup_steps, total_steps):
    """The budget recipe's rate at `step`, written out from its definition."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return peak * 0.5 * (1 + np.cos(np.pi * progress))


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = optimizers.learning_rate_schedule(
        STEPS, 0.1, schedule="cosine", epochs=30, warmup_epochs=2
    )
    for step in (0, 1, STEPS, 2 * STEPS, 10 * STEPS + 7, 29 * STEPS, 30 * STEPS):
        expected = _cosine_with_warmup(step, 0.1, 2 * STEPS, 30 * STEPS)
        # float32 arithmetic on rates <= 0.1: a few ulps of 0.1.
        assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(
            expected, abs=1e-7
        )
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert float(keras.ops.convert_to_numpy(restored(2 * STEPS))) == pytest.approx(0.1)
    # Without warm-up it starts at the peak.
    plain = optimizers.learning_rate_schedule(10, 0.2, schedule="cosine", epochs=4)
    assert float(keras.ops.convert_to_numpy(plain(0))) == pytest.approx(0.2)
    assert float(keras.ops.convert_to_numpy(plain(20))) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"schedule": "linear"}, "schedule"),
        ({"schedule": "cosine"}, "epochs"),
        ({"schedule": "cosine", "epochs": 3, "warmup_epochs": 3}, "warmup_epochs"),
    ],
)
def test_bad_schedule_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        optimizers.learning_rate_schedule(10, **kwargs)


def test_recipes_cover_the_same_settings():
    assert set(optimizers.RECIPES) == {"paper", "budget"}
    paper, budget = optimizers.RECIPES["paper"], optimizers.RECIPES["budget"]
    assert set(paper) == set(budget) == {"lr_schedule", "warmup_epochs", "label_smoothing"}
    assert paper == {"lr_schedule": "step", "warmup_epochs": 0, "label_smoothing": 0.0}
    assert budget["lr_schedule"] == "cosine" and 0 < budget["label_smoothing"] < 1


@pytest.mark.parametrize("mode", optimizers.WEIGHT_DECAY_MODES)
def test_ema_averages_the_weights_after_each_step(mode):
    """`average = m * average + (1 - m) * theta` after each step, the first
    step copying `theta`; plain SGD (no momentum, no decay) at rate 0.1 on a
    constant gradient g moves theta by -0.1 g per step."""
    initial = np.array([1.0, -2.0], "float32")
    gradient = np.array([0.5, 1.0], "float32")
    variable = keras.Variable(initial)
    optimizer = optimizers.make_optimizer(
        1, learning_rate=0.1, momentum=0.0, weight_decay=0.0, weight_decay_mode=mode,
        decay_epochs=0, ema=True, ema_momentum=0.9,
    )
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)
    theta, average = initial.astype("float64"), None
    for _ in range(4):
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
        theta = theta - 0.1 * gradient
        average = theta if average is None else 0.9 * average + 0.1 * theta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), theta, rtol=1e-6)
    (averaged,) = optimizer._model_variables_moving_average
    # Eight float32 multiply-adds on values below 2.5: rounding < 1e-6.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(averaged), average, atol=1e-6)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.use_ema and restored.ema_momentum == pytest.approx(0.9)
    optimizer.finalize_variable_values([variable])  # What `fit` does at its end.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(variable), keras.ops.convert_to_numpy(averaged)
    )


def test_without_ema_the_optimizer_keeps_no_averages():
    for mode in optimizers.WEIGHT_DECAY_MODES:
        optimizer = optimizers.make_optimizer(1, weight_decay_mode=mode)
        optimizer.build([keras.Variable(np.ones(2, "float32"))])
        assert not optimizer.use_ema
        assert not hasattr(optimizer, "_model_variables_moving_average")
