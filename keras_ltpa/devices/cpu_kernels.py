"""The fast CPU path by default: TensorFlow's oneDNN kernels on x86.

TensorFlow turns its oneDNN (formerly MKL-DNN) kernels on by default only
on x86 CPUs with AVX-512 VNNI/BF16/FP16 or AMX; on others, such as AMD EPYC
with AVX2 only, they stay off unless `TF_ENABLE_ONEDNN_OPTS=1`, and
training the paper's model there was measured 1.3-1.6x slower without them
(README, "Performance"). The variable is read once, when TensorFlow is
imported, so `import keras_ltpa` sets it first thing (before Keras imports
TensorFlow), and so does `benchmarks/measure.py`.

A user's own setting always wins: `TF_ENABLE_ONEDNN_OPTS=0` keeps oneDNN
off. Non-x86 machines are left alone. This module imports nothing but the
standard library, so it runs before any backend is loaded.
"""

import os
import platform
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")

# Who set the variable in this process: "user" (it was in the environment),
# "keras_ltpa", or None (left unset: not x86).
_set_by = None


def is_x86(machine=None):
    """Whether `machine` (default: this one) is an x86 CPU."""
    return (machine or platform.machine()).lower() in X86_MACHINES


def enable_onednn(environ=None, machine=None):
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` on x86 unless it is set already.

    Args:
        environ: the environment to change (default: `os.environ`).
        machine: `platform.machine()`'s answer (for tests).

    Returns:
        Who set it: `"user"`, `"keras_ltpa"` or None (left unset).
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_VARIABLE in environ:
        return "user"
    if not is_x86(machine):
        return None
    environ[ONEDNN_VARIABLE] = "1"
    return "keras_ltpa"


def apply():
    """`enable_onednn()` for this process, once; remembers who set it."""
    global _set_by
    if _set_by is None:
        # Too late if TensorFlow came first: it has read the variable.
        tensorflow_first = "tensorflow" in sys.modules
        _set_by = enable_onednn()
        if tensorflow_first and _set_by == "keras_ltpa":
            _set_by = "keras_ltpa (after TensorFlow was imported: no effect)"
    return _set_by


def describe():
    """What decides CPU kernels here, for config.json and benchmark results.

    Returns:
        A dict: `TF_ENABLE_ONEDNN_OPTS` (its value or None), `set_by`
        (`"user"`, `"keras_ltpa"`, None), and `tensorflow_onednn`: whether
        TensorFlow's oneDNN kernels are on (None when TensorFlow is not
        imported in this process).
    """
    onednn = None
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.util import _pywrap_util_port

            onednn = bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):  # a TensorFlow without the query
            onednn = None
    return {
        ONEDNN_VARIABLE: os.environ.get(ONEDNN_VARIABLE),
        "set_by": _set_by if _set_by is not None else (
            "user" if ONEDNN_VARIABLE in os.environ else None
        ),
        "tensorflow_onednn": onednn,
    }
