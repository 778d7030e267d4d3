"""Fine-tuning a pretrained backbone in two stages, the Keras
transfer-learning way.

Stage 1: `freeze_backbone(model)`, compile, fit: only the attention head and
the classifier learn; the backbone's batch norm runs in inference mode.
Stage 2: `unfreeze_backbone(model)`, compile again with
`backbone_learning_rate(optimizer, model, multiplier)`, fit: every layer
learns, the backbone at `multiplier` times the head's learning rate, its
batch norm layers still frozen (inference mode, statistics kept).

Keras has no per-variable learning rate: `LearningRateMultiplier` wraps any
optimizer and multiplies the learning rate it applies to the variables it
names. It is a registered Keras optimizer, so a compiled model saves to and
loads from `.keras` files (safe mode) with its optimizer state. It lives in
the model core so that `keras_ltpa.train` can import it.
"""

import re

import keras

from keras_ltpa.utils.checks import check_choice
from keras_ltpa.utils.keras_internals import copy_weight_decay_exclusions
from keras_ltpa.utils.keras_internals import uses_weight_decay

BACKBONE_TRAINABLE = ("all", "none", "all_but_batch_norm")
# Layers of the paper's VGG, built into the classifier's own graph.
_VGG_LAYER = re.compile(r"block\d+_|global_dense$|global_features$")


def backbone_layers(model):
    """The layers of `model` (from `build_model`) that make its backbone.

    A tapped backbone is one nested model (`"{name}_taps"`); the paper's VGG
    is the `block*` and `global_dense` layers of the model's own graph.
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        return nested
    return [layer for layer in model.layers if _VGG_LAYER.match(layer.name)]


def _walk(layers):
    for layer in layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer.layers)


def set_backbone_trainable(model, trainable):
    """Sets which of `model`'s backbone layers train.

    Args:
        model: a model from `build_model`.
        trainable: `"all"`, `"none"` (frozen: batch norm in inference mode)
            or `"all_but_batch_norm"` (every layer but the batch norm ones,
            which stay in inference mode and keep their statistics: Keras'
            advice for fine-tuning).

    Returns:
        `model`, which records the choice in its config (an
        `AttentionClassifier`). Compile it after this call: Keras reads
        trainability at compile time.
    """
    check_choice("trainable", trainable, BACKBONE_TRAINABLE)
    top = backbone_layers(model)
    for layer in top:
        layer.trainable = trainable != "none"
    if trainable == "all_but_batch_norm":
        for layer in _walk(top):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    if hasattr(model, "backbone_trainable"):
        model.backbone_trainable = trainable
    return model


def freeze_backbone(model):
    """Stage 1: freezes `model`'s backbone (batch norm in inference mode).

    Returns:
        `model`. Compile it after this call.
    """
    return set_backbone_trainable(model, "none")


def unfreeze_backbone(model, train_batch_norm=False):
    """Stage 2: makes `model`'s backbone trainable again.

    Args:
        model: a model from `build_model`.
        train_batch_norm: bool. False (the default, Keras' advice for
            fine-tuning) keeps the backbone's batch norm layers frozen, in
            inference mode with their statistics.

    Returns:
        `model`. Compile it after this call.
    """
    return set_backbone_trainable(model, "all" if train_batch_norm else "all_but_batch_norm")


def backbone_variable_paths(model):
    """Paths of every variable of `model`'s backbone (trainable or not).

    Raises:
        ValueError when a backbone path is also the path of another of the
        model's variables (the paths could not tell them apart).
    """
    backbone_ids = {id(v) for layer in backbone_layers(model) for v in layer.variables}
    paths = [v.path for v in model.variables if id(v) in backbone_ids]
    others = {v.path for v in model.variables if id(v) not in backbone_ids}
    shared = sorted(set(paths) & others)
    if shared:
        raise ValueError(
            f"Backbone variable paths {shared[:5]} are also paths of other variables "
            f"of model {model.name!r}; rename the layers so that paths are unique."
        )
    return paths


def backbone_learning_rate(optimizer, model, multiplier):
    """`optimizer`, applying `multiplier` times its learning rate to
    `model`'s backbone.

    Args:
        optimizer: a `keras.optimizers.Optimizer` (not yet built).
        model: the model it will train (from `build_model`).
        multiplier: float > 0; 1 returns `optimizer` itself.

    Returns:
        A `LearningRateMultiplier` (or `optimizer` when `multiplier` is 1).
    """
    _check_multiplier(multiplier)
    if float(multiplier) == 1.0:
        return optimizer
    return LearningRateMultiplier(optimizer, multiplier, backbone_variable_paths(model))


def _check_multiplier(multiplier):
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not multiplier > 0:
        raise ValueError(
            "`multiplier` (the backbone's learning rate as a fraction of the head's) "
            f"must be a number > 0; received multiplier={multiplier!r}."
        )


_UNSUPPORTED = ("gradient_accumulation_steps",)
# Weight averaging: the wrapped optimizer's settings, applied by the wrapper.
_AVERAGING = ("use_ema", "ema_momentum", "ema_overwrite_frequency")
_FORWARDED = ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor")


@keras.saving.register_keras_serializable(package="keras_ltpa")
class LearningRateMultiplier(keras.optimizers.Optimizer):
    """An optimizer that applies another with a learning rate multiplied by
    `multiplier` for the variables whose paths it lists.

    For a variable `theta` with gradient `g`, the wrapped optimizer's own
    update runs with the learning rate `lr * m`, where `m = multiplier` for
    the listed variables and 1 for the others. With plain SGD that is

        theta <- theta - lr * m * g

    and with momentum, weight decay (coupled or decoupled), Adam, ..., each
    listed variable follows the wrapped optimizer's rule at the rate `lr * m`.
    The schedule, clipping and loss scale factor are the wrapped optimizer's;
    its state (momenta, ...) is part of this optimizer's variables, so it is
    saved, restored, and kept by JAX's stateless training step. The wrapped
    optimizer is its `wrapped_optimizer`.

    Weight averaging (`use_ema`) moves to this optimizer: it takes the
    wrapped one's `use_ema`, `ema_momentum` and `ema_overwrite_frequency`,
    and wraps a copy of it (from its config) with `use_ema=False`. After each
    step Keras then updates the average of every variable it trains, listed
    or not (`average <- m * average + (1 - m) * theta`, the first step
    copying `theta`); the averages are among this optimizer's variables, and
    `keras.callbacks.SwapEMAWeights` and `finalize_variable_values` use them
    as with any averaging optimizer.

    Args:
        optimizer: the `keras.optimizers.Optimizer` to apply (unbuilt; with
            `use_ema=True` this optimizer averages, see above; gradient
            accumulation is not supported).
        multiplier: float > 0.
        variable_paths: the `variable.path` of each variable to multiply.
        name: optimizer name.
        **kwargs: `keras.optimizers.Optimizer` arguments: `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency` (as saved by
            `get_config`; with an averaging `optimizer` they must agree
            with its own).

    Example:
    >>> import numpy as np
    >>> a, b = keras.Variable(1.0, name="a"), keras.Variable(1.0, name="b")
    >>> optimizer = LearningRateMultiplier(
    ...     keras.optimizers.SGD(0.5), 0.1, variable_paths=[a.path])
    >>> optimizer.apply([np.float32(1.0), np.float32(1.0)], [a, b])
    >>> round(float(a.numpy()), 6), round(float(b.numpy()), 6)
    (0.95, 0.5)
    """

    def __init__(self, optimizer, multiplier, variable_paths, name=None, **kwargs):
        if isinstance(optimizer, dict):
            optimizer = keras.optimizers.deserialize(optimizer)
        _check_optimizer(optimizer)
        _check_multiplier(multiplier)
        settings = optimizer.get_config()
        if optimizer.use_ema:
            kwargs.update(_averaging_settings(optimizer, settings, kwargs))
            optimizer = _without_averaging(optimizer, settings)
        learning_rate = settings["learning_rate"]
        if isinstance(learning_rate, dict):
            learning_rate = keras.saving.deserialize_keras_object(learning_rate)
        forwarded = {key: settings.get(key) for key in _FORWARDED}
        super().__init__(learning_rate=learning_rate, name=name, **forwarded, **kwargs)
        # Not `inner_optimizer`: Keras' SwapEMAWeights and TensorBoard would
        # take that one (as under loss scaling) for the one that averages
        # and counts the steps.
        self.wrapped_optimizer = optimizer
        self.multiplier = float(multiplier)
        self.variable_paths = [str(path) for path in variable_paths]
        self._multipliers = []

    def build(self, variables):
        self.wrapped_optimizer.build(variables)
        super().build(variables)
        paths = set(self.variable_paths)
        self._multipliers = [
            self.multiplier if variable.path in paths else 1.0 for variable in variables
        ]

    @property
    def variables(self):
        return self._variables[:] + self.wrapped_optimizer.variables

    def update_step(self, gradient, variable, learning_rate):
        factor = self._multipliers[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, factor)
        inner = self.wrapped_optimizer
        if inner.weight_decay and uses_weight_decay(inner, variable):
            # Decoupled decay (Keras' own `weight_decay`) at this variable's rate.
            rate = keras.ops.cast(learning_rate, variable.dtype)
            decay = keras.ops.cast(inner.weight_decay, variable.dtype)
            self.assign_sub(variable, variable * decay * rate)
        inner.update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.wrapped_optimizer),
            "multiplier": self.multiplier,
            "variable_paths": list(self.variable_paths),
            **{key: getattr(self, key) for key in _AVERAGING},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)


def _check_optimizer(optimizer):
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            f"`optimizer` must be a keras.optimizers.Optimizer; received {optimizer!r}."
        )
    if optimizer.built:
        raise ValueError(
            f"`optimizer` {optimizer.name!r} is already built; pass a new optimizer "
            "(compile the model with the wrapped one)."
        )
    for setting in _UNSUPPORTED:
        if getattr(optimizer, setting, None):
            raise ValueError(
                f"`optimizer` with {setting}={getattr(optimizer, setting)!r} cannot be "
                f"wrapped by LearningRateMultiplier; allowed: {setting} unset."
            )


def _averaging_settings(optimizer, settings, requested):
    """The wrapper's `use_ema`, `ema_momentum`, `ema_overwrite_frequency`:
    `optimizer`'s, which `requested` may repeat but not contradict."""
    averaging = {key: settings[key] for key in _AVERAGING}
    clashes = {
        key: requested[key] for key in _AVERAGING if key in requested and requested[key] != averaging[key]
    }
    if clashes:
        raise ValueError(
            f"LearningRateMultiplier takes the weight averaging of `optimizer` {optimizer.name!r} "
            f"({averaging}); received different settings {clashes}."
        )
    return averaging


def _without_averaging(optimizer, settings):
    """A new `optimizer` (unbuilt) with the same settings but `use_ema=False`:
    the wrapper averages the weights instead."""
    rebuilt = type(optimizer).from_config({**settings, "use_ema": False})
    # Exclusions from weight decay (`exclude_from_weight_decay`) are no config.
    copy_weight_decay_exclusions(optimizer, rebuilt)
    return rebuilt
