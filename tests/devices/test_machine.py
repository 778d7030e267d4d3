"""The machine facts a cached precision verdict is keyed by."""

import json

from keras_ltpa.devices import machine


def test_cpu_facts_read_proc_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R45 96-Core Processor\n"
        "flags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
    )
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k)
    )
    assert machine.cpu_model() == "AMD EPYC 9R45 96-Core Processor"
    assert machine.cpu_flags() == {"fpu", "avx2", "avx512f", "avx512_bf16"}


def test_cpu_facts_without_proc_cpuinfo(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr("builtins.open", missing)
    assert machine.cpu_flags() == set()
    assert isinstance(machine.cpu_model(), str) and machine.cpu_model()


def test_flags_digest_ignores_order_not_content():
    assert machine.flags_digest(["b", "a"]) == machine.flags_digest({"a", "b"})
    assert machine.flags_digest({"a"}) != machine.flags_digest({"a", "amx_bf16"})
    assert len(machine.flags_digest(set())) == 16


def test_probe_key_is_json_and_its_digest_follows_every_fact(monkeypatch):
    key = machine.probe_key("tensorflow", version=3)
    assert json.loads(json.dumps(key)) == key
    assert set(key) == {
        "probe_version", "backend", "machine", "cpu_model", "cpu_flags", "cpus", "versions",
        "TF_ENABLE_ONEDNN_OPTS",
    }
    assert "TF_ENABLE_ONEDNN_OPTS" not in machine.probe_key("torch", version=3)
    digest = machine.key_digest(key)
    assert digest == machine.key_digest(dict(reversed(list(key.items()))))
    for name, value in (("probe_version", 4), ("cpus", key["cpus"] + 1), ("TF_ENABLE_ONEDNN_OPTS", "0")):
        assert machine.key_digest(dict(key, **{name: value})) != digest
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert machine.probe_key("tensorflow", version=3)["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_framework_versions_per_backend():
    assert set(machine.framework_versions("jax")) == {"keras", "jax", "jaxlib"}
    assert set(machine.framework_versions("torch")) == {"keras", "torch"}
    assert machine.framework_versions("numpy") == {"keras": machine.framework_versions("torch")["keras"]}


def test_busy_means_more_load_than_cpus(monkeypatch):
    monkeypatch.setattr(machine, "cpu_count", lambda: 2)
    assert machine.busy(2.5) is True
    assert machine.busy(2.0) is False and machine.busy(0.1) is False
    monkeypatch.setattr(machine, "load_average", lambda: None)
    assert machine.busy() is False
    monkeypatch.setattr(machine, "load_average", lambda: 7.0)
    assert machine.busy() is True


def test_isa_class_names_the_widest_extension():
    # Flag sets of the machine kinds met: Sapphire Rapids (AMX), Zen 5, a
    # Xeon without AMX, an AVX2-only EPYC, and a CPU with none of them.
    assert machine.isa_class({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}) == "amx"
    assert machine.isa_class({"avx2", "avx512f", "avx512_bf16"}) == "avx512bf16"
    assert machine.isa_class({"avx2", "avx512f"}) == "avx512"
    assert machine.isa_class({"sse2", "avx2"}) == "avx2"
    assert machine.isa_class({"sse2"}) == "base"
