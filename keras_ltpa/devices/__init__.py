"""What the hardware runs fastest: CPU kernels, precision and XLA.

`cpu_kernels` turns TensorFlow's oneDNN kernels on for x86 CPUs before any
backend loads (standard library only, so importing this package first sets
it); `precision` turns `--precision` and `--jit-compile` into settings from
what this machine has, on CPUs from what `probe` measured there (`measure`
times it, `machine` keys the cached verdict). Training, serving and the
benchmarks all ask here.
"""

from keras_ltpa.devices import cpu_kernels

cpu_kernels.apply()

from keras_ltpa.devices.precision import JIT_COMPILE  # noqa: E402
from keras_ltpa.devices.precision import PRECISIONS  # noqa: E402
from keras_ltpa.devices.precision import choose_precision  # noqa: E402
from keras_ltpa.devices.precision import cpu_flags  # noqa: E402
from keras_ltpa.devices.precision import gpu_compute_capability  # noqa: E402
from keras_ltpa.devices.precision import precision_record  # noqa: E402
from keras_ltpa.devices.precision import resolve_jit_compile  # noqa: E402
from keras_ltpa.devices.probe import cached_probe  # noqa: E402
from keras_ltpa.devices.probe import probe_cache_dir  # noqa: E402
from keras_ltpa.devices.probe import probe_precision  # noqa: E402

__all__ = [
    "cpu_kernels",
    "JIT_COMPILE",
    "PRECISIONS",
    "choose_precision",
    "cpu_flags",
    "gpu_compute_capability",
    "precision_record",
    "resolve_jit_compile",
    "cached_probe",
    "probe_cache_dir",
    "probe_precision",
]
