"""The paper's optimiser (SGD with coupled weight decay, step schedule) and the budget recipe.

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

Recipes: `"paper"` is the above. `"budget"` is for a short, fixed epoch
budget (tens of epochs, not 300): the same SGD, a linear warm-up into a
cosine decay to zero over the run's epochs, and label smoothing 0.1. It was
chosen by short runs at small width (`benchmarks/recipes.py`, results in
`benchmarks/results/recipes.json` and the README).
"""

import keras

from keras_ltpa.utils.checks import check_choice
from keras_ltpa.utils.keras_internals import uses_weight_decay

PAPER_LEARNING_RATE = 0.1
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 5e-4
PAPER_BATCH_SIZE = 128
PAPER_LR_DECAY_EPOCHS = 25
PAPER_LR_DECAY_FACTOR = 0.5
PAPER_EPOCHS = 300

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
LR_SCHEDULES = ("step", "cosine")

# What `--recipe` sets when the flags it covers are not given.
RECIPES = {
    "paper": {"lr_schedule": "step", "warmup_epochs": 0, "label_smoothing": 0.0},
    "budget": {"lr_schedule": "cosine", "warmup_epochs": 2, "label_smoothing": 0.1},
}


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
        if self.l2_weight_decay and uses_weight_decay(self, variable):
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
    *,
    schedule="step",
    epochs=None,
    warmup_epochs=0,
):
    """The learning rate over optimizer steps, saved with the model.

    `"step"` is the paper's: `learning_rate * decay_factor ** (epoch //
    decay_epochs)`, a staircase `ExponentialDecay`. `"cosine"` rises
    linearly from 0 to `learning_rate` over `warmup_epochs`, then follows a
    cosine to 0 at the end of `epochs` (`keras.optimizers.schedules.
    CosineDecay` with a warm-up). Both count optimizer steps, so they follow
    the restored step count on resume.

    Args:
        steps_per_epoch: optimizer steps in one epoch.
        learning_rate: the initial (step) or peak (cosine) rate; paper: 0.1.
        decay_epochs: epochs between two decays (paper: 25); 0 = constant.
            Step schedule only.
        decay_factor: the multiplier at each decay (paper: 0.5). Step only.
        schedule: `"step"` or `"cosine"`.
        epochs: the run's length in epochs (cosine only).
        warmup_epochs: epochs of linear warm-up (cosine only), < `epochs`.

    Returns:
        A `LearningRateSchedule`, or the float `learning_rate` when constant.

    Example:
    >>> schedule = learning_rate_schedule(steps_per_epoch=391)
    >>> round(float(schedule(25 * 391)), 6)
    0.05
    >>> cosine = learning_rate_schedule(10, 0.1, schedule="cosine", epochs=20, warmup_epochs=2)
    >>> round(float(cosine(20)), 6), round(float(cosine(110)), 6)
    (0.1, 0.05)
    """
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(
            f"`steps_per_epoch` must be a positive int; received {steps_per_epoch!r}."
        )
    check_choice("schedule", schedule, LR_SCHEDULES)
    if schedule == "cosine":
        return _cosine_schedule(steps_per_epoch, learning_rate, epochs, warmup_epochs)
    if not decay_epochs or decay_factor == 1.0:
        return float(learning_rate)
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=float(learning_rate),
        decay_steps=int(decay_epochs) * steps_per_epoch,
        decay_rate=float(decay_factor),
        staircase=True,
    )


def check_warmup(epochs, warmup_epochs):
    """Raises ValueError unless the cosine schedule can run: `epochs` a
    positive int and `0 <= warmup_epochs < epochs`."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"The cosine schedule needs `epochs`, a positive int; received {epochs!r}."
        )
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(
            f"`warmup_epochs` must be >= 0 and < epochs ({epochs}); "
            f"received {warmup_epochs!r}."
        )


def _cosine_schedule(steps_per_epoch, learning_rate, epochs, warmup_epochs):
    """A linear warm-up over `warmup_epochs`, then a cosine to 0 at `epochs`."""
    check_warmup(epochs, warmup_epochs)
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else float(learning_rate),
        decay_steps=epochs * steps_per_epoch - warmup_steps,
        warmup_target=float(learning_rate) if warmup_steps else None,
        warmup_steps=warmup_steps,
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
    *,
    schedule="step",
    epochs=None,
    warmup_epochs=0,
    ema=False,
    ema_momentum=0.99,
):
    """SGD with momentum, weight decay and a learning-rate schedule.

    Args:
        steps_per_epoch: optimizer steps per epoch (for the schedule).
        learning_rate, momentum, weight_decay: the paper's 0.1, 0.9, 5e-4.
        weight_decay_mode: `"coupled"` (L2 in the gradient, PyTorch's and
            the paper's; `CoupledWeightDecaySGD`) or `"decoupled"`
            (`keras.optimizers.SGD(weight_decay=...)`).
        decay_epochs, decay_factor, schedule, epochs, warmup_epochs: see
            `learning_rate_schedule`.
        ema: keep an exponential moving average of the trained weights
            (Keras' `use_ema`): after each step `average <- ema_momentum *
            average + (1 - ema_momentum) * theta` (the first step copies
            `theta`). `fit` puts the averages into the model when it ends;
            `keras.callbacks.SwapEMAWeights` validates with them.
        ema_momentum: float in (0, 1), the average's momentum per step.

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    check_choice("weight_decay_mode", weight_decay_mode, WEIGHT_DECAY_MODES)
    schedule = learning_rate_schedule(
        steps_per_epoch,
        learning_rate,
        decay_epochs,
        decay_factor,
        schedule=schedule,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
    )
    averaging = dict(use_ema=bool(ema), ema_momentum=float(ema_momentum))
    if weight_decay_mode == "coupled":
        return CoupledWeightDecaySGD(
            schedule, momentum=momentum, weight_decay=weight_decay, **averaging
        )
    return keras.optimizers.SGD(
        schedule, momentum=momentum, weight_decay=weight_decay or None, **averaging
    )
