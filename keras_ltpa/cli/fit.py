"""Train a "Learn To Pay Attention" model, evaluate it and export it.

The paper's CIFAR-10 run (att3-concat-pc VGG, SGD 0.1, 300 epochs):

    python training/fit.py --dataset cifar10 --output-dir runs/cifar10_att3

An image folder (DIR/train/<class>/*.jpg, DIR/test/<class>/*.jpg), a quick
small run, and the plain VGG baseline beside it:

    python training/fit.py --data-dir ../shared/data/cifar10 --width 0.25 \\
        --epochs 3 --output-dir runs/att3_w025
    python training/fit.py --data-dir ../shared/data/cifar10 --width 0.25 \\
        --epochs 3 --variant noatt --output-dir runs/noatt_w025

Your own photos in one folder per class (DIR/<class>/*.jpg), a fifth of each
class held out, on an ImageNet-pretrained ResNet50 fine-tuned in two stages
(the head alone for 5 epochs, then everything, the backbone at 0.1 x the rate):

    python training/fit.py --data-dir photos --validation-split 0.2 --backbone resnet50 \\
        --freeze-backbone-epochs 5 --epochs 30 --learning-rate 0.01 --class-weight balanced \\
        --output-dir runs/photos_resnet50

Several GPUs of one machine (TensorFlow MirroredStrategy; global batch =
--batch-size x GPUs), and several machines (JAX backend, one process each):

    python training/fit.py --strategy mirrored --output-dir runs/mirrored
    KERAS_BACKEND=jax python training/fit.py --strategy multi_worker \\
        --coordinator-address 10.0.0.1:8476 --num-processes 2 --process-id 0 \\
        --output-dir /shared/runs/two_hosts     # on host 10.0.0.1; --process-id 1 on the other

Run the same command again after an interruption (Ctrl-C, a kill, a reboot)
and training continues after the last finished epoch. Watch it with

    tensorboard --logdir runs/

The run directory layout is described in `keras_ltpa.train.run_training`
and in the README ("Training"). The Keras backend is chosen by
`KERAS_BACKEND=tensorflow|jax|torch`.
"""

import json
import os
import sys

from keras_ltpa.cli import common as cli
from keras_ltpa.train import options
from keras_ltpa.train.config import OPTION_GROUPS
from keras_ltpa.train.config import TrainingConfig

DESCRIPTION = (
    "Train a Learn To Pay Attention model (Jetley et al., ICLR 2018) with model.fit, evaluate "
    "it on the test split and export it for TF Serving. Defaults are the paper's CIFAR setting. "
    "Re-running the same command resumes an interrupted run."
)
EPILOG = (
    "The Keras backend is chosen by the environment variable "
    "KERAS_BACKEND=tensorflow|jax|torch. Run directory layout: see the README, section Training."
)


def build_parser():
    """The parser of `fit.py`: one flag per `TrainingConfig` field, in the
    field's group, with its declared spelling, help, default and choices.

    Returns:
        A `keras_ltpa.cli.common.Parser` whose parsed namespace has one
        attribute per `TrainingConfig` field.

    Example:
    >>> args = build_parser().parse_args(["--width", "0.25", "--no-export"])
    >>> args.width_multiplier, args.export, args.epochs
    (0.25, False, 300)
    """
    parser = cli.Parser(
        prog="fit.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=cli.HelpFormatter,
    )
    groups = {
        title: parser.add_argument_group(title, description)
        for title, description in OPTION_GROUPS.items()
    }
    exclusive = {}
    for field in options.declared_fields(TrainingConfig):
        container = groups[field.metadata["group"]]
        name = field.metadata["exclusive"]
        if name is not None:
            if name not in exclusive:
                exclusive[name] = container.add_mutually_exclusive_group()
            container = exclusive[name]
        container.add_argument(options.flag_of(field), **_argument_settings(field))
    return parser


def _argument_settings(field):
    """The `add_argument` keywords of a declared `TrainingConfig` field."""
    settings = dict(dest=field.name, help=field.metadata["help"])
    kind = options.value_type(field)
    if kind is bool:
        # A flag that turns the default over: --cache, --no-export.
        settings["action"] = "store_false" if field.default else "store_true"
        return settings
    settings["default"] = field.default
    if field.metadata["choices"] is not None:
        settings["choices"] = field.metadata["choices"]
    bounds = field.metadata["bounds"]
    if bounds is not None:
        settings["type"] = cli.number_argument(bounds)
    elif kind is not str:
        settings["type"] = kind
    return settings


def main(argv=None):
    """Runs `fit.py`: parses `argv`, trains, prints a JSON summary line.

    Args:
        argv: the flags (default: `sys.argv[1:]`).

    Returns:
        The exit code: 0, `EXIT_BAD_INPUT` (a bad setting or bad data,
        nothing written), `EXIT_FAILURE` (the loss became NaN) or
        `EXIT_INTERRUPTED`. A bad flag exits with code 2 while parsing.
    """
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up notes would bury our one-line errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported after parsing, so --help and flag errors need no tf.data.
    from keras_ltpa import train as training
    from keras_ltpa.data.pipelines import DataError

    try:
        result = training.run_training(args)
    except (training.SetupError, DataError) as error:
        print(f"fit.py: error: {error}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    except FloatingPointError as error:
        print(f"fit.py: error: {error}", file=sys.stderr)
        return cli.EXIT_FAILURE
    except KeyboardInterrupt:
        print(
            "fit.py: interrupted; run the same command again to resume.",
            file=sys.stderr,
        )
        return cli.EXIT_INTERRUPTED
    summary = {
        "run_dir": result["run_dir"],
        "test_accuracy": result["metrics"].get("accuracy"),
        "test_loss": result["metrics"].get("loss"),
        "model": result["model_path"],
        "export": result["export_path"],
        "wall_time_s": round(result["wall_time_s"], 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
