"""`option`, `Range` and `check_options`: a setting declared once."""

import dataclasses
import math

import pytest

from keras_ltpa.train import options


@pytest.mark.parametrize(
    "bounds, words",
    [
        (options.POSITIVE_INT, "a positive integer"),
        (options.NON_NEGATIVE_INT, "an integer >= 0"),
        (options.POSITIVE, "a number > 0"),
        (options.NON_NEGATIVE, "a number >= 0"),
        (options.FRACTION, "a number in [0, 1)"),
        (options.Range(float, 0, 1, low_open=True), "a number in (0, 1]"),
        (options.Range(int, high=9), "an integer <= 9"),
        (options.Range(float), "a number"),
    ],
)
def test_range_describes_itself(bounds, words):
    assert bounds.describe() == words


def test_range_contains():
    assert options.POSITIVE_INT.contains(1) and not options.POSITIVE_INT.contains(0)
    assert not options.POSITIVE_INT.contains(True)  # A bool is no count.
    assert not options.POSITIVE_INT.contains(2.0) and not options.POSITIVE_INT.contains("2")
    assert options.POSITIVE.contains(3) and options.POSITIVE.contains(0.5)
    assert not options.POSITIVE.contains(0) and not options.POSITIVE.contains(math.nan)
    assert options.FRACTION.contains(0) and not options.FRACTION.contains(1)
    assert options.Range(float, 0, 1, low_open=True).contains(1)


@pytest.mark.parametrize(
    "bounds, text, message",
    [
        (options.POSITIVE_INT, "0", "expected a positive integer, got '0'"),
        (options.POSITIVE_INT, "x", "expected a positive integer, got 'x'"),
        (options.POSITIVE_INT, "1.5", "expected a positive integer, got '1.5'"),
        (options.NON_NEGATIVE, "x", "expected a number, got 'x'"),
        (options.NON_NEGATIVE, "-0.1", "expected a number >= 0, got '-0.1'"),
        (options.NON_NEGATIVE, "nan", "expected a number >= 0, got 'nan'"),
        (options.FRACTION, "1", "expected a number in [0, 1), got '1'"),
    ],
)
def test_range_parse_refuses_naming_the_text(bounds, text, message):
    with pytest.raises(ValueError) as error:
        bounds.parse(text)
    assert str(error.value) == message


def test_range_parse_and_check_return_the_value():
    assert options.POSITIVE_INT.parse("12") == 12
    assert options.FRACTION.parse("0.25") == 0.25
    assert options.NON_NEGATIVE.check("momentum", 0) == 0
    with pytest.raises(ValueError, match=r"^`momentum` must be a number >= 0; received momentum=-1\.$"):
        options.NON_NEGATIVE.check("momentum", -1)


@dataclasses.dataclass
class _Settings:
    size: int = options.option(4, "the size.", "data", bounds=options.POSITIVE_INT)
    limit: int | None = options.option(None, "a cap.", "data", bounds=options.POSITIVE_INT)
    mode: str = options.option("a", "the mode.", "model", choices=("a", "b"))
    verbose: bool = options.option(True, "say more.", "output")
    quiet: bool = options.option(False, "say less.", "output")
    width_multiplier: float = options.option(1.0, "the width.", "model", flag="--width")
    plain: int = 0  # Not an option: no flag, no check.


def test_option_declares_flag_help_group_and_values():
    fields = options.declared_fields(_Settings)
    assert [field.name for field in fields] == [
        "size", "limit", "mode", "verbose", "quiet", "width_multiplier"
    ]
    assert [options.flag_of(field) for field in fields] == [
        "--size", "--limit", "--mode", "--no-verbose", "--quiet", "--width"
    ]
    size, limit, mode = fields[:3]
    assert (size.default, size.metadata["help"], size.metadata["group"]) == (4, "the size.", "data")
    assert mode.metadata["choices"] == ("a", "b") and mode.metadata["bounds"] is None
    assert options.value_type(limit) is int and options.allows_none(limit)
    assert options.value_type(size) is int and not options.allows_none(size)


def test_check_options():
    assert options.check_options(_Settings(limit=None, plain=-5)).plain == -5
    with pytest.raises(ValueError, match="`size` must be a positive integer; received size=0"):
        options.check_options(_Settings(size=0))
    with pytest.raises(ValueError, match="`limit` must be a positive integer"):
        options.check_options(_Settings(limit=0))
    with pytest.raises(ValueError, match="`mode` must be one of 'a', 'b'; received mode='c'"):
        options.check_options(_Settings(mode="c"))


def test_an_option_takes_choices_or_bounds():
    with pytest.raises(ValueError, match="not both"):
        options.option(1, "x.", "data", choices=(1, 2), bounds=options.POSITIVE_INT)
