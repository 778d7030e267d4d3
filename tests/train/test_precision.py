"""keras_ltpa.train.precision: the policy of a run, resolved once."""

import json
import types

import pytest

from keras_ltpa.train import precision as run_precision_module
from keras_ltpa.train.precision import run_precision


def _config(tmp_path, precision="auto"):
    return types.SimpleNamespace(precision=precision, output_dir=tmp_path)


def _measured(policy):
    def record(precision):
        if precision != "auto":
            return {"requested": precision, "policy": precision, "how": "explicit"}
        return {"requested": "auto", "policy": policy, "how": "measured", "ratio": 1.3}

    return record


@pytest.fixture
def bfloat16_measured(monkeypatch):
    monkeypatch.setattr(run_precision_module, "precision_record", _measured("mixed_bfloat16"))


ONE = types.SimpleNamespace(num_processes=1)
TWO = types.SimpleNamespace(num_processes=2)


def test_a_new_single_process_run_takes_the_measured_verdict(tmp_path, bfloat16_measured):
    record = run_precision(_config(tmp_path), ONE)
    assert (record["policy"], record["how"], record["ratio"]) == ("mixed_bfloat16", "measured", 1.3)


def test_a_resumed_run_keeps_the_policy_it_started_with(tmp_path, bfloat16_measured):
    (tmp_path / "config.json").write_text(json.dumps({"precision_policy": "float32"}))
    record = run_precision(_config(tmp_path), ONE)
    assert (record["policy"], record["how"]) == ("float32", "resumed run")


def test_processes_of_a_cpu_group_agree_on_float32(tmp_path, bfloat16_measured):
    record = run_precision(_config(tmp_path), TWO)
    assert (record["policy"], record["how"]) == ("float32", "multi-process CPU default")


def test_an_explicit_precision_always_wins(tmp_path, bfloat16_measured):
    (tmp_path / "config.json").write_text(json.dumps({"precision_policy": "float32"}))
    for distribution in (ONE, TWO):
        record = run_precision(_config(tmp_path, "mixed_bfloat16"), distribution)
        assert (record["policy"], record["how"]) == ("mixed_bfloat16", "explicit")
