"""The private Keras APIs the package relies on: this fails loudly, naming
the attribute, when a Keras release changes one of them."""

import inspect

import keras
import numpy as np
import pytest

from keras_ltpa.utils import keras_internals


@pytest.mark.parametrize(
    "owner, attribute",
    keras_internals.PRIVATE_ATTRIBUTES,
    ids=[f"{owner.__name__}.{name}" for owner, name in keras_internals.PRIVATE_ATTRIBUTES],
)
def test_private_attribute_exists(owner, attribute):
    assert callable(getattr(owner, attribute, None)), (
        f"Keras {keras.__version__} has no {owner.__name__}.{attribute}: update "
        "keras_ltpa/utils/keras_internals.py"
    )


def test_signatures_are_the_ones_wrapped():
    params = lambda owner, name: list(inspect.signature(getattr(owner, name)).parameters)
    assert params(keras.callbacks.TensorBoard, "_collect_learning_rate") == ["self", "logs"]
    assert params(keras.callbacks.BackupAndRestore, "_save_model") == ["self"]
    assert params(keras.callbacks.BackupAndRestore, "_load_model") == ["self"]
    assert params(keras.optimizers.Optimizer, "_use_weight_decay") == ["self", "variable"]
    assert params(keras.layers.Equalization, "_custom_histogram_fixed_width") == [
        "self", "values", "value_range", "nbins"
    ]


def test_uses_weight_decay_follows_the_exclusions():
    optimizer = keras.optimizers.SGD(weight_decay=0.1)
    kept, excluded = keras.Variable(np.ones(2), name="kernel"), keras.Variable(np.ones(2), name="bias")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build([kept, excluded])
    assert keras_internals.uses_weight_decay(optimizer, kept) is True
    assert keras_internals.uses_weight_decay(optimizer, excluded) is False


def test_is_functional():
    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert keras_internals.is_functional(functional)
    assert not keras_internals.is_functional(Subclassed())
    assert not keras_internals.is_functional(keras.layers.Dense(1))


def test_backup_hooks_save_and_restore_through_fit(tmp_path):
    """`save_backup`/`restore_backup` are the steps fit runs: a subclass that
    counts them sees every epoch's save, and a new run restores the weights."""

    class Counting(keras_internals.BackupAndRestoreHooks):
        saves = 0

        def save_backup(self):
            type(self).saves += 1
            super().save_backup()

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((2,))
        m = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        m.compile(optimizer="sgd", loss="mse")
        return m

    x, y = np.ones((4, 2)), np.zeros((4, 1))
    trained = model()
    backup = Counting(str(tmp_path), delete_checkpoint=False)
    trained.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    assert Counting.saves == 2
    fresh = model()
    restorer = keras_internals.BackupAndRestoreHooks(str(tmp_path), delete_checkpoint=False)
    restorer.set_model(fresh)
    restorer.restore_backup()
    for got, want in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_tensorboard_hook_sees_the_logs(tmp_path):
    seen = []

    class Recording(keras_internals.TensorBoardHooks):
        def collect_learning_rate(self, logs):
            seen.append(dict(logs))
            return super().collect_learning_rate(logs)

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0,
              callbacks=[Recording(str(tmp_path), write_graph=False, profile_batch=0)])
    assert seen and "loss" in seen[0]


def test_clear_restored_epoch_lets_the_next_fit_start_at_its_own_epoch(tmp_path):
    # A backup restored at epoch 2 makes Keras' fit start there; once
    # cleared, a later fit starts from its own `initial_epoch` again.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    restored = keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[restored])
    assert model._initial_epoch == 2
    keras_internals.clear_restored_epoch(model)
    assert model._initial_epoch is None
    history = model.fit(x, y, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    with pytest.raises(AttributeError, match="_initial_epoch"):
        keras_internals.clear_restored_epoch(object())


def test_moving_averages_are_the_averaging_optimizer_s():
    variables = [keras.Variable(np.float32(2.0)), keras.Variable(np.float32(-1.0))]
    optimizer = keras.optimizers.SGD(1.0, use_ema=True)
    optimizer.build(variables)
    averages = keras_internals.moving_averages(optimizer)
    assert [tuple(a.shape) for a in averages] == [(), ()]
    optimizer.apply([keras.ops.convert_to_tensor(np.float32(0.5))] * 2, variables)
    # Step 0 copies the updated weights: 2 - 0.5 and -1 - 0.5.
    assert [float(a.numpy()) for a in averages] == [1.5, -1.5]
    plain = keras.optimizers.SGD(1.0)
    plain.build(variables)
    with pytest.raises(AttributeError, match="keeps no `_model_variables_moving_average`"):
        keras_internals.moving_averages(plain)


def test_copy_weight_decay_exclusions():
    source = keras.optimizers.SGD(weight_decay=0.1)
    source.exclude_from_weight_decay(var_names=["bias"])
    target = keras.optimizers.SGD(weight_decay=0.1)
    keras_internals.copy_weight_decay_exclusions(source, target)
    kept, excluded = keras.Variable(np.ones(2), name="kernel"), keras.Variable(np.ones(2), name="bias")
    target.build([kept, excluded])
    assert keras_internals.uses_weight_decay(target, kept) is True
    assert keras_internals.uses_weight_decay(target, excluded) is False
