"""What the serving limits cost, and the SavedModel under concurrent load.

The paper's model (att3-concat-pc, 32x32, random weights) is exported twice
with `keras_ltpa.export.export_saved_model`: with the default limits
(`max_image_pixels` 4096 x 4096, `max_batch_size` 64, checked in the graph
from the files' headers) and with none (`None`, `None`). Each export is
loaded once with `tf.saved_model.load`, as TF Serving does, and:

- p50/p99 latency of both signatures at batch 1 and batch 32, limits on
  against off (`serving_default`: uint8 images; `serve_bytes`: real CIFAR-10
  test JPEGs, decoded and resized in the graph). The checks should cost
  less than 2%.
- throughput under threaded load: `--threads` threads send `--requests`
  batch-1 `serve_bytes` requests each to the one loaded model (limits on),
  images/s and per-request p50/p99 latency.

TensorFlow backend only (SavedModel). Commands:

    KERAS_BACKEND=tensorflow python benchmarks/serving.py
    # the checks' own cost in ms, on a model whose inference is cheap:
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --width-multiplier 0.0625 \
        --iterations 300 --iterations-32 60
    KERAS_BACKEND=tensorflow python benchmarks/serving.py --smoke

Writes `benchmarks/results/serving.json` (`serving_w<width>.json`).
"""

import concurrent.futures
import sys
import tempfile
import time

import numpy as np

import measure


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--iterations", type=int, default=30, help="timed calls at batch 1")
    parser.add_argument("--iterations-32", type=int, default=6, help="timed calls at batch 32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="requests per thread")
    parser.add_argument(
        "--width-multiplier", type=float, default=None,
        help="a narrower model (e.g. 0.0625) makes inference cheap, so the "
        "checks' own cost shows in milliseconds (default: the full model)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.iterations, args.iterations_32, args.warmup = 2, 1, 1
        args.threads, args.requests = 2, 2
    return args


def cifar_jpegs(count):
    """`count` real CIFAR-10 test JPEGs (random encoded images without the data)."""
    paths = sorted((measure.SHARED_DATA_DIR / "cifar10" / "test").glob("*/*.jpg"))[:count]
    if len(paths) == count:
        return [path.read_bytes() for path in paths]
    import tensorflow as tf

    rng = np.random.default_rng(0)
    return [
        tf.io.encode_jpeg(rng.integers(0, 256, (32, 32, 3), "uint8")).numpy()
        for _ in range(count)
    ]


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras
    import tensorflow as tf

    if not measure.needs_tensorflow("serving.py (a SavedModel)"):
        return None
    import keras_ltpa
    from keras_ltpa import export

    keras.utils.set_random_seed(0)
    width = args.width_multiplier or measure.model_width(args)
    model = keras_ltpa.build_model(10, variant="att3-concat-pc", width_multiplier=width)
    rng = np.random.default_rng(0)
    pixels = {n: tf.constant(rng.integers(0, 256, (n, 32, 32, 3), "uint8")) for n in (1, 32)}
    files = {n: tf.constant(cifar_jpegs(n)) for n in (1, 32)}

    latency, overhead = {}, {}
    with tempfile.TemporaryDirectory(prefix="ltpa_serving_") as scratch:
        loaded = {}
        for label, limits in (
            ("limits_on", {}),
            ("limits_off", {"max_image_pixels": None, "max_batch_size": None}),
        ):
            path = export.export_saved_model(
                model, scratch, name=label, warmup_requests=False, **limits
            )
            loaded[label] = tf.saved_model.load(path)
        for signature, name, inputs in (
            ("serving_default", "images", pixels),
            ("serve_bytes", "image_bytes", files),
        ):
            for batch, iterations in ((1, args.iterations), (32, args.iterations_32)):
                p50 = {}
                # Alternate the two exports so both see the same machine load.
                for label in ("limits_off", "limits_on", "limits_off", "limits_on"):
                    function = loaded[label].signatures[signature]
                    entry = measure.latency_ms(
                        lambda f=function: f(**{name: inputs[batch]})["probabilities"].numpy(),
                        iterations,
                        args.warmup,
                    )
                    key = f"{signature}_b{batch}_{label}"
                    previous = latency.get(key)
                    if previous is None or entry["p50_ms"] < previous["p50_ms"]:
                        latency[key] = entry  # The better of two rounds.
                    p50[label] = latency[key]["p50_ms"]
                overhead[f"{signature}_b{batch}"] = round(
                    (p50["limits_on"] - p50["limits_off"]) / p50["limits_off"] * 100, 2
                )

        serve_bytes = loaded["limits_on"].signatures["serve_bytes"]
        one_file = files[1]
        serve_bytes(image_bytes=one_file)  # Warm.
        request_ms = []

        def client(_):
            for _ in range(args.requests):
                start = time.perf_counter()
                serve_bytes(image_bytes=one_file)["probabilities"].numpy()
                request_ms.append((time.perf_counter() - start) * 1e3)

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(client, range(args.threads)))
        elapsed = time.perf_counter() - start
    total = args.threads * args.requests
    load = {
        "threads": args.threads,
        "requests": total,
        "images_per_second": round(total / elapsed, 3),
        "request_p50_ms": round(measure.percentile(request_ms, 50), 3),
        "request_p99_ms": round(measure.percentile(request_ms, 99), 3),
    }
    result = {
        "benchmark": "serving",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "iterations_batch_1": args.iterations,
            "iterations_batch_32": args.iterations_32,
            "warmup": args.warmup,
        },
        "latency": latency,
        "limits_overhead_percent": overhead,
        "threaded_load": load,
        "target_overhead_percent": 2.0,
        "memory": measure.memory_record(),
    }
    name = "serving" if width == 1.0 or args.smoke else f"serving_w{width:g}"
    measure.finish(result, name, args, load_at_start)
    for key, entry in latency.items():
        print(f"{key:36s} p50 {entry['p50_ms']:8.2f} ms  p99 {entry['p99_ms']:8.2f} ms")
    for key, value in overhead.items():
        print(f"limits overhead {key:24s} {value:+.2f} %")
    print(f"threaded load: {load}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
