"""The devices tests never touch the user's cache: every test gets its own
cache folder (and HOME and XDG_CACHE_HOME), and the probe's in-process
records start empty. The machine reads as quiet (load 0.5) unless a test
says otherwise, whatever else runs beside the tests."""

import pytest

from keras_ltpa.devices import machine
from keras_ltpa.devices import probe

QUIET_LOAD = 0.5


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """The probe's cache folder for this test (`$KERAS_LTPA_CACHE_DIR`)."""
    cache = tmp_path / "probe_cache"
    monkeypatch.setenv(probe.CACHE_DIR_VARIABLE, str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    monkeypatch.delenv(probe.REPROBE_VARIABLE, raising=False)
    monkeypatch.setattr(probe, "_SESSION", {})
    monkeypatch.setattr(machine, "load_average", lambda: QUIET_LOAD)
    return cache


class FakeClock:
    """A clock that advances only while probe steps run, by the seconds per
    step given for each (purpose, policy): the time the probe reads follows
    what actually ran between two readings, in whatever order it ran.

    `wrap(calls)` returns the calls that advance it; `ran` lists every
    (purpose, policy) called, warm-up included; `readings` counts calls.
    """

    def __init__(self, per_step):
        self.per_step = dict(per_step)
        self.ran = []
        self.now = 1000.0
        self.readings = 0
        self._pending = 0.0

    def wrap(self, calls):
        def timed(label, call):
            def run():
                self.ran.append(label)
                self._pending += self.per_step[label]
                return call()

            return run

        return {label: timed(label, call) for label, call in calls.items()}

    def __call__(self):
        self.readings += 1
        self.now += self._pending
        self._pending = 0.0
        return self.now


def speeds(training, inference):
    """Seconds per step with bfloat16 `training`x and `inference`x as fast
    as float32 (float32: 0.2 s a training step, 0.05 s a prediction)."""
    return {
        ("training", "float32"): 0.2,
        ("training", "mixed_bfloat16"): 0.2 / training,
        ("inference", "float32"): 0.05,
        ("inference", "mixed_bfloat16"): 0.05 / inference,
    }
