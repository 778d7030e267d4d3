"""What the hardware runs fastest: precision, XLA, GPU capability.

`choose_precision("auto")` and `resolve_jit_compile("auto")` turn the
`--precision` and `--jit-compile` flags into settings from what this
machine has: the GPU's compute capability, or, on a CPU, what the precision
probe measured there (`keras_ltpa.devices.probe`). `precision_record()` says
what was chosen and why, for config.json and benchmark results.
"""

import warnings

import keras

from keras_ltpa.devices import probe
from keras_ltpa.devices.machine import cpu_flags  # noqa: F401 (its old home)
from keras_ltpa.utils.checks import check_choice

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
PURPOSES = probe.PURPOSES
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


def _gpu_policy(capability):
    """The compute-capability rule: bfloat16 from Ampere (8.0) on, float16
    on Volta/Turing (7.x), float32 before."""
    if capability >= (8, 0):
        return "mixed_bfloat16"
    if capability >= (7, 0):
        return "mixed_float16"
    return "float32"


def precision_record(precision="auto", backend=None, *, purpose="training", cache_dir=None):
    """The dtype policy for `--precision`, with how it was chosen.

    - explicit (`"float32"`, `"mixed_bfloat16"`, `"mixed_float16"`): used
      as given, always;
    - `"auto"` on a GPU: its compute capability (>= 8.0: mixed_bfloat16;
      7.x: mixed_float16; else float32);
    - `"auto"` on a CPU: the precision probe's verdict for `purpose`
      (`probe.probe_precision`: measured once per machine, then cached);
      should the probe fail, float32 with a warning.

    Args:
        precision: one of `PRECISIONS`.
        backend: the Keras backend name (default: the current one).
        purpose: `"training"` or `"inference"` (the probe times both).
        cache_dir: the probe's cache folder (default: `probe.probe_cache_dir()`).

    Returns:
        A JSON-ready dict for config.json and benchmark results:
        `requested`, `policy`, `purpose`, `backend`, `how` (`"explicit"`,
        `"gpu capability"`, `"measured"` or `"probe failed"`), `ratio`
        (mixed_bfloat16 images/s over float32's measured on this CPU for
        `purpose`, also for an explicit choice when a verdict is cached;
        None on a GPU or when unknown), `gpu_compute_capability`, and
        `probe` (the verdicts, ratios, step times, key, date and cache
        file; None when no probe was read).

    Example:

    >>> record = precision_record("float32", purpose="inference")
    >>> record["policy"], record["how"]
    ('float32', 'explicit')
    """
    check_choice("precision", precision, PRECISIONS)
    check_choice("purpose", purpose, PURPOSES)
    backend = backend or keras.backend.backend()
    capability = gpu_compute_capability(backend)
    record = dict(
        requested=precision, policy=precision, purpose=purpose, backend=backend, how="explicit",
        ratio=None, gpu_compute_capability=None if capability is None else list(capability), probe=None,
    )
    if capability is not None:
        if precision == "auto":
            record.update(policy=_gpu_policy(capability), how="gpu capability")
        return record
    if precision == "auto":
        try:
            probed = probe.probe_precision(backend, cache_dir=cache_dir)
        except probe.ProbeError as error:
            warnings.warn(f"{error}; --precision auto falls back to float32.", stacklevel=2)
            record.update(policy="float32", how="probe failed", error=str(error))
            return record
        record.update(policy=probed["verdict"][purpose], how="measured")
    else:
        probed = probe.cached_probe(backend, cache_dir)
    if probed is not None:
        record["ratio"] = probed["ratio"][purpose]
        record["probe"] = {name: probed.get(name) for name in PROBE_FIELDS}
    return record


# What `precision_record` keeps of the probe's record.
PROBE_FIELDS = (
    "verdict", "ratio", "threshold", "seconds_per_step", "settings", "key", "date", "wall_seconds",
    "load_average", "busy", "cache_file", "cached",
)


def choose_precision(precision="auto", backend=None, *, purpose="training", cache_dir=None):
    """The Keras dtype policy name for `--precision`.

    An explicit policy is returned as given. `"auto"` picks the fastest
    this machine runs `purpose` in: on a GPU by its compute capability
    (>= 8.0: `"mixed_bfloat16"`, 7.x: `"mixed_float16"`, else float32); on
    a CPU by measurement (`keras_ltpa.devices.probe`): `"mixed_bfloat16"`
    only where it ran the probe at least 10% faster than float32. CPU flags
    alone cannot tell: with AVX512-BF16, bfloat16 trained at 1.4-1.6x the
    float32 speed on an AMD Zen 5 but at 0.58x on an Intel CPU without AMX
    (TensorFlow). `precision_record()` gives the same choice with how it
    was made and the measured ratio.

    Args:
        precision: one of `PRECISIONS`.
        backend: the Keras backend name (default: the current one).
        purpose: `"training"` or `"inference"`.
        cache_dir: the probe's cache folder (default: `probe.probe_cache_dir()`).

    Returns:
        `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`.

    Example:

    >>> choose_precision("mixed_bfloat16")
    'mixed_bfloat16'
    """
    check_choice("precision", precision, PRECISIONS)
    check_choice("purpose", purpose, PURPOSES)
    if precision != "auto":
        return precision
    return precision_record(precision, backend, purpose=purpose, cache_dir=cache_dir)["policy"]
