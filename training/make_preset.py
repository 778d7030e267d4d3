"""Turn a finished training run into a preset shipped with the package.

Writes `keras_ltpa/presets/<name>/` in keras-hub's layout (config.json,
model.weights.h5 in float32 without optimizer state, metadata.json): beside
keras-hub's keys, the run's dataset, variant, backbone, width, input size,
class names, recipe, test accuracy, wall time and settings, the training
command, the code version, and the accuracy on the fixed 2,000-image subset
of `--subset-data-dir`'s test split that the tests reproduce:

    python training/make_preset.py runs/presets/cifar10-att3-w0125 \\
        --name cifar10-att3-w0125 --subset-data-dir ../shared/data/cifar10 \\
        --command "python training/fit.py ..." --description "..."
"""

import subprocess
import sys

from keras_ltpa.cli import common as cli


def parse_args(argv=None):
    parser = cli.make_parser("make_preset.py", __doc__)
    parser.add_argument("run_dir", help="a finished run directory (config.json, metrics.json, model.keras)")
    parser.add_argument("--name", required=True, help="the preset's name, e.g. cifar10-att3-w0125")
    parser.add_argument("--description", default="", help="one line on what the model is")
    parser.add_argument("--command", required=True, help="the exact training command")
    parser.add_argument(
        "--subset-data-dir", required=True,
        help="image folder whose test split gives the fixed subset (e.g. ../shared/data/cifar10)",
    )
    parser.add_argument(
        "--code-version", default=None,
        help="the code version that trained it (default: keras_ltpa's version and git HEAD)",
    )
    parser.add_argument(
        "--wall-time-s", type=cli.positive_float, default=None,
        help="the training's wall time in seconds, all resumed parts together",
    )
    parser.add_argument("--presets-dir", default=None, help="where to write (default: the package's)")
    return parser.parse_args(argv)


def git_head():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    args = parse_args(argv)

    def work():
        import json
        import os

        import keras

        import keras_ltpa
        from keras_ltpa import presets
        from keras_ltpa.evaluation.accuracy import subset_scores
        from keras_ltpa.presets.layout import float32_copy
        from keras_ltpa.train import runs

        config = runs.read_run_config(args.run_dir)
        metrics_path = os.path.join(args.run_dir, runs.METRICS_FILE)
        if config is None or not os.path.isfile(metrics_path):
            raise ValueError(
                f"{args.run_dir!r} is not a finished run: it needs config.json and {runs.METRICS_FILE}."
            )
        with open(metrics_path) as file:
            metrics = json.load(file)
        model = runs.load_model(args.run_dir)
        facts = keras_ltpa.describe(model)
        # Scored as saved (float32), whatever precision trained it: the tests
        # reproduce the count from the preset itself.
        subset = subset_scores(float32_copy(model), args.subset_data_dir)
        metadata = {
            "name": args.name,
            "description": args.description,
            "dataset": config.get("data_dir") or config.get("dataset"),
            "variant": facts["variant"],
            "backbone": facts["backbone"],
            "width_multiplier": facts["width_multiplier"],
            "input_shape": list(facts["input_shape"]),
            "class_names": facts["class_names"],
            "test_accuracy": metrics["accuracy"],
            "test_examples": metrics.get("test_examples"),
            "subset": {
                "data_dir": args.subset_data_dir,
                "split": presets.SUBSET_SPLIT,
                **subset,
                "backend": keras.backend.backend(),
            },
            "epochs": config.get("epochs"),
            "recipe": config.get("recipe"),
            "command": args.command,
            "training": {
                "command": args.command,
                "wall_time_s": args.wall_time_s,
                "backend": config.get("backend"),
                "seed": config.get("seed"),
                "settings": {k: config[k] for k in sorted(config) if k != "cpu_kernels"},
            },
            "code_version": args.code_version or f"keras_ltpa {keras_ltpa.__version__}, git {git_head()}",
        }
        print(presets.save_preset(model, args.name, metadata, args.presets_dir))

    return cli.run_main("make_preset.py", work)


if __name__ == "__main__":
    sys.exit(main())
