"""Images/s of the training input pipeline on the real CIFAR-10 JPEGs.

The pipeline is `keras_ltpa.data.load_dataset("train", data_dir=...,
training=True)`, exactly what `training/fit.py` feeds to `fit`: list the
files, decode the JPEGs in parallel, shuffle, the paper's augmentation
(4-pixel-pad random crop + horizontal flip with Keras preprocessing
layers), batch, prefetch. Batches are pulled as NumPy arrays, as `fit`
receives them, with no model attached, so this is the most the pipeline can
deliver on its own. It is reported against the model's training rate (the
best `throughput_*` training result in `--results-dir`): the ratio is how
many times faster than training the pipeline produces images, and its
inverse is the share of the CPU the pipeline takes from training when both
run on the same cores.

Timed separately: building the dataset (listing and, with `verify`, one
decode of every file to find unreadable images), the first batches (tf.data
start-up), then `--batches` batches uncached, and the same with
`cache=True` after one full pass.

Commands:

    python benchmarks/data_pipeline.py
    python benchmarks/data_pipeline.py --batch-size 32 --batches 400
    python benchmarks/data_pipeline.py --smoke

Writes `benchmarks/results/data_pipeline_b<batch>.json`.
"""

import json
import pathlib
import sys
import time

import measure

CIFAR10_DIR = measure.SHARED_DATA_DIR / "cifar10"


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--data-dir", default=str(CIFAR10_DIR))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=200, help="Timed batches.")
    parser.add_argument("--warmup-batches", type=int, default=5)
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Use only this many training images (default: all 50,000).",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="Skip the up-front decode of every file (`verify=False`).",
    )
    parser.add_argument(
        "--no-cache-run",
        action="store_true",
        help="Skip the `cache=True` measurement (it needs one full pass first).",
    )
    parser.add_argument(
        "--results-dir",
        default=str(measure.RESULTS_DIR),
        help="Where to look for the training rate to compare against.",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit, args.batch_size, args.batches, args.warmup_batches = 64, 8, 2, 1
    return args


def best_training_rate(results_dir):
    """Best full-model training images/s (batch 32, 32x32) among the results."""
    best = None
    for path in sorted(pathlib.Path(results_dir).glob("throughput_*.json")):
        result = json.loads(path.read_text())
        settings = result.get("settings", {})
        if (
            result.get("smoke")
            or "train" not in result
            or settings.get("width_multiplier") != 1.0
            or settings.get("input_size") != 32
            or settings.get("batch_size") != 32
        ):
            continue
        rate = result["train"]["images_per_second"]
        if best is None or rate > best["images_per_second"]:
            best = {"images_per_second": rate, "file": path.name}
    return best


def time_batches(dataset, batches, warmup_batches, batch_size):
    """Pulls batches as NumPy; returns start-up seconds and images/s."""
    iterator = iter(dataset)
    start = time.perf_counter()
    for _ in range(warmup_batches):
        next(iterator)
    startup = time.perf_counter() - start
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch_images, _ = next(iterator)
        except StopIteration:
            iterator = iter(dataset)
            batch_images, _ = next(iterator)
        images += batch_images.numpy().shape[0]
    seconds = time.perf_counter() - start
    return {
        "startup_seconds": round(startup, 3),
        "timed_batches": batches,
        "timed_images": images,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1),
    }


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    from keras_ltpa import data

    def build(cache):
        return data.load_dataset(
            "train",
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            training=True,
            cache=cache,
            limit=args.limit,
            seed=0,
            verify=not args.no_verify,
        )

    start = time.perf_counter()
    dataset, class_names = build(cache=False)
    build_seconds = time.perf_counter() - start
    uncached = time_batches(dataset, args.batches, args.warmup_batches, args.batch_size)
    uncached["build_seconds"] = round(build_seconds, 3)
    print(f"uncached: {uncached['images_per_second']:.0f} images/s "
          f"(dataset built in {build_seconds:.1f} s)")

    cached = None
    if not args.no_cache_run:
        cached_dataset, _ = build(cache=True)
        # One full pass fills the cache; the timed batches then come from memory.
        start = time.perf_counter()
        for _ in cached_dataset:
            pass
        fill_seconds = time.perf_counter() - start
        cached = time_batches(
            cached_dataset, args.batches, args.warmup_batches, args.batch_size
        )
        cached["fill_seconds"] = round(fill_seconds, 3)
        print(f"cached:   {cached['images_per_second']:.0f} images/s "
              f"(cache filled in {fill_seconds:.1f} s)")

    training = best_training_rate(args.results_dir)
    ratio = None
    if training is not None:
        ratio = round(uncached["images_per_second"] / training["images_per_second"], 1)
        print(f"pipeline / training rate = {ratio}x (target >= 20x; training "
              f"{training['images_per_second']} images/s from {training['file']})")
    result = {
        "benchmark": "data_pipeline",
        "smoke": args.smoke,
        "settings": {
            "data_dir": args.data_dir,
            "split": "train",
            "augmentation": list(data.PAPER_AUGMENTATION),
            "batch_size": args.batch_size,
            "limit": args.limit,
            "verify": not args.no_verify,
            "classes": len(class_names),
        },
        "uncached": uncached,
        "cached": cached,
        "training_rate": training,
        "pipeline_over_training": ratio,
        "target_ratio": 20,
        "memory": measure.memory_record(),
    }
    return measure.finish(result, f"data_pipeline_b{args.batch_size}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
