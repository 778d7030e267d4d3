"""A setting declared once: its default, flag, help, group and allowed values.

`option(...)` makes a dataclass field whose metadata holds everything a
command-line parser and a checker need: the help text, the `--help` group,
the flag's spelling, the choices or the number range. `TrainingConfig`
declares every training option this way; `keras_ltpa.cli.fit` builds its
parser from those fields and `check_options` checks a config's values
against the same declarations, so a default, a choice or a bound is written
in one place. It imports nothing heavy: `fit.py --help` loads it.
"""

import dataclasses
import numbers
import typing

from keras_ltpa.utils.checks import check_choice


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting allows: ints or floats between two bounds.

    Args:
        kind: `int` or `float` (a float setting also takes an int).
        low: the lower bound, or None for none.
        high: the upper bound, or None for none.
        low_open: whether `low` itself is excluded.
        high_open: whether `high` itself is excluded.

    Example:
    >>> Range(float, 0, 1, high_open=True).describe()
    'a number in [0, 1)'
    >>> POSITIVE_INT.parse("3")
    3
    >>> POSITIVE_INT.check("epochs", 0)
    Traceback (most recent call last):
    ...
    ValueError: `epochs` must be a positive integer; received epochs=0.
    """

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self):
        """What the range allows, in words: "a positive integer", "a number > 0"."""
        noun = "an integer" if self.kind is int else "a number"
        if self.kind is int and (self.low, self.low_open, self.high) == (1, False, None):
            return "a positive integer"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{noun} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high}"
        return noun

    def contains(self, value):
        """Whether `value` is a number of this kind within the bounds."""
        kind = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        # Written as "inside" tests so that NaN is outside every bound.
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        if self.high is not None and not (
            value < self.high if self.high_open else value <= self.high
        ):
            return False
        return True

    def check(self, name, value):
        """Returns `value`; raises ValueError naming `name` when it is outside."""
        if not self.contains(value):
            raise ValueError(f"`{name}` must be {self.describe()}; received {name}={value!r}.")
        return value

    def parse(self, text):
        """The number `text` spells; ValueError ("expected ..., got ...") when
        it spells none or one outside the range."""
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            expected = self.describe() if self.kind is int else "a number"
            raise ValueError(f"expected {expected}, got {text!r}") from None
        if not self.contains(value):
            raise ValueError(f"expected {self.describe()}, got {text!r}")
        return value


POSITIVE_INT = Range(int, 1)
NON_NEGATIVE_INT = Range(int, 0)
POSITIVE = Range(float, 0, low_open=True)
NON_NEGATIVE = Range(float, 0)
# [0, 1): a rate or a share that cannot be whole (dropout, label smoothing).
FRACTION = Range(float, 0, 1, high_open=True)
# (0, 1): a share that is neither nothing nor everything (a held-out part).
SHARE = Range(float, 0, 1, low_open=True, high_open=True)


def option(default, help, group, *, flag=None, choices=None, bounds=None, exclusive=None):
    """A dataclass field declaring one setting and its command-line flag.

    Args:
        default: the default value.
        help: the flag's help text.
        group: the `--help` group it is listed under (e.g. `"data"`).
        flag: the flag's spelling; default `--<name-with-dashes>`, or
            `--no-<name>` for a bool that defaults to True.
        choices: the allowed values, or None.
        bounds: a `Range` the value must lie in, or None.
        exclusive: a name shared by settings of which at most one may be
            given (a mutually exclusive flag group).

    Returns:
        A `dataclasses.Field`.

    Example:
    >>> @dataclasses.dataclass
    ... class Settings:
    ...     epochs: int = option(3, "epochs to train.", "optimisation", bounds=POSITIVE_INT)
    ...     tensorboard: bool = option(True, "write TensorBoard logs.", "output")
    >>> [flag_of(field) for field in dataclasses.fields(Settings)]
    ['--epochs', '--no-tensorboard']
    >>> check_options(Settings(epochs=0))
    Traceback (most recent call last):
    ...
    ValueError: `epochs` must be a positive integer; received epochs=0.
    """
    if choices is not None and bounds is not None:
        raise ValueError("An option takes `choices` or `bounds`, not both.")
    metadata = dict(
        help=help,
        group=group,
        flag=flag,
        choices=None if choices is None else tuple(choices),
        bounds=bounds,
        exclusive=exclusive,
    )
    return dataclasses.field(default=default, metadata=metadata)


def declared_fields(config_class):
    """The fields of `config_class` declared with `option`, in order."""
    return [f for f in dataclasses.fields(config_class) if "group" in f.metadata]


def value_type(field):
    """The type a field holds, None aside: `int | None` -> `int`."""
    kinds = [kind for kind in typing.get_args(field.type) if kind is not type(None)]
    return kinds[0] if kinds else field.type


def allows_none(field):
    """Whether the field's annotation admits None (an unset setting)."""
    return type(None) in typing.get_args(field.type)


def flag_of(field):
    """The command-line flag of a field declared with `option`."""
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    name = field.name.replace("_", "-")
    if value_type(field) is bool and field.default is True:
        return f"--no-{name}"
    return f"--{name}"


def check_options(config):
    """Checks every declared setting of `config` against its choices or
    bounds; a None is accepted where the annotation allows it.

    Raises:
        ValueError naming the first setting outside what it allows.
    """
    for field in declared_fields(type(config)):
        value = getattr(config, field.name)
        if value is None and allows_none(field):
            continue
        choices, bounds = field.metadata["choices"], field.metadata["bounds"]
        if choices is not None:
            check_choice(field.name, value, choices)
        if bounds is not None:
            bounds.check(field.name, value)
    return config
