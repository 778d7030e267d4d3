"""Precision and XLA choices from the hardware: explicit always wins, GPUs
by compute capability, CPUs by the probe's measured verdict."""

import pytest

from keras_ltpa.devices import precision as devices
from keras_ltpa.devices import probe

EXPLICIT = ("float32", "mixed_bfloat16", "mixed_float16")


def _probe_record(training, inference, ratios=(1.5, 0.8)):
    return {
        "verdict": {"training": training, "inference": inference},
        "ratio": {"training": ratios[0], "inference": ratios[1]},
        "threshold": 1.1, "key": {"backend": "tensorflow"}, "cache_file": "/cache/x.json", "cached": True,
    }


@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: None)


def _no_probe(*args, **kwargs):
    raise AssertionError("the probe must not run")


def test_choose_precision_explicit_and_invalid():
    assert devices.choose_precision("float32") == "float32"
    assert devices.choose_precision("mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError, match="precision.*'float64'"):
        devices.choose_precision("float64")
    with pytest.raises(ValueError, match="`purpose` must be one of 'training', 'inference'; received purpose='eval'"):
        devices.choose_precision("auto", purpose="eval")


@pytest.mark.parametrize("explicit", EXPLICIT)
@pytest.mark.parametrize("capability", [None, (8, 0), (7, 5)])
def test_explicit_precision_always_wins(monkeypatch, explicit, capability):
    """Whatever the probe measured or the GPU is, an explicit choice stands
    and no probe runs."""
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: capability)
    monkeypatch.setattr(probe, "probe_precision", _no_probe)
    monkeypatch.setattr(probe, "cached_probe", lambda *a, **k: _probe_record("mixed_bfloat16", "float32"))
    for purpose in devices.PURPOSES:
        assert devices.choose_precision(explicit, purpose=purpose) == explicit
        record = devices.precision_record(explicit, purpose=purpose)
        assert record["policy"] == explicit and record["how"] == "explicit" and record["requested"] == explicit
        # The ratio measured on this CPU is still recorded (not on a GPU).
        expected_ratio = None if capability else {"training": 1.5, "inference": 0.8}[purpose]
        assert record["ratio"] == expected_ratio


@pytest.mark.parametrize(
    "capability, expected",
    [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"), ((7, 5), "mixed_float16"), ((6, 1), "float32")],
)
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_gpus_keep_the_compute_capability_rule(monkeypatch, capability, expected, backend):
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: capability)
    monkeypatch.setattr(probe, "probe_precision", _no_probe)
    assert devices.choose_precision("auto", backend=backend) == expected
    record = devices.precision_record("auto", backend=backend, purpose="inference")
    assert record == dict(
        requested="auto", policy=expected, purpose="inference", backend=backend, how="gpu capability",
        ratio=None, gpu_compute_capability=list(capability), probe=None,
    )


@pytest.mark.parametrize(
    "training, inference", [("mixed_bfloat16", "float32"), ("float32", "mixed_bfloat16"), ("float32", "float32")]
)
def test_cpus_follow_the_probe_per_purpose(monkeypatch, cpu, training, inference):
    monkeypatch.setattr(probe, "probe_precision", lambda *a, **k: _probe_record(training, inference))
    assert devices.choose_precision("auto") == training
    assert devices.choose_precision("auto", purpose="inference") == inference
    record = devices.precision_record("auto", backend="tensorflow")
    assert record["how"] == "measured" and record["policy"] == training and record["ratio"] == 1.5
    assert record["probe"]["verdict"] == {"training": training, "inference": inference}
    assert record["probe"]["cache_file"] == "/cache/x.json" and record["gpu_compute_capability"] is None


def test_a_failed_probe_falls_back_to_float32(monkeypatch, cpu):
    def failing(*args, **kwargs):
        raise probe.ProbeError("the precision probe failed: RuntimeError: no kernels")

    monkeypatch.setattr(probe, "probe_precision", failing)
    with pytest.warns(UserWarning, match="no kernels; --precision auto falls back to float32"):
        record = devices.precision_record("auto")
    assert record["policy"] == "float32" and record["how"] == "probe failed" and "no kernels" in record["error"]


def test_resolve_jit_compile(monkeypatch):
    assert devices.resolve_jit_compile("on") is True
    assert devices.resolve_jit_compile("off") is False
    assert devices.resolve_jit_compile("auto", backend="torch") is False
    assert devices.resolve_jit_compile("auto", backend="jax") is True
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: None)
    assert devices.resolve_jit_compile("auto", backend="tensorflow") is False
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: (8, 0))
    assert devices.resolve_jit_compile("auto", backend="tensorflow") is True
    with pytest.raises(ValueError, match="jit_compile"):
        devices.resolve_jit_compile("maybe")
