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


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda m: backbones.backbone_learning_rate(keras.optimizers.SGD(), m, 0), r"`multiplier`.*> 0.*multiplier=0"),
        (lambda m: backbones.backbone_learning_rate("sgd", m, 0.1), r"`optimizer` must be a keras.optimizers.Optimizer"),
        (lambda m: finetune.set_backbone_trainable(m, "some"), r"`trainable` must be one of 'all', 'none', 'all_but_batch_norm'"),
        (
            lambda m: backbones.backbone_learning_rate(keras.optimizers.SGD(use_ema=True), m, 0.1),
            r"`optimizer` with use_ema=True cannot be wrapped",
        ),
    ],
)
def test_bad_fine_tuning_arguments_are_named(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(keras_ltpa.build_model(3, width_multiplier=0.0625))
