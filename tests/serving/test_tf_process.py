"""The TensorFlow child process's answer, read back (no child is started:
the export through it is tested in test_export.py under JAX and torch)."""

import subprocess

import pytest

from keras_ltpa.serving import tf_process


def _result(returncode, stdout, stderr=""):
    return subprocess.CompletedProcess(["python"], returncode, stdout, stderr)


def test_the_path_is_the_last_json_line():
    noise = "I0000 cpu_feature_guard.cc: This TensorFlow binary is optimized\n"
    assert tf_process._reply(_result(0, noise + '{"path": "out/ltpa/1"}\n')) == "out/ltpa/1"


def test_a_refused_argument_comes_back_as_the_same_value_error():
    reply = '{"error_type": "ValueError", "message": "`top_k` must be a positive integer"}'
    with pytest.raises(ValueError, match="^`top_k` must be a positive integer$"):
        tf_process._reply(_result(1, reply))


def test_other_failures_are_runtime_errors_with_the_reason():
    reply = '{"error_type": "OSError", "message": "No space left on device"}'
    with pytest.raises(RuntimeError, match="TensorFlow backend failed: No space left on device"):
        tf_process._reply(_result(1, reply))
    # A child that died before answering: its stderr's end is the reason.
    with pytest.raises(RuntimeError, match="Segmentation fault"):
        tf_process._reply(_result(-11, "", "lots of output\nSegmentation fault"))
