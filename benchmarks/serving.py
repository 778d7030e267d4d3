"""The exported SavedModel as TF Serving runs it: latency, the limits' cost, load.

The paper's model (att3-concat-pc, random weights, 32x32, `--width`) is
exported with `keras_ltpa.serving.export.export_saved_model` three ways and
loaded with `tf.saved_model.load`, as TF Serving does: `limits_on` (as
shipped: batch norm folded, at most 4096 x 4096 pixels per image and 64
images per request, checked in the graph), `limits_off` and `unfolded`. At
batch 1 and 32, in interleaved rounds (all calls see the same load):
`serving_default` (uint8 pixels) of each, `serve_bytes` (CIFAR-10 test
JPEGs, decoded and resized in the graph) of the first two, the Keras
model's `predict_on_batch` (`keras_predict`) and, where PyTorch is
installed, the same network in plain PyTorch in a worker process
(`torch_eager`: `versus_torch.build_reference`, eval, `inference_mode`).

Reported: p50/p99 of each; the limits' cost (p50 with over p50 without,
target under 2%); PyTorch over SavedModel (median per-round ratio, > 1: the
SavedModel is faster); the floor, forward FLOPs over this CPU's matmul rate
measured in the same process (target: batch-1 p50 within 1.5x of the
float32 floor); then `--threads` threads each sending `--requests` batch-1
`serve_bytes` requests to the one loaded model (images/s, p50/p99).

TensorFlow backend only (SavedModel). Commands:

    KERAS_BACKEND=tensorflow python benchmarks/serving.py
    # the limits' own cost in ms, on a model whose inference is cheap:
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --width 0.0625 \\
        --iterations 300 --iterations-32 60
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --precision mixed_bfloat16
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --smoke

Writes `benchmarks/results/serving[_w<width>][_<precision>].json`.
"""

import concurrent.futures
import importlib.util
import sys
import tempfile
import time

import measure
import numpy as np

BATCHES = (1, 32)
EXPORTS = {
    "limits_on": {},
    "limits_off": {"max_image_pixels": None, "max_batch_size": None, "max_request_pixels": None},
    "unfolded": {"fold_batch_norm": False},
}


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--width", type=measure.positive(float), default=1.0)
    parser.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"),
                        default="auto", help="dtype policy of the exported model (auto: what "
                        "`--precision auto` picks for inference here)")
    parser.add_argument("--iterations", type=measure.positive(int), default=30, help="at batch 1")
    parser.add_argument("--iterations-32", type=measure.positive(int), default=6, help="at batch 32")
    parser.add_argument("--warmup", type=measure.positive(int), default=3)
    parser.add_argument("--threads", type=measure.positive(int), default=8)
    parser.add_argument("--requests", type=measure.positive(int), default=10, help="per thread")
    args = parser.parse_args(argv)
    if args.smoke:
        args.width, args.iterations, args.iterations_32, args.warmup = measure.SMOKE_WIDTH, 3, 2, 1
        args.threads, args.requests = 2, 2
    return args


def cifar_jpegs(count):
    """`count` real CIFAR-10 test JPEGs (random encoded images without the data)."""
    import tensorflow as tf

    paths = sorted((measure.SHARED_DATA_DIR / "cifar10" / "test").glob("*/*.jpg"))[:count]
    if len(paths) == count:
        return [path.read_bytes() for path in paths]
    rng = np.random.default_rng(0)
    return [tf.io.encode_jpeg(rng.integers(0, 256, (32, 32, 3), "uint8")).numpy()
            for _ in range(count)]


def torch_eager_steps(width):
    """A worker's PyTorch eager inference of the same network at each batch size."""
    import torch
    from versus_torch import build_reference

    torch.manual_seed(0)
    network = build_reference(width=width).eval()
    steps = {}
    for batch in BATCHES:
        tensor = torch.from_numpy(
            np.random.default_rng(batch).integers(0, 256, (batch, 3, 32, 32)).astype("float32"))

        def call(tensor=tensor):
            with torch.inference_mode():
                return network(tensor).numpy()

        steps[f"b{batch}"] = call
    return steps, {"torch_threads": torch.get_num_threads()}


def serving_calls(loaded, model, pixels, jpegs, batch):
    """{label: call} of every signature of every export, and Keras' predict."""
    calls = {}
    for label, saved in loaded.items():
        for signature, name, inputs in (("serving_default", "images", pixels),
                                        ("serve_bytes", "image_bytes", jpegs)):
            if signature == "serve_bytes" and label == "unfolded":
                continue
            function = saved.signatures[signature]
            calls[f"{signature}_b{batch}_{label}"] = (
                lambda f=function, n=name, x=inputs: f(**{n: x})["probabilities"].numpy())
    floats = pixels.numpy().astype("float32")
    calls[f"keras_predict_b{batch}"] = lambda: model.predict_on_batch(floats)
    return calls


def threaded_load(serve_bytes, one_file, args):
    """Images/s and per-request latency of `--threads` concurrent clients."""
    serve_bytes(image_bytes=one_file)  # warm
    request_seconds = []

    def client(_):
        for _ in range(args.requests):
            start = time.perf_counter()
            serve_bytes(image_bytes=one_file)["probabilities"].numpy()
            request_seconds.append(time.perf_counter() - start)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(client, range(args.threads)))
    elapsed = time.perf_counter() - start
    summary = measure.latency_summary(request_seconds)
    return {"threads": args.threads, "requests": len(request_seconds),
            "images_per_second": len(request_seconds) / elapsed,
            "request_p50_ms": summary["p50_ms"], "request_p99_ms": summary["p99_ms"]}


def measure_latency(loaded, model, args):
    """Every call at each batch size, interleaved; latencies and ratios."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    worker = None
    if importlib.util.find_spec("torch") is not None:  # the comparison needs [torch]
        worker = measure.StepWorker("serving:torch_eager_steps", {"width": args.width},
                                    env={"KERAS_BACKEND": "torch"})
    latency, overhead, versus_torch = {}, {}, {}
    for batch, iterations in zip(BATCHES, (args.iterations, args.iterations_32)):
        pixels = tf.constant(rng.integers(0, 256, (batch, 32, 32, 3)).astype("uint8"))
        calls = serving_calls(loaded, model, pixels, tf.constant(cifar_jpegs(batch)), batch)
        if worker is not None:
            calls[f"torch_eager_b{batch}"] = worker.step(f"b{batch}")
        for call in calls.values():
            measure.time_steps(call, 0, args.warmup)
        times = measure.interleaved_rounds(calls, iterations)
        latency.update({label: measure.latency_summary(t) for label, t in times.items()})
        for signature in ("serving_default", "serve_bytes"):
            on, off = (latency[f"{signature}_b{batch}_{label}"]["p50_ms"]
                       for label in ("limits_on", "limits_off"))
            overhead[f"{signature}_b{batch}"] = (on - off) / off * 100
        if worker is not None:
            versus_torch[f"b{batch}"] = measure.round_ratios(
                times, f"serving_default_b{batch}_limits_on", [f"torch_eager_b{batch}"])
    if worker is not None:
        worker.close()
    return latency, overhead, versus_torch or None


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    if not measure.needs_backend("serving.py (a SavedModel)", "tensorflow"):
        return None
    import keras
    import tensorflow as tf

    from keras_ltpa import build_model
    from keras_ltpa.devices import choose_precision
    from keras_ltpa.serving import export

    precision = choose_precision(args.precision, purpose="inference")
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_model(10, variant="att3-concat-pc", width_multiplier=args.width)
    with tempfile.TemporaryDirectory(prefix="ltpa_serving_") as scratch:
        loaded = {label: tf.saved_model.load(export.export_saved_model(
            model, scratch, name=label, warmup_requests=False, **kwargs))
            for label, kwargs in EXPORTS.items()}
        latency, overhead, versus_torch = measure_latency(loaded, model, args)
        load = threaded_load(loaded["limits_on"].signatures["serve_bytes"],
                             tf.constant(cifar_jpegs(1)), args)

    # The floor, measured now: forward FLOPs over the best matmul rate.
    flops, n = measure.forward_flops(model)["total"], 128 if args.smoke else 2048
    rates = {dtype: measure.matmul_rate(n, dtype, repeats=5) for dtype in ("float32", "bfloat16")}
    floor_ms = {dtype: flops / rate * 1e3 for dtype, rate in rates.items()}
    result = {
        "benchmark": "serving", "smoke": args.smoke, "settings": {
            "model": "att3-concat-pc", "width_multiplier": args.width, "precision": precision,
            "iterations_batch_1": args.iterations, "iterations_batch_32": args.iterations_32,
            "warmup": args.warmup},
        "latency": latency, "limits_overhead_percent": overhead,
        "torch_over_savedmodel": versus_torch, "threaded_load": load,
        "floor": {"forward_gflops": flops / 1e9, "matmul_n": n, "floor_ms": floor_ms,
                  "matmul_gflops_per_second": {d: r / 1e9 for d, r in rates.items()},
                  "savedmodel_b1_p50_over_float32_floor":
                      latency["serving_default_b1_limits_on"]["p50_ms"] / floor_ms["float32"]},
        "target_overhead_percent": 2.0, "target_over_floor": 1.5,
        "memory": {"peak_rss_mib": measure.peak_rss_mib()}}
    name = "serving" + (f"_w{args.width:g}" if args.width != 1.0 and not args.smoke else "")
    name += f"_{precision}" if args.precision != "auto" else ""
    measure.finish(result, name, args, load_at_start)
    for key, entry in latency.items():
        print(f"{key:36s} p50 {entry['p50_ms']:9.2f} ms  p99 {entry['p99_ms']:9.2f} ms")
    print(f"limits cost (%): {overhead}\nPyTorch / SavedModel: {versus_torch}\n"
          f"batch-1 p50 / float32 floor ({floor_ms['float32']:.2f} ms): "
          f"{result['floor']['savedmodel_b1_p50_over_float32_floor']:.2f} (target <= 1.5)\n"
          f"threaded load: {load}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
