"""Train a "Learn To Pay Attention" model, evaluate it and export it.

The paper's CIFAR-10 run (att3-concat-pc VGG, SGD 0.1, 300 epochs):

    python training/fit.py --dataset cifar10 --output-dir runs/cifar10_att3

An image folder (DIR/train/<class>/*.jpg, DIR/test/<class>/*.jpg), a quick
small run, and the plain VGG baseline beside it:

    python training/fit.py --data-dir ../shared/data/cifar10 --width 0.25 \\
        --epochs 3 --output-dir runs/att3_w025
    python training/fit.py --data-dir ../shared/data/cifar10 --width 0.25 \\
        --epochs 3 --variant noatt --output-dir runs/noatt_w025

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


def build_parser():
    parser = cli.Parser(
        prog="fit.py",
        description=(
            "Train a Learn To Pay Attention model (Jetley et al., ICLR 2018) "
            "with model.fit, evaluate it on the test split and export it for "
            "TF Serving. Defaults are the paper's CIFAR setting. Re-running "
            "the same command resumes an interrupted run."
        ),
        epilog=(
            "The Keras backend is chosen by the environment variable "
            "KERAS_BACKEND=tensorflow|jax|torch. Run directory layout: see "
            "the README, section Training."
        ),
        formatter_class=cli.HelpFormatter,
    )
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        default=None,
        help="tensorflow-datasets name: cifar10 (the default when no "
        "--data-dir), cifar100, svhn_cropped or any image-classification set "
        "with 'image' and 'label' features.",
    )
    source.add_argument(
        "--data-dir",
        default=None,
        help="image folder DIR with DIR/train/<class>/<image> and "
        "DIR/test/<class>/<image> (JPEG/PNG/BMP/GIF); classes are the sorted "
        "folder names of DIR/train.",
    )
    data.add_argument(
        "--tfds-data-dir",
        default=None,
        help="where tensorflow-datasets keeps its files (default: its own, "
        "~/tensorflow_datasets or $TFDS_DATA_DIR).",
    )
    data.add_argument(
        "--image-size",
        type=cli.positive_int,
        default=32,
        help="side of the square images the model takes (a multiple of 32); "
        "other sizes are resized.",
    )
    data.add_argument(
        "--augment",
        default="paper",
        help="training augmentation: 'paper' (= crop,flip: random crop after "
        "4-pixel zero padding and horizontal flip), 'none', or a comma list "
        "of crop, flip, randaugment, mixup, cutmix.",
    )
    data.add_argument(
        "--pixel-stats",
        choices=("auto", "data", "cifar10"),
        default="auto",
        help="the model's input normalisation: data = the training split's "
        "per-channel mean/std (one pass, recorded in config.json); cifar10 = "
        "CIFAR-10's fixed values (the reference code's); auto = cifar10 for "
        "CIFAR-10, data for any other dataset.",
    )
    data.add_argument(
        "--cache",
        action="store_true",
        help="keep the decoded images in memory after the first epoch.",
    )
    data.add_argument(
        "--limit",
        type=cli.positive_int,
        default=None,
        help="train on this many examples only (a fixed mix of classes).",
    )
    data.add_argument(
        "--test-limit",
        type=cli.positive_int,
        default=None,
        help="validate and test on this many test examples only.",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--variant",
        default="att3-concat-pc",
        help="paper variant: tokens att3|att2|noatt, concat|indep, pc|dp, "
        "softmax|sigmoid, before|after joined by '-'; 'noatt' is the plain "
        "VGG baseline.",
    )
    model.add_argument(
        "--width",
        dest="width_multiplier",
        type=cli.positive_float,
        default=1.0,
        help="width multiplier of every VGG layer (0.25 = a quarter of the "
        "channels, for small CPUs).",
    )
    model.add_argument(
        "--dropout",
        type=cli.non_negative_float,
        default=0.0,
        help="dropout rate in the VGG (the paper's: 0).",
    )

    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument(
        "--epochs", type=cli.positive_int, default=300, help="epochs to train in all."
    )
    optimisation.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=128,
        help="examples per step on each replica (device); a step takes "
        "batch-size x replicas examples (see --strategy).",
    )
    optimisation.add_argument(
        "--learning-rate",
        type=cli.positive_float,
        default=0.1,
        help="initial SGD learning rate.",
    )
    optimisation.add_argument(
        "--momentum", type=cli.non_negative_float, default=0.9, help="SGD momentum."
    )
    optimisation.add_argument(
        "--weight-decay",
        type=cli.non_negative_float,
        default=5e-4,
        help="weight decay coefficient.",
    )
    optimisation.add_argument(
        "--weight-decay-mode",
        choices=("coupled", "decoupled"),
        default="coupled",
        help="coupled: L2 added to the gradient before momentum, as "
        "PyTorch's SGD and the paper's code; decoupled: Keras' SGD "
        "weight_decay (about 10x weaker at momentum 0.9).",
    )
    optimisation.add_argument(
        "--lr-decay-epochs",
        type=int,
        default=25,
        help="epochs between learning-rate decays (0: constant rate).",
    )
    optimisation.add_argument(
        "--lr-decay-factor",
        type=cli.positive_float,
        default=0.5,
        help="learning-rate multiplier at each decay.",
    )
    optimisation.add_argument(
        "--recipe",
        choices=("paper", "budget"),
        default="paper",
        help="paper: the step schedule above, no label smoothing (for the "
        "paper's 300 epochs); budget: linear warm-up into a cosine decay to 0 "
        "over --epochs and label smoothing 0.1, for a short fixed budget "
        "(chosen by benchmarks/recipes.py). The three flags below override it.",
    )
    optimisation.add_argument(
        "--lr-schedule",
        choices=("step", "cosine"),
        default=None,
        help="step: --lr-decay-factor every --lr-decay-epochs; cosine: "
        "warm-up then cosine to 0 at the last epoch (default: the recipe's).",
    )
    optimisation.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="epochs of linear warm-up, cosine schedule (default: the recipe's, budget: 2).",
    )
    optimisation.add_argument(
        "--label-smoothing",
        type=cli.non_negative_float,
        default=None,
        help="label smoothing in [0, 1) (default: the recipe's, budget: 0.1).",
    )
    optimisation.add_argument(
        "--steps-per-epoch",
        type=cli.positive_int,
        default=None,
        help="optimizer steps per epoch (default: one pass over the "
        "training set); the data repeats as needed.",
    )
    optimisation.add_argument(
        "--precision",
        choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
        default="auto",
        help="dtype policy; auto: mixed_bfloat16 on GPUs with compute "
        "capability >= 8 and on CPUs with AMX (TensorFlow backend), "
        "mixed_float16 on 7.x GPUs, float32 otherwise (AVX512-BF16 alone "
        "trains slower in bfloat16).",
    )
    optimisation.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA compilation of the train step; auto: on for JAX, on for "
        "TensorFlow on a GPU (off on a CPU, where it is slower), off for torch.",
    )
    optimisation.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (weights, shuffling, augmentation); default: a "
        "random one, recorded in config.json.",
    )

    distribution = parser.add_argument_group(
        "distribution",
        "Several GPUs of one machine: --strategy mirrored (TensorFlow "
        "MirroredStrategy, or JAX DataParallel). Several machines: the JAX "
        "backend, one process per machine, each given the same "
        "--coordinator-address and --num-processes and its own --process-id; "
        "only process 0 writes the run directory.",
    )
    distribution.add_argument(
        "--strategy",
        choices=("auto", "one_device", "mirrored", "multi_worker"),
        default="auto",
        help="auto: several processes when a process group is configured, "
        "else all local GPUs when there are several (JAX: all local "
        "devices), else one device; one_device; mirrored: all devices of "
        "this machine (TensorFlow: GPUs, or the logical CPU devices without "
        "one); multi_worker: several machines (JAX backend only; TensorFlow's "
        "MultiWorkerMirroredStrategy does not work with Keras 3's fit).",
    )
    distribution.add_argument(
        "--lr-scaling",
        action="store_true",
        help="multiply --learning-rate by the number of replicas (the linear "
        "scaling rule, for a global batch that grows with the replicas).",
    )
    distribution.add_argument(
        "--coordinator-address",
        default=None,
        help="HOST:PORT of process 0 (any free port there), the same on every "
        "process (default: $JAX_COORDINATOR_ADDRESS; found by JAX under SLURM "
        "or Open MPI).",
    )
    distribution.add_argument(
        "--num-processes",
        type=cli.positive_int,
        default=None,
        help="number of processes training together (default: "
        "$JAX_NUM_PROCESSES, $SLURM_NTASKS or $OMPI_COMM_WORLD_SIZE; 1).",
    )
    distribution.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="this process' id, 0 .. N-1; 0 is the chief that writes the run "
        "directory (default: $JAX_PROCESS_ID, $SLURM_PROCID or "
        "$OMPI_COMM_WORLD_RANK).",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        default="runs/ltpa",
        help="the run directory: checkpoints, backup, TensorBoard logs, "
        "history.csv, metrics.json, model.keras, saved_models/. Reuse it to "
        "resume.",
    )
    output.add_argument(
        "--save-freq",
        type=cli.positive_int,
        default=None,
        help="also back up every N steps within an epoch (default: at the "
        "end of each epoch only).",
    )
    output.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="write no TensorBoard logs.",
    )
    output.add_argument(
        "--overlay-images",
        type=int,
        default=8,
        help="test images in the attention grid logged to TensorBoard each "
        "epoch (0: none).",
    )
    output.add_argument(
        "--no-export",
        dest="export",
        action="store_false",
        help="skip the TF Serving SavedModel export at the end.",
    )
    output.add_argument(
        "--export-dir",
        default=None,
        help="TF Serving model root the SavedModel goes to, as "
        "<export-dir>/<export-name>/<version>/ (default: "
        "<output-dir>/saved_models).",
    )
    output.add_argument(
        "--export-name",
        default="ltpa",
        help="model name under the export root (TF Serving's model name).",
    )
    output.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras fit verbosity: 1 progress bar, 2 one line per epoch, 0 "
        "silent (the summary line per epoch is always printed).",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up notes would bury our one-line errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported after parsing so that --help and flag errors are instant.
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
