"""How the cost of the paper's model grows with input size and batch size.

Two sweeps of `throughput.py` (training and inference of att3-concat-pc),
each point in its own process so its peak memory is its own:

- input size 32, 64, 128, 224 at a fixed small batch (`--size-batch`): the
  forward FLOPs grow with the pixel count (x49 from 32 to 224), and so
  should time and activation memory;
- batch size 1, 8, 32, 128 at 32x32: per-image time should fall while the
  batch is too small to keep both cores busy, then flatten.

For every point: images/s, milliseconds per image, achieved GFLOP/s
(forward FLOPs x1 for inference, x3 for a training step: forward, and the
two products of the backward pass) and peak RSS.

Commands:

    KERAS_BACKEND=tensorflow python benchmarks/scaling.py --precision mixed_bfloat16
    KERAS_BACKEND=tensorflow python benchmarks/scaling.py --sweep size
    KERAS_BACKEND=jax python benchmarks/scaling.py --smoke

Writes `benchmarks/results/scaling_<backend>_<precision>.json`.
"""

import os
import sys
import tempfile

import measure

INPUT_SIZES = (32, 64, 128, 224)
BATCH_SIZES = (1, 8, 32, 128)


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--sweep", choices=("size", "batch", "both"), default="both")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument(
        "--size-batch", type=int, default=4, help="Batch size of the input-size sweep."
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    return parser.parse_args(argv)


def measure_one(args, backend, input_size, batch_size, scratch):
    arguments = [
        "--mode", "both",
        "--precision", args.precision,
        "--jit-compile", args.jit_compile,
        "--input-size", input_size,
        "--batch-size", batch_size,
        "--steps", args.steps,
        "--warmup", args.warmup,
        "--output-dir", scratch,
    ]
    if args.smoke:
        arguments.append("--smoke")
    result = measure.run_script("throughput.py", arguments, backend)
    point = {"input_size": input_size, "batch_size": batch_size}
    if "error" in result:
        point["error"] = result["error"]
        print(f"  {input_size}x{input_size} b{batch_size}: failed ({result['error']})")
        return point
    gflops = result["forward_gflops_per_image"]
    point["forward_gflops_per_image"] = gflops
    point["peak_rss_mib"] = result["memory"]["peak_rss_mib"]
    for mode, passes in (("train", 3), ("inference", 1)):
        rate = result[mode]["images_per_second"]
        point[mode] = {
            "images_per_second": rate,
            "ms_per_image": round(1e3 / rate, 2),
            "achieved_gflops_per_second": round(rate * gflops * passes, 1),
        }
    print(
        f"  {input_size:3d}x{input_size:<3d} b{batch_size:<3d} "
        f"train {point['train']['ms_per_image']:9.1f} ms/img  "
        f"inference {point['inference']['ms_per_image']:8.1f} ms/img  "
        f"{gflops:7.2f} GFLOPs/img  peak {point['peak_rss_mib']:.0f} MiB"
    )
    return point


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    # A smoke run checks the plumbing with one point per sweep.
    sizes = INPUT_SIZES[1:2] if args.smoke else INPUT_SIZES
    batches = BATCH_SIZES[:1] if args.smoke else BATCH_SIZES

    result = {
        "benchmark": "scaling",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "precision": args.precision,
            "jit_compile": args.jit_compile,
            "size_batch": args.size_batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "width_multiplier": measure.model_width(args),
        },
    }
    # The per-point files of throughput.py are folded into this one result.
    with tempfile.TemporaryDirectory(prefix="ltpa_scaling_") as scratch:
        if args.sweep in ("size", "both"):
            print(f"input size sweep (batch {args.size_batch}):")
            result["by_input_size"] = [
                measure_one(args, backend, size, args.size_batch, scratch) for size in sizes
            ]
        if args.sweep in ("batch", "both"):
            print("batch size sweep (32x32):")
            result["by_batch_size"] = [
                measure_one(args, backend, 32, batch, scratch) for batch in batches
            ]
    name = f"scaling_{backend}_{args.precision}"
    return measure.finish(result, name, args, load_at_start, backend=backend)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
