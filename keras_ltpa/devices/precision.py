"""What the hardware runs fastest: precision, XLA, GPU capability, CPU flags.

`choose_precision("auto")` and `resolve_jit_compile("auto")` turn the
`--precision` and `--jit-compile` flags into settings from what this
machine has: the GPU's compute capability, or the CPU's instruction set
(`/proc/cpuinfo` flags).
"""

import keras

from keras_ltpa.utils.checks import check_choice

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "on", "off")


def resolve_jit_compile(jit_compile="auto", backend=None):
    """`--jit-compile` to `compile(jit_compile=...)`.

    `"auto"`: XLA under JAX (its eager mode is far slower); under
    TensorFlow on a GPU only (on this project's 2-core CPU an XLA train step
    of the width-0.25 model took 1.5x as long as the plain graph, after a
    30-50 s compile); never under torch, where `torch.compile` takes minutes
    for this model on a CPU. `"on"`/`"off"` force it.
    """
    backend = backend or keras.backend.backend()
    if jit_compile in (True, "on"):
        return True
    if jit_compile in (False, "off"):
        return False
    check_choice("jit_compile", jit_compile, JIT_COMPILE)
    if backend == "tensorflow":
        return gpu_compute_capability(backend) is not None
    return backend == "jax"


def cpu_flags():
    """The CPU's feature flags (`avx2`, `avx512f`, `amx_bf16`, ...) from
    /proc/cpuinfo; an empty set where that file is missing."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_compute_capability(backend=None):
    """(major, minor) of the first GPU the backend sees, or None."""
    backend = backend or keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return tuple(details.get("compute_capability", (0, 0)))
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                major, minor = str(gpus[0].compute_capability).split(".")[:2]
                return int(major), int(minor)
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except Exception:  # A probe must never stop training.
        return None
    return None


def choose_precision(precision="auto", backend=None):
    """The Keras dtype policy name for `--precision`.

    `"auto"` picks the fastest this machine trains in:
    - a GPU with compute capability >= 8 (Ampere and later):
      `"mixed_bfloat16"`; 7.x (Volta/Turing): `"mixed_float16"`;
    - a CPU with AMX bfloat16 tiles (`amx_bf16` in /proc/cpuinfo) under
      the TensorFlow backend, whose oneDNN kernels use them:
      `"mixed_bfloat16"`;
    - otherwise `"float32"`. A CPU with `avx512_bf16` but no AMX is not
      enough: on this project's 2-core AVX512-BF16 CPU, bfloat16 trained
      at 0.58x (TensorFlow), 0.64x (torch) and 0.97x (JAX) the float32
      speed (`benchmarks/compare.py`).

    Args:
        precision: one of `PRECISIONS`.
        backend: the Keras backend name (default: the current one).

    Returns:
        `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    backend = backend or keras.backend.backend()
    capability = gpu_compute_capability(backend)
    if capability is not None:
        if capability >= (8, 0):
            return "mixed_bfloat16"
        if capability >= (7, 0):
            return "mixed_float16"
        return "float32"
    if backend == "tensorflow" and "amx_bf16" in cpu_flags():
        return "mixed_bfloat16"
    return "float32"
