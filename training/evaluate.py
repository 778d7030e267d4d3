"""Score a trained model: accuracy on a split, localisation on real masks.

Accuracy, top-5 and per-class accuracy on the shared CIFAR-10 test images
(`keras_ltpa.evaluate.evaluate_classification`):

    python training/evaluate.py --model runs/cifar10_att3 \\
        --data-dir ../shared/data/cifar10 --split test

Localisation of the attention maps on the Weizmann horses (mean Jaccard
index of thresholded maps against the figure-ground masks, beside a centred
Gaussian prior and the plain VGG baseline's Grad-CAM;
`keras_ltpa.evaluate.localization`, whose docstring gives the exact rules):

    python training/evaluate.py --model runs/cifar10_att3 \\
        --localization ../shared/data/weizmann_horse \\
        --baseline runs/cifar10_noatt --threshold mean 0.25 \\
        --output localization.json

Both can be asked for in one call. Results are printed as a table and, with
`--output`, written as JSON (per-image Jaccard indices included).
"""

import argparse
import sys

import cli_common as cli


def parse_threshold(text):
    if text == "mean":
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a threshold: use 'mean' or a fraction in (0, 1)."
        )
    return value


def parse_args(argv=None):
    parser = cli.make_parser("evaluate.py", __doc__)
    model = parser.add_argument_group("model")
    cli.add_model_argument(model)
    accuracy = parser.add_argument_group("accuracy (give at most one source)")
    source = accuracy.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="a tensorflow-datasets name, e.g. cifar10")
    source.add_argument("--data-dir", help="an image folder DIR/<split>/<class>/<image>")
    accuracy.add_argument("--split", default="test", help="split to score")
    accuracy.add_argument("--batch-size", type=cli.positive_int, default=256)
    accuracy.add_argument(
        "--limit", type=cli.positive_int, help="score only this many images"
    )
    localization = parser.add_argument_group("localisation")
    localization.add_argument(
        "--localization", metavar="DIR",
        help="an image+mask set: DIR/rgb/<name> and DIR/figure_ground/<name>",
    )
    localization.add_argument(
        "--baseline",
        help="the plain VGG baseline (.keras or run directory) for the CAM reference",
    )
    localization.add_argument(
        "--threshold", nargs="+", type=parse_threshold, default=["mean"],
        help="region rules: 'mean' (above the map's mean) and/or top fractions, e.g. 0.25",
    )
    localization.add_argument(
        "--cam-class",
        help="class explained by Grad-CAM (name or id); default: each image's prediction",
    )
    localization.add_argument(
        "--class-names", type=cli.class_names_argument,
        help="class names for --cam-class by name (default: the model's, else its run's)",
    )
    localization.add_argument(
        "--mask-limit", type=cli.positive_int, help="score only the first N images"
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if not (args.dataset or args.data_dir or args.localization):
        parser.error("nothing to do: give --dataset/--data-dir and/or --localization.")
    return args


def cam_class_index(cam_class, class_names):
    if cam_class is None:
        return None
    if cam_class.isdigit():
        return int(cam_class)
    if class_names and cam_class in class_names:
        return list(class_names).index(cam_class)
    raise ValueError(
        f"--cam-class {cam_class!r} is neither a class id nor one of the class names "
        f"({', '.join(class_names) if class_names else 'none given: pass --class-names'})."
    )


def main(argv=None):
    args = parse_args(argv)

    def work():
        # Imported here so that --help and flag errors need no backend.
        from keras_ltpa import evaluate
        from keras_ltpa import runs

        results = {}
        model = runs.load_model(args.model)
        class_names = runs.class_names_of(model, args.model, args.class_names)
        if args.dataset or args.data_dir:
            from keras_ltpa import data

            dataset, class_names = data.load_dataset(
                args.split,
                dataset=args.dataset,
                data_dir=args.data_dir,
                image_size=tuple(model.input_shape[1:3]),
                batch_size=args.batch_size,
                limit=args.limit,
            )
            results["classification"] = evaluate.evaluate_classification(
                model, dataset, class_names
            )
            print(evaluate.format_classification(results["classification"]))
        if args.localization:
            class_index = cam_class_index(args.cam_class, class_names)
            samples = evaluate.load_mask_dataset(args.localization, limit=args.mask_limit)
            baseline = runs.load_model(args.baseline) if args.baseline else None
            results["localization"] = evaluate.localization(
                model, samples, baseline, threshold=args.threshold, class_index=class_index
            )
            print(evaluate.format_localization(results["localization"]))
        if args.output:
            from keras_ltpa.files import write_json

            write_json(args.output, results)

    return cli.run_main("evaluate.py", work)


if __name__ == "__main__":
    sys.exit(main())
