"""training/cli_common.py, the scripts' shared habits, and fit.py's flags
kept equal to `TrainingConfig`."""

import argparse
import dataclasses
import importlib
import json

import pytest

from keras_ltpa import train as training
from keras_ltpa.devices import precision as devices
from keras_ltpa.train import distribution
from keras_ltpa.train import optimizers
from tests.conftest import run_fit

cli = importlib.import_module("keras_ltpa.cli.common")


def test_fit_flags_and_training_config_agree():
    """Every TrainingConfig field is a fit.py flag with the same default,
    and the flags' choices are the library's."""
    parser = run_fit.build_parser()
    parsed = vars(parser.parse_args([]))
    defaults = {f.name: f.default for f in dataclasses.fields(training.TrainingConfig)}
    assert set(parsed) == set(defaults)
    assert parsed == defaults
    choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices}
    assert choices["precision"] == devices.PRECISIONS
    assert choices["jit_compile"] == devices.JIT_COMPILE
    assert choices["weight_decay_mode"] == optimizers.WEIGHT_DECAY_MODES
    assert choices["strategy"] == distribution.STRATEGIES
    assert choices["pixel_stats"] == training.PIXEL_STATS
    assert choices["recipe"] == tuple(optimizers.RECIPES)
    assert choices["lr_schedule"] == optimizers.LR_SCHEDULES


def test_bad_flag_is_one_line_and_exit_code_2(capsys):
    parser = cli.make_parser("demo.py", "Demo.\n\n    python demo.py --n 3\n")
    parser.add_argument("--n", type=cli.positive_int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "0"])
    assert exit_info.value.code == cli.EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["demo.py: error: argument --n: expected a positive integer, got '0' (see --help)"]
    assert "python demo.py --n 3" in parser.format_help()


@pytest.mark.parametrize(
    "kind, text, ok",
    [
        (cli.positive_int, "3", 3), (cli.positive_int, "-1", None), (cli.positive_int, "x", None),
        (cli.non_negative_float, "0", 0.0), (cli.non_negative_float, "-0.1", None),
        (cli.positive_float, "0.5", 0.5), (cli.positive_float, "0", None),
    ],
)
def test_argument_types(kind, text, ok):
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)
    else:
        assert kind(text) == ok


def test_class_names_argument(tmp_path):
    assert cli.class_names_argument("cat, dog") == ["cat", "dog"]
    (tmp_path / "names.txt").write_text("cat\n\ndog\n")
    assert cli.class_names_argument(str(tmp_path / "names.txt")) == ["cat", "dog"]
    (tmp_path / "names.json").write_text(json.dumps(["a", "b"]))
    assert cli.class_names_argument(str(tmp_path / "names.json")) == ["a", "b"]
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(argparse.ArgumentTypeError, match="JSON list of strings"):
        cli.class_names_argument(str(tmp_path / "bad.json"))
    with pytest.raises(argparse.ArgumentTypeError, match="not found"):
        cli.class_names_argument(str(tmp_path / "missing.txt"))


def test_run_main_turns_a_value_error_into_one_line(capsys):
    def fails():
        raise ValueError("Model file 'x.keras' is broken.")

    assert cli.run_main("demo.py", fails) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "demo.py: error: Model file 'x.keras' is broken.\n"
    assert cli.run_main("demo.py", lambda: None) == cli.EXIT_OK
