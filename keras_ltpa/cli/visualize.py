"""Attention overlays of a trained model, written as PNG grids.

Each grid has one row per image: the image, then each attention map
upsampled, min-max scaled, coloured (jet) and blended over it (0.6 image +
0.4 map), with the predicted class (and the true one when known) above the
row. The work is done by `keras_ltpa.evaluation.overlays.save_attention_grids`.

From a run folder (or a `.keras` file) and CIFAR-10 test images of the
shared image folder (true classes shown):

    python training/visualize.py --model runs/cifar10_att3 \\
        --data-dir ../shared/data/cifar10 --split test --num-images 8 \\
        --output overlays/

From image files or folders (an image inside a folder named after a class
gets that class as its true label):

    python training/visualize.py --model runs/cifar10_att3/model.keras \\
        --images ../shared/data/weizmann_horse/rgb/horse001.jpg photos/ \\
        --class-names airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck \\
        --output overlays/

From a run trained on a single folder DIR/<class>/ (fit.py
--validation-split): the images it held out, at the model's resolution (the
share its config.json records, or --validation-split F):

    python training/visualize.py --model runs/photos --data-dir photos/ \\
        --num-images 8 --output overlays/

From a tensorflow-datasets split:

    python training/visualize.py --model runs/cifar10_att3 \\
        --dataset cifar10 --split test --num-images 16 --output overlays/

Writes `<output>/<prefix>_000.png`, `_001.png`, ... (`--rows-per-grid`
images each) and prints their paths.
"""

import os
import sys

from keras_ltpa.cli import common as cli


def parse_args(argv=None):
    parser = cli.make_parser("visualize.py", __doc__)
    model = parser.add_argument_group("model")
    cli.add_model_argument(model)
    data = parser.add_argument_group("data (give one source)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", nargs="+", metavar="PATH",
        help="image files and/or folders of images (searched recursively)",
    )
    source.add_argument("--dataset", help="a tensorflow-datasets name, e.g. cifar10")
    source.add_argument(
        "--data-dir",
        help="an image folder DIR/<split>/<class>/<image>, or a single folder "
        "DIR/<class>/<image> split as training split it (--validation-split)",
    )
    data.add_argument(
        "--split", default="test",
        help="split of --dataset/--data-dir (of a single folder: 'train', else the "
        "held-out part)",
    )
    cli.add_validation_split_argument(data)
    data.add_argument(
        "--num-images", type=cli.positive_int, default=8,
        help="images taken from --dataset/--data-dir (a fixed mix of classes)",
    )
    data.add_argument(
        "--class-names", type=cli.class_names_argument,
        help="class names for --images: a comma list or a file (default: the "
        "model's, else its run's, else class ids)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output", required=True, help="folder for the PNG files")
    output.add_argument("--prefix", default="attention", help="file name prefix")
    output.add_argument(
        "--rows-per-grid", type=cli.positive_int, default=8, help="images per PNG"
    )
    output.add_argument(
        "--tile-size", type=cli.positive_int, default=128, help="tile height in pixels"
    )
    output.add_argument("--cmap", default="jet", help="matplotlib colour map")
    args = parser.parse_args(argv)
    if args.validation_split is not None and not args.data_dir:
        parser.error(
            "--validation-split splits the single folder of --data-dir; give --data-dir "
            "(a tensorflow-datasets set has its own splits)."
        )
    return args


def main(argv=None):
    args = parse_args(argv)

    def work():
        # Imported here so that --help and flag errors need no backend.
        from keras_ltpa.data.images import model_input_size
        from keras_ltpa.evaluation import overlays as visualize
        from keras_ltpa.train import runs

        model = runs.load_model(args.model)
        if args.images:
            class_names = runs.class_names_of(model, args.model, args.class_names)
            images, labels, _ = visualize.read_images(args.images, class_names=class_names, model=model)
        else:
            from keras_ltpa.data import pipelines as data

            validation_split = None
            if args.data_dir:
                validation_split, _ = cli.folder_validation_split(
                    args.data_dir, args.model, args.validation_split
                )
            if validation_split is not None:
                cli.check_held_out_files("visualize.py", args.data_dir, args.model, validation_split)
            dataset, class_names = data.load_dataset(
                args.split,
                dataset=args.dataset,
                data_dir=args.data_dir,
                image_size=model_input_size(model),
                batch_size=args.num_images,
                limit=args.num_images,
                validation_split=validation_split,
            )
            images, labels = next(dataset.as_numpy_iterator())
        paths = visualize.save_attention_grids(
            model,
            images,
            args.output,
            labels,
            class_names,
            rows_per_grid=args.rows_per_grid,
            prefix=args.prefix,
            tile_size=args.tile_size,
            cmap=args.cmap,
        )
        for path in paths:
            print(os.path.abspath(path))

    return cli.run_main("visualize.py", work)


if __name__ == "__main__":
    sys.exit(main())
