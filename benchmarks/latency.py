"""Batch-1 latency of the exported SavedModel's signatures, against Keras.

What a TF Serving client waits for, minus the network: the paper's model
(att3-concat-pc, 32x32, random weights) is exported with
`keras_ltpa.export.export_saved_model` (batch norm folded into the
convolutions, the default, and once unfolded), loaded back with
`tf.saved_model.load` and each signature called with one image:

- `serving_default` with one uint8 image,
- `serve_bytes` with one real CIFAR-10 JPEG (decode + resize in the graph),

against the Keras model's own predict step (`predict_on_batch`) on the same
image, for the logits-only model and for `attention_model` (what the
signatures compute). Latencies are p50 and p99 over `--iterations` calls
after `--warmup` calls.

The floor: `forward FLOPs / bf16 matmul rate`, with the matmul rate measured
in the same process (`flops.matmul_rate`), so the ratio is taken under the
same machine load. The target is a SavedModel p50 within 1.5x of it.

TensorFlow backend only (SavedModel). Commands:

    KERAS_BACKEND=tensorflow python benchmarks/latency.py
    KERAS_BACKEND=tensorflow python benchmarks/latency.py --precision mixed_bfloat16
    # float32 SavedModel run in bf16 by TF's oneDNN graph rewrite:
    KERAS_BACKEND=tensorflow python benchmarks/latency.py --onednn-bf16-rewrite
    KERAS_BACKEND=tensorflow python benchmarks/latency.py --smoke

Writes `benchmarks/results/latency_<precision>[_bf16rewrite].json`.
"""

import sys
import tempfile

import numpy as np

import measure
import flops


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16"),
        default="float32",
        help="Dtype policy of the Keras model that is exported.",
    )
    parser.add_argument(
        "--onednn-bf16-rewrite",
        action="store_true",
        help="Turn on TF's `auto_mixed_precision_onednn_bfloat16` graph "
        "rewrite before loading (float32 graphs then run bf16 kernels on "
        "CPUs with AVX-512 BF16 or AMX).",
    )
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--skip-unfolded", action="store_true",
                        help="Do not export and time the unfolded graph.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.iterations, args.warmup, args.skip_unfolded = 2, 1, True
    return args


def sample_jpeg():
    """One real CIFAR-10 test JPEG (or an encoded random image without data)."""
    folder = measure.SHARED_DATA_DIR / "cifar10" / "test"
    for path in sorted(folder.glob("*/*.jpg"))[:1]:
        return path.read_bytes()
    import tensorflow as tf

    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), "uint8")
    return tf.io.encode_jpeg(image).numpy()


def torch_eager_steps(width):
    """A worker's PyTorch eager inference of the same network at batch 1 and 32."""
    import torch

    from torch_reference import build_reference

    torch.manual_seed(0)
    network = build_reference(width=width).eval()
    steps = {}
    for batch in BATCHES:
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 3, 32, 32))
        tensor = torch.from_numpy(pixels.astype("float32"))

        def call(tensor=tensor):
            with torch.inference_mode():
                return network(tensor).numpy()

        steps[f"b{batch}"] = call
    return steps, {"torch_threads": torch.get_num_threads()}


BATCHES = (1, 32)


def savedmodel_against_torch(serving, width, args):
    """The folded SavedModel's `serving_default` against PyTorch eager
    inference of the same network (`torch_reference.build_reference`, eval
    mode, `inference_mode`, in a worker process of its own:
    `measure.StepWorker`), at batch 1 and 32, calls interleaved.

    Returns:
        {"b1": ..., "b32": ...}: p50/p99 ms of each and the median per-round
        ratio `torch / SavedModel` (> 1: the SavedModel is faster); None
        without PyTorch.
    """
    import importlib.util

    import tensorflow as tf

    if importlib.util.find_spec("torch") is None:  # the comparison needs [torch]
        return None
    worker = measure.StepWorker("latency:torch_eager_steps", {"width": width})
    comparison = {}
    for batch in BATCHES:
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 32, 32, 3)).astype("uint8")
        pixel_tensor = tf.constant(pixels)
        calls = {
            "savedmodel": lambda: serving(images=pixel_tensor)["probabilities"].numpy(),
            "torch_eager": worker.step(f"b{batch}"),
        }
        iterations = args.iterations if batch == 1 else max(2, args.iterations // 10)
        for call in calls.values():
            for _ in range(args.warmup):
                call()
        times = measure.interleaved_rounds(calls, iterations)
        comparison[f"b{batch}"] = {
            label: {
                "p50_ms": round(measure.percentile(t, 50) * 1e3, 3),
                "p99_ms": round(measure.percentile(t, 99) * 1e3, 3),
            }
            for label, t in times.items()
        }
        comparison[f"b{batch}"]["iterations"] = iterations
        comparison[f"b{batch}"]["torch_over_savedmodel"] = round(
            measure.round_ratios(times, "savedmodel", ["torch_eager"]), 3
        )
    worker.close()
    return comparison


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras
    import tensorflow as tf

    if not measure.needs_tensorflow("latency.py (a SavedModel)"):
        return None
    if args.onednn_bf16_rewrite:
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True}
        )

    import keras_ltpa
    from keras_ltpa import export
    from keras_ltpa import folding

    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    width = measure.model_width(args)
    model = keras_ltpa.build_model(10, variant="att3-concat-pc", width_multiplier=width)
    counted = measure.forward_flops(model)

    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).astype("uint8")
    jpeg = sample_jpeg()
    results = {}

    # Keras: the compiled predict step, logits only and with attention maps.
    keras_image = image.astype("float32")
    for label, keras_model in (
        ("keras_predict_logits", model),
        ("keras_predict_attention", keras_ltpa.attention_model(model)),
        ("keras_predict_attention_folded",
         keras_ltpa.attention_model(folding.fold_batch_norm(model)[0])),
    ):
        results[label] = measure.latency_ms(
            lambda m=keras_model: m.predict_on_batch(keras_image),
            args.iterations,
            args.warmup,
        )

    with tempfile.TemporaryDirectory(prefix="ltpa_latency_") as scratch:
        exports = {"folded": True} if args.skip_unfolded else {"folded": True, "unfolded": False}
        for label, fold in exports.items():
            path = export.export_saved_model(
                model, scratch, name=label, fold_batch_norm=fold
            )
            loaded = tf.saved_model.load(path)
            serving = loaded.signatures["serving_default"]
            image_tensor = tf.constant(image)
            results[f"savedmodel_{label}_serving_default"] = measure.latency_ms(
                lambda: serving(images=image_tensor)["probabilities"].numpy(),
                args.iterations,
                args.warmup,
            )
            if fold:
                serve_bytes = loaded.signatures["serve_bytes"]
                bytes_tensor = tf.constant([jpeg])
                results[f"savedmodel_{label}_serve_bytes"] = measure.latency_ms(
                    lambda: serve_bytes(image_bytes=bytes_tensor)["probabilities"].numpy(),
                    args.iterations,
                    args.warmup,
                )
            if fold:
                versus_torch = savedmodel_against_torch(serving, width, args)

    # The floor, measured now: FLOPs / the best bf16 (and float32) matmul rate.
    matmul_n = 128 if args.smoke else 2048
    rates = {
        dtype: flops.matmul_rate(matmul_n, dtype, repeats=1 if args.smoke else 5)
        for dtype in ("bfloat16", "float32")
    }
    ideal_ms = {dtype: counted["total"] / rate * 1e3 for dtype, rate in rates.items()}
    best_savedmodel = results["savedmodel_folded_serving_default"]["p50_ms"]
    result = {
        "benchmark": "latency",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "precision": args.precision,
            "onednn_bf16_rewrite": args.onednn_bf16_rewrite,
            "batch_size": 1,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "keras_jit_compile": bool(model.jit_compile) if model.compiled else None,
        },
        "latency": results,
        "forward_gflops": round(counted["total"] / 1e9, 4),
        "matmul_gflops_per_second": {
            dtype: round(rate / 1e9, 2) for dtype, rate in rates.items()
        },
        "matmul_n": matmul_n,
        "ideal_latency_ms": {dtype: round(ms, 3) for dtype, ms in ideal_ms.items()},
        "savedmodel_p50_over_bf16_ideal": round(best_savedmodel / ideal_ms["bfloat16"], 3),
        "savedmodel_p50_over_float32_floor": round(best_savedmodel / ideal_ms["float32"], 3),
        "target_ratio": 1.5,
        "savedmodel_versus_torch_eager": versus_torch,
    }
    name = f"latency_{args.precision}" + ("_bf16rewrite" if args.onednn_bf16_rewrite else "")
    measure.finish(result, name, args, load_at_start)
    for label, entry in results.items():
        print(f"{label:40s} p50 {entry['p50_ms']:8.2f} ms  p99 {entry['p99_ms']:8.2f} ms")
    for batch, entry in (versus_torch or {}).items():
        print(
            f"{batch}: SavedModel p50 {entry['savedmodel']['p50_ms']:.2f} ms, torch eager "
            f"p50 {entry['torch_eager']['p50_ms']:.2f} ms (torch / SavedModel "
            f"{entry['torch_over_savedmodel']:.2f})"
        )
    print(
        f"float32 floor (FLOPs / float32 matmul rate) {ideal_ms['float32']:.2f} ms; "
        f"SavedModel p50 / floor = {result['savedmodel_p50_over_float32_floor']:.2f} (target <= 1.5)"
    )
    print(
        f"ideal (FLOPs / bf16 matmul rate) {ideal_ms['bfloat16']:.2f} ms; "
        f"SavedModel p50 / ideal = {result['savedmodel_p50_over_bf16_ideal']:.2f} "
        f"(target <= 1.5)"
    )
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
