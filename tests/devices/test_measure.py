"""The probe's measurement: real float32 and bfloat16 steps of the probe's
conv stack under the current backend, timed by a fake clock, so the verdict
follows the times given (never the machine's)."""

import random

import keras
import numpy as np
import pytest

from keras_ltpa.devices import measure
from keras_ltpa.devices import precision
from keras_ltpa.devices import probe
from tests.devices.conftest import FakeClock
from tests.devices.conftest import speeds

ROUNDS, STEPS, WARMUP = 3, 2, 1


@pytest.fixture(scope="module")
def real_steps():
    """The probe's steps, small (batch 4, width 8), built once per module."""
    return measure.build_probe_steps(batch_size=4, width=8)


def _measure_with(monkeypatch, real_steps, per_step, **kwargs):
    clock = FakeClock(per_step)
    monkeypatch.setattr(measure, "build_probe_steps", lambda *args, **kw: clock.wrap(real_steps))
    record = measure.measure_precision(timer=clock, rounds=ROUNDS, steps=STEPS, warmup=WARMUP, **kwargs)
    return record, clock


@pytest.mark.parametrize(
    "training, inference, expected",
    [
        (1.5, 2.0, ("mixed_bfloat16", "mixed_bfloat16")),  # Zen 5-like
        (0.58, 0.64, ("float32", "float32")),  # AVX-512 without AMX
        (1.05, 1.05, ("float32", "float32")),  # faster, not clearly
        (1.10, 0.9, ("mixed_bfloat16", "float32")),  # the threshold itself, and a split
        (0.8, 1.3, ("float32", "mixed_bfloat16")),
    ],
)
def test_verdict_follows_the_measured_times(monkeypatch, real_steps, training, inference, expected):
    record, clock = _measure_with(monkeypatch, real_steps, speeds(training, inference))
    assert (record["verdict"]["training"], record["verdict"]["inference"]) == expected
    assert record["ratio"]["training"] == pytest.approx(training, abs=1e-4)
    assert record["ratio"]["inference"] == pytest.approx(inference, abs=1e-4)
    assert record["seconds_per_step"]["training"]["float32"] == pytest.approx(0.2)
    assert record["seconds_per_step"]["inference"]["mixed_bfloat16"] == pytest.approx(0.05 / inference)
    assert record["rounds_seconds"]["training"]["mixed_bfloat16"] == pytest.approx([0.2 / training] * ROUNDS)
    # Warm-up first (untimed), then the interleaved blocks, two clock readings each.
    blocks = [label for label in probe.timing_order(ROUNDS) for _ in range(STEPS)]
    assert clock.ran == [label for label in real_steps for _ in range(WARMUP)] + blocks
    assert clock.readings == 2 * 4 * ROUNDS
    assert record["settings"] == dict(
        batch_size=16, width=32, input_size=32, rounds=ROUNDS, steps=STEPS, warmup=WARMUP,
        jit_compile=precision.resolve_jit_compile("auto"),
    )


def test_choice_follows_the_probe_and_flips_with_it(monkeypatch, real_steps):
    """choose_precision("auto") on a CPU takes the probe's verdict per
    purpose; a fresh probe with other times flips it."""
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda backend=None: None)
    for training, inference, expected in ((1.6, 0.9, "mixed_bfloat16"), (0.58, 1.4, "float32")):
        clock = FakeClock(speeds(training, inference))
        monkeypatch.setattr(measure, "build_probe_steps", lambda *a, clock=clock, **k: clock.wrap(real_steps))
        probe.probe_precision(timer=clock, rounds=ROUNDS, force=True)
        assert precision.choose_precision("auto") == expected
        other = "float32" if expected == "mixed_bfloat16" else "mixed_bfloat16"
        assert precision.choose_precision("auto", purpose="inference") == other
        record = precision.precision_record("auto", purpose="inference")
        assert record["how"] == "measured" and record["policy"] == other
        assert record["ratio"] == pytest.approx(inference, abs=1e-4)


def test_paired_ratio_is_the_median_over_rounds():
    seconds = {
        ("training", "float32"): [1.0, 2.0, 3.0],
        ("training", "mixed_bfloat16"): [0.9, 1.0, 3.5],  # ratios 1.111, 2, 0.857
        ("inference", "float32"): [1.0, 1.0, 1.0],
        ("inference", "mixed_bfloat16"): [1.0, 1.0, 0.5],  # ratios 1, 1, 2
    }
    summary = measure.summarize(seconds)
    assert summary["ratio"] == {"training": pytest.approx(1.1111, abs=1e-4), "inference": 1.0}
    assert summary["verdict"] == {"training": "mixed_bfloat16", "inference": "float32"}
    assert summary["seconds_per_step"]["training"] == {"float32": 2.0, "mixed_bfloat16": 1.0}
    assert measure.summarize(seconds, threshold=1.2)["verdict"]["training"] == "float32"


def test_real_run_restores_keras_state_and_runs_bfloat16(monkeypatch):
    """A real probe (one tiny round) leaves the dtype policy, the
    distribution and Python's/NumPy's random state as it found them, and its
    bfloat16 model really computes in bfloat16 with float32 variables."""
    built = []
    real_build = measure.build_probe_steps
    monkeypatch.setattr(measure, "build_probe_steps", lambda *a, **k: built.append(real_build(*a, **k)) or built[0])
    keras.config.set_dtype_policy("mixed_float16")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    record = measure.measure_precision(rounds=1, steps=1, warmup=0, batch_size=2, width=4)
    assert keras.config.dtype_policy().name == "mixed_float16"
    assert keras.distribution.distribution() is None
    assert random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    for purpose in measure.PURPOSES:
        assert all(t > 0 for t in record["seconds_per_step"][purpose].values())
        assert record["verdict"][purpose] in measure.POLICIES

    for policy, compute in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
        model = built[0]["training", policy].func.__self__
        convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert [layer.compute_dtype for layer in convolutions] == [compute] * 4
        assert {layer.kernel.dtype for layer in convolutions} == {"float32"}
        assert [layer.filters for layer in convolutions] == [4, 4, 8, 8]
        logits = built[0]["inference", policy]()
        assert logits.shape == (2, measure.NUM_CLASSES) and np.isfinite(logits).all()


def test_probe_failure_is_a_probe_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no bfloat16 kernels")

    monkeypatch.setattr(measure, "build_probe_steps", broken)
    with pytest.raises(measure.ProbeError, match="RuntimeError: no bfloat16 kernels"):
        measure.measure_precision(rounds=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rounds=0), "`rounds` must be a positive int; received rounds=0"),
        (dict(steps="2"), "`steps` must be a positive int; received steps='2'"),
        (dict(batch_size=True), "`batch_size` must be a positive int; received batch_size=True"),
        (dict(warmup=-1), "`warmup` must be an int >= 0; received warmup=-1"),
        (dict(timer=3.0), "`timer` must be callable; received timer=3.0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        measure.measure_precision(**kwargs)


def test_a_timer_that_stands_still_is_refused(monkeypatch, real_steps):
    monkeypatch.setattr(measure, "build_probe_steps", lambda *a, **k: real_steps)
    with pytest.raises(ValueError, match="`timer` must advance while steps run"):
        measure.measure_precision(timer=lambda: 5.0, rounds=1, warmup=0)
