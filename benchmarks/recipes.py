"""Which training recipe for a short, fixed epoch budget: short runs compared.

The paper trains 300 epochs with a step schedule (0.1, halved every 25
epochs). A CPU user has tens of epochs at most, and within them the paper's
schedule never decays. This script trains the same small model (width
`--width`, att3-concat-pc, seed 0) on the same CIFAR-10 subset (`--data-dir`,
default `../shared/data/cifar10`: `--limit` training images, `--test-limit`
test images) for `--epochs` epochs (batch `--batch-size`) with each candidate:

- `paper`: the step schedule, no label smoothing (`--recipe paper`);
- `paper-fast-decay`: the step schedule decayed every epochs/4 epochs;
- `cosine`: 2 warm-up epochs into a cosine decay to 0, no smoothing;
- `budget`: `cosine` plus label smoothing 0.1 (`--recipe budget`);
- `budget-ema`: `budget` with an exponential moving average of the weights
  (`--ema`, the default momentum 0.99 per step): does averaging help?
- `budget-b64`: `budget` at batch 64 (twice the steps, same learning rate);
- `budget-long`: `budget` for 1.5x the epochs (rounded half up: 8 -> 12),
  to read accuracy against wall time.

and reports each one's test accuracy per epoch, final test accuracy and
loss, its batch, epochs and EMA setting, and wall time (training alone).
Each final model (the run's `model.keras`) is then scored again on the same
test images with flip test-time augmentation, the logits averaged over each
image and its left-right mirror (`evaluate_classification(..., tta="flip")`,
as `training/evaluate.py --tta flip`): `test_accuracy_flip_tta` beside
`test_accuracy`. `best` is still picked by the plain `test_accuracy`.
Everything trains through `keras_ltpa.run_training`, as `training/fit.py`
does. Commands:

    python benchmarks/recipes.py                      # about 30 min on 2 cores
    python benchmarks/recipes.py --candidates budget,budget-ema,budget-long
    python benchmarks/recipes.py --smoke

The seven took 31 minutes on a 2-core Intel Xeon with AMX (bfloat16,
partly beside other work). `--smoke` trains one
step per epoch for 3 epochs (5 for `budget-long`, the factor applied) on 64
images at batch 32 (64 for `budget-b64`). Writes
`benchmarks/results/recipes.json`.
"""

import math
import os
import sys
import tempfile
import time

import measure

# Each candidate: the TrainingConfig fields it sets (`lr_decay_epochs: None`
# stands for epochs // 4) and, under EPOCHS_FACTOR, a factor on --epochs
# (rounded half up, at least 1; applied under --smoke too). Fields a
# candidate does not set come from the command line (--epochs, --batch-size).
EPOCHS_FACTOR = "epochs_factor"
CANDIDATES = {
    "paper": {"recipe": "paper"},
    "paper-fast-decay": {"recipe": "paper", "lr_decay_epochs": None},  # epochs // 4
    "cosine": {"recipe": "budget", "label_smoothing": 0.0},
    "budget": {"recipe": "budget"},
    # The default ema_momentum, 0.99 per step, kept on purpose: it is what
    # `fit.py --ema` gives, and it already spans about one epoch here. The
    # average weighs the last 1 / (1 - 0.99) = 100 steps most; 10,000 images
    # at batch 128 are 79 steps per epoch, so that is 1.3 epochs, and a
    # one-epoch span (1 - 1/79 = 0.987) would differ little.
    "budget-ema": {"recipe": "budget", "ema": True},
    # No rule scales the learning rate with the batch (TrainingConfig's
    # lr_scaling is for replicas only): the recipe's 0.1 is kept, over twice
    # the steps per epoch (the schedules count steps, so the warm-up and the
    # cosine still span 2 and all epochs).
    "budget-b64": {"recipe": "budget", "batch_size": 64},
    "budget-long": {"recipe": "budget", EPOCHS_FACTOR: 1.5},
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


def scaled_epochs(epochs, factor):
    """`epochs` times `factor`, rounded half up (not to even), at least 1."""
    return max(1, math.floor(epochs * factor + 0.5))


def candidate_config(name, args, output_dir):
    """The checked `TrainingConfig` of candidate `name` under `args`; its
    run directory is `output_dir/name`."""
    from keras_ltpa.train.config import TrainingConfig

    overrides = dict(CANDIDATES[name])
    epochs = scaled_epochs(args.epochs, overrides.pop(EPOCHS_FACTOR, 1))
    if "lr_decay_epochs" in overrides:
        overrides["lr_decay_epochs"] = max(1, epochs // 4)
    settings = dict(
        data_dir=args.data_dir, width_multiplier=args.width, epochs=epochs,
        batch_size=args.batch_size, limit=args.limit, test_limit=args.test_limit, seed=0,
        output_dir=f"{output_dir}/{name}", tensorboard=False, export=False, verbose=0,
        steps_per_epoch=1 if args.smoke else None,
    )
    settings.update(overrides)
    return TrainingConfig(**settings).validate()  # fills in what the recipe sets


def flip_tta_scores(model_path, data_dir, test_limit, batch_size):
    """Accuracy, plain and with flip TTA, of the model at `model_path` (a
    `.keras` file or a run directory) on the first `test_limit` test images
    of `data_dir`: the images a run with that `test_limit` tests on, loaded
    as `training/evaluate.py` loads them. Returns `evaluate_classification`'s
    dict (the flip-TTA figures under `"flip_tta"`)."""
    from keras_ltpa.data.images import model_input_size
    from keras_ltpa.data.pipelines import load_dataset
    from keras_ltpa.evaluation.accuracy import evaluate_classification
    from keras_ltpa.train.runs import load_model

    model = load_model(model_path)
    dataset, class_names = load_dataset(
        "test", data_dir=data_dir, image_size=model_input_size(model),
        batch_size=batch_size, limit=test_limit,
    )
    return evaluate_classification(model, dataset, class_names, tta="flip")


def run_candidate(name, args, output_dir):
    from keras_ltpa.train.loop import run_training
    from keras_ltpa.train.runs import HISTORY_FILE
    from keras_ltpa.train.runs import read_history

    config = candidate_config(name, args, output_dir)
    started = time.perf_counter()
    outcome = run_training(config)
    seconds = time.perf_counter() - started  # training alone, not the TTA pass below
    history = read_history(os.path.join(outcome["run_dir"], HISTORY_FILE))
    # The saved model: with ema=True it holds the averaged weights, as the
    # plain test accuracy (run_training's evaluation) uses them.
    scores = flip_tta_scores(
        outcome["model_path"], config.data_dir, config.test_limit, config.batch_size)
    return {
        "settings": {key: getattr(config, key) for key in (
            "recipe", "lr_schedule", "warmup_epochs", "label_smoothing", "lr_decay_epochs",
            "lr_decay_factor", "learning_rate", "batch_size", "epochs", "ema",
            "ema_momentum")},
        "test_accuracy": float(outcome["metrics"]["accuracy"]),
        "test_accuracy_flip_tta": float(scores["flip_tta"]["accuracy"]),
        "flip_tta_images": int(scores["count"]),
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
            entry = result["candidates"][name]
            print(name, entry["test_accuracy"], entry["test_accuracy_flip_tta"], flush=True)
    # Picked by the plain accuracy; test_accuracy_flip_tta is read beside it.
    best = max(result["candidates"], key=lambda n: result["candidates"][n]["test_accuracy"])
    result["best"] = best
    return measure.finish(result, "recipes", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
