"""What every benchmark script shares: where it ran, timing, FLOPs, results, tables.

`environment()` (the machine, versions, timing variables, CPU kernels and
the precision choice), step timing and interleaving on a shared machine,
`StepWorker` (steps in a child process), `forward_flops()`,
`matmul_rate()`, `finish()` (the JSON file), `run_script()` and
`write_report()` (the tables of docs/benchmarks.md). Importing it imports
`keras_ltpa` first, which sets TensorFlow's oneDNN variable before Keras loads.
"""

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import keras_ltpa  # noqa: F401  (before Keras: the oneDNN default)
from keras_ltpa.devices import cpu_kernels
from keras_ltpa.devices import machine
from keras_ltpa.devices.machine import cpu_model

BENCHMARKS_DIR = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
REPO_ROOT = BENCHMARKS_DIR.parent
REPORT = REPO_ROOT / "docs" / "benchmarks.md"
SHARED_DATA_DIR = pathlib.Path(os.environ.get("KERAS_LTPA_SHARED", REPO_ROOT.parent / "shared")) / "data"
# `--smoke` runs use this width multiplier: seconds per model, numbers meaningless.
SMOKE_WIDTH = 0.0625
# Environment variables that change CPU timings; recorded with every result.
TIMING_VARIABLES = (
    "KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "XLA_FLAGS",
    "OMP_NUM_THREADS", "KMP_BLOCKTIME", "KMP_AFFINITY", "ONEDNN_MAX_CPU_ISA",
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
             "amx_bf16", "amx_tile", "amx_int8")




def _gpus():
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=20).stdout
    except (OSError, subprocess.SubprocessError):  # no NVIDIA driver
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def load_average():
    """The 1-, 5- and 15-minute load averages (other work on the machine)."""
    return list(os.getloadavg())


def precision_choice():
    """What `--precision auto` picks on this machine for training and for
    inference; `precision_probe`: how it was chosen and the measured
    bfloat16 / float32 ratios, where `keras_ltpa.devices.precision` records them."""
    from keras_ltpa.devices import precision

    record = {purpose: precision.choose_precision("auto", purpose=purpose)
              for purpose in ("training", "inference")}
    if hasattr(precision, "precision_record"):
        record["precision_probe"] = precision.precision_record("auto")
    return record


def environment():
    """Where and with what a benchmark ran, as a JSON-ready dict."""
    import keras

    from keras_ltpa.devices import cpu_flags

    flags = cpu_flags()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "cpu_flags": [flag for flag in CPU_FLAGS if flag in flags], "gpus": _gpus(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform()},
        "versions": {package: importlib.metadata.version(package) for package in
                     ("keras", "tensorflow", "jax", "jaxlib", "torch")
                     if importlib.util.find_spec(package)} | {"python": platform.python_version()},
        "backend": keras.backend.backend(),
        "variables": {name: os.environ[name] for name in TIMING_VARIABLES if name in os.environ},
        "cpu_kernels": cpu_kernels.describe(),
        "precision": precision_choice(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }


def peak_rss_mib():
    """This process's peak resident memory so far, in MiB (`ru_maxrss`)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def training_model(input_size=32, width_multiplier=1.0, jit_compile="auto"):
    """The benchmarked model, att3-concat-pc with 10 classes under the current
    dtype policy, compiled as `training/fit.py` compiles it: SGD at the
    paper's rate 0.1, momentum 0.9, weight decay 5e-4 (decoupled: one
    multiply-add per weight, as fit's coupled default), a constant rate."""
    from keras_ltpa import build_model
    from keras_ltpa.train import optimizers
    from keras_ltpa.train.losses import compile_model

    model = build_model(10, (input_size, input_size, 3), variant="att3-concat-pc",
                        width_multiplier=width_multiplier)
    optimizer = optimizers.make_optimizer(1, weight_decay_mode="decoupled", decay_epochs=0)
    return compile_model(model, optimizer, jit_compile=jit_compile)


def random_batch(batch_size, input_size=32):
    """A fixed batch of raw 0..255 pixels (as the model takes them) and labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, input_size, input_size, 3))
    return images.astype("float32"), rng.integers(0, 10, (batch_size,)).astype("int32")


def time_steps(step, steps, warmup=1):
    """Calls `step()` (it must block until its result is ready) `warmup`
    times untimed (tracing, compilation), then `steps` times timed: returns
    `warmup_seconds`, `step_seconds`, `median_seconds` and `best_seconds`."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - start
    times = list(interleaved_rounds({"step": step}, steps)["step"])
    return {"warmup_seconds": warmup_seconds, "step_seconds": times,
            "median_seconds": statistics.median(times) if times else None,
            "best_seconds": min(times, default=None)}


def interleaved_rounds(steps, rounds):
    """{label: [seconds of each round]}: each of `steps` ({label: call}) once
    per round, the order rotating every round. Whatever else the machine does
    during a round it does to all its calls alike, so per-round ratios
    compare fairly on a shared machine."""
    labels = list(steps)
    times = {label: [] for label in labels}
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            steps[label]()
            times[label].append(time.perf_counter() - start)
    return times


def round_ratios(times, numerator, denominators):
    """Median over rounds of `min(times[d] for d in denominators) /
    times[numerator]`: how many times faster `numerator` ran than the best
    of `denominators`, round by round."""
    return statistics.median(
        min(times[d][i] for d in denominators) / times[numerator][i]
        for i in range(len(times[numerator]))
    )


def latency_summary(seconds):
    """p50/p99 (linear interpolation)/mean/min in ms of per-call times in seconds."""
    times = [t * 1e3 for t in seconds]
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98] if len(times) > 1 else times[0]
    return {"p50_ms": statistics.median(times), "p99_ms": p99,
            "mean_ms": statistics.fmean(times), "min_ms": min(times),
            "iterations": len(times), "times_ms": times}


def _serve_steps(connection, builder, kwargs):
    """A `StepWorker`'s process: build the steps, then run one per request."""
    sys.path.insert(0, str(BENCHMARKS_DIR))
    module_name, function_name = builder.split(":")
    steps, info = getattr(importlib.import_module(module_name), function_name)(**kwargs)
    connection.send((list(steps), info))
    while (label := connection.recv()) is not None:
        steps[label]()
        connection.send(True)
    connection.send(peak_rss_mib())


class StepWorker:
    """Steps built and run in a child process of their own, on request.

    Two frameworks in one process slow each other down (each one's thread
    pool spins on after its work, on the cores the other needs), so each
    gets a worker while the parent interleaves their steps. `builder` is
    `"module:function"` of `benchmarks/`, returning `(steps, info)`:
    {label: call} and a JSON-ready dict; `env` is set for the child (e.g.
    `KERAS_BACKEND`). A request costs a pipe round trip on top of the step.
    """

    def __init__(self, builder, kwargs=None, env=None):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_steps, args=(child, builder, kwargs or {}), daemon=True
        )
        saved = {name: os.environ.get(name) for name in env or {}}
        os.environ.update(env or {})  # a spawned child starts with this environment
        try:
            self._process.start()
        finally:
            for name, value in saved.items():
                os.environ.pop(name) if value is None else os.environ.update({name: value})
        child.close()  # the child's end lives in the child only: its exit ends recv()
        try:
            self.labels, self.info = self._connection.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the {builder} worker exited with code "
                               f"{self._process.exitcode} (its error is above)") from None

    def step(self, label):
        """A call without arguments that runs `label` in the child and waits."""
        def run():
            self._connection.send(label)
            self._connection.recv()
        return run

    def close(self):
        """Stops the child; returns its peak resident memory in MiB."""
        self._connection.send(None)
        peak = self._connection.recv()
        self._process.join(timeout=60)
        return peak


def matmul_rate(n, dtype, repeats):
    """Best FLOP/s of `repeats` (n, n) @ (n, n) matmuls in `dtype` through
    the current backend: what the CPU's vector units deliver."""
    import keras

    a = keras.random.normal((n, n), dtype=dtype, seed=0)
    # A small slice to NumPy waits for the product without timing a full copy.
    timing = time_steps(lambda: keras.ops.convert_to_numpy(keras.ops.matmul(a, a)[0, :8]),
                        steps=repeats, warmup=1)
    return 2 * n**3 / timing["best_seconds"]


def _layer_flops(layer):
    """(matmul, elementwise) FLOPs per image of one layer, or None if unknown."""
    kind = type(layer).__name__
    output = layer.output  # a list for AttentionPool: (pooled, attention)
    out = math.prod(output.shape[1:]) if hasattr(output, "shape") else 0
    if kind == "Conv2D":
        positions = math.prod(layer.output.shape[1:3])
        return 2 * positions * math.prod(layer.kernel.shape), out if layer.use_bias else 0
    if kind == "Dense":
        return 2 * math.prod(layer.kernel.shape), 0
    if kind == "LinearProjector":
        return 2 * out * layer.kernel.shape[0], 0
    if kind in ("CompatibilityScore", "AttentionPool"):
        local = layer.input[0].shape  # (N, H, W, C) local features
        if kind == "CompatibilityScore":  # pc: l + g, then a dot with u; dp: a dot with g
            return 2 * math.prod(local[1:]), math.prod(local[1:]) if layer.mode == "pc" else 0
        # The weighted sum; max, subtract, exp, sum and divide over the scores.
        return 2 * math.prod(local[1:]), 5 * math.prod(local[1:3])
    if kind in ("BatchNormalization", "Rescaling"):
        return 0, 2 * out
    if kind in ("ReLU", "Activation", "Add"):
        return 0, out
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return 0, (math.prod(layer.pool_size) - 1) * out
    if kind == "ProbabilityAverage":
        return 0, 4 * len(layer.input) * out
    if kind == "GlobalAveragePooling2D":
        return 0, math.prod(layer.input.shape[1:])
    if kind in ("InputLayer", "Flatten", "Concatenate", "Dropout", "Reshape"):
        return 0, 0
    return None


def forward_flops(model, batch_size=1):
    """FLOPs of one forward pass from the layer shapes (a multiply-add is 2):
    `matmul` (convolutions, dense, projector, scores, pooling: what a matmul
    unit runs), `elementwise` (batch norm, ReLU, pooling, softmax, ...),
    `total` for `batch_size` images; `per_layer` {name: FLOPs per image} and
    `uncounted` layers. Nested functional models are walked."""
    from keras_ltpa.utils.keras_internals import is_functional

    per_layer, matmul, elementwise, uncounted = {}, 0, 0, []
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if is_functional(layer):
            pending[:0] = layer.layers
            continue
        counted = _layer_flops(layer)
        if counted is None:
            uncounted.append(layer.name)
        elif sum(counted):
            per_layer[layer.name] = sum(counted)
            matmul, elementwise = matmul + counted[0], elementwise + counted[1]
    return {"matmul": matmul * batch_size, "elementwise": elementwise * batch_size,
            "total": (matmul + elementwise) * batch_size, "per_layer": per_layer,
            "uncounted": uncounted}


def positive(kind):
    """An argparse type: `kind` (int or float) greater than 0."""
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, received {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def comma_list(parser, flag, text, allowed):
    """The comma-separated values of `flag`, each one of `allowed`."""
    values = [value for value in text.split(",") if value]
    unknown = [value for value in values if value not in allowed]
    if unknown or not values:
        parser.error(f"{flag} takes a comma-separated list of {', '.join(allowed)}; "
                     f"received {text!r}")
    return values


def argument_parser(doc):
    """A parser for a script with docstring `doc` (shown by `--help`), with
    the flags every script takes: `--smoke` and `--output-dir`."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0],
                                     epilog=doc.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help=f"a tiny run on a width-{SMOKE_WIDTH} model, to check the script "
                        "runs (numbers meaningless; the result file is marked `smoke`)")
    parser.add_argument("--output-dir", default=str(RESULTS_DIR),
                        help="where the JSON result goes (default: benchmarks/results)")
    return parser


def needs_backend(script, *backends):
    """True under one of `backends`; otherwise says why `script` stops."""
    import keras

    if keras.backend.backend() in backends:
        return True
    print(f"{script} needs KERAS_BACKEND={' or '.join(backends)} "
          f"(running under {keras.backend.backend()}).", file=sys.stderr)
    return False


def cpu_tag(cpu_model=None, flags=None):
    """A short file-name tag for this CPU (or `cpu_model` and `flags`): its
    model string's first words and its ISA class (two Xeons named alike
    differ by AMX, for one)."""
    cpu_model = machine.cpu_model() if cpu_model is None else cpu_model
    words = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", cpu_model).split()
    return "-".join(words[:3] + [machine.isa_class(flags)]).lower()


def finish(result, name, args, load_at_start):
    """Adds the load average and `environment()` to `result`, writes it as
    `<args.output_dir>/<name>[_smoke].json` and prints `wrote PATH` (what
    `run_script` reads). Returns `result`."""
    from keras_ltpa.utils.files import write_json

    result["load_average"] = {"start": load_at_start, "end": load_average()}
    result["environment"] = environment()
    path = pathlib.Path(args.output_dir) / f"{name}{'_smoke' if args.smoke else ''}.json"
    write_json(path, result, sort_keys=False)  # temp file, then rename
    print(f"wrote {path}")
    return result


def run_script(script, arguments, backend, timeout=None, env=None):
    """Runs `benchmarks/<script>` in a fresh process under `backend` (its own
    backend, dtype policy and peak memory), `env` added to the environment.
    Returns the result it wrote, or `error`, `output` and `command`."""
    command = [sys.executable, str(BENCHMARKS_DIR / script)] + [str(a) for a in arguments]
    env = dict(os.environ, **(env or {}), KERAS_BACKEND=backend)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "command": command}
    written = [line[6:].strip() for line in done.stdout.splitlines() if line.startswith("wrote ")]
    if done.returncode != 0 or not written:
        return {"error": f"exit code {done.returncode}", "command": command,
                "output": (done.stdout + done.stderr)[-2000:]}
    return json.loads(pathlib.Path(written[-1]).read_text())


# The tables: Markdown from the JSON files, between these markers of REPORT.
BEGIN = "<!-- begin results: written by benchmarks/run_all.py -->"
END = "<!-- end results -->"


def _load(result):
    load = result.get("load_average", {})
    return f"{load['start'][0]:.2f} / {load['end'][0]:.2f}" if load.get("end") else ""


def machine_kind(result):
    """'CPU model, N cores (ISA flags)' of the machine a result was measured on."""
    machine = result["environment"]["machine"]
    return (f"{machine['cpu']}, {machine['cores']} cores "
            f"({', '.join(machine.get('cpu_flags', [])) or 'no AVX2'})")


def versus_torch_rows(r):
    s, auto = r["settings"], r["environment"].get("precision", {})
    for mode in ("train", "inference"):
        entry = r.get(mode) or {"images_per_second": {}}
        rates = entry["images_per_second"]
        for label in [label for label in rates if label.startswith("keras")]:
            onednn = (r["workers"][label].get("cpu_kernels") or {}).get("tensorflow_onednn")
            chosen = auto.get("training" if mode == "train" else "inference")
            notes = [label.split(" ", 1)[1]] + ["auto"] * label.endswith(f" {chosen}")
            notes += [f"oneDNN {'on' if onednn else 'off'}"] * ("tensorflow" in label)
            ratio = entry.get("ratios_to_torch_best") or {label: entry["ratio_to_torch_best"]}
            yield (machine_kind(r), f"{s['width_multiplier']:g}", s["batch_size"],
                   s.get("image_size", 32), mode, f"{rates[label]:.4g} ({', '.join(notes)})",
                   f"{rates[entry['torch_best']]:.4g} ({entry['torch_best'].split(' ', 1)[1]})",
                   f"{ratio[label]:.3f} (target {r['targets'][mode]})", _load(r))


def serving_rows(r):
    calls = {}  # {call: {batch: cell}}
    for key, entry in r["latency"].items():
        batch = re.search(r"_b(\d+)", key).group(1)
        calls.setdefault(re.sub(r"_b\d+", "", key), {})[batch] = (
            f"{entry['p50_ms']:.4g} / {entry['p99_ms']:.4g}")
    for key, percent in r["limits_overhead_percent"].items():
        signature, batch = key.rsplit("_b", 1)
        calls.setdefault(f"{signature}: the limits' cost", {})[batch] = f"{percent:+.2f}%"
    for batch, ratio in (r.get("torch_over_savedmodel") or {}).items():
        calls.setdefault("PyTorch eager / SavedModel (per-round median)", {})[batch[1:]] = f"{ratio:.2f}"
    if r.get("floor"):
        calls["SavedModel p50 / float32 floor (target 1.5)"] = {
            "1": f"{r['floor']['savedmodel_b1_p50_over_float32_floor']:.2f}"}
    load = r["threaded_load"]
    calls[f"serve_bytes, {load['threads']} threads: img/s (p50 ms)"] = {
        "1": f"{load['images_per_second']:.4g} ({load['request_p50_ms']:.4g})"}
    s = r["settings"]
    for call, cells in calls.items():
        yield (f"{s['width_multiplier']:g}", s.get("precision", "float32"), call,
               cells.get("1", "-"), cells.get("32", "-"), _load(r))


def profile_rows(r):
    s = r["settings"]
    for mode in ("train", "inference"):
        entry = r[mode]
        yield (machine_kind(r), s["precision"], s["batch_size"], mode, "(wall time of a step)",
               entry["wall_ms_per_step"], f"load {_load(r)}")
        for row in entry["by_op_type"]["rows"][:8]:
            yield machine_kind(r), s["precision"], s["batch_size"], mode, row["name"], \
                row["ms_per_step"], f"{row['share']:.1%}"


def profile_jax_rows(r):
    ratios = {"Keras step / pure-JAX step": r["keras_over_pure_jax"],
              "block-2 conv fwd+bwd, JAX / TensorFlow": r.get("conv_jax_over_tensorflow")}
    for part, value in list(r["median_ms"].items()) + list(ratios.items()):
        if value is not None:
            yield machine_kind(r), r["settings"]["batch_size"], part, f"{value:.4g}"


def gpu_rows(r):
    for framework in ("keras", "torch"):
        for precision, entry in r[framework].items():
            yield (", ".join(r["environment"]["machine"]["gpus"]) or "-",
                   r["settings"]["batch_size"], f"{framework} {precision}",
                   f"{entry['train']['images_per_second']:.4g}",
                   f"{entry['inference']['images_per_second']:.4g}")


SECTIONS = (  # (title, benchmark, rows(result), header)
    ("Against the PyTorch reference (versus_torch.py)", "versus_torch", versus_torch_rows,
     ("machine", "width", "batch", "input", "step", "Keras img/s", "PyTorch best img/s",
      "ratio", "load 1-min start / end")),
    ("Serving: the SavedModel's latency and load (serving.py)", "serving", serving_rows,
     ("width", "precision", "call", "batch 1: p50 / p99 ms", "batch 32: p50 / p99 ms",
      "load 1-min start / end")),
    ("Profile: where a TensorFlow step's time goes (profile_steps.py)", "profile",
     profile_rows, ("machine", "precision", "batch", "step", "op type", "ms/step", "share")),
    ("Profile: where a JAX step's time goes (profile_steps.py)", "profile_jax",
     profile_jax_rows, ("machine", "batch", "part", "median ms (or ratio)")),
    ("GPU (gpu.py)", "gpu", gpu_rows,
     ("GPU", "batch", "framework, precision", "train img/s", "inference img/s")),
)


def write_report(results_dir=RESULTS_DIR, report=None):
    """Rebuilds the tables between `BEGIN` and `END` of `report` (default
    docs/benchmarks.md) from the results in `results_dir` (smoke runs left out)."""
    results = [json.loads(path.read_text()) for path in sorted(pathlib.Path(results_dir).glob("*.json"))]
    body = []
    for title, benchmark, rows, header in SECTIONS:
        table = [row for r in results if r.get("benchmark") == benchmark and not r.get("smoke")
                 for row in rows(r)]
        if table:
            lines = [header, ("---",) * len(header)] + table
            body.append(f"### {title}\n\n" + "\n".join(
                "| " + " | ".join(str(cell) for cell in line) + " |" for line in lines))
    report = pathlib.Path(report or REPORT)
    text = report.read_text() if report.exists() else ""
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    report.write_text(f"{head}{BEGIN}\n\n" + "\n\n".join(body) + f"\n\n{END}{rest.split(END, 1)[1]}")
    print(f"wrote {report}")
