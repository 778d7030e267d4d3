"""Regenerate the comparison over seeds: mean ± std, paired difference, verdict.

Reads the per-seed figures of the attention model and its plain-VGG twin
(`docs/results/seeds.json`), computes for every figure (accuracy, FGSM
accuracy per eps, transfer, each Jaccard rule and map) the mean ± std over
the seeds and the paired difference with its 95% t-interval
(`keras_ltpa.evaluation.seeds`), and writes the table to
`docs/results/seeds.md` and into the README between its
`<!-- seeds:start -->` and `<!-- seeds:end -->` lines:

    python training/compare_seeds.py

A seed's figures come from the report `compare_presets.py` (or
`evaluate.py --baseline ... --report-dir DIR`) writes for that seed's pair
of models; `--add-report` adds them as `--seed N` (replacing that seed's
figures if present) before the table is written:

    python training/compare_seeds.py --add-report docs/results/report.json --seed 0

A seed trained into run directories (not a preset) is filed under the
presets' names with `--model-name` and `--baseline-name`:

    python training/compare_seeds.py --add-report runs/seeds/1/report --seed 1 \
        --model-name cifar10-att3-w0125 --baseline-name cifar10-vgg-w0125

With one seed the table gives the single difference and says "1 seed: no
interval"; the verdicts need two seeds or more.
"""

import os
import pathlib
import sys

from keras_ltpa.cli import common as cli
from keras_ltpa.train.options import NON_NEGATIVE_INT

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
START_MARKER = "<!-- seeds:start -->"
END_MARKER = "<!-- seeds:end -->"


def parse_args(argv=None):
    parser = cli.make_parser("compare_seeds.py", __doc__)
    files = parser.add_argument_group("files")
    # Relative defaults: the paths land in the README as written.
    files.add_argument(
        "--seeds", default=os.path.relpath(REPO_ROOT / "docs" / "results" / "seeds.json"),
        help="the per-seed figures (JSON), created by --add-report if missing",
    )
    files.add_argument(
        "--output", default=os.path.relpath(REPO_ROOT / "docs" / "results" / "seeds.md"),
        help="the Markdown table to write",
    )
    files.add_argument("--readme", default=os.path.relpath(REPO_ROOT / "README.md"))
    files.add_argument("--no-readme", action="store_true", help="leave the README alone")
    adding = parser.add_argument_group("adding a seed")
    adding.add_argument(
        "--add-report", metavar="REPORT",
        help="an evaluation report (report.json, or the folder holding it) of a model "
        "beside its --baseline: its figures become seed --seed of both models",
    )
    adding.add_argument(
        "--seed", type=cli.number_argument(NON_NEGATIVE_INT), metavar="N",
        help="the training seed of --add-report's models",
    )
    adding.add_argument(
        "--model-name", metavar="NAME",
        help="the name to file --add-report's attention model under (default: its source "
        "in the report, without 'preset:')",
    )
    adding.add_argument("--baseline-name", metavar="NAME",
                        help="the same for its baseline")
    args = parser.parse_args(argv)
    if (args.add_report is None) != (args.seed is None):
        parser.error("--add-report and --seed go together: give both or neither.")
    if args.add_report is None and (args.model_name or args.baseline_name):
        parser.error("--model-name and --baseline-name name the models of --add-report.")
    return args


def add_report(seeds_path, report_path, seed, names=None):
    """Adds a report's figures as `seed` to the seeds file (created if missing),
    the models filed under `names` ({"model": ..., "baseline": ...}) where given."""
    from keras_ltpa.evaluation import report as ltpa_report
    from keras_ltpa.evaluation import seeds

    directory = report_path
    if os.path.basename(report_path) == ltpa_report.REPORT_JSON:
        directory = os.path.dirname(report_path) or "."
    report = ltpa_report.read_report(directory)
    document = seeds.read_seeds(seeds_path) if os.path.exists(seeds_path) else None
    document = seeds.seeds_from_report(report, seed, source=report_path, document=document,
                                       names=names)
    seeds.write_seeds(seeds_path, document)
    return document


# The rows the README shows (one per claim; every row is in seeds.md):
# accuracy, FGSM at 2 and 8 grey levels, transfer top-1, and the best map
# (attention_3) against Grad-CAM and the prior under both rules.
README_ROWS = (
    ("accuracy",), ("fgsm", "2"), ("fgsm", "8"), ("transfer", "top1"),
    ("jaccard", "mean", "attention_3"), ("jaccard", "0.25", "attention_3"),
)


def readme_block(comparison, seeds_path):
    """The README's block: the headline rows (`README_ROWS`), a link to the
    full table, and the command that wrote it."""
    from keras_ltpa.evaluation import seeds

    headline = dict(comparison, rows=[row for row in comparison["rows"] if tuple(row["key"]) in README_ROWS])
    full_table = os.path.join(os.path.dirname(seeds_path), "seeds.md")
    return "\n".join([
        START_MARKER,
        "<!-- Written by `python training/compare_seeds.py` from "
        f"`{seeds_path}`; edit that, not this. -->",
        "",
        seeds.markdown(headline).rstrip(),
        "",
        f"Every figure (each FGSM eps, each map and rule): [{full_table}]({full_table}).",
        END_MARKER,
    ])


def main(argv=None):
    args = parse_args(argv)

    def work():
        from keras_ltpa.evaluation import report as ltpa_report
        from keras_ltpa.evaluation import seeds
        from keras_ltpa.utils.files import write_atomically

        if args.add_report:
            names = {"model": args.model_name, "baseline": args.baseline_name}
            document = add_report(args.seeds, args.add_report, args.seed, names)
            print(f"seeds: added seed {args.seed} from {args.add_report} to {args.seeds}")
        else:
            document = seeds.read_seeds(args.seeds)
        comparison = seeds.compare_seeds(document)
        text = "# Seeds: the comparison with intervals\n\n" + seeds.markdown(comparison)

        def write(temporary):
            pathlib.Path(temporary).write_text(text)

        write_atomically(args.output, write)
        print(f"table: {args.output}")
        if not args.no_readme:
            block = readme_block(comparison, args.seeds)
            ltpa_report.rewrite_between_markers(args.readme, START_MARKER, END_MARKER, block)
            print(f"README: {args.readme}")
        print(seeds.markdown_table(comparison))

    return cli.run_main("compare_seeds.py", work)


if __name__ == "__main__":
    sys.exit(main())
