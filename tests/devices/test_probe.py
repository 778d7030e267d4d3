"""The probe's cache: where it lives, what keys it, when it measures again.

The measurement itself is replaced by steps that do nothing, timed by a fake
clock (`test_measure.py` runs the real steps); every test has its own cache
folder (tests/devices/conftest.py), so the user's cache is never written.
"""

import json
import os

import keras
import pytest

from keras_ltpa.devices import machine
from keras_ltpa.devices import measure
from keras_ltpa.devices import probe
from tests.devices.conftest import FakeClock
from tests.devices.conftest import speeds

BACKEND = keras.backend.backend()


class Prober:
    """Runs `probe_precision` on no-op steps and counts the measurements."""

    def __init__(self, monkeypatch):
        self.measured = 0
        self.speed = speeds(1.5, 1.5)
        monkeypatch.setattr(measure, "build_probe_steps", self._steps)

    def _steps(self, *args, **kwargs):
        self.measured += 1
        self.clock = FakeClock(self.speed)
        return self.clock.wrap({label: (lambda: None) for label in self.speed})

    def __call__(self, **kwargs):
        kwargs.setdefault("timer", lambda: self.clock())
        return probe.probe_precision(rounds=3, **kwargs)


@pytest.fixture
def prober(monkeypatch):
    return Prober(monkeypatch)


def _forget_session(monkeypatch):
    """A new process: nothing measured or read yet."""
    monkeypatch.setattr(probe, "_SESSION", {})


def test_measures_once_then_reads_the_cache(prober, isolated_cache, monkeypatch):
    first = prober()
    path, key = probe.cache_path()
    assert prober.measured == 1 and first["cached"] is False and first["cache_file"] == str(path)
    assert path.parent == isolated_cache and path.name.startswith(f"precision-{BACKEND}-")
    assert os.listdir(isolated_cache) == [path.name]  # written atomically: no temporary left
    stored = json.loads(path.read_text())
    assert stored["key"] == key and stored["verdict"] == {"training": "mixed_bfloat16", "inference": "mixed_bfloat16"}
    assert stored["ratio"] == {"training": 1.5, "inference": 1.5}
    assert "cached" not in stored and "cache_file" not in stored

    assert prober()["ratio"] == first["ratio"] and prober.measured == 1  # this process: kept
    _forget_session(monkeypatch)
    again = prober()
    assert prober.measured == 1 and again["cached"] is True
    assert {k: again[k] for k in stored} == stored
    assert probe.cached_probe()["verdict"] == stored["verdict"]


def test_key_names_cpu_flags_backend_and_versions(monkeypatch):
    key = machine.probe_key(BACKEND, probe.PROBE_VERSION)
    assert key["backend"] == BACKEND and key["probe_version"] == probe.PROBE_VERSION
    assert key["cpu_model"] == machine.cpu_model() and key["cpu_flags"] == machine.flags_digest()
    assert key["versions"]["keras"] == keras.__version__
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[BACKEND]
    assert key["versions"][module] == __import__(module).__version__
    assert probe.cache_path("tensorflow")[0] != probe.cache_path("jax")[0] != probe.cache_path("torch")[0]


@pytest.mark.parametrize(
    "fact, value",
    [
        ("cpu_model", lambda: "Another CPU"),
        ("cpu_flags", lambda: {"avx2", "fma"}),
        ("cpu_count", lambda: 96),
        ("framework_versions", lambda backend: {"keras": "9.9.9"}),
    ],
)
def test_another_machine_or_version_measures_anew(prober, monkeypatch, fact, value):
    prober()
    old_path = probe.cache_path()[0]
    monkeypatch.setattr(machine, fact, value)
    _forget_session(monkeypatch)
    prober.speed = speeds(0.6, 0.6)
    record = prober()
    assert prober.measured == 2 and record["cache_file"] != str(old_path)
    assert record["verdict"]["training"] == "float32"
    assert json.loads(old_path.read_text())["verdict"]["training"] == "mixed_bfloat16"


def test_another_probe_version_measures_anew(prober, monkeypatch):
    prober()
    monkeypatch.setattr(probe, "PROBE_VERSION", probe.PROBE_VERSION + 1)
    _forget_session(monkeypatch)
    assert prober()["cached"] is False and prober.measured == 2


def test_force_measures_again_and_replaces_the_verdict(prober, monkeypatch):
    assert prober()["verdict"]["training"] == "mixed_bfloat16"
    prober.speed = speeds(0.58, 1.0)
    forced = prober(force=True)
    assert prober.measured == 2 and forced["verdict"]["training"] == "float32"
    _forget_session(monkeypatch)
    assert prober()["verdict"]["training"] == "float32" and prober.measured == 2


def test_reprobe_variable_measures_again_once_per_process(prober, monkeypatch):
    prober()
    _forget_session(monkeypatch)
    monkeypatch.setenv(probe.REPROBE_VARIABLE, "1")
    prober.speed = speeds(0.58, 0.58)
    assert prober()["verdict"]["training"] == "float32" and prober.measured == 2
    assert prober()["cached"] is False and prober.measured == 2  # not again in this process
    monkeypatch.setenv(probe.REPROBE_VARIABLE, "0")
    _forget_session(monkeypatch)
    assert prober()["cached"] is True and prober.measured == 2


def test_bad_reprobe_value_is_refused(prober, monkeypatch):
    monkeypatch.setenv(probe.REPROBE_VARIABLE, "yes")
    with pytest.raises(ValueError, match=r"`KERAS_LTPA_REPROBE` must be one of '', '0', '1'; received KERAS_LTPA_REPROBE='yes'"):
        prober()
    assert prober.measured == 0


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"verdict": {"training": "float32", "inference": "float32"}, "key": {"cpu_model": "x"}}),
        "KEY",  # the right key, a verdict that is no policy
    ],
)
def test_damaged_or_foreign_cache_file_is_measured_over(prober, content):
    path, key = probe.cache_path()
    if content == "KEY":
        content = json.dumps({"key": key, "verdict": {"training": "float64", "inference": "float32"}})
    path.parent.mkdir(parents=True)
    path.write_text(content)
    record = prober()
    assert prober.measured == 1 and record["cached"] is False
    assert json.loads(path.read_text())["verdict"]["training"] == "mixed_bfloat16"


def test_cache_folder_order(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.CACHE_DIR_VARIABLE, str(tmp_path / "chosen"))
    assert probe.probe_cache_dir(tmp_path / "argument") == tmp_path / "argument"
    assert probe.probe_cache_dir() == tmp_path / "chosen"
    monkeypatch.setenv(probe.CACHE_DIR_VARIABLE, "")
    assert probe.probe_cache_dir() == tmp_path / "xdg_cache" / "keras_ltpa"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert probe.probe_cache_dir() == tmp_path / "home" / ".cache" / "keras_ltpa"


def test_cache_dir_argument_is_used(prober, tmp_path, isolated_cache):
    record = prober(cache_dir=tmp_path / "mine")
    assert record["cache_file"].startswith(str(tmp_path / "mine"))
    assert not isolated_cache.exists()


def test_unwritable_cache_warns_and_still_answers(prober, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not be cached.*KERAS_LTPA_CACHE_DIR"):
        record = prober(cache_dir=blocker)
    assert record["verdict"]["training"] == "mixed_bfloat16" and record["cached"] is False


def test_other_backend_is_read_from_the_cache_only(prober):
    other = next(name for name in ("tensorflow", "jax", "torch") if name != BACKEND)
    with pytest.raises(ValueError, match=f"`backend` must be the current Keras backend.*received backend='{other}'"):
        prober(backend=other)
    assert prober.measured == 0
    path, key = probe.cache_path(other)
    path.parent.mkdir(parents=True)
    stored = {"key": key, "verdict": {"training": "float32", "inference": "mixed_bfloat16"},
              "ratio": {"training": 0.9, "inference": 1.3}}
    path.write_text(json.dumps(stored))
    record = prober(backend=other)
    assert record["verdict"] == stored["verdict"] and record["cached"] is True and prober.measured == 0


def test_a_verdict_from_a_busy_machine_is_measured_again_once_quiet(prober, monkeypatch):
    cpus = machine.cpu_count()
    monkeypatch.setattr(machine, "load_average", lambda: cpus + 3.0)
    prober.speed = speeds(0.9, 0.9)
    first = prober()
    assert first["busy"] is True and first["load_average"] == cpus + 3.0
    _forget_session(monkeypatch)
    assert prober()["cached"] is True and prober.measured == 1  # still busy: kept
    monkeypatch.setattr(machine, "load_average", lambda: cpus - 0.5)
    _forget_session(monkeypatch)
    prober.speed = speeds(1.4, 1.4)
    quiet = prober()
    assert prober.measured == 2 and quiet["busy"] is False and quiet["verdict"]["training"] == "mixed_bfloat16"
    monkeypatch.setattr(machine, "load_average", lambda: cpus + 3.0)
    _forget_session(monkeypatch)
    assert prober()["verdict"]["training"] == "mixed_bfloat16" and prober.measured == 2
