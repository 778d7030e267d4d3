"""Export a trained `.keras` model as a TF Serving SavedModel.

Writes `<export-dir>/<name>/<version>/` (the next free version unless
`--version` is given; an existing version is never overwritten) with the
`serving_default` (uint8 images) and `serve_bytes` (JPEG/PNG bytes)
signatures, both returning class probabilities, the top-k classes with
their names, and the attention maps:

    python training/export.py runs/cifar10_att3/model.keras \\
        --name ltpa --class-names airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck

    python training/export.py model.keras --export-dir saved_models \\
        --version 3 --top-k 3 --class-names classes.txt --no-fold-batch-norm

A model trained under JAX or PyTorch exports the same way: this script
always runs the TensorFlow backend, which SavedModel needs. Then serve it:

    docker run -p 8501:8501 \\
        --mount type=bind,source=$(pwd)/saved_models/ltpa,target=/models/ltpa \\
        -e MODEL_NAME=ltpa -t tensorflow/serving
"""

import argparse
import json
import os
import sys


def read_class_names(value):
    """`--class-names`: a text file (one name a line), a JSON list, or a,b,c."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
        if value.endswith(".json"):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as error:
                raise argparse.ArgumentTypeError(
                    f"--class-names file {value!r} is not valid JSON: {error}"
                ) from None
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise argparse.ArgumentTypeError(
                    f"--class-names file {value!r} must hold a JSON list of strings."
                )
            return names
        return [line.strip() for line in text.splitlines() if line.strip()]
    if "," not in value and (os.sep in value or value.endswith((".txt", ".json"))):
        raise argparse.ArgumentTypeError(f"--class-names file not found: {value!r}.")
    return [name.strip() for name in value.split(",")]


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer.")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the trained model, a .keras file")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--export-dir", default="saved_models",
        help="TF Serving model root; the model goes to EXPORT_DIR/NAME/VERSION "
        "(default: saved_models)",
    )
    output.add_argument("--name", default="ltpa", help="model name (default: ltpa)")
    output.add_argument(
        "--version", type=positive_int,
        help="version number (default: one more than the highest existing)",
    )
    serving = parser.add_argument_group("serving outputs")
    serving.add_argument(
        "--top-k", type=positive_int, default=5,
        help="classes returned per image, best first (default: 5)",
    )
    serving.add_argument(
        "--class-names", type=read_class_names,
        help="class names: a comma list, a text file (one per line) or a JSON "
        "list file; default: the class ids",
    )
    serving.add_argument(
        "--no-fold-batch-norm", dest="fold_batch_norm", action="store_false",
        help="keep batch norm layers as they are (default: fold them into the "
        "convolutions, checked for equal outputs)",
    )
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error(f"model file not found: {args.model!r}.")
    if not args.model.endswith(".keras"):
        parser.error(f"the model must be a .keras file; received {args.model!r}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    # SavedModel export runs on TensorFlow, whatever backend trained the
    # model; set before Keras is first imported.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    from keras_ltpa.export import export_saved_model

    try:
        path = export_saved_model(
            args.model,
            args.export_dir,
            name=args.name,
            version=args.version,
            class_names=args.class_names,
            top_k=args.top_k,
            fold_batch_norm=args.fold_batch_norm,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
