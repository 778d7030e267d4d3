"""Two-stage fine-tuning: a frozen backbone keeps every weight through `fit`;
unfrozen, it learns at a multiple of the head's learning rate with its batch
norm still in inference mode; the multiplier saves and loads with the
optimizer state in a `.keras` file."""

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import backbones
from keras_ltpa.backbones import finetune
from tests.backbones.conftest import IMAGE_SHAPE

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (4, *IMAGE_SHAPE)).astype("float32")
LABELS = np.array([0, 1, 2, 1])
EPS = np.finfo("float32").eps


def snapshot(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.variables}


def compile_with(model, optimizer):
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def is_batch_norm(path):
    return path.rsplit("/", 1)[-1] in ("gamma", "beta", "moving_mean", "moving_variance")


@pytest.fixture
def hub_model(hub_preset):
    keras.utils.set_random_seed(2)
    return keras_ltpa.build_model(3, IMAGE_SHAPE, backbone=hub_preset)


def test_a_frozen_backbone_keeps_every_weight_through_fit(hub_model):
    backbone_paths = set(finetune.backbone_variable_paths(hub_model))
    finetune.freeze_backbone(hub_model)
    assert not [v.path for v in hub_model.trainable_variables if v.path in backbone_paths]
    before = snapshot(hub_model)
    compile_with(hub_model, keras.optimizers.SGD(0.1, momentum=0.9)).fit(
        IMAGES, LABELS, batch_size=4, epochs=2, verbose=0
    )
    after = snapshot(hub_model)
    for path in backbone_paths:  # batch norm statistics included
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    head = [v.path for v in hub_model.trainable_variables]
    assert head and all(np.abs(after[p] - before[p]).max() > 0 for p in head)


def test_an_unfrozen_backbone_learns_with_batch_norm_in_inference_mode(hub_model):
    finetune.freeze_backbone(hub_model)
    finetune.unfreeze_backbone(hub_model)
    assert hub_model.get_config()["backbone_trainable"] == "all_but_batch_norm"
    backbone_paths = finetune.backbone_variable_paths(hub_model)
    before = snapshot(hub_model)
    optimizer = backbones.backbone_learning_rate(keras.optimizers.SGD(0.1), hub_model, 0.1)
    compile_with(hub_model, optimizer).fit(IMAGES, LABELS, batch_size=4, epochs=1, verbose=0)
    after = snapshot(hub_model)
    changed = {p for p in backbone_paths if np.abs(after[p] - before[p]).max() > 0}
    assert changed == {p for p in backbone_paths if not is_batch_norm(p)}


def backbone_and_head_updates(model, multiplier, start):
    """theta' - theta for every trainable variable after one SGD step from
    the weights `start`."""
    model.set_weights(start)
    before = snapshot(model)
    optimizer = backbones.backbone_learning_rate(keras.optimizers.SGD(0.1), model, multiplier)
    compile_with(model, optimizer).train_on_batch(IMAGES, LABELS)
    after = snapshot(model)
    return {v.path: after[v.path] - before[v.path] for v in model.trainable_variables}, before


def test_one_plain_sgd_step_moves_the_backbone_by_the_multiplier(hub_model):
    """Plain SGD: theta' = theta - lr * m * g, with m = 0.25 for the backbone
    and 1 for the head; the gradient g is the same in both runs (the same
    weights and images, batch norm in inference mode)."""
    finetune.unfreeze_backbone(hub_model)
    backbone_paths = set(finetune.backbone_variable_paths(hub_model))
    start = hub_model.get_weights()
    reference, weights = backbone_and_head_updates(hub_model, 1.0, start)
    scaled, _ = backbone_and_head_updates(hub_model, 0.25, start)
    assert any(p in backbone_paths for p in reference) and any(p not in backbone_paths for p in reference)
    for path, update in reference.items():
        factor = 0.25 if path in backbone_paths else 1.0
        # theta' is rounded to float32 in each run: its update is exact up
        # to an ulp of theta.
        bound = 2 * EPS * np.abs(weights[path]).max()
        np.testing.assert_allclose(scaled[path], factor * update, rtol=0, atol=bound, err_msg=path)
        assert np.abs(update).max() > 100 * bound, path


def test_the_multiplier_by_hand_with_momentum_decay_and_adam():
    """The listed variable `a` follows the wrapped rule at lr * m, `b` at lr."""
    g1, g2 = np.array([0.5, -1.0], "float32"), np.array([2.0, 0.25], "float32")

    def run(optimizer, steps):
        a = keras.Variable(np.array([1.0, -2.0], "float32"), name="a")
        b = keras.Variable(np.array([1.0, -2.0], "float32"), name="b")
        wrapped = finetune.LearningRateMultiplier(optimizer, 0.5, variable_paths=[a.path])
        for gradient in steps:
            wrapped.apply([gradient, gradient], [a, b])
        return keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)

    def momentum_sgd(lr, theta=np.array([1.0, -2.0])):
        velocity = -lr * g1
        theta = theta + velocity
        velocity = 0.9 * velocity - lr * g2
        return theta + velocity

    a, b = run(keras.optimizers.SGD(0.1, momentum=0.9), [g1, g2])
    np.testing.assert_allclose(a, momentum_sgd(0.05), rtol=1e-6)
    np.testing.assert_allclose(b, momentum_sgd(0.1), rtol=1e-6)
    # Keras' decoupled weight decay: theta <- theta - lr * wd * theta - lr * g.
    theta = np.array([1.0, -2.0])
    a, b = run(keras.optimizers.SGD(0.1, weight_decay=0.01), [g1])
    np.testing.assert_allclose(a, theta - 0.05 * 0.01 * theta - 0.05 * g1, rtol=1e-6)
    np.testing.assert_allclose(b, theta - 0.1 * 0.01 * theta - 0.1 * g1, rtol=1e-6)
    # Adam's first step is lr * g / (|g| + eps'): scaling the gradient would
    # leave it unchanged; the multiplier halves it.
    a, b = run(keras.optimizers.Adam(0.1, epsilon=1e-7), [g1])
    step = g1 / (np.abs(g1) + 1e-7 / np.sqrt(1 - 0.999))
    np.testing.assert_allclose(a, theta - 0.05 * step, rtol=1e-6)
    np.testing.assert_allclose(b, theta - 0.1 * step, rtol=1e-6)


def test_the_multiplier_saves_and_loads_with_its_optimizer_state(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras_ltpa.build_model(3, width_multiplier=0.0625)
    finetune.unfreeze_backbone(model)  # the paper's VGG: its block layers
    optimizer = backbones.backbone_learning_rate(keras.optimizers.SGD(0.05, momentum=0.9), model, 0.1)
    images, labels = IMAGES[:, :32, :32], LABELS
    compile_with(model, optimizer).train_on_batch(images, labels)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, finetune.LearningRateMultiplier)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    saved = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    restored = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
    assert len(saved) == len(restored) and any(np.abs(s).max() > 0 for s in saved[2:])
    for s, r in zip(saved, restored):
        np.testing.assert_array_equal(r, s)
    # The next step is the same from the restored state.
    model.train_on_batch(images, labels)
    loaded.train_on_batch(images, labels)
    for expected, actual in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_the_wrapper_averages_every_variable_for_an_averaging_optimizer():
    """SGD(0.5, use_ema=True, ema_momentum=0.9) wrapped, `a` listed (0.1),
    `b` not; gradient 1 twice. The wrapper keeps the averages; the wrapped
    copy keeps the rate and no averages of its own."""
    a, b = keras.Variable(1.0, name="a"), keras.Variable(1.0, name="b")
    inner = keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.9, name="inner")
    wrapped = finetune.LearningRateMultiplier(inner, 0.1, variable_paths=[a.path], name="outer")
    assert wrapped.use_ema and wrapped.ema_momentum == 0.9 and wrapped.ema_overwrite_frequency is None
    assert not wrapped.wrapped_optimizer.use_ema
    assert float(keras.ops.convert_to_numpy(wrapped.wrapped_optimizer.learning_rate)) == 0.5
    values = []
    for _ in range(2):
        wrapped.apply([np.float32(1.0), np.float32(1.0)], [a, b])
        values.append([float(keras.ops.convert_to_numpy(v)) for v in (a, b, *wrapped._model_variables_moving_average)])
    # theta <- theta - lr * m * g: a by 0.5 * 0.1 = 0.05 per step, b by 0.5.
    # Keras' average: momentum 0 at iteration 0 (a copy), then
    # avg <- 0.9 * avg + 0.1 * theta:
    #   step 1: a = 0.95, b = 0.5;  avg_a = 0.95, avg_b = 0.5
    #   step 2: a = 0.90, b = 0.0;  avg_a = 0.9 * 0.95 + 0.1 * 0.9 = 0.855 + 0.09 = 0.945,
    #                               avg_b = 0.9 * 0.5 + 0.1 * 0.0 = 0.45
    expected = [[0.95, 0.5, 0.95, 0.5], [0.9, 0.0, 0.945, 0.45]]
    # Values <= 1, each result within a few float32 roundings (half an eps
    # each) of the exact one: 4 eps bounds them.
    np.testing.assert_allclose(values, expected, rtol=0, atol=4 * EPS)
    # The wrapper's own variables (the averages among them), then the wrapped one's.
    assert [v.path for v in wrapped.variables] == [
        "outer/iteration", "outer/learning_rate", "outer/a_average", "outer/b_average",
        "inner/iteration", "inner/learning_rate",
    ]


def test_an_averaging_wrapper_validates_checkpoints_saves_and_loads_its_averages(tmp_path):
    """A tiny functional model, the wrapped averaging SGD, one `fit` epoch (2
    steps) with the run's SwapEMAWeights and checkpoints; the `.keras` file
    loads in safe mode with the averages, and the next step matches."""
    from keras_ltpa.train import callbacks

    keras.utils.set_random_seed(4)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Dense(4, name="body")(inputs))
    model = keras.Model(inputs, outputs)
    body = [v.path for v in model.get_layer("body").variables]
    inner = keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True, ema_momentum=0.8)
    compile_with(model, finetune.LearningRateMultiplier(inner, 0.1, body))
    x = RNG.normal(size=(4, 3)).astype("float32")
    y = np.array([0, 1, 1, 0])
    model.fit(
        x, y, batch_size=2, epochs=1, shuffle=False, validation_data=(x, y), verbose=0,
        callbacks=[callbacks.SwapEMAWeights(swap_on_epoch=False), callbacks.ModelCheckpoints(tmp_path)],
    )
    optimizer = model.optimizer
    assert callbacks._averaging_optimizer(model) is optimizer
    averages = [keras.ops.convert_to_numpy(v).copy() for v in optimizer._model_variables_moving_average]
    # `fit` ends with the averages in the model, as the checkpoint holds them.
    last = keras.saving.load_model(tmp_path / "last.keras", safe_mode=True)
    for saved, expected in zip(last.get_weights(), averages):
        np.testing.assert_array_equal(saved, expected)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    restored = loaded.optimizer
    assert isinstance(restored, finetune.LearningRateMultiplier)
    assert restored.use_ema and restored.ema_momentum == 0.8 and not restored.wrapped_optimizer.use_ema
    assert restored.get_config() == optimizer.get_config()
    assert len(restored.variables) == len(optimizer.variables)
    assert len(averages) == 4 and any(np.abs(a).max() > 0 for a in averages)
    for expected, actual in zip(averages, restored._model_variables_moving_average):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(actual), expected)
    for s, r in zip(optimizer.variables, restored.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(r), keras.ops.convert_to_numpy(s))
    # The next step (weights, then averages) is the same from the restored state.
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for expected, actual in zip(optimizer._model_variables_moving_average, restored._model_variables_moving_average):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), rtol=0, atol=1e-6
        )


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda m: backbones.backbone_learning_rate(keras.optimizers.SGD(), m, 0), r"`multiplier`.*> 0.*multiplier=0"),
        (lambda m: backbones.backbone_learning_rate("sgd", m, 0.1), r"`optimizer` must be a keras.optimizers.Optimizer"),
        (lambda m: finetune.set_backbone_trainable(m, "some"), r"`trainable` must be one of 'all', 'none', 'all_but_batch_norm'"),
        (
            lambda m: backbones.backbone_learning_rate(keras.optimizers.SGD(gradient_accumulation_steps=2), m, 0.1),
            r"`optimizer` with gradient_accumulation_steps=2 cannot be wrapped",
        ),
        (
            lambda m: finetune.LearningRateMultiplier(
                keras.optimizers.SGD(use_ema=True, ema_momentum=0.9), 0.1, [], ema_momentum=0.5
            ),
            r"takes the weight averaging of `optimizer`.*received different settings \{'ema_momentum': 0.5\}",
        ),
    ],
)
def test_bad_fine_tuning_arguments_are_named(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(keras_ltpa.build_model(3, width_multiplier=0.0625))
