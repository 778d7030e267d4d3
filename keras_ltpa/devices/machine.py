"""What this machine is, as far as speed goes: the facts a cached precision
verdict is keyed by.

The same CPU model with other flags (a hypervisor hiding AMX), another
number of cores, another backend or framework version, or TensorFlow's
oneDNN kernels switched may run bfloat16 at another speed, so each of them
is part of `probe_key()`. Standard library only.
"""

import hashlib
import importlib.metadata
import json
import os
import platform

# The distributions whose versions key a backend's verdict (the first one
# installed of each tuple).
BACKEND_DISTRIBUTIONS = {
    "tensorflow": (("tensorflow", "tensorflow-cpu", "tf-nightly"),),
    "jax": (("jax",), ("jaxlib",)),
    "torch": (("torch",),),
}


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


def cpu_model():
    """The CPU's model name (`model name` in /proc/cpuinfo), or
    `platform.processor()` where that file is missing."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_class(flags=None):
    """The widest vector and matrix extension of the CPU, the part of its
    features that decides which precision trains fastest: 'amx' (AMX
    bfloat16 tiles), 'avx512bf16', 'avx512', 'avx2', else 'base'."""
    flags = cpu_flags() if flags is None else set(flags)
    for flag, name in (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"),
                       ("avx512f", "avx512"), ("avx2", "avx2")):
        if flag in flags:
            return name
    return "base"


def cpu_count():
    """The CPUs this process may run on (its affinity), else `os.cpu_count()`."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average():
    """The 1-minute load average, or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy(load=None):
    """Whether more runnable processes than CPUs compete (the 1-minute load
    average, or `load`, above `cpu_count()`): timings taken then are suspect."""
    load = load_average() if load is None else load
    return load is not None and load > cpu_count()


def flags_digest(flags=None):
    """A short, order-free digest of a set of CPU flags.

    Args:
        flags: an iterable of flag names (default: `cpu_flags()`).

    Returns:
        The first 16 hex digits of the SHA-256 of the sorted flags.

    Example:

    >>> flags_digest({"avx2", "fma"}) == flags_digest(["fma", "avx2"])
    True
    >>> flags_digest({"avx2"}) == flags_digest({"avx2", "amx_bf16"})
    False
    """
    flags = cpu_flags() if flags is None else flags
    return hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]


def _version(candidates):
    for name in candidates:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def framework_versions(backend):
    """`{"keras": ..., <backend's packages>: ...}`, None where not installed."""
    versions = {"keras": _version(("keras",))}
    for candidates in BACKEND_DISTRIBUTIONS.get(backend, ()):
        versions[candidates[0]] = _version(candidates)
    return versions


def probe_key(backend, version):
    """What a precision probe's verdict holds for: the machine and software.

    Args:
        backend: the Keras backend name.
        version: the probe's own version (a new probe measures anew).

    Returns:
        A JSON-ready dict: `probe_version`, `backend`, `machine`, `cpu_model`,
        `cpu_flags` (digest), `cpus`, `versions` and, under TensorFlow,
        `TF_ENABLE_ONEDNN_OPTS` (its value or None).

    Example:

    >>> key = probe_key("jax", version=1)
    >>> sorted(key["versions"])
    ['jax', 'jaxlib', 'keras']
    """
    key = {
        "probe_version": version,
        "backend": backend,
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_flags": flags_digest(),
        "cpus": cpu_count(),
        "versions": framework_versions(backend),
    }
    if backend == "tensorflow":
        key["TF_ENABLE_ONEDNN_OPTS"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return key


def key_digest(key):
    """The hex SHA-256 of a key's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
