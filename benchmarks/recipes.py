"""Which training recipe for a short, fixed epoch budget: short runs compared.

The paper trains 300 epochs with a step schedule (0.1, halved every 25
epochs). A CPU user has tens of epochs at most, and within them the paper's
schedule never decays. This script trains the same small model (width
`--width`, att3-concat-pc, seed 0) on the same CIFAR-10 subset (`--data-dir`,
default `../shared/data/cifar10`: `--limit` training images, `--test-limit`
test images) for `--epochs` epochs with each candidate:

- `paper`: the step schedule, no label smoothing (`--recipe paper`);
- `paper-fast-decay`: the step schedule decayed every epochs/4 epochs;
- `cosine`: 2 warm-up epochs into a cosine decay to 0, no smoothing;
- `budget`: `cosine` plus label smoothing 0.1 (`--recipe budget`).

and reports each one's test accuracy per epoch, final test accuracy and
loss, and wall time. Everything runs through `keras_ltpa.run_training`, as
`training/fit.py` does. Commands:

    python benchmarks/recipes.py                      # about 15 min on 2 cores
    python benchmarks/recipes.py --smoke

Writes `benchmarks/results/recipes.json`.
"""

import os
import sys
import tempfile
import time

import measure

CANDIDATES = {
    "paper": {"recipe": "paper"},
    "paper-fast-decay": {"recipe": "paper", "lr_decay_epochs": None},  # epochs // 4
    "cosine": {"recipe": "budget", "label_smoothing": 0.0},
    "budget": {"recipe": "budget"},
}


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--data-dir", default=str(measure.SHARED_DATA_DIR / "cifar10"),
                        help="CIFAR-10 as an image folder (default: ../shared/data/cifar10)")
    parser.add_argument("--width", type=measure.positive(float), default=0.0625)
    parser.add_argument("--epochs", type=measure.positive(int), default=8)
    parser.add_argument("--limit", type=measure.positive(int), default=10000,
                        help="training images")
    parser.add_argument("--test-limit", type=measure.positive(int), default=2000,
                        help="test images")
    parser.add_argument("--batch-size", type=measure.positive(int), default=128)
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated subset of: " + ", ".join(CANDIDATES))
    args = parser.parse_args(argv)
    args.candidates = measure.comma_list(parser, "--candidates", args.candidates, CANDIDATES)
    if args.smoke:
        args.epochs, args.limit, args.test_limit, args.batch_size = 3, 64, 32, 32
    return args


def run_candidate(name, args, output_dir):
    from keras_ltpa.train.config import TrainingConfig
    from keras_ltpa.train.loop import run_training
    from keras_ltpa.train.runs import HISTORY_FILE
    from keras_ltpa.train.runs import read_history

    overrides = dict(CANDIDATES[name])
    if "lr_decay_epochs" in overrides:
        overrides["lr_decay_epochs"] = max(1, args.epochs // 4)
    config = TrainingConfig(
        data_dir=args.data_dir, width_multiplier=args.width, epochs=args.epochs,
        batch_size=args.batch_size, limit=args.limit, test_limit=args.test_limit, seed=0,
        output_dir=f"{output_dir}/{name}", tensorboard=False, export=False, verbose=0,
        steps_per_epoch=1 if args.smoke else None, **overrides,
    ).validate()  # fills in what the recipe sets, for the record below
    started = time.perf_counter()
    outcome = run_training(config)
    seconds = time.perf_counter() - started
    history = read_history(os.path.join(outcome["run_dir"], HISTORY_FILE))
    return {
        "settings": {key: getattr(config, key) for key in (
            "recipe", "lr_schedule", "warmup_epochs", "label_smoothing", "lr_decay_epochs",
            "lr_decay_factor", "learning_rate")},
        "test_accuracy": float(outcome["metrics"]["accuracy"]),
        "test_loss": float(outcome["metrics"]["loss"]),
        "test_accuracy_per_epoch": [float(row["val_accuracy"]) for row in history],
        "train_accuracy_per_epoch": [float(row["accuracy"]) for row in history],
        "wall_seconds": round(seconds, 1),
    }


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    result = {
        "benchmark": "recipes",
        "smoke": args.smoke,
        "settings": {
            "variant": "att3-concat-pc",
            "width_multiplier": args.width,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "train_images": args.limit,
            "test_images": args.test_limit,
            "seed": 0,
            "data": args.data_dir,
        },
        "candidates": {},
    }
    with tempfile.TemporaryDirectory(prefix="ltpa_recipes_") as output_dir:
        for name in args.candidates:
            result["candidates"][name] = run_candidate(name, args, output_dir)
            print(name, result["candidates"][name]["test_accuracy"], flush=True)
    best = max(result["candidates"], key=lambda n: result["candidates"][n]["test_accuracy"])
    result["best"] = best
    return measure.finish(result, "recipes", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
