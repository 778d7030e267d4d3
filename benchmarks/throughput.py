"""Training and inference images/s of the paper's model on this machine.

The full "Learn To Pay Attention" model (att3-concat-pc, 10 classes, 32x32
input, 19.9M parameters) compiled with the library's `compile_model`, as
`training/fit.py` compiles it (SGD with momentum and weight decay,
cross-entropy from logits, accuracy metric; see `measure.training_model`),
on a fixed synthetic batch so only the model is timed. One process
measures one configuration: the backend comes from `KERAS_BACKEND`, the
rest from flags. Warm-up steps (tracing, XLA compilation) are timed
separately and not counted.

Commands (one configuration each; `run_all.py` runs the whole matrix):

    KERAS_BACKEND=tensorflow python benchmarks/throughput.py \
        --precision mixed_bfloat16 --jit-compile off --batch-size 32
    KERAS_BACKEND=jax python benchmarks/throughput.py --precision float32
    KERAS_BACKEND=torch python benchmarks/throughput.py --mode inference

    # A few seconds, to check the script still runs:
    KERAS_BACKEND=jax python benchmarks/throughput.py --smoke

Writes `benchmarks/results/throughput_<backend>_<precision>_<xla|noxla>_
b<batch>_<mode>[_s<size>].json` with images/s, per-step times, peak memory
(`ru_maxrss`: the whole process, framework included), forward FLOPs, and
the machine, versions and load average.
"""

import sys

import measure

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("on", "off", "auto")


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--mode", choices=("train", "inference", "both"), default="both")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument(
        "--jit-compile",
        choices=JIT_CHOICES,
        default="auto",
        help="XLA (TF, JAX) or torch.compile (torch); 'auto' is "
        "training/fit.py's choice (TF: on a GPU only; JAX: on; torch: off).",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed first steps.")
    parser.add_argument(
        "--tag",
        default="",
        help="Suffix of the result file name, for runs that differ only in "
        "environment variables (e.g. XLA_FLAGS).",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.width_multiplier, args.steps, args.warmup = measure.SMOKE_WIDTH, 1, 1
        args.batch_size = min(args.batch_size, 4)
    return args


def result_name(args, backend):
    xla = {"on": "xla", "off": "noxla", "auto": "autoxla"}[args.jit_compile]
    name = f"throughput_{backend}_{args.precision}_{xla}_b{args.batch_size}_{args.mode}"
    if args.input_size != 32:
        name += f"_s{args.input_size}"
    if args.width_multiplier != 1.0:
        name += f"_w{args.width_multiplier:g}"
    if args.tag:
        name += f"_{args.tag}"
    return name


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras

    backend = keras.backend.backend()
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    rss_after_import = measure.peak_rss_mib()

    size = args.input_size
    model = measure.training_model(size, args.width_multiplier, args.jit_compile)
    images, labels = measure.random_batch(args.batch_size, size)

    result = {
        "benchmark": "throughput",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "num_classes": 10,
            "input_size": size,
            "width_multiplier": args.width_multiplier,
            "parameters": model.count_params(),
            "precision": args.precision,
            "jit_compile": args.jit_compile,
            "jit_compile_resolved": None,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "mode": args.mode,
            "tag": args.tag,
        },
        "forward_gflops_per_image": round(
            measure.forward_flops(model)["total"] / 1e9, 4
        ),
        "memory": {"peak_rss_mib_after_import": rss_after_import},
    }

    if args.mode in ("train", "both"):
        # `train_on_batch` runs the same compiled train step as `fit`; the
        # returned Python floats make each call wait for its step to finish.
        timing = measure.time_steps(
            lambda: model.train_on_batch(images, labels),
            steps=args.steps,
            warmup=args.warmup,
        )
        measure.add_rates(timing, args.batch_size)
        result["train"] = timing
        result["memory"]["peak_rss_mib_after_train"] = measure.peak_rss_mib()

    if args.mode in ("inference", "both"):
        # `predict_on_batch` runs the compiled predict step and returns NumPy.
        timing = measure.time_steps(
            lambda: model.predict_on_batch(images),
            steps=args.steps,
            warmup=args.warmup,
        )
        measure.add_rates(timing, args.batch_size)
        result["inference"] = timing
        result["memory"]["peak_rss_mib_after_inference"] = measure.peak_rss_mib()

    result["settings"]["jit_compile_resolved"] = bool(model.jit_compile)
    result["memory"].update(measure.memory_record())
    summary = [f"{backend} {args.precision} jit={args.jit_compile} b={args.batch_size}"]
    for mode in ("train", "inference"):
        if mode in result:
            summary.append(f"{mode} {result[mode]['images_per_second']:.2f} img/s")
    summary.append(f"peak {result['memory']['peak_rss_mib']:.0f} MiB")
    print(" | ".join(summary))
    return measure.finish(result, result_name(args, backend), args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
