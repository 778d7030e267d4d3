"""The precision probe's measurement: float32 against mixed_bfloat16 steps.

A small convolution stack (Conv3x3-BN-ReLU layers, as in the paper's VGG)
is built once per policy with the same weights and compiled as `fit` would
compile it; its training and prediction steps are timed in rounds that
interleave the two policies, after untimed warm-up steps. The ratio per
purpose is the median over rounds of float32's step time over bfloat16's;
bfloat16 is the verdict only from `THRESHOLD` on. `keras_ltpa.devices.probe`
caches the verdict per machine.
"""

import contextlib
import datetime
import functools
import itertools
import statistics
import time

import keras
import numpy as np

from keras_ltpa.backbones import batch_norm
from keras_ltpa.devices import machine
from keras_ltpa.utils.checks import is_positive_int
from keras_ltpa.utils.scopes import dtype_policy_scope
from keras_ltpa.utils.scopes import no_distribution

# mixed_bfloat16 is chosen when its images/s reach this multiple of float32's.
THRESHOLD = 1.10
POLICIES = ("float32", "mixed_bfloat16")
PURPOSES = ("training", "inference")
INPUT_SIZE = 32
NUM_CLASSES = 10


class ProbeError(RuntimeError):
    """The probe's models failed to build or run (not a bad argument)."""


def timing_order(rounds):
    """The (purpose, policy) blocks in the order the probe times them.

    Each round times training, then inference, under both policies, the
    policy that goes first alternating from round to round, so a machine
    getting busier or quieter weighs on both alike.

    Example:

    >>> timing_order(2)[:2]
    [('training', 'float32'), ('training', 'mixed_bfloat16')]
    >>> timing_order(2)[4:6]
    [('training', 'mixed_bfloat16'), ('training', 'float32')]
    """
    order = []
    for round_index in range(rounds):
        policies = POLICIES if round_index % 2 == 0 else POLICIES[::-1]
        order.extend((purpose, policy) for purpose in PURPOSES for policy in policies)
    return order


def _conv_stack(policy, width):
    """Four Conv3x3-BN-ReLU layers (a pooling halfway) and a linear head,
    like the paper's VGG blocks; seeded, so no global random state is used."""
    seeds = itertools.count()
    dtype = keras.DTypePolicy(policy)
    layers = keras.layers
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    x = layers.Rescaling(1.0 / 255, dtype=dtype)(inputs)
    for index, filters in enumerate((width, width, 2 * width, 2 * width)):
        if index == 2:
            x = layers.MaxPooling2D(dtype=dtype)(x)
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, dtype=dtype,
            kernel_initializer=keras.initializers.HeNormal(seed=next(seeds)),
        )(x)
        x = batch_norm.BatchNormalization(dtype=dtype)(x)
        x = layers.ReLU(dtype=dtype)(x)
    x = layers.GlobalAveragePooling2D(dtype=dtype)(x)
    outputs = layers.Dense(
        NUM_CLASSES, dtype=dtype, kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds))
    )(x)
    return keras.Model(inputs, outputs, name=f"precision_probe_{policy}")


@contextlib.contextmanager
def _leaving_keras_as_found():
    """Runs the probe on this process alone (no JAX distribution) and puts
    the global dtype policy and distribution back afterwards."""
    with no_distribution(), dtype_policy_scope(None):
        yield


def build_probe_steps(batch_size=16, width=32, jit_compile=None):
    """One training step and one prediction step per policy, ready to time.

    Each policy gets its own copy of the conv stack (the same weights),
    compiled as `fit` would compile it here. Builds and runs under the
    current backend; the global dtype policy is not touched.

    Args:
        batch_size: images per step.
        width: filters of the first two convolutions (the last two: twice).
        jit_compile: XLA on or off; default `resolve_jit_compile("auto")`.

    Returns:
        `{(purpose, policy): callable}` for each purpose in `PURPOSES` and
        policy in `POLICIES`; each call runs one step and waits for it.
    """
    from keras_ltpa.devices.precision import resolve_jit_compile

    if jit_compile is None:
        jit_compile = resolve_jit_compile("auto")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, INPUT_SIZE, INPUT_SIZE, 3)).astype("float32")
    labels = np.arange(batch_size) % NUM_CLASSES
    calls = {}
    for policy in POLICIES:
        model = _conv_stack(policy, width)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
            auto_scale_loss=False,
        )
        calls["training", policy] = functools.partial(model.train_on_batch, images, labels)
        calls["inference", policy] = functools.partial(model.predict_on_batch, images)
    return calls


def time_rounds(calls, *, timer=time.perf_counter, rounds=5, steps=1, warmup=1):
    """Seconds per step of each call, round by round in `timing_order`.

    Args:
        calls: `{(purpose, policy): callable}` as `build_probe_steps` gives.
        timer: a clock in seconds (called once before and once after each
            block of `steps` calls, and nowhere else).
        rounds: rounds timed.
        steps: calls per timed block.
        warmup: untimed calls of each first (compilation, caches).

    Returns:
        `{(purpose, policy): [seconds per step, one per round]}`.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    seconds = {label: [] for label in calls}
    for label in timing_order(rounds):
        start = timer()
        for _ in range(steps):
            calls[label]()
        seconds[label].append((timer() - start) / steps)
    return seconds


def summarize(seconds, threshold=THRESHOLD):
    """The verdict per purpose from the timed rounds.

    The ratio is mixed_bfloat16's images/s over float32's: the median over
    rounds of float32's step time over bfloat16's in the same round.

    Args:
        seconds: `{(purpose, policy): [seconds per step, ...]}`.
        threshold: the ratio bfloat16 must reach to be chosen.

    Returns:
        A dict: `verdict` and `ratio` (per purpose), `threshold`,
        `seconds_per_step` (median per purpose and policy).

    Example:

    >>> rounds = {("training", "float32"): [1.0, 1.2], ("training", "mixed_bfloat16"): [0.5, 0.8],
    ...           ("inference", "float32"): [1.0, 1.0], ("inference", "mixed_bfloat16"): [1.0, 0.95]}
    >>> summary = summarize(rounds)
    >>> summary["ratio"]["training"], summary["verdict"]
    (1.75, {'training': 'mixed_bfloat16', 'inference': 'float32'})
    """
    summary = {"verdict": {}, "ratio": {}, "threshold": threshold, "seconds_per_step": {}}
    for purpose in PURPOSES:
        float32, bfloat16 = seconds[purpose, "float32"], seconds[purpose, "mixed_bfloat16"]
        if min(float32 + bfloat16) <= 0:
            raise ValueError(
                "`timer` must advance while steps run; received step times "
                f"{float32 + bfloat16} s for {purpose}."
            )
        # Decided on the ratio as recorded (4 decimals), so the two agree.
        ratio = round(statistics.median(f / b for f, b in zip(float32, bfloat16)), 4)
        summary["ratio"][purpose] = ratio
        summary["verdict"][purpose] = "mixed_bfloat16" if ratio >= threshold else "float32"
        summary["seconds_per_step"][purpose] = {
            "float32": statistics.median(float32),
            "mixed_bfloat16": statistics.median(bfloat16),
        }
    return summary


def _check_counts(rounds, steps, warmup, batch_size, width):
    for name, value in (("rounds", rounds), ("steps", steps), ("batch_size", batch_size), ("width", width)):
        if not is_positive_int(value):
            raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}.")
    zero = isinstance(warmup, int) and not isinstance(warmup, bool) and warmup == 0
    if not (zero or is_positive_int(warmup)):
        raise ValueError(f"`warmup` must be an int >= 0; received warmup={warmup!r}.")


def measure_precision(
    *, timer=time.perf_counter, rounds=5, steps=1, warmup=1, batch_size=16, width=32, jit_compile=None
):
    """Runs the probe under the current backend, without the cache.

    Args: as `probe_precision` (less `backend`, `force`, `cache_dir`).

    Returns:
        `summarize()`'s dict plus `settings`, `rounds_seconds` (every
        timed block), `date` (UTC), `wall_seconds`, `load_average` and
        `busy` (more runnable processes than CPUs when it started).

    Raises:
        ProbeError: the models failed to build or run.
    """
    from keras_ltpa.devices.precision import resolve_jit_compile

    _check_counts(rounds, steps, warmup, batch_size, width)
    if not callable(timer):
        raise ValueError(f"`timer` must be callable; received timer={timer!r}.")
    if jit_compile is None:
        jit_compile = resolve_jit_compile("auto")
    started, load = time.perf_counter(), machine.load_average()
    with _leaving_keras_as_found():
        try:
            calls = build_probe_steps(batch_size, width, jit_compile)
            seconds = time_rounds(calls, timer=timer, rounds=rounds, steps=steps, warmup=warmup)
        except Exception as error:
            raise ProbeError(f"the precision probe failed: {type(error).__name__}: {error}") from error
    record = summarize(seconds)
    record["rounds_seconds"] = {
        purpose: {policy: seconds[purpose, policy] for policy in POLICIES} for purpose in PURPOSES
    }
    record["settings"] = dict(
        batch_size=batch_size, width=width, input_size=INPUT_SIZE, rounds=rounds, steps=steps, warmup=warmup,
        jit_compile=bool(jit_compile),
    )
    record["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    record["load_average"] = load
    record["busy"] = machine.busy(load)
    return record
