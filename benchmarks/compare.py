"""Interleaved A/B timing of precisions and XLA, robust on a shared machine.

`throughput.py` times one configuration per process; when other work
shares the CPU, the load changes between two such runs and so does the
answer. Here every variant (each precision x each `jit_compile` setting
asked for) is built and compiled in the same process, then timed in
rounds: one training step (or inference step) of each variant per round,
the order rotating every round. Whatever the machine does, it does to all
variants of a round alike, so the per-round ratio of a variant's step time
to the first variant's is a fair comparison even when the absolute times
are not. Reported: median and best step per variant, and the median of
the per-round ratios (the speed-up over the first variant).

Commands:

    KERAS_BACKEND=tensorflow python benchmarks/compare.py \
        --precisions float32,mixed_bfloat16 --jit-compile off,on
    KERAS_BACKEND=jax python benchmarks/compare.py --precisions float32,mixed_bfloat16
    KERAS_BACKEND=torch python benchmarks/compare.py --smoke

Writes `benchmarks/results/compare_<backend>_<mode>_b<batch>.json`.
"""

import itertools
import statistics
import sys
import time

import measure

JIT = ("on", "off")


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--jit-compile", default="default",
                        help="Comma-separated on/off, or 'default' (training/fit.py's "
                        "choice: XLA under JAX, none elsewhere on a CPU).")
    parser.add_argument("--mode", choices=("train", "inference"), default="train")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.jit_compile = (
        ["default"] if args.jit_compile == "default"
        else [j for j in args.jit_compile.split(",") if j]
    )
    for value in args.jit_compile:
        if value not in ("default",) + JIT:
            parser.error(f"--jit-compile values are on, off or default; received {value!r}")
    if args.smoke:
        args.batch_size, args.rounds, args.warmup = 2, 2, 2
    return args


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras

    backend = keras.backend.backend()
    width = measure.model_width(args)
    images, labels = measure.random_batch(args.batch_size)

    variants = []
    for precision, jit in itertools.product(args.precisions, args.jit_compile):
        keras.config.set_dtype_policy(precision)
        keras.utils.set_random_seed(0)  # the same initial weights in every variant
        model = measure.training_model(
            width_multiplier=width, jit_compile="auto" if jit == "default" else jit
        )
        if args.mode == "train":
            step = lambda m=model: m.train_on_batch(images, labels)  # noqa: E731
        else:
            step = lambda m=model: m.predict_on_batch(images)  # noqa: E731
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        variants.append({
            "label": f"{precision} jit={jit}",
            "precision": precision,
            "jit_compile": jit,
            "jit_compile_resolved": bool(model.jit_compile),
            "warmup_seconds": round(time.perf_counter() - start, 2),
            "step": step,
            "times": [],
        })
        print(f"built {variants[-1]['label']} (warm-up {variants[-1]['warmup_seconds']} s)")
    keras.config.set_dtype_policy("float32")

    times = measure.interleaved_rounds(
        {variant["label"]: variant["step"] for variant in variants}, args.rounds
    )
    first = variants[0]["label"]

    rows = []
    for variant in variants:
        variant.pop("times")
        variant.pop("step")
        label_times = times[variant["label"]]
        variant.update(
            step_seconds=[round(t, 4) for t in label_times],
            images_per_second=round(args.batch_size / statistics.median(label_times), 3),
            images_per_second_best=round(args.batch_size / min(label_times), 3),
            speedup_over_first=round(
                measure.round_ratios(times, variant["label"], [first]), 3
            ),
        )
        rows.append(variant)
        print(f"{variant['label']:32s} {variant['images_per_second']:8.2f} img/s "
              f"(best {variant['images_per_second_best']:.2f})  "
              f"x{variant['speedup_over_first']:.2f} vs {variants[0]['label']}")
    result = {
        "benchmark": "compare",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "mode": args.mode,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "warmup": args.warmup,
        },
        "variants": rows,
        "memory": measure.memory_record(" (all variants)"),
    }
    name = f"compare_{backend}_{args.mode}_b{args.batch_size}"
    return measure.finish(result, name, args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
