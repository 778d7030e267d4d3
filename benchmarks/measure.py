"""The measuring code every benchmark script shares: where it ran, timing, FLOPs.

Each script in `benchmarks/` measures one thing and writes one JSON file to
`benchmarks/results/`. This module holds only the parts they have in
common, so each script still reads top to bottom on its own:

- `environment()`: machine (CPU model, cores, GPU), versions (python, keras,
  tensorflow, jax, torch), the Keras backend, the threading/oneDNN variables
  that change CPU timings, and the load average (the machine may be shared).
- `time_steps()`: per-call wall times after warm-up calls, and their summary.
- `peak_rss_mib()`: the process's peak resident memory (`ru_maxrss`).
- `forward_flops()`: the forward pass's floating-point operations, counted
  analytically from the layer shapes of a functional Keras model.
- `write_result()`: the JSON file, written to a temporary name then renamed;
  `finish()` adds the load average and environment and writes it.
- `argument_parser()`: the flags every script takes (`--smoke`,
  `--output-dir`); `run_script()`: a script in a fresh process.
"""

import datetime
import importlib
import importlib.metadata
import importlib.util
import multiprocessing
import json
import os
import pathlib
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = pathlib.Path(
    os.environ.get("KERAS_LTPA_SHARED", REPO_ROOT.parent / "shared")
) / "data"


def _load_cpu_defaults():
    """`keras_ltpa/cpu_defaults.py` by path: importing the package would
    import Keras (and TensorFlow) before the oneDNN default is set."""
    path = REPO_ROOT / "keras_ltpa" / "cpu_defaults.py"
    spec = importlib.util.spec_from_file_location("keras_ltpa.cpu_defaults", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["keras_ltpa.cpu_defaults"] = module  # the package reuses it
    spec.loader.exec_module(module)
    return module


# Every script imports this module first: the library's CPU defaults
# (oneDNN on x86 unless the user set TF_ENABLE_ONEDNN_OPTS) apply to all.
cpu_defaults = _load_cpu_defaults()
cpu_defaults.apply()

# Environment variables that change CPU timings; recorded with every result.
TIMING_VARIABLES = (
    "KERAS_BACKEND",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS",
    "XLA_FLAGS",
    "OMP_NUM_THREADS",
    "KMP_BLOCKTIME",
    "KMP_AFFINITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
)


def _cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    """The CPU features that decide which bf16/int8 kernels can run."""
    from keras_ltpa.devices import cpu_flags

    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
              "amx_bf16", "amx_tile", "amx_int8")
    return [flag for flag in wanted if flag in flags]


def _gpus():
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average():
    """The 1-, 5- and 15-minute load averages (other work on the machine)."""
    return list(os.getloadavg())


def environment(backend=None):
    """Where and with what a benchmark ran, as a JSON-ready dict.

    Args:
        backend: what ran the model; default: the Keras backend if Keras is
            imported, else `$KERAS_BACKEND`. (Keras is not imported here: a
            script that does not use it should not pay for it.)
    """
    if backend is None:
        keras = sys.modules.get("keras")
        backend = (
            keras.backend.backend() if keras else os.environ.get("KERAS_BACKEND")
        )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "cpu_flags": _cpu_flags(),
            "gpus": _gpus(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "keras": _version("keras"),
            "tensorflow": _version("tensorflow"),
            "jax": _version("jax"),
            "jaxlib": _version("jaxlib"),
            "torch": _version("torch"),
        },
        "backend": backend,
        "variables": {
            name: os.environ[name] for name in TIMING_VARIABLES if name in os.environ
        },
        "cpu_kernels": cpu_defaults.describe(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB.

    `resource.getrusage(RUSAGE_SELF).ru_maxrss` (KiB on Linux): everything
    the process ever held at once, framework and allocator caches included.
    """
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def training_model(input_size=32, width_multiplier=1.0, jit_compile="auto"):
    """The benchmarked model: att3-concat-pc, 10 classes, compiled for training.

    Built with `keras_ltpa.build_model` under the current dtype policy and
    compiled with `keras_ltpa.losses.compile_model` (cross-entropy from
    logits, accuracy): SGD at the paper's rate 0.1, momentum 0.9 and weight
    decay 5e-4 in Keras' decoupled form, at a constant rate
    (`training/fit.py`'s default coupled form differs only in where the
    decay term enters: one multiply-add per weight either way).

    Args:
        input_size: the side of the square input.
        width_multiplier: scales every convolution's channels.
        jit_compile: `"auto"` (`training/fit.py`'s choice: XLA for JAX and
            for TensorFlow on a GPU), `"on"`/True or `"off"`/False.
    """
    from keras_ltpa import build_model
    from keras_ltpa import optimizers
    from keras_ltpa.losses import compile_model

    model = build_model(
        10,
        (input_size, input_size, 3),
        variant="att3-concat-pc",
        width_multiplier=width_multiplier,
    )
    optimizer = optimizers.make_optimizer(
        steps_per_epoch=1, weight_decay_mode="decoupled", decay_epochs=0
    )
    return compile_model(model, optimizer, jit_compile=jit_compile)


def random_batch(batch_size, input_size=32):
    """A fixed batch of raw 0..255 pixels (as the model takes them) and labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, input_size, input_size, 3))
    labels = rng.integers(0, 10, (batch_size,))
    return images.astype("float32"), labels.astype("int32")


def time_steps(step, steps, warmup=1):
    """Calls `step()` `warmup` times untimed, then `steps` times timed.

    `step` must block until its result is ready (e.g. convert the output to
    NumPy), otherwise an asynchronous backend would be timed at dispatch.

    Returns:
        A dict: `warmup_seconds` (the first calls, which include tracing and
        compilation), `step_seconds` (each timed call), `median_seconds` and
        `best_seconds`.
    """
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "warmup_seconds": round(warmup_seconds, 3),
        "step_seconds": [round(t, 5) for t in times],
        "median_seconds": statistics.median(times),
        # On a shared machine the fastest step is the least disturbed one.
        "best_seconds": min(times),
    }


def interleaved_rounds(steps, rounds):
    """Times each of `steps` ({label: call}) once per round, `rounds` times,
    rotating the order every round so that no call always follows another.

    Whatever else the machine does during a round, it does to all calls of
    that round alike, so per-round ratios compare fairly on a shared machine.

    Returns:
        {label: [seconds of each round]}.
    """
    labels = list(steps)
    times = {label: [] for label in labels}
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            steps[label]()
            times[label].append(time.perf_counter() - start)
    return times


def _serve_steps(connection, builder, kwargs, env):
    """A `StepWorker`'s process: build the steps, then run one per request."""
    os.environ.update(env or {})
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    module_name, function_name = builder.split(":")
    steps, info = getattr(importlib.import_module(module_name), function_name)(**kwargs)
    connection.send((list(steps), info))
    while True:
        label = connection.recv()
        if label is None:
            break
        steps[label]()
        connection.send(True)


class StepWorker:
    """Steps built and run in a child process of their own, on request.

    Two frameworks in one process slow each other down: each one's thread
    pool keeps spinning for a while after its work, on the cores the other
    one then needs. A worker per framework keeps them apart, while the
    parent still interleaves their steps round by round. `builder` is
    `"module:function"` (a module of `benchmarks/`) returning `(steps,
    info)`: {label: call} and a JSON-ready dict; `env` is set in the child
    before anything is imported (e.g. `KERAS_BACKEND`). A request costs a
    pipe round trip (tens of microseconds) on top of the step.
    """

    def __init__(self, builder, kwargs=None, env=None):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_steps, args=(child, builder, kwargs or {}, env), daemon=True
        )
        self._process.start()
        self.labels, self.info = self._connection.recv()

    def run(self, label):
        self._connection.send(label)
        self._connection.recv()

    def step(self, label):
        """`run(label)` as a call without arguments, for `interleaved_rounds`."""
        return lambda: self.run(label)

    def close(self):
        self._connection.send(None)
        self._process.join(timeout=60)


def round_ratios(times, numerator, denominators):
    """Median over rounds of `min(times[d] for d in denominators) /
    times[numerator]`: how many times faster `numerator` ran than the best
    of `denominators`, round by round."""
    ratios = [
        min(times[d][i] for d in denominators) / times[numerator][i]
        for i in range(len(times[numerator]))
    ]
    return statistics.median(ratios)


def latency_ms(call, iterations, warmup):
    """p50/p99/mean/min of `call()` in milliseconds (it must block)."""
    timing = time_steps(call, steps=iterations, warmup=warmup)
    times = [t * 1e3 for t in timing["step_seconds"]]
    return {
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "min_ms": round(min(times), 3),
        "iterations": iterations,
        "times_ms": [round(t, 3) for t in times],
    }


def add_rates(timing, batch_size):
    """Adds `images_per_second` (median step) and `..._best` (fastest step)."""
    timing["images_per_second"] = round(batch_size / timing["median_seconds"], 3)
    timing["images_per_second_best"] = round(batch_size / timing["best_seconds"], 3)
    return timing


def percentile(values, q):
    """The q-th percentile (0..100) of `values`, linear interpolation."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _shape(tensor):
    return tuple(tensor.shape)


def _product(values):
    result = 1
    for value in values:
        result *= value
    return result


def forward_flops(model, batch_size=1):
    """Floating-point operations of one forward pass, from the layer shapes.

    A multiply-add counts as 2. Convolutions, dense layers, the attention
    projector, compatibility scores and attention pooling are "matmul"
    FLOPs (what a bf16 matmul unit executes); batch norm, ReLU, pooling,
    rescaling and softmax are "elementwise". Nested functional models are
    walked; unknown layers count 0 and are listed.

    Args:
        model: a functional `keras.Model` with static spatial shapes.
        batch_size: images per forward pass.

    Returns:
        A dict: `matmul`, `elementwise`, `total` (FLOPs for `batch_size`
        images), `per_layer` {name: FLOPs per image} and `uncounted` names.
    """
    from keras_ltpa.keras_internals import is_functional

    matmul = {}
    elementwise = {}
    uncounted = []

    def elements(tensor):
        return _product(_shape(tensor)[1:])

    def visit(layer):
        name = layer.name
        if is_functional(layer):
            for inner in layer.layers:
                visit(inner)
            return
        kind = type(layer).__name__
        output = layer.output
        inputs = layer.input
        if kind == "InputLayer":
            return
        if kind == "Conv2D":
            kernel = _shape(layer.kernel)  # (kh, kw, cin, cout)
            positions = _product(_shape(output)[1:3])
            matmul[name] = 2 * positions * _product(kernel)
            if layer.use_bias:
                elementwise[name] = elements(output)
        elif kind == "Dense":
            matmul[name] = 2 * _product(_shape(layer.kernel))
        elif kind == "LinearProjector":
            matmul[name] = 2 * elements(output) * _shape(layer.kernel)[0]
        elif kind == "CompatibilityScore":
            local = _shape(inputs[0])
            size = _product(local[1:])
            # pc: l + g then a dot with u; dp: a dot with g.
            matmul[name] = 2 * size
            if layer.mode == "pc":
                elementwise[name] = size
        elif kind == "AttentionPool":
            local = _shape(inputs[0])
            positions = _product(local[1:3])
            matmul[name] = 2 * _product(local[1:])
            # max, subtract, exp, sum, divide over the scores.
            elementwise[name] = 5 * positions
        elif kind in ("BatchNormalization", "Rescaling"):
            elementwise[name] = 2 * elements(output)
        elif kind in ("ReLU", "Activation", "Add"):
            elementwise[name] = elements(output)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            window = _product(layer.pool_size)
            elementwise[name] = (window - 1) * elements(output)
        elif kind == "ProbabilityAverage":
            elementwise[name] = 4 * len(inputs) * elements(output)
        elif kind in (
            "Flatten", "Concatenate", "Dropout", "Reshape", "GlobalAveragePooling2D"
        ):
            if kind == "GlobalAveragePooling2D":
                elementwise[name] = elements(inputs)
        else:
            uncounted.append(name)

    for layer in model.layers:
        visit(layer)
    per_layer = {
        name: matmul.get(name, 0) + elementwise.get(name, 0)
        for name in list(dict.fromkeys(list(matmul) + list(elementwise)))
    }
    total_matmul = sum(matmul.values()) * batch_size
    total_elementwise = sum(elementwise.values()) * batch_size
    return {
        "matmul": total_matmul,
        "elementwise": total_elementwise,
        "total": total_matmul + total_elementwise,
        "per_layer": per_layer,
        "uncounted": uncounted,
    }


def write_result(name, payload, output_dir=None):
    """Writes `payload` as `<output_dir>/<name>.json` (temp file, then rename).

    Returns:
        The path written.
    """
    path = pathlib.Path(output_dir or RESULTS_DIR) / f"{name}.json"
    # Imported here: keras_ltpa imports Keras, whose backend the scripts set first.
    from keras_ltpa.files import write_json

    write_json(path, payload, sort_keys=False)  # in the order the scripts built it
    return path


def run_script(script, arguments, backend, timeout=None, env=None):
    """Runs `benchmarks/<script>` in a fresh process under `backend`.

    A fresh process per configuration keeps the backend, the dtype policy
    and the peak-memory figure of one configuration from leaking into the
    next.

    `env` adds or overrides environment variables (e.g. `XLA_FLAGS`).

    Returns:
        The result dict the script wrote (its "wrote PATH" line), or a dict
        with `error` and the tail of its output when it failed.
    """
    command = [sys.executable, str(pathlib.Path(__file__).parent / script)]
    command += [str(argument) for argument in arguments]
    env = dict(os.environ, **(env or {}), KERAS_BACKEND=backend)
    try:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "command": command}
    written = [
        line[len("wrote "):].strip()
        for line in completed.stdout.splitlines()
        if line.startswith("wrote ")
    ]
    if completed.returncode != 0 or not written:
        tail = (completed.stdout + completed.stderr)[-2000:]
        return {"error": f"exit code {completed.returncode}", "output": tail,
                "command": command}
    with open(written[-1]) as file:
        return json.load(file)


def memory_record(note=""):
    """The `memory` entry of a result: peak RSS and how it was taken."""
    return {
        "peak_rss_mib": peak_rss_mib(),
        "method": "resource.getrusage(RUSAGE_SELF).ru_maxrss" + note,
    }


def finish(result, name, args, load_at_start, backend=None):
    """Completes and writes a script's result.

    Adds the load average (at `load_at_start` and now) and `environment()`,
    writes `<args.output_dir>/<name>[_smoke].json` and prints its path on a
    line `wrote PATH` (what `run_script` reads).

    Returns:
        `result`.
    """
    result["load_average"] = {"start": load_at_start, "end": load_average()}
    result["environment"] = environment(backend)
    path = write_result(name + ("_smoke" if args.smoke else ""), result, args.output_dir)
    print(f"wrote {path}")
    return result


def needs_tensorflow(script):
    """True under the TensorFlow backend; otherwise says why `script` stops."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return True
    print(
        f"{script} needs KERAS_BACKEND=tensorflow (running under {backend}).",
        file=sys.stderr,
    )
    return False


# `--smoke` runs use this width multiplier: seconds per model, numbers meaningless.
SMOKE_WIDTH = 0.0625


def model_width(args):
    """The width multiplier a script measures: the full model, or the smoke one."""
    return SMOKE_WIDTH if args.smoke else 1.0


def argument_parser(doc):
    """An argparse parser for a script with docstring `doc`, with the flags
    every script takes: `--smoke` and `--output-dir`."""
    import argparse

    parser = argparse.ArgumentParser(
        description=doc.split("\n")[0],
        epilog=doc.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"One tiny step on a width-{SMOKE_WIDTH} model, to check the script runs "
        "(numbers meaningless; the result file gets a `smoke` mark).",
    )
    parser.add_argument(
        "--output-dir",
        default=str(RESULTS_DIR),
        help="Where the JSON result goes (default: benchmarks/results).",
    )
    return parser
