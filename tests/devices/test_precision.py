"""Precision and XLA choices from the hardware."""

import pytest

from keras_ltpa.devices import precision as devices


def test_choose_precision_explicit_and_invalid():
    assert devices.choose_precision("float32") == "float32"
    assert devices.choose_precision("mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError, match="precision.*'float64'"):
        devices.choose_precision("float64")


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
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda backend=None: capability)
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    assert devices.choose_precision("auto", backend=backend) == expected


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
