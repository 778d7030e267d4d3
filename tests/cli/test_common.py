"""The scripts' shared habits (keras_ltpa/cli/common.py), and fit.py's
parser built from `TrainingConfig`'s declared fields."""

import argparse
import dataclasses
import importlib
import json
import re

import pytest

from keras_ltpa import train as training
from keras_ltpa.devices import precision as devices
from keras_ltpa.train import config as train_config
from keras_ltpa.train import distribution
from keras_ltpa.train import optimizers
from keras_ltpa.train import options
from tests.conftest import run_fit

cli = importlib.import_module("keras_ltpa.cli.common")

# Every flag of fit.py, with the field it sets and its --help group: the
# spellings users type (those before the parser was built from the fields,
# then the backbone, split, class-weight and weight-averaging flags).
FIT_FLAGS = {
    "--dataset": ("dataset", "data"),
    "--data-dir": ("data_dir", "data"),
    "--tfds-data-dir": ("tfds_data_dir", "data"),
    "--image-size": ("image_size", "data"),
    "--augment": ("augment", "data"),
    "--pixel-stats": ("pixel_stats", "data"),
    "--cache": ("cache", "data"),
    "--limit": ("limit", "data"),
    "--test-limit": ("test_limit", "data"),
    "--variant": ("variant", "model"),
    "--width": ("width_multiplier", "model"),
    "--dropout": ("dropout", "model"),
    "--epochs": ("epochs", "optimisation"),
    "--batch-size": ("batch_size", "optimisation"),
    "--learning-rate": ("learning_rate", "optimisation"),
    "--momentum": ("momentum", "optimisation"),
    "--weight-decay": ("weight_decay", "optimisation"),
    "--weight-decay-mode": ("weight_decay_mode", "optimisation"),
    "--lr-decay-epochs": ("lr_decay_epochs", "optimisation"),
    "--lr-decay-factor": ("lr_decay_factor", "optimisation"),
    "--recipe": ("recipe", "optimisation"),
    "--lr-schedule": ("lr_schedule", "optimisation"),
    "--warmup-epochs": ("warmup_epochs", "optimisation"),
    "--label-smoothing": ("label_smoothing", "optimisation"),
    "--steps-per-epoch": ("steps_per_epoch", "optimisation"),
    "--precision": ("precision", "optimisation"),
    "--jit-compile": ("jit_compile", "optimisation"),
    "--seed": ("seed", "optimisation"),
    "--strategy": ("strategy", "distribution"),
    "--lr-scaling": ("lr_scaling", "distribution"),
    "--coordinator-address": ("coordinator_address", "distribution"),
    "--num-processes": ("num_processes", "distribution"),
    "--process-id": ("process_id", "distribution"),
    "--output-dir": ("output_dir", "output"),
    "--save-freq": ("save_freq", "output"),
    "--no-tensorboard": ("tensorboard", "output"),
    "--overlay-images": ("overlay_images", "output"),
    "--no-export": ("export", "output"),
    "--export-dir": ("export_dir", "output"),
    "--export-name": ("export_name", "output"),
    "--verbose": ("verbose", "output"),
    "--validation-split": ("validation_split", "data"),
    "--class-weight": ("class_weight", "data"),
    "--backbone": ("backbone", "model"),
    "--weights": ("weights", "model"),
    "--attention-layers": ("attention_layers", "model"),
    "--global-layer": ("global_layer", "model"),
    "--ema": ("ema", "optimisation"),
    "--ema-momentum": ("ema_momentum", "optimisation"),
    "--freeze-backbone-epochs": ("freeze_backbone_epochs", "optimisation"),
    "--backbone-lr-multiplier": ("backbone_lr_multiplier", "optimisation"),
}


def _fit_actions():
    """{flag: (action, group title)} of fit.py's parser, --help aside."""
    parser = run_fit.build_parser()
    found = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            if action.dest != "help":
                found[action.option_strings[0]] = (action, group.title)
    return parser, found


def test_fit_flags_keep_their_spelling_field_and_group():
    parser, found = _fit_actions()
    assert {flag: (action.dest, group) for flag, (action, group) in found.items()} == FIT_FLAGS
    assert [group.title for group in parser._action_groups][2:] == list(
        train_config.OPTION_GROUPS
    )
    # The data source: one of --dataset and --data-dir.
    (source,) = parser._mutually_exclusive_groups
    assert [action.dest for action in source._group_actions] == ["dataset", "data_dir"]


def test_fit_parser_is_the_declared_fields():
    """Each flag carries its field's spelling, help, default, choices and
    range; parsing no flags gives the dataclass defaults."""
    _, found = _fit_actions()
    by_dest = {action.dest: (flag, action, group) for flag, (action, group) in found.items()}
    fields = options.declared_fields(training.TrainingConfig)
    assert [field.name for field in fields] == [
        field.name for field in dataclasses.fields(training.TrainingConfig)
    ]
    for field in fields:
        flag, action, group = by_dest[field.name]
        assert flag == options.flag_of(field)
        assert group == field.metadata["group"]
        assert action.help == field.metadata["help"]
        assert action.default == field.default
        choices = field.metadata["choices"]
        assert (tuple(action.choices) if action.choices else None) == choices
        bounds = field.metadata["bounds"]
        if bounds is not None:
            # The flag refuses what the field's range refuses, at both ends.
            outside = [bounds.low if bounds.low_open else bounds.low - 1]
            if bounds.high is not None:
                outside.append(bounds.high if bounds.high_open else bounds.high + 1)
            for value in outside:
                with pytest.raises(argparse.ArgumentTypeError, match=re.escape(bounds.describe())):
                    action.type(str(value))
    parsed = vars(run_fit.build_parser().parse_args([]))
    assert parsed == {f.name: f.default for f in dataclasses.fields(training.TrainingConfig)}


def test_fit_choices_are_the_library_s():
    _, found = _fit_actions()
    choices = {action.dest: tuple(action.choices) for action, _ in found.values() if action.choices}
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
