"""Export a trained `.keras` model as a TF Serving SavedModel.

Writes `<export-dir>/<name>/<version>/` (the next free version unless
`--version` is given; an existing version is never overwritten) with the
`serving_default` (uint8 images) and `serve_bytes` (JPEG/PNG bytes)
signatures, both returning class probabilities, the top-k classes with
their names, and the attention maps:

    python training/export.py runs/cifar10_att3 --name ltpa

The model is a `.keras` file or a run directory (its `model.keras`); the
class names are the model's own (recorded at training), else the run's, else
`--class-names`:

    python training/export.py model.keras --class-names cat,dog,horse

    python training/export.py model.keras --export-dir saved_models \\
        --version 3 --top-k 3 --class-names classes.txt --no-fold-batch-norm

A model trained under JAX or PyTorch exports the same way: this script
always runs the TensorFlow backend, which SavedModel needs. Then serve it:

    docker run -p 8501:8501 \\
        --mount type=bind,source=$(pwd)/saved_models/ltpa,target=/models/ltpa \\
        -e MODEL_NAME=ltpa -t tensorflow/serving
"""

import os
import subprocess
import sys

from keras_ltpa.cli import common as cli


def parse_args(argv=None):
    parser = cli.make_parser("export.py", __doc__)
    cli.add_model_argument(parser, "model")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--export-dir", default="saved_models",
        help="TF Serving model root; the model goes to EXPORT_DIR/NAME/VERSION",
    )
    output.add_argument("--name", default="ltpa", help="model name")
    output.add_argument(
        "--version", type=cli.positive_int,
        help="version number (default: one more than the highest existing)",
    )
    serving = parser.add_argument_group("serving outputs")
    serving.add_argument(
        "--top-k", type=cli.positive_int, default=5,
        help="classes returned per image, best first",
    )
    serving.add_argument(
        "--class-names", type=cli.class_names_argument,
        help="class names: a comma list, a text file (one per line) or a JSON "
        "list file; default: the model's (or its run's), else the class ids",
    )
    serving.add_argument(
        "--max-image-pixels", type=cli.positive_int, default=4096 * 4096,
        help="most pixels (height x width) a serve_bytes file may declare, "
        "checked from its header before decoding",
    )
    serving.add_argument(
        "--max-batch-size", type=cli.positive_int, default=64,
        help="most images in one request (both signatures)",
    )
    serving.add_argument(
        "--max-request-pixels", type=cli.positive_int, default=4 * 4096 * 4096,
        help="most pixels (height x width summed over its images) one request may "
        "hold, checked from the headers before decoding; the default, 2^26, is about "
        "a second of decoding on two CPU cores",
    )
    serving.add_argument(
        "--no-warmup", dest="warmup_requests", action="store_false",
        help="write no TF Serving warm-up file (assets.extra/tf_serving_warmup_requests)",
    )
    serving.add_argument(
        "--no-fold-batch-norm", dest="fold_batch_norm", action="store_false",
        help="keep batch norm layers as they are (default: fold them into the "
        "convolutions, checked for equal outputs)",
    )
    return parser.parse_args(argv)


def keras_backend():
    """The backend Keras runs (or will run) in this process."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # SavedModel export runs on TensorFlow, whatever backend trained the
    # model. Importing keras_ltpa has loaded Keras already, so under another
    # backend the command runs again in a TensorFlow process.
    if keras_backend() != "tensorflow":
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        command = [sys.executable, "-m", "keras_ltpa.cli.export", *argv]
        return subprocess.run(command, env=env, check=False).returncode

    def work():
        from keras_ltpa.serving.export import export_saved_model
        from keras_ltpa.train import runs

        model = runs.load_model(args.model)
        path = export_saved_model(
            model,
            args.export_dir,
            name=args.name,
            version=args.version,
            class_names=runs.class_names_of(model, args.model, args.class_names),
            top_k=args.top_k,
            fold_batch_norm=args.fold_batch_norm,
            max_image_pixels=args.max_image_pixels,
            max_batch_size=args.max_batch_size,
            max_request_pixels=args.max_request_pixels,
            warmup_requests=args.warmup_requests,
        )
        print(path)

    return cli.run_main("export.py", work)


if __name__ == "__main__":
    sys.exit(main())
