"""Two training runs epoch by epoch, side by side, from their history.csv.

fit.py writes one row per epoch to `history.csv` in its run directory, with
the validation accuracy (`val_accuracy`) and the epoch's wall time
(`epoch_seconds`). This script puts two runs (an attention model and its
plain twin) into one markdown table, sums their epochs' seconds, and says
when each first reached each accuracy of `--milestones`, counting the seconds
of the epochs up to and including that one:

    python training/epoch_table.py docs/results/w025/history_att3.csv \\
        docs/results/w025/history_vgg.csv --names att3-concat-pc "plain VGG" \\
        --page docs/results/w025.md --block epochs-w025

With `--page` the table replaces the text between `<!-- NAME:start -->` and
`<!-- NAME:end -->` of that file (written to a temporary file, then renamed);
without, it is printed.
"""

import argparse
import csv
import os
import shlex
import sys

REQUIRED_COLUMNS = ("epoch", "val_accuracy", "epoch_seconds")


def read_history(path):
    """The `(epoch, val_accuracy, seconds)` rows of a fit.py history.csv.

    Epochs are numbered from 1. A resumed run may have written an epoch twice
    (the first attempt interrupted after its row); the later row wins.

    Raises:
        ValueError: the file lacks a required column, holds a value that is
            not a number, or has no rows.
    """
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: no column {', '.join(repr(n) for n in missing)} "
                f"(a fit.py history.csv has {', '.join(REQUIRED_COLUMNS)}); "
                f"found {reader.fieldnames}."
            )
        by_epoch = {}
        for line, row in enumerate(reader, start=2):
            try:
                epoch = int(row["epoch"]) + 1
                by_epoch[epoch] = (epoch, float(row["val_accuracy"]), float(row["epoch_seconds"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: not a number in {row}.") from None
    if not by_epoch:
        raise ValueError(f"{path}: no epochs.")
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def first_reaching(rows, level):
    """`(epoch, seconds of epochs so far)` when `val_accuracy >= level` first, or None."""
    elapsed = 0.0
    for epoch, accuracy, seconds in rows:
        elapsed += seconds
        if accuracy >= level:
            return epoch, elapsed
    return None


def _percent(fraction):
    return f"{100 * fraction:.1f}"


def markdown(histories, names, milestones):
    """The side-by-side table, the sums, and a line per run on its milestones."""
    header = ["epoch"]
    for name in names:
        header += [f"{name}: val. accuracy (%)", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    by_epoch = [{epoch: (accuracy, seconds) for epoch, accuracy, seconds in rows} for rows in histories]
    for epoch in sorted(set().union(*by_epoch)):
        cells = [str(epoch)]
        for table in by_epoch:
            accuracy, seconds = table.get(epoch, (None, None))
            cells += ["", ""] if accuracy is None else [_percent(accuracy), f"{seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    sums = ["sum of epochs"]
    for rows in histories:
        sums += ["", f"{sum(seconds for _, _, seconds in rows):.0f}"]
    lines += ["| " + " | ".join(sums) + " |", ""]
    for name, rows in zip(names, histories):
        reached = []
        for level in milestones:
            first = first_reaching(rows, level)
            reached.append(
                f"{_percent(level)}% never"
                if first is None
                else f"{_percent(level)}% at epoch {first[0]} ({first[1]:,.0f} s)"
            )
        best = max(accuracy for _, accuracy, _ in rows)
        lines.append(
            f"- {name}: first {', '.join(reached)}; best {_percent(best)}%, "
            f"last {_percent(rows[-1][1])}% (epoch {rows[-1][0]})."
        )
    return "\n".join(lines)


def milestone_list(text):
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or not all(0.0 < level <= 1.0 for level in levels):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give accuracies as fractions in (0, 1], comma-separated, e.g. 0.8,0.85,0.9."
        )
    return levels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("histories", nargs="+", metavar="HISTORY_CSV", help="fit.py history.csv files")
    parser.add_argument("--names", nargs="+", help="a column title per run (default: its folder's name)")
    parser.add_argument(
        "--milestones", type=milestone_list, default=[0.8, 0.85, 0.9],
        help="accuracies to time, as fractions (default 0.8,0.85,0.9)",
    )
    parser.add_argument("--page", help="a markdown file whose block --block the table replaces")
    parser.add_argument("--block", default="epochs", help="the block's marker name (default: epochs)")
    args = parser.parse_args(argv)
    if args.names is None:
        args.names = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in args.histories]
    if len(args.names) != len(args.histories):
        parser.error(f"--names gives {len(args.names)} name(s) for {len(args.histories)} history file(s).")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        histories = [read_history(path) for path in args.histories]
    except (OSError, ValueError) as error:
        print(f"epoch_table.py: {error}", file=sys.stderr)
        return 2
    table = markdown(histories, args.names, args.milestones)
    if args.page is None:
        print(table)
        return 0
    from keras_ltpa.evaluation.report import rewrite_between_markers

    start, end = f"<!-- {args.block}:start -->", f"<!-- {args.block}:end -->"
    command = "python training/epoch_table.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    written = f"<!-- Written by `{command}`; edit that, not this. -->"
    try:
        rewrite_between_markers(args.page, start, end, f"{start}\n{written}\n\n{table}\n{end}")
    except (OSError, ValueError) as error:
        print(f"epoch_table.py: {error}", file=sys.stderr)
        return 2
    print(args.page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
