"""oneDNN on by default for TensorFlow on x86, unless the user chose."""

import json
import os
import subprocess
import sys

import keras
import pytest

from keras_ltpa.devices import cpu_kernels as cpu_defaults


@pytest.mark.parametrize(
    "environ, machine, expected_value, expected_by",
    [
        ({}, "x86_64", "1", "keras_ltpa"),
        ({}, "AMD64", "1", "keras_ltpa"),
        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "x86_64", "0", "user"),
        ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "x86_64", "1", "user"),
        ({}, "aarch64", None, None),
    ],
)
def test_enable_onednn_respects_the_user_and_the_cpu(environ, machine, expected_value, expected_by):
    assert cpu_defaults.enable_onednn(environ, machine) == expected_by
    assert environ.get("TF_ENABLE_ONEDNN_OPTS") == expected_value


def _kernels_in_a_fresh_process(**variables):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(variables)
    code = (
        "import json, keras_ltpa, keras; keras.ops.ones(1);"
        "print(json.dumps(keras_ltpa.devices.cpu_kernels.describe()))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not cpu_defaults.is_x86(), reason="oneDNN default applies on x86 only")
def test_import_turns_onednn_on_unless_the_user_set_it():
    on = _kernels_in_a_fresh_process()
    assert on["TF_ENABLE_ONEDNN_OPTS"] == "1" and on["set_by"] == "keras_ltpa"
    off = _kernels_in_a_fresh_process(TF_ENABLE_ONEDNN_OPTS="0")
    assert off["TF_ENABLE_ONEDNN_OPTS"] == "0" and off["set_by"] == "user"
    if keras.backend.backend() == "tensorflow":
        # TensorFlow's own answer: the kernels really are on, or off.
        assert on["tensorflow_onednn"] is True
        assert off["tensorflow_onednn"] is False
