"""Regenerate the README's comparison of an attention preset with its baseline.

One command runs every evaluation of the paper on the two presets (test
accuracy on the CIFAR-10 test split; Jaccard on the 328 Weizmann horses; FGSM
accuracy over eps; linear transfer to Caltech-101), writes the report
(`docs/results/`: report.json, report.md, the plots), redraws the README's
attention overlays from the attention preset, and rewrites the README
between its `<!-- comparison:start -->` and `<!-- comparison:end -->` lines:

    python training/compare_presets.py cifar10-att3-w0125 cifar10-vgg-w0125

Data come from ../shared/data (`--data-root`); `--quick` scores small
subsets (for a smoke run; the README is then left alone). `--tta flip` also
scores both models' accuracy over each test image and its mirror, reported
beside the plain accuracy, which the verdicts keep using.
"""

import os
import pathlib
import sys

from keras_ltpa.cli import common as cli
from keras_ltpa.utils.checks import TTA_CHOICES

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = "comparison"  # the README's <!-- comparison:start/end --> lines
START_MARKER = f"<!-- {BLOCK}:start -->"
END_MARKER = f"<!-- {BLOCK}:end -->"
FGSM_EPSILONS = "0,1,2,4,8,16"


def parse_args(argv=None):
    parser = cli.make_parser("compare_presets.py", __doc__)
    parser.add_argument(
        "model", help="the attention model: a preset name (e.g. cifar10-att3-w0125), a run "
        "directory or a .keras file",
    )
    parser.add_argument("baseline", help="the plain VGG baseline, named the same ways")
    # Relative defaults: the paths land in the report and the README as written.
    parser.add_argument("--data-root", default=os.path.relpath(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--output-dir", default=os.path.relpath(REPO_ROOT / "docs" / "results"))
    parser.add_argument("--readme", default=os.path.relpath(REPO_ROOT / "README.md"))
    parser.add_argument("--fgsm-limit", type=cli.positive_int, default=1000)
    parser.add_argument("--no-readme", action="store_true", help="leave the README alone")
    parser.add_argument(
        "--readme-block", default=BLOCK, metavar="NAME",
        help="rewrite the README between <!-- NAME:start --> and <!-- NAME:end --> "
        f"(default {BLOCK}; another pair of presets gets a block of its own)",
    )
    parser.add_argument(
        "--tta", choices=TTA_CHOICES, default="none",
        help="flip: also the accuracy over each test image and its mirror (evaluate.py --tta)",
    )
    parser.add_argument("--quick", action="store_true", help="small subsets; README untouched")
    return parser.parse_args(argv)


def _percent(value):
    return f"{100 * value:.1f}%"


def model_reference(name):
    """A path as given; anything else is a preset name."""
    return name if os.path.exists(name) or name.startswith("preset:") else f"preset:{name}"


def verdicts(report):
    """One line per claim of the paper: what the numbers here say."""
    lines = []
    classification = report["classification"]
    accuracy = {n: classification[n]["accuracy"] for n in ("model", "baseline")}
    holds = accuracy["model"] > accuracy["baseline"]
    # Flip TTA is reported beside, never in place of, the plain accuracy.
    flipped = "" if not all("flip_tta" in classification[n] for n in accuracy) else (
        f"; with flip TTA {_percent(classification['model']['flip_tta']['accuracy'])} vs "
        f"{_percent(classification['baseline']['flip_tta']['accuracy'])}")
    lines.append(
        f"- Accuracy (attention beats the plain CNN): {'holds' if holds else 'does not hold'} "
        f"here ({_percent(accuracy['model'])} vs {_percent(accuracy['baseline'])}{flipped})."
    )
    rule = report["localization"][0]
    jaccard = rule["jaccard"]
    attention = {m: v for m, v in jaccard.items() if m.startswith("attention_")}
    best = max(attention, key=attention.get)
    over_cam = attention[best] > jaccard["baseline_cam"]
    over_prior = attention[best] > jaccard["gaussian_prior"]
    lines.append(
        f"- Localisation (attention maps find the object): best map {best} "
        f"{attention[best]:.3f} vs the baseline's Grad-CAM {jaccard['baseline_cam']:.3f} "
        f"({'better' if over_cam else 'not better'}) and the centred prior "
        f"{jaccard['gaussian_prior']:.3f} ({'better' if over_prior else 'not better'}); "
        f"the claim {_verdict(over_cam, over_prior)} here."
    )
    robustness = report["robustness"]
    epsilons = robustness["model"]["epsilons"]
    wins = sum(
        a > b
        for eps, a, b in zip(epsilons, robustness["model"]["accuracy"], robustness["baseline"]["accuracy"])
        if eps > 0
    )
    attacked = sum(1 for eps in epsilons if eps > 0)
    lines.append(
        f"- Robustness to FGSM: the attention model is more accurate at {wins} of "
        f"{attacked} epsilons; the claim "
        f"{'holds' if wins == attacked else 'holds in part' if wins else 'does not hold'} here."
    )
    transfer = report["transfer"]
    moved = {n: transfer[n]["accuracy"] for n in ("model", "baseline")}
    target = os.path.basename(os.path.normpath(report.get("transfer_dataset", "the target set")))
    lines.append(
        f"- Transfer to an unseen dataset ({target}, linear SVM): "
        f"{'holds' if moved['model'] > moved['baseline'] else 'does not hold'} here "
        f"({_percent(moved['model'])} vs {_percent(moved['baseline'])} top-1)."
    )
    return lines


def markers(name=BLOCK):
    """The start and end lines of README block `name`."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def readme_block(report, output_dir, readme_path, overlay_path, name=BLOCK):
    from keras_ltpa.evaluation import report as ltpa_report

    relative = os.path.relpath(output_dir, os.path.dirname(os.path.abspath(readme_path)))
    tables = ltpa_report.markdown(report).split("\n", 2)[2]  # without the title
    tables = tables.replace("](fgsm_accuracy.png)", f"]({relative}/fgsm_accuracy.png)")
    overlay = os.path.relpath(overlay_path, os.path.dirname(os.path.abspath(readme_path)))
    start, end = markers(name)
    flags = "" if name == BLOCK else (
        f" --output-dir {os.path.relpath(output_dir)} --readme {os.path.relpath(readme_path)}"
        f" --readme-block {name}")
    if "flip_tta" in report["classification"]["model"]:
        flags += " --tta flip"
    lines = [
        start,
        "<!-- Written by `python training/compare_presets.py "
        f"{report['models']['model']['source'].removeprefix('preset:')} "
        f"{report['models']['baseline']['source'].removeprefix('preset:')}{flags}`; "
        "edit that, not this. -->",
        "",
        tables.rstrip(),
        "",
        f"![Localisation]({relative}/localization_jaccard.png)",
        "",
        f"![Attention overlays of the preset]({overlay})",
        "",
        "What holds at this scale:",
        "",
        *verdicts(report),
        end,
    ]
    return "\n".join(lines)


def rewrite_readme(readme_path, block, name=BLOCK):
    from keras_ltpa.evaluation.report import rewrite_between_markers

    rewrite_between_markers(readme_path, *markers(name), block)


def _verdict(over_cam, over_prior):
    if over_cam and over_prior:
        return "holds"
    return "holds only in part" if over_cam else "does not hold"


def main(argv=None):
    args = parse_args(argv)

    def work():
        from keras_ltpa.cli import evaluate as evaluate_cli
        from keras_ltpa.data import pipelines as data
        from keras_ltpa.evaluation import overlays as visualize
        from keras_ltpa.evaluation import report as ltpa_report
        from keras_ltpa.train import runs

        root = pathlib.Path(args.data_root)
        limits = ["--limit", "200", "--mask-limit", "8", "--transfer-limit", "202"] if args.quick else []
        code = evaluate_cli.main([
            "--model", model_reference(args.model),
            "--baseline", model_reference(args.baseline),
            "--data-dir", str(root / "cifar10"),
            "--localization", str(root / "weizmann_horse"), "--threshold", "mean", "0.25",
            "--fgsm", FGSM_EPSILONS, "--fgsm-limit", str(100 if args.quick else args.fgsm_limit),
            "--transfer", str(root / "caltech101"),
            "--report-dir", args.output_dir, "--tta", args.tta,
            *limits,
        ])
        if code:
            return code
        report = ltpa_report.read_report(args.output_dir)
        # The README figure: the first 8 test images of the loader's fixed order.
        dataset, class_names = data.load_dataset(
            "test", data_dir=str(root / "cifar10"), batch_size=8, limit=8
        )
        images, labels = data.dataset_arrays(dataset)
        attention = runs.load_model(model_reference(args.model))
        (overlay_path,) = visualize.save_attention_grids(
            attention, images, args.output_dir, labels, class_names, prefix="attention_overlays",
        )
        # And the first four Weizmann horses (photos of other sizes, resized).
        horses = visualize.read_images(
            sorted((root / "weizmann_horse" / "rgb").glob("*.jpg"))[:4], model=attention
        )
        visualize.save_attention_grids(
            attention, horses[0], args.output_dir, prefix="attention_horses",
        )
        if not (args.quick or args.no_readme):
            block = readme_block(report, args.output_dir, args.readme, overlay_path, args.readme_block)
            rewrite_readme(args.readme, block, args.readme_block)
        print("\n".join(verdicts(report)))

    return cli.run_main("compare_presets.py", work)


if __name__ == "__main__":
    sys.exit(main())
