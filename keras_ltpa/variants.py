"""The paper's model variants as data, and the checks of `build_model`'s
arguments.

A variant string joins tokens with `-`, each setting one argument:

    att3 / att2 / noatt      which VGG blocks get an attention estimator
    concat / indep           one classifier on [g_a^1, ..., g_a^S], or one
                             per layer with averaged probabilities
    pc / dp                  compatibility <u, l + g> or <l, g>
    softmax / sigmoid        normalisation of the scores
    before / after           local features taken before or after max-pooling
"""

from keras_ltpa import layers as ltpa_layers
from keras_ltpa.utils.checks import check_choice

PAPER_ATTENTION_LAYERS = (3, 4, 5)
ATTENTION_PRESETS = {"att3": (3, 4, 5), "att2": (4, 5), "noatt": ()}
AGGREGATIONS = ("concat", "indep")
POSITIONS = ("before", "after")
VARIANT_TOKENS = {
    **{name: ("attention_layers", layers) for name, layers in ATTENTION_PRESETS.items()},
    **{name: ("aggregation", name) for name in AGGREGATIONS},
    **{name: ("compatibility", name) for name in ltpa_layers.COMPATIBILITY_MODES},
    **{name: ("normalization", name) for name in ltpa_layers.NORMALIZATIONS},
    **{name: ("attention_position", name) for name in POSITIONS},
}


def parse_variant(variant):
    """Reads a paper-style variant string such as `"att2-indep-dp"`.

    Args:
        variant: tokens joined by `-`: att3|att2|noatt, concat|indep, pc|dp,
            softmax|sigmoid, before|after, in any order; each at most once.

    Returns:
        A dict of `build_model` keyword arguments.
    """
    if not isinstance(variant, str) or not variant:
        raise ValueError(
            f"`variant` must be a string like 'att3-concat-pc'; received {variant!r}."
        )
    options = {}
    for token in variant.lower().split("-"):
        if token not in VARIANT_TOKENS:
            raise ValueError(
                f"Unknown token {token!r} in variant={variant!r}. Allowed tokens: "
                f"{', '.join(VARIANT_TOKENS)}."
            )
        argument, value = VARIANT_TOKENS[token]
        if argument in options:
            raise ValueError(
                f"variant={variant!r} sets `{argument}` twice; use one of its tokens."
            )
        options[argument] = value
    return options


def variant_name(
    attention_layers, aggregation, compatibility, normalization, attention_position
):
    """The variant string of a configuration, e.g. `"att3-concat-pc"`."""
    if not attention_layers:
        return "noatt"
    parts = [f"att{len(attention_layers)}", aggregation, compatibility]
    if normalization != "softmax":
        parts.append(normalization)
    if attention_position != "before":
        parts.append(attention_position)
    return "-".join(parts)


def check_input_shape(input_shape):
    """ValueError naming `input_shape` unless it is (height, width, channels)
    of positive ints."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive ints; "
            f"received input_shape={input_shape!r}."
        )


def check_head_arguments(
    *,
    num_classes,
    input_shape,
    compatibility,
    normalization,
    aggregation,
    attention_position,
    width_multiplier,
    dropout,
    class_names,
):
    """Raises ValueError naming the first bad argument of `build_model` that
    does not depend on the backbone."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2; received num_classes={num_classes!r}."
        )
    check_choice("compatibility", compatibility, ltpa_layers.COMPATIBILITY_MODES)
    check_choice("normalization", normalization, ltpa_layers.NORMALIZATIONS)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("attention_position", attention_position, POSITIONS)
    if not (isinstance(width_multiplier, (int, float)) and width_multiplier > 0):
        raise ValueError(
            f"`width_multiplier` must be a positive number; received {width_multiplier!r}."
        )
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"`dropout` must be in [0, 1); received dropout={dropout!r}.")
    check_input_shape(input_shape)
    check_class_names(class_names, num_classes)


def check_class_names(class_names, num_classes):
    if class_names is None:
        return
    if isinstance(class_names, str) or not all(isinstance(name, str) for name in class_names):
        raise ValueError(
            "`class_names` must be a list of strings, one per class; received "
            f"class_names={class_names!r}."
        )
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must name each of the {num_classes} classes; "
            f"received {len(class_names)} names."
        )
