"""Score a trained model on each claim of the paper, alone or beside its baseline.

Accuracy, top-5 and per-class accuracy on the shared CIFAR-10 test images
(`keras_ltpa.evaluation.evaluate_classification`); with --tta flip also the
accuracy of the logits averaged over each image and its mirror, apart:

    python training/evaluate.py --model runs/cifar10_att3 \
        --data-dir ../shared/data/cifar10 --split test --tta flip

Localisation of the attention maps on the Weizmann horses, or on the
paper's Object Discovery set (<Class>/NNNN.jpg + <Class>/GroundTruth/
NNNN.png): mean Jaccard index of thresholded maps against the masks,
beside a centred Gaussian prior and the baseline's Grad-CAM
(`keras_ltpa.evaluation.localization`):

    python training/evaluate.py --model runs/cifar10_att3 \
        --localization ../shared/data/weizmann_horse \
        --baseline runs/cifar10_noatt --threshold mean 0.25

Robustness to FGSM on the test images of --data-dir/--dataset, eps in pixel
units of 0..255 (`keras_ltpa.evaluation.fgsm_robustness`), and cross-domain
transfer: a linear SVM on the frozen model's features of an unseen image
folder DIR/{train,test}/<class>/ or tfds set (`keras_ltpa.evaluation.domain_transfer`):

    python training/evaluate.py --model runs/cifar10_att3 --baseline runs/cifar10_noatt \
        --data-dir ../shared/data/cifar10 --fgsm 0,1,2,4,8 \
        --transfer ../shared/data/caltech101

A run trained on a single folder DIR/<class>/ with fit.py --validation-split
is scored on the images it held out: the share its config.json records
(or --validation-split F, e.g. with a .keras file outside its run):

    python training/evaluate.py --model runs/photos --data-dir photos/

All of them in one call, with --report-dir, write one report: report.json,
report.md (the tables) and the plots fgsm_accuracy.png and
localization_jaccard.png. --output writes the results as JSON alone.
"""

import argparse
import os
import sys

from keras_ltpa.cli import common as cli
from keras_ltpa.utils.checks import TTA_CHOICES


def parse_threshold(text):
    """argparse type of `--threshold`: `"mean"` or a fraction in (0, 1)."""
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


def parse_epsilons(text):
    """argparse type of `--fgsm`: comma-separated pixel units in [0, 255]."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = None
        if value is None or not 0.0 <= value <= 255.0:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not an FGSM epsilon: give comma-separated pixel "
                "units in [0, 255], e.g. 0,1,2,4,8."
            )
        values.append(value)
    return values


def _add_source_arguments(parser):
    model = parser.add_argument_group("models")
    cli.add_model_argument(model)
    model.add_argument(
        "--baseline",
        help="the plain VGG baseline (.keras, run directory or preset:NAME), scored "
        "beside the model in every evaluation (Grad-CAM for localisation)",
    )
    accuracy = parser.add_argument_group(
        "accuracy and FGSM images (give at most one source)"
    )
    source = accuracy.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="a tensorflow-datasets name, e.g. cifar10")
    source.add_argument(
        "--data-dir",
        help="an image folder DIR/<split>/<class>/<image>, or a single folder "
        "DIR/<class>/<image> split as training split it (--validation-split)",
    )
    accuracy.add_argument(
        "--split", default="test",
        help="split to score (of a single folder: 'train', else the held-out part)",
    )
    cli.add_validation_split_argument(accuracy)
    accuracy.add_argument("--batch-size", type=cli.positive_int, default=256)
    accuracy.add_argument(
        "--limit", type=cli.positive_int, help="score only this many images"
    )
    accuracy.add_argument(
        "--tta", choices=TTA_CHOICES, default="none",
        help="test-time augmentation of the accuracy: 'flip' also scores the logits "
        "averaged over each image and its left-right mirror, reported beside the "
        "plain accuracy (FGSM, localisation and transfer never use it)",
    )


def _add_localization_arguments(parser):
    localization = parser.add_argument_group("localisation")
    localization.add_argument(
        "--localization", metavar="DIR",
        help="an image+mask set: DIR/rgb/<name> + DIR/figure_ground/<name> (Weizmann), "
        "or DIR/<Class>/NNNN.jpg + DIR/<Class>/GroundTruth/NNNN.png (Object Discovery)",
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


def _add_robustness_and_transfer_arguments(parser):
    robustness = parser.add_argument_group("robustness (FGSM)")
    robustness.add_argument(
        "--fgsm", metavar="EPS,...", type=parse_epsilons,
        help="untargeted FGSM at these epsilons (pixel units of 0..255) on the "
        "images of --dataset/--data-dir --split",
    )
    robustness.add_argument(
        "--fgsm-limit", type=cli.positive_int, default=1000,
        help="attack only this many of those images (a fixed mix of classes)",
    )
    transfer = parser.add_argument_group("cross-domain transfer")
    transfer.add_argument(
        "--transfer", metavar="DIR_OR_TFDS",
        help="an image folder DIR/{train,test}/<class>/<image> or a tensorflow-datasets "
        "name: a linear SVM on the frozen model's features, fitted on train, scored on test",
    )
    transfer.add_argument(
        "--features", choices=("auto", "attention", "global"), default="auto",
        help="attention: the concatenated attention-pooled vectors; global: g; "
        "auto: attention when the model has it",
    )
    transfer.add_argument(
        "--transfer-limit", type=cli.positive_int,
        help="use only this many images of each split",
    )
    transfer.add_argument(
        "--svm-c", type=cli.positive_float, default=1.0, help="the linear SVM's C"
    )


def build_parser():
    """The evaluate command's flags, grouped: models and accuracy data,
    localisation, robustness and transfer, output."""
    parser = cli.make_parser("evaluate.py", __doc__)
    _add_source_arguments(parser)
    _add_localization_arguments(parser)
    _add_robustness_and_transfer_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--output", help="write the results to this JSON file")
    output.add_argument(
        "--report-dir",
        help="write report.json, report.md and the PNG plots into this folder",
    )
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fgsm and not (args.dataset or args.data_dir):
        parser.error("--fgsm attacks the images of --dataset or --data-dir: give one.")
    if args.validation_split is not None and not args.data_dir:
        parser.error(
            "--validation-split splits the single folder of --data-dir; give --data-dir "
            "(a tensorflow-datasets set has its own splits)."
        )
    if not (args.dataset or args.data_dir or args.localization or args.transfer):
        parser.error(
            "nothing to do: give --dataset/--data-dir, --localization and/or --transfer."
        )
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


def describe_model(model, source):
    from keras_ltpa import describe

    facts = describe(model)
    return {
        "source": source,
        "variant": facts["variant"],
        "width_multiplier": facts["width_multiplier"],
        "input_shape": list(facts["input_shape"]),
        "num_classes": facts["num_classes"],
    }


def score_accuracy(args, models, results):
    """Accuracy (and FGSM robustness with --fgsm) on --dataset/--data-dir;
    returns the dataset's class names."""
    from keras_ltpa import evaluation
    from keras_ltpa.data import pipelines as data
    from keras_ltpa.data.images import model_input_size

    dataset, class_names = data.load_dataset(
        args.split,
        dataset=args.dataset,
        data_dir=args.data_dir,
        image_size=model_input_size(models["model"]),
        batch_size=args.batch_size,
        limit=args.limit,
        validation_split=args.validation_split,
    )
    results["classification"] = {
        name: evaluation.evaluate_classification(m, dataset, class_names, tta=args.tta)
        for name, m in models.items()
    }
    for name, result in results["classification"].items():
        print(f"[{name}]\n" + evaluation.format_classification(result))
    if args.fgsm:
        images, labels = data.dataset_arrays(dataset)
        images, labels = images[: args.fgsm_limit], labels[: args.fgsm_limit]
        results["robustness"] = {
            name: evaluation.fgsm_robustness(m, images, labels, args.fgsm)
            for name, m in models.items()
        }
        print(evaluation.format_robustness(results["robustness"]))
    return class_names


def score_localization(args, models, class_names, results):
    """Jaccard of the maps against the masks of --localization."""
    from keras_ltpa import evaluation

    class_index = cam_class_index(args.cam_class, class_names)
    samples = evaluation.load_mask_dataset(args.localization, limit=args.mask_limit)
    results["localization"] = evaluation.localization(
        models["model"],
        samples,
        models.get("baseline"),
        threshold=args.threshold,
        class_index=class_index,
    )
    print(evaluation.format_localization(results["localization"]))


def score_transfer(args, models, results):
    """A linear SVM on each model's features of the --transfer set."""
    from keras_ltpa import evaluation
    from keras_ltpa.data import pipelines as data
    from keras_ltpa.data.images import model_input_size

    source = (
        {"data_dir": args.transfer}
        if os.path.isdir(args.transfer) or os.sep in args.transfer
        else {"dataset": args.transfer}
    )
    splits = {}
    for split in ("train", "test"):
        dataset, target_classes = data.load_dataset(
            split,
            image_size=model_input_size(models["model"]),
            batch_size=args.batch_size,
            limit=args.transfer_limit,
            **source,
        )
        splits[split] = data.dataset_arrays(dataset)
    results["transfer_dataset"] = args.transfer
    results["transfer"] = {
        name: evaluation.transfer(
            m,
            splits["train"],
            splits["test"],
            # --features chooses the model's; the baseline gives g.
            kind=args.features if name == "model" else "auto",
            class_names=target_classes,
            C=args.svm_c,
        )
        for name, m in models.items()
    }
    print(evaluation.format_transfer(results["transfer"]))


def write_results(args, results):
    """The --output JSON and the --report-dir report."""
    if args.output:
        from keras_ltpa.utils.files import write_json

        write_json(args.output, results)
    if args.report_dir:
        from keras_ltpa.evaluation import report

        if "localization" in results and not isinstance(results["localization"], list):
            results["localization"] = [results["localization"]]
        written = report.write_report(results, args.report_dir)
        print(f"report: {written['markdown']}")


def folder_source(args):
    """Resolves the validation split of a single --data-dir folder (the
    flag's, else the one the --model run recorded) into `args`; returns what
    the results record of the data."""
    args.validation_split, source = cli.folder_validation_split(
        args.data_dir, args.model, args.validation_split
    )
    data = {"data_dir": args.data_dir, "split": args.split}
    if args.validation_split is not None:
        held_out = cli.check_held_out_files(
            "evaluate.py", args.data_dir, args.model, args.validation_split
        )
        data.update(validation_split=args.validation_split,
                    validation_split_from=source, held_out_files=held_out)
        print(f"{args.data_dir}: a single folder, {held_out} files held out "
              f"(validation split {args.validation_split:g}, {cli.SPLIT_SOURCES[source]}); "
              f"scoring split {args.split!r}")
    return data


def evaluate(args):
    """Every evaluation the flags ask for, then the outputs."""
    # Imported here so that --help and flag errors need no backend.
    from keras_ltpa.train import runs

    models = {"model": runs.load_model(args.model)}
    if args.baseline:
        models["baseline"] = runs.load_model(args.baseline)
    class_names = runs.class_names_of(models["model"], args.model, args.class_names)
    sources = {"model": args.model, "baseline": args.baseline}
    results = {"models": {name: describe_model(m, sources[name]) for name, m in models.items()}}
    if args.data_dir:
        results["data"] = folder_source(args)
    if args.dataset or args.data_dir:
        dataset_class_names = score_accuracy(args, models, results)
        # --class-names first (as its help says), then the dataset's.
        class_names = args.class_names or dataset_class_names
    if args.localization:
        score_localization(args, models, class_names, results)
    if args.transfer:
        score_transfer(args, models, results)
    write_results(args, results)


def main(argv=None):
    args = parse_args(argv)
    return cli.run_main("evaluate.py", lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
