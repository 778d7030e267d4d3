"""The habits shared by the command-line scripts (`keras_ltpa.cli.*`).

Every script parses with `Parser` (a bad flag is one line on stderr and exit
code 2), takes its model with `add_model_argument` (a `.keras` file or a
run directory, loaded by `keras_ltpa.train.runs.load_model`), and runs its work
through `run_main`, which prints a `ValueError` as `<script>: error:
<message>` and returns `EXIT_BAD_INPUT`. Number flags are checked by
`number_argument` against the same `Range`s the training options declare.

This module imports nothing heavy (the scripts import their libraries after
parsing), so `--help` and flag errors cost no more than importing the package.
"""

import argparse
import json
import os
import sys

from keras_ltpa.train.options import NON_NEGATIVE
from keras_ltpa.train.options import POSITIVE
from keras_ltpa.train.options import POSITIVE_INT
from keras_ltpa.train.options import SHARE

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """Reports a bad flag in one line (no usage block) with exit code 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the docstring's layout and shows "(default: X)" where there is
    a value to show."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if (
            action.default is None
            or isinstance(action.default, bool)
            or action.default is argparse.SUPPRESS
            or "%(default)" in help_text
            or "default:" in help_text
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


def make_parser(prog, doc):
    """A `Parser` for the script `prog` whose description is `doc`'s first
    paragraph and whose epilog is the rest (the command lines)."""
    summary, _, examples = (doc or "").strip().partition("\n\n")
    return Parser(
        prog=prog, description=summary, epilog=examples, formatter_class=HelpFormatter
    )


def number_argument(bounds):
    """An argparse type for numbers within `bounds` (a
    `keras_ltpa.train.options.Range`): a number outside, or a text that is
    none, is reported as "expected <what bounds allows>, got <text>".

    Example:
    >>> number_argument(POSITIVE_INT)("3")
    3
    >>> number_argument(POSITIVE_INT)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """

    def parse(text):
        try:
            return bounds.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


# argparse types: an int >= 1, a float >= 0, a float > 0.
positive_int = number_argument(POSITIVE_INT)
non_negative_float = number_argument(NON_NEGATIVE)
positive_float = number_argument(POSITIVE)


def class_names_argument(value):
    """argparse type for `--class-names`: a comma list, a text file (one
    name per line) or a JSON list file."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            text = file.read()
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


MODEL_HELP = (
    "the trained model: a .keras file, a run directory (its model.keras, "
    "else checkpoints/best.keras), or preset:NAME for a model shipped with "
    "the package (e.g. preset:cifar10-att3-w0125)"
)


def add_model_argument(parser, flag="--model", required=True, help=MODEL_HELP):
    """Adds the model argument (`--model PATH`, or a positional `model`)."""
    if flag.startswith("-"):
        parser.add_argument(flag, required=required, metavar="PATH", help=help)
    else:
        parser.add_argument(flag, metavar="MODEL", help=help)


def run_main(prog, work):
    """Calls `work()` and returns its exit code; a ValueError (bad input: a
    missing file, a bad image, a wrong setting) is printed as one line,
    `<prog>: error: <message>`, and gives `EXIT_BAD_INPUT`."""
    try:
        code = work()
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if code is None else code


VALIDATION_SPLIT_HELP = (
    "for a single image folder DIR/<class>/<image> (no train/ and test/ inside): the "
    "share of each class held out, in (0, 1), as fit.py's --validation-split; --split test "
    "takes the held-out images (default: the share the --model run recorded in its config.json)"
)


# Where `folder_validation_split` found the split, in words.
SPLIT_SOURCES = {"flag": "from --validation-split", "run": "recorded by the run"}


def add_validation_split_argument(group):
    """Adds `--validation-split F` (a number in (0, 1))."""
    group.add_argument(
        "--validation-split", type=number_argument(SHARE), metavar="F",
        help=VALIDATION_SPLIT_HELP,
    )


def is_single_folder(data_dir):
    """Whether `data_dir` is a single folder DIR/<class>/<image>: a folder
    without a `train` sub-folder."""
    return os.path.isdir(data_dir) and not os.path.isdir(os.path.join(data_dir, "train"))


def folder_validation_split(data_dir, model_path, given=None):
    """The validation split to read `data_dir` with, and where it came from.

    A folder with `train/` inside is read as it is (`given` for it is a
    ValueError naming the flag). A single folder needs a split: `given` (the
    `--validation-split` flag), else the one the run of `model_path`
    recorded in its config.json; with neither, a ValueError names
    `--validation-split`. A missing folder is left to the data loader.

    Returns:
        `(fraction, source)`: `fraction` None for a train/test folder, and
        `source` one of "flag", "run" or None.
    """
    if not is_single_folder(data_dir):
        if given is not None and os.path.isdir(data_dir):
            raise ValueError(
                f"--validation-split splits a single folder DIR/<class>/<image>; --data-dir "
                f"{data_dir!r} has a 'train' folder: drop --validation-split to score its "
                "train/test split."
            )
        return None, None
    if given is not None:
        return given, "flag"
    from keras_ltpa.train import runs

    recorded = None
    if not os.fspath(model_path).startswith("preset:"):
        recorded = (runs.read_run_config(model_path) or {}).get("validation_split")
    if recorded is None:
        raise ValueError(
            f"--data-dir {data_dir!r} has no 'train' folder: a single folder DIR/<class>/<image> "
            "needs --validation-split F (the share of each class held out, in (0, 1), as given "
            "to fit.py), or --model a run trained on it with --validation-split, whose "
            "config.json records it."
        )
    return float(recorded), "run"


def check_held_out_files(prog, data_dir, model_path, fraction):
    """Warns (one line on stderr) when the held-out files of `data_dir` at
    `fraction` are not those the run of `model_path` recorded: the folder
    changed since training (or is another one), so images the model trained
    on may be among those scored. Returns the number of held-out files."""
    from keras_ltpa.data.sources import describe_split
    from keras_ltpa.train import runs

    held = describe_split(data_dir, fraction)["validation_files"]
    config = {}
    if not os.fspath(model_path).startswith("preset:"):
        config = runs.read_run_config(model_path) or {}
    recorded = (config.get("validation_split_files") or {}).get("validation_files")
    if recorded is not None and config.get("validation_split") == fraction:
        differ = len(set(held) ^ set(recorded))
        if differ:
            print(
                f"{prog}: warning: {differ} file(s) differ between the held-out part of "
                f"{data_dir!r} ({len(held)} files) and the one the run recorded "
                f"({len(recorded)} files): the folder is not the one it trained on, and "
                "images it trained on may be among those scored.",
                file=sys.stderr,
            )
    return len(held)
