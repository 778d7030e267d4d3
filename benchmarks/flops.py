"""Forward FLOPs of the paper's model, and this CPU's measured matmul rate.

Two numbers that bound how fast the model can possibly run here:

- FLOPs of one forward pass, counted analytically from the layer shapes
  (`measure.forward_flops`: a multiply-add is 2 FLOPs), per layer, at each
  input size. Under the TensorFlow backend they are cross-checked with the
  TF profiler's count on the traced graph.
- The rate of a large square matmul in float32, bfloat16 and float16
  through the current backend (best of a few sizes), i.e. what the CPU's
  vector units deliver in practice (AVX-512 BF16 / FP16 or AMX, if
  present). The best of them over 3x (training) or 1x (inference) the
  forward FLOPs is the most images/s the model can reach here.

`forward FLOPs / bf16 matmul rate` is the ideal batch-1 latency that
`latency.py` compares the exported SavedModel against.

Commands:

    KERAS_BACKEND=tensorflow python benchmarks/flops.py
    KERAS_BACKEND=jax python benchmarks/flops.py --smoke

Writes `benchmarks/results/flops_<backend>.json`.
"""

import sys
import time

import numpy as np

import measure

INPUT_SIZES = (32, 64, 128, 224)


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument(
        "--matmul-sizes",
        default="1024,2048,4096",
        help="Comma-separated n of the n x n x n matmuls timed.",
    )
    parser.add_argument("--repeats", type=int, default=5, help="Timed matmuls per size.")
    args = parser.parse_args(argv)
    args.matmul_sizes = [int(n) for n in args.matmul_sizes.split(",")]
    if args.smoke:
        args.matmul_sizes, args.repeats = [128], 1
    return args


def matmul_rate(n, dtype, repeats):
    """Best FLOP/s of `repeats` timed (n, n) @ (n, n) matmuls in `dtype`."""
    import keras

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)), dtype=dtype)
    # A small reduction to NumPy waits for the product without timing a copy
    # of the whole result.
    def step():
        return keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, :8])

    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def tf_profiler_flops(model):
    """FLOPs that TF's graph profiler counts for one batch-1 forward pass."""
    import tensorflow as tf

    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)
    graph = (
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    )
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    return int(profile.total_float_ops)


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras

    import keras_ltpa

    backend = keras.backend.backend()
    width = measure.model_width(args)
    sizes = INPUT_SIZES[:1] if args.smoke else INPUT_SIZES

    flops = {}
    for size in sizes:
        model = keras_ltpa.build_model(
            10, (size, size, 3), variant="att3-concat-pc", width_multiplier=width
        )
        counted = measure.forward_flops(model)
        entry = {
            "gflops": round(counted["total"] / 1e9, 4),
            "matmul_gflops": round(counted["matmul"] / 1e9, 4),
            "elementwise_gflops": round(counted["elementwise"] / 1e9, 4),
            "uncounted_layers": counted["uncounted"],
        }
        if size == 32:
            entry["per_layer_mflops"] = {
                name: round(value / 1e6, 2)
                for name, value in counted["per_layer"].items()
            }
        if backend == "tensorflow":
            entry["tf_profiler_gflops"] = round(tf_profiler_flops(model) / 1e9, 4)
        flops[str(size)] = entry
        print(f"input {size}x{size}: {entry['gflops']:.3f} GFLOPs per image forward")

    rates = {}
    for dtype in ("float32", "bfloat16", "float16"):
        per_size = {
            str(n): round(matmul_rate(n, dtype, args.repeats) / 1e9, 2)
            for n in args.matmul_sizes
        }
        rates[dtype] = {"gflops_per_second_by_n": per_size, "best": max(per_size.values())}
        print(f"{dtype} matmul: {per_size} GFLOP/s")

    gflops_32 = flops["32"]["gflops"]
    result = {
        "benchmark": "flops",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "matmul_sizes": args.matmul_sizes,
            "repeats": args.repeats,
        },
        "forward_flops": flops,
        "matmul_rate": rates,
        "ideal_batch1_latency_ms": {
            dtype: round(gflops_32 / rates[dtype]["best"] * 1e3, 3)
            for dtype in rates
        },
    }
    print(f"ideal batch-1 latency at 32x32: {result['ideal_batch1_latency_ms']} ms")
    return measure.finish(result, f"flops_{backend}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
