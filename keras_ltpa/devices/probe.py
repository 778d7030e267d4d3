"""`--precision auto` on CPUs, decided by measuring this machine.

Whether mixed_bfloat16 beats float32 on a CPU is not written in its flags:
under TensorFlow it trained this project's model 1.4-1.6x faster on an AMD
Zen 5 with AVX512-BF16, but at 0.58x on an Intel AVX-512 CPU without AMX.
So `probe_precision()` times both on this machine (`devices.measure`: a few
seconds of training and prediction steps of a small convolution stack,
interleaved) and keeps bfloat16 only where it is at least 10% faster.

The verdict is measured once per machine and backend and kept as a JSON file
under `probe_cache_dir()`: `$KERAS_LTPA_CACHE_DIR`, else
`$XDG_CACHE_HOME/keras_ltpa`, else `~/.cache/keras_ltpa`. Its name and
content carry `machine.probe_key()` (CPU model and flags, CPUs, backend,
framework versions), so another machine or another version measures anew.
`KERAS_LTPA_REPROBE=1` (once per process) or `force=True` measures again.
A verdict measured while more processes than CPUs competed (`busy`) is
measured again the first time the machine is found quiet.
"""

import copy
import json
import os
import pathlib
import time
import warnings

import keras

from keras_ltpa.devices import machine
from keras_ltpa.devices.measure import POLICIES
from keras_ltpa.devices.measure import PURPOSES
from keras_ltpa.devices.measure import THRESHOLD  # noqa: F401 (part of this module's API)
from keras_ltpa.devices.measure import ProbeError  # noqa: F401
from keras_ltpa.devices.measure import measure_precision
from keras_ltpa.devices.measure import timing_order  # noqa: F401
from keras_ltpa.utils.checks import check_choice
from keras_ltpa.utils.files import write_json

# A new version of the probe (another model, another rule) measures anew.
PROBE_VERSION = 2  # 2: the stack's batch norm is the model's fused one
CACHE_DIR_VARIABLE = "KERAS_LTPA_CACHE_DIR"
REPROBE_VARIABLE = "KERAS_LTPA_REPROBE"
REPROBE_VALUES = ("", "0", "1")


# Records measured or read in this process, by cache file: a forced probe
# ($KERAS_LTPA_REPROBE=1) runs once, not at every question.
_SESSION = {}


def probe_cache_dir(cache_dir=None):
    """The folder that holds the probe's verdicts.

    Args:
        cache_dir: a folder to use instead; default: `$KERAS_LTPA_CACHE_DIR`,
            else `$XDG_CACHE_HOME/keras_ltpa`, else `~/.cache/keras_ltpa`.

    Returns:
        A `pathlib.Path` (not created here).

    Example:

    >>> probe_cache_dir("/tmp/ltpa-cache").as_posix()
    '/tmp/ltpa-cache'
    """
    if cache_dir is not None:
        return pathlib.Path(cache_dir).expanduser()
    if os.environ.get(CACHE_DIR_VARIABLE):
        return pathlib.Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "keras_ltpa"


def reprobe_requested(environ=None):
    """Whether `$KERAS_LTPA_REPROBE` asks for a fresh probe (`"1"`).

    Raises:
        ValueError naming the variable unless it is unset, `""`, `"0"` or `"1"`.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(REPROBE_VARIABLE, "").strip()
    return check_choice(REPROBE_VARIABLE, value, REPROBE_VALUES) == "1"


def cache_path(backend=None, cache_dir=None):
    """Where this machine's verdict for `backend` is cached, and its key.

    Returns:
        `(path, key)`: the JSON file (named by the backend and a digest of
        the key) and `machine.probe_key(backend, PROBE_VERSION)`.
    """
    backend = backend or keras.backend.backend()
    key = machine.probe_key(backend, PROBE_VERSION)
    name = f"precision-{backend}-{machine.key_digest(key)[:16]}.json"
    return probe_cache_dir(cache_dir) / name, key


def _read(path, key):
    """The record cached at `path` if it is whole and for `key`, else None."""
    try:
        with open(path) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    verdict = record.get("verdict")
    if not isinstance(verdict, dict) or any(verdict.get(p) not in POLICIES for p in PURPOSES):
        return None
    return record


def cached_probe(backend=None, cache_dir=None):
    """This machine's cached verdict for `backend`, or None; never measures.

    Example:

    >>> import tempfile
    >>> cached_probe("tensorflow", cache_dir=tempfile.mkdtemp()) is None
    True
    """
    path, key = cache_path(backend, cache_dir)
    if str(path) in _SESSION:
        return copy.deepcopy(_SESSION[str(path)])
    record = _read(path, key)
    return None if record is None else dict(record, cache_file=str(path), cached=True)


def probe_precision(
    backend=None, *, timer=time.perf_counter, rounds=5, steps=1, warmup=1, batch_size=16, width=32,
    force=False, cache_dir=None,
):
    """This machine's precision verdict: cached, or measured and cached.

    Args:
        backend: the Keras backend (default: the current one; measuring is
            possible for the current one only).
        timer: the clock the probe reads (tests pass a fake one).
        rounds, steps, warmup: timed rounds, steps per timed block, and
            untimed steps first.
        batch_size, width: the probe's batch and conv widths.
        force: measure even if a verdict is cached (so does
            `$KERAS_LTPA_REPROBE=1`, once per process).
        cache_dir: the cache folder (default: `probe_cache_dir()`).

    Returns:
        The record: `verdict` and `ratio` per purpose (`"training"`,
        `"inference"`; ratio = bfloat16 images/s over float32's),
        `threshold`, `seconds_per_step`, `rounds_seconds`, `settings`,
        `key` (`machine.probe_key`), `date`, `wall_seconds`,
        `load_average`, `busy`, `cache_file` and `cached` (read from the
        cache).

    Example:

    >>> record = probe_precision()  # doctest: +SKIP
    >>> record["verdict"]["training"], record["ratio"]["training"]  # doctest: +SKIP
    ('mixed_bfloat16', 1.43)
    """
    reprobe = reprobe_requested()
    backend = backend or keras.backend.backend()
    path, key = cache_path(backend, cache_dir)
    if not force and str(path) in _SESSION:
        return copy.deepcopy(_SESSION[str(path)])
    if not force and not reprobe:
        record = cached_probe(backend, cache_dir)
        # A verdict measured on a busy machine stands until it is quiet.
        if record is not None and not (record.get("busy") and not machine.busy()):
            _SESSION[str(path)] = record
            return copy.deepcopy(record)
    if backend != keras.backend.backend():
        raise ValueError(
            f"`backend` must be the current Keras backend ({keras.backend.backend()!r}) to measure; "
            f"received backend={backend!r}, which has no cached verdict at {path}."
        )
    record = measure_precision(
        timer=timer, rounds=rounds, steps=steps, warmup=warmup, batch_size=batch_size, width=width
    )
    record["key"] = key
    try:
        write_json(path, record)
    except OSError as error:
        warnings.warn(
            f"The precision probe's verdict could not be cached at {path} ({error}); "
            f"set {CACHE_DIR_VARIABLE} to a writable folder to keep it.",
            stacklevel=2,
        )
    record = dict(record, cache_file=str(path), cached=False)
    _SESSION[str(path)] = record
    return copy.deepcopy(record)
