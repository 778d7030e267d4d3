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

With `--backbone NAME` (a `keras.applications` name such as
`mobilenetv3small` or `resnet50`, random weights: nothing is downloaded) and
`--image-size N` the same is measured for such a model at its own
resolution, on real photos (Caltech-101 JPEGs resized to N x N) where the
shared data is present; `--batches 1,8` sets the two batch sizes, and
`--exports limits_on` keeps to the shipped export. Each call's first run (the
cost a TF Serving warm-up request spares the first client at that batch
size) is reported beside its p50.

TensorFlow backend only (SavedModel). Commands:

    KERAS_BACKEND=tensorflow python benchmarks/serving.py
    # the limits' own cost in ms, on a model whose inference is cheap:
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --width 0.0625 \\
        --iterations 300 --iterations-32 60
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --precision mixed_bfloat16
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --smoke
    # a 224-px model on a pretrained-type backbone (random weights):
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --backbone resnet50 \
        --image-size 224 --batches 1,8 --exports limits_on --iterations 20 \
        --iterations-large 6 --threads 4 --requests 4

Writes `benchmarks/results/serving[_w<width>][_<precision>].json`, or
`serving_<backbone>_<size>px[_<precision>].json` for another backbone.
"""

import concurrent.futures
import importlib.util
import sys
import tempfile
import time

import measure
import numpy as np

EXPORTS = {
    "limits_on": {},
    "limits_off": {"max_image_pixels": None, "max_batch_size": None, "max_request_pixels": None},
    "unfolded": {"fold_batch_norm": False},
}


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--width", type=measure.positive(float), default=1.0,
                        help="width multiplier of the paper's VGG (--backbone vgg)")
    parser.add_argument("--backbone", default="vgg",
                        help="vgg (the paper's model) or a keras.applications name, e.g. "
                        "mobilenetv3small, resnet50 (random weights)")
    parser.add_argument("--image-size", type=measure.positive(int), default=32,
                        help="the model's input size in pixels (square)")
    parser.add_argument("--batches", default="1,32",
                        help="the two batch sizes measured, small then large")
    parser.add_argument("--exports", default=",".join(EXPORTS),
                        help=f"which exports to measure, of {', '.join(EXPORTS)}")
    parser.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"),
                        default="auto", help="dtype policy of the exported model (auto: what "
                        "`--precision auto` picks for inference here)")
    parser.add_argument("--iterations", type=measure.positive(int), default=30, help="at batch 1")
    parser.add_argument("--iterations-large", "--iterations-32", dest="iterations_large",
                        type=measure.positive(int), default=6, help="at the large batch")
    parser.add_argument("--warmup", type=measure.positive(int), default=3)
    parser.add_argument("--threads", type=measure.positive(int), default=8)
    parser.add_argument("--requests", type=measure.positive(int), default=10, help="per thread")
    args = parser.parse_args(argv)
    args.batches = batch_sizes(parser, args.batches)
    args.exports = measure.comma_list(parser, "--exports", args.exports, tuple(EXPORTS))
    if args.smoke:
        args.width, args.iterations, args.iterations_large, args.warmup = measure.SMOKE_WIDTH, 3, 2, 1
        args.threads, args.requests = 2, 2
    return args


def batch_sizes(parser, text):
    """`--batches`: two positive integers, small then large."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or not 0 < sizes[0] < sizes[1]:
        parser.error(f"--batches: expected two batch sizes, small then large (e.g. 1,8); "
                     f"received {text!r}")
    return sizes


def build_served_model(args):
    """The model measured: the paper's VGG at `--width`, or `--backbone`
    with random weights, at `--image-size`."""
    from keras_ltpa import build_model

    shape = (args.image_size, args.image_size, 3)
    if args.backbone == "vgg":
        return build_model(10, shape, variant="att3-concat-pc", width_multiplier=args.width)
    return build_model(10, shape, backbone=args.backbone, weights="none")


def cifar_jpegs(count):
    """`count` real CIFAR-10 test JPEGs (random encoded images without the data)."""
    import tensorflow as tf

    paths = sorted((measure.SHARED_DATA_DIR / "cifar10" / "test").glob("*/*.jpg"))[:count]
    if len(paths) == count:
        return [path.read_bytes() for path in paths]
    rng = np.random.default_rng(0)
    return [tf.io.encode_jpeg(rng.integers(0, 256, (32, 32, 3), "uint8")).numpy()
            for _ in range(count)]


def photo_jpegs(count, size):
    """`count` JPEGs of `size` x `size` pixels: Caltech-101 test photos resized
    (quality 90, as a camera or browser writes them), else smooth synthetic
    images (noise would make decoding unrealistically slow)."""
    import io

    from PIL import Image

    paths = sorted((measure.SHARED_DATA_DIR / "caltech101" / "test").glob("*/*.jpg"))
    paths = paths[:: max(1, len(paths) // count)][:count]
    images = [Image.open(path).convert("RGB") for path in paths]
    if len(images) < count:
        ramp = np.linspace(0, 255, size, dtype="float32")
        images = [Image.fromarray(np.stack([np.add.outer(ramp, ramp * i / count) / 2] * 3, -1)
                                  .astype("uint8")) for i in range(count)]
    files = []
    for image in images:
        buffer = io.BytesIO()
        image.resize((size, size), Image.BILINEAR).save(buffer, "JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def test_jpegs(args, count):
    """The `serve_bytes` inputs: CIFAR-10 files at 32 px, photos otherwise."""
    return cifar_jpegs(count) if args.image_size == 32 else photo_jpegs(count, args.image_size)


def torch_eager_steps(width, batches):
    """A worker's PyTorch eager inference of the same network at each batch size."""
    import torch
    from versus_torch import build_reference

    torch.manual_seed(0)
    network = build_reference(width=width).eval()
    steps = {}
    for batch in batches:
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
    size = args.image_size
    worker = None
    # The comparison needs [torch], and exists for the paper's network only.
    if args.backbone == "vgg" and size == 32 and importlib.util.find_spec("torch") is not None:
        worker = measure.StepWorker("serving:torch_eager_steps",
                                    {"width": args.width, "batches": args.batches},
                                    env={"KERAS_BACKEND": "torch"})
    latency, overhead, versus_torch, first_call = {}, {}, {}, {}
    for batch, iterations in zip(args.batches, (args.iterations, args.iterations_large)):
        pixels = tf.constant(rng.integers(0, 256, (batch, size, size, 3)).astype("uint8"))
        calls = serving_calls(loaded, model, pixels, tf.constant(test_jpegs(args, batch)), batch)
        if worker is not None:
            calls[f"torch_eager_b{batch}"] = worker.step(f"b{batch}")
        for label, call in calls.items():
            # The first call at this batch size (the smaller one already ran).
            first_call[label] = measure.time_steps(call, 0, 1)["warmup_seconds"] * 1e3
            measure.time_steps(call, 0, args.warmup - 1)
        times = measure.interleaved_rounds(calls, iterations)
        latency.update({label: measure.latency_summary(t) for label, t in times.items()})
        if {"limits_on", "limits_off"} <= set(loaded):
            for signature in ("serving_default", "serve_bytes"):
                on, off = (latency[f"{signature}_b{batch}_{label}"]["p50_ms"]
                           for label in ("limits_on", "limits_off"))
                overhead[f"{signature}_b{batch}"] = (on - off) / off * 100
        if worker is not None:
            versus_torch[f"b{batch}"] = measure.round_ratios(
                times, f"serving_default_b{batch}_limits_on", [f"torch_eager_b{batch}"])
    if worker is not None:
        worker.close()
    return latency, overhead, versus_torch or None, first_call


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    if not measure.needs_backend("serving.py (a SavedModel)", "tensorflow"):
        return None
    import keras
    import tensorflow as tf

    from keras_ltpa.devices import choose_precision
    from keras_ltpa.serving import export

    precision = choose_precision(args.precision, purpose="inference")
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_served_model(args)
    with tempfile.TemporaryDirectory(prefix="ltpa_serving_") as scratch:
        loaded = {label: tf.saved_model.load(export.export_saved_model(
            model, scratch, name=label, warmup_requests=False, **EXPORTS[label]))
            for label in args.exports}
        latency, overhead, versus_torch, first_call = measure_latency(loaded, model, args)
        served = loaded.get("limits_on") or next(iter(loaded.values()))
        load = threaded_load(served.signatures["serve_bytes"],
                             tf.constant(test_jpegs(args, 1)), args)

    # The floor, measured now: forward FLOPs over the best matmul rate.
    counted, n = measure.forward_flops(model), 128 if args.smoke else 2048
    flops = counted["total"]
    rates = {dtype: measure.matmul_rate(n, dtype, repeats=5) for dtype in ("float32", "bfloat16")}
    floor_ms = {dtype: flops / rate * 1e3 for dtype, rate in rates.items()}
    small, large = args.batches
    first = next(iter(loaded))
    result = {
        # Another backbone's results have their own table shape (batch sizes,
        # no width): a benchmark name of their own keeps them apart.
        "benchmark": "serving" if args.backbone == "vgg" else "serving_backbone",
        "smoke": args.smoke, "settings": {
            "model": "att3-concat-pc" if args.backbone == "vgg" else f"{args.backbone} (random weights)",
            "width_multiplier": args.width if args.backbone == "vgg" else None,
            "backbone": args.backbone, "image_size": args.image_size, "precision": precision,
            "batches": list(args.batches), "exports": list(args.exports),
            f"iterations_batch_{small}": args.iterations,
            f"iterations_batch_{large}": args.iterations_large, "warmup": args.warmup},
        "parameters": model.count_params(),
        "latency": latency, "first_call_ms": first_call, "limits_overhead_percent": overhead,
        "torch_over_savedmodel": versus_torch, "threaded_load": load,
        "floor": {"forward_gflops": flops / 1e9, "matmul_n": n, "floor_ms": floor_ms,
                  "matmul_gflops_per_second": {d: r / 1e9 for d, r in rates.items()},
                  "uncounted_layers": len(counted["uncounted"]),
                  f"savedmodel_b{small}_p50_over_float32_floor":
                      latency[f"serving_default_b{small}_{first}"]["p50_ms"] / floor_ms["float32"]},
        "target_overhead_percent": 2.0, "target_over_floor": 1.5,
        "memory": {"peak_rss_mib": measure.peak_rss_mib()}}
    if args.backbone == "vgg":
        name = "serving" + (f"_w{args.width:g}" if args.width != 1.0 and not args.smoke else "")
    else:
        name = f"serving_{args.backbone}_{args.image_size}px"
    name += f"_{precision}" if args.precision != "auto" else ""
    measure.finish(result, name, args, load_at_start)
    for key, entry in latency.items():
        print(f"{key:36s} p50 {entry['p50_ms']:9.2f} ms  p99 {entry['p99_ms']:9.2f} ms  "
              f"first call {first_call[key]:9.2f} ms")
    print(f"limits cost (%): {overhead}\nPyTorch / SavedModel: {versus_torch}\n"
          f"batch-{small} p50 / float32 floor ({floor_ms['float32']:.2f} ms): "
          f"{result['floor'][f'savedmodel_b{small}_p50_over_float32_floor']:.2f} (target <= 1.5)\n"
          f"threaded load: {load}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
