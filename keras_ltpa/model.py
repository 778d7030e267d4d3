"""`build_model()` for every variant of the paper, `attention_model()`,
`describe()` and `load_model_file()`.

`build_model` returns an `AttentionClassifier`, a functional model whose
graph follows the paper's figure (normalise, backbone taps, attention head,
classifier) and whose config is its constructor arguments, so a saved model
describes itself. The variants are data (`keras_ltpa.variants`).

Reference: Jetley, Lord, Lee, Torr. "Learn To Pay Attention". ICLR 2018.
"""

import contextlib
import os
import re

import keras

from keras_ltpa import backbones
from keras_ltpa import heads
from keras_ltpa.variants import PAPER_ATTENTION_LAYERS
from keras_ltpa.variants import check_model_arguments
from keras_ltpa.variants import parse_variant
from keras_ltpa.variants import variant_name

# Per-channel mean and std of CIFAR-10 training pixels in [0, 1], as used by
# the public PyTorch implementation's input transform.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# The VGG layer whose maps Grad-CAM explains: block 5's last activation.
VGG_CAM_LAYER = "block5_relu3"
def _pixel_normalization(input_shape, pixel_mean, pixel_std):
    channels = input_shape[-1]
    mean = [float(m) for m in pixel_mean]
    std = [float(s) for s in pixel_std]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(
            f"`pixel_mean` and `pixel_std` need 1 or {channels} values (one per "
            f"channel); received pixel_mean={pixel_mean!r}, pixel_std={pixel_std!r}."
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"`pixel_std` must be positive; received {pixel_std!r}.")
    mean = mean * channels if len(mean) == 1 else mean
    std = std * channels if len(std) == 1 else std
    # (x / 255 - mean) / std as one affine map on raw 0..255 pixels.
    return keras.layers.Rescaling(
        scale=[1.0 / (255.0 * s) for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        name="pixel_normalization",
    )


@keras.saving.register_keras_serializable(package="keras_ltpa")
class AttentionClassifier(keras.Model):
    """A "Learn To Pay Attention" classifier that describes itself.

    A functional model (raw pixels in, logits out) whose constructor
    arguments are its config: `get_config()` returns them and a saved
    `.keras` file rebuilds from them, so a loaded model says its variant,
    width, input size, classes and pixel statistics (`describe(model)`).
    Build it with `build_model`, which also reads variant strings; the
    arguments are those of `build_model` after a variant is resolved.

    The graph follows the paper's figure: pixel normalisation, the
    backbone's taps (local features `l^s` and global feature `g`), the
    attention head (`g_a^s` per tap) and the classifier.

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018.
    """

    def __init__(
        self,
        num_classes,
        input_shape=(32, 32, 3),
        *,
        backbone="vgg",
        attention_layers=PAPER_ATTENTION_LAYERS,
        global_layer=None,
        compatibility="pc",
        normalization="softmax",
        aggregation="concat",
        attention_position="before",
        projector=True,
        width_multiplier=1.0,
        dropout=0.0,
        conv_bias=True,
        batch_norm_epsilon=1e-5,
        batch_norm_momentum=0.9,
        pixel_mean=CIFAR10_MEAN,
        pixel_std=CIFAR10_STD,
        class_names=None,
        dtype=None,
        name=None,
        **kwargs,
    ):
        if isinstance(backbone, dict):  # From a saved config.
            backbone = keras.saving.deserialize_keras_object(backbone)
        input_shape = tuple(input_shape)
        attention_layers = tuple(attention_layers)
        check_model_arguments(
            num_classes=num_classes,
            input_shape=input_shape,
            backbone=backbone,
            attention_layers=attention_layers,
            global_layer=global_layer,
            compatibility=compatibility,
            normalization=normalization,
            aggregation=aggregation,
            attention_position=attention_position,
            width_multiplier=width_multiplier,
            dropout=dropout,
            class_names=class_names,
        )
        class_names = None if class_names is None else list(class_names)
        if name is None:
            name = "ltpa_" + variant_name(
                attention_layers, aggregation, compatibility, normalization, attention_position
            ).replace("-", "_")

        # === Functional Model ===
        with _dtype_policy(dtype):
            inputs = keras.Input(shape=input_shape, name="images")
            x = _pixel_normalization(input_shape, pixel_mean, pixel_std)(inputs)
            local_features, global_features = backbones.backbone_taps(
                x,
                backbone,
                attention_layers,
                global_layer,
                attention_position,
                width_multiplier=width_multiplier,
                conv_bias=conv_bias,
                batch_norm_epsilon=batch_norm_epsilon,
                batch_norm_momentum=batch_norm_momentum,
                dropout=dropout,
            )
            pooled = heads.attention_head(
                local_features, global_features, compatibility, normalization, projector
            )
            logits = heads.classifier(pooled or [global_features], num_classes, aggregation)
            super().__init__(inputs, logits, name=name, **kwargs)
            policy = keras.config.dtype_policy().name

        # === Config ===
        self.num_classes = num_classes
        self.image_shape = input_shape
        self.backbone_config = (
            backbone if isinstance(backbone, str) else keras.saving.serialize_keras_object(backbone)
        )
        self.attention_layers = attention_layers
        self.global_layer = global_layer
        self.compatibility = compatibility
        self.normalization = normalization
        self.aggregation = aggregation
        self.attention_position = attention_position
        self.projector = projector
        self.width_multiplier = float(width_multiplier)
        self.dropout = float(dropout)
        self.conv_bias = conv_bias
        self.batch_norm_epsilon = batch_norm_epsilon
        self.batch_norm_momentum = batch_norm_momentum
        self.pixel_mean = tuple(float(m) for m in pixel_mean)
        self.pixel_std = tuple(float(s) for s in pixel_std)
        self.class_names = class_names
        self.policy_name = policy

    @property
    def variant(self):
        """The paper-style variant string, e.g. `"att3-concat-pc"`."""
        return variant_name(
            self.attention_layers,
            self.aggregation,
            self.compatibility,
            self.normalization,
            self.attention_position,
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "input_shape": list(self.image_shape),
            "backbone": self.backbone_config,
            "attention_layers": list(self.attention_layers),
            "global_layer": self.global_layer,
            "compatibility": self.compatibility,
            "normalization": self.normalization,
            "aggregation": self.aggregation,
            "attention_position": self.attention_position,
            "projector": self.projector,
            "width_multiplier": self.width_multiplier,
            "dropout": self.dropout,
            "conv_bias": self.conv_bias,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "batch_norm_momentum": self.batch_norm_momentum,
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "class_names": None if self.class_names is None else list(self.class_names),
            "dtype": self.policy_name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@contextlib.contextmanager
def _dtype_policy(name):
    """Builds layers under the dtype policy `name` (None: the current one)."""
    if name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(num_classes, input_shape=(32, 32, 3), *, variant=None, attention=True, **options):
    """Builds a "Learn To Pay Attention" classifier.

    The returned functional model takes raw pixels (0..255, uint8 or float)
    and outputs class logits, so `compile(loss=SparseCategoricalCrossentropy(
    from_logits=True))`, `fit` and metrics work with plain integer labels.
    Use `attention_model(model)` for the attention maps.

    Args:
        num_classes: int >= 2.
        input_shape: (height, width, channels). For the VGG backbone height
            and width must be multiples of 32.
        variant: optional paper-style string such as `"att2-indep-dp"` or
            `"att3-concat-pc-sigmoid-after"`; the settings it names replace
            `attention_layers`, `aggregation`, `compatibility`,
            `normalization` and `attention_position`.
        backbone: `"vgg"` (the paper's CIFAR VGG) or a functional
            `keras.Model` to tap.
        attention_layers: VGG: blocks that get an attention estimator, a
            subset of (3, 4, 5) (`(3, 4, 5)` = att3, `(4, 5)` = att2, `()` =
            the plain VGG baseline). Other backbones: layer names.
        global_layer: layer name giving `g` (other backbones only).
        compatibility: `"pc"` (<u, l + g>) or `"dp"` (<l, g>).
        normalization: `"softmax"` or `"sigmoid"`.
        aggregation: `"concat"` or `"indep"`.
        attention_position: `"before"` or `"after"` max-pooling (VGG only).
        attention: bool. False gives the plain baseline (same as
            `attention_layers=()`).
        projector: bool. Project local features whose width differs from g's
            with a `LinearProjector`. Without it those widths must match.
        width_multiplier: float > 0 scaling every VGG width.
        dropout: float in [0, 1). VGG dropout rate (0 = none, the paper's).
        conv_bias: bool. VGG convolutions with bias (the reference has them).
        batch_norm_epsilon, batch_norm_momentum: VGG batch norm settings
            (defaults match PyTorch's).
        pixel_mean, pixel_std: per-channel statistics in [0, 1] units; inputs
            are mapped to `(x / 255 - mean) / std` inside the model.
        class_names: optional list of `num_classes` strings, kept in the
            model's config (and so in its `.keras` file and its exports).
        name: model name; defaults to `"ltpa_" + variant`.
        **options: the keyword arguments above other than `variant` and
            `attention` are `AttentionClassifier`'s, passed on as they are.

    Returns:
        An `AttentionClassifier` (a functional `keras.Model`) with one
        output, the (N, num_classes) logits.

    Example:
    >>> model = build_model(10, width_multiplier=0.125)
    >>> model.output_shape
    (None, 10)
    >>> describe(model)["variant"]
    'att3-concat-pc'

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018.
    """
    if variant is not None:
        options.update(parse_variant(variant))
    if not attention:
        options["attention_layers"] = ()
    return AttentionClassifier(num_classes, input_shape, **options)


def load_model_file(path):
    """Loads a `.keras` file written by this package (safe mode, not compiled).

    The package's layers are registered on import, so no custom objects are
    needed.

    Raises:
        ValueError: naming `path` when it is missing, is not a `.keras` file,
            or cannot be loaded (a corrupt archive, an unknown layer, ...).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Model file not found: {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f"Model file must be a `.keras` file; received {path!r}.")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # corrupt zip, unknown layer, bad weights...
        raise ValueError(f"Cannot load the Keras model in {path!r}: {error}") from None


def describe(model):
    """What a classifier of this package is: the facts its users need.

    Read from the model's own config (`AttentionClassifier`); a `.keras` file
    written by version 0.1.0 (a plain functional model) is described from
    its layers instead.

    Returns:
        A dict: `variant` (e.g. `"att3-concat-pc"`, None for a custom
        backbone of an old file), `backbone` (`"vgg"` or the tapped model's
        name), `width_multiplier` (None when unknown), `input_shape` (H, W, C),
        `num_classes`, `class_names` (recorded names, else `"0"`..`"K-1"`),
        `class_names_recorded` (bool), `pixel_mean`, `pixel_std`,
        `attention_count` (estimators; 0 for the plain baseline) and
        `cam_layer` (the VGG's last block-5 activation, for Grad-CAM; None
        for other backbones).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {model!r}.")
    if isinstance(model, AttentionClassifier):
        names = model.class_names
        facts = {
            "variant": model.variant,
            "backbone": (
                "vgg"
                if isinstance(model.backbone_config, str)
                else model.backbone_config.get("config", {}).get("name")
            ),
            "width_multiplier": model.width_multiplier,
            "input_shape": tuple(model.image_shape),
            "num_classes": model.num_classes,
            "class_names": names,
            "pixel_mean": model.pixel_mean,
            "pixel_std": model.pixel_std,
            "attention_count": len(model.attention_layers),
        }
    else:
        facts = _describe_functional(model)
        names = None
    facts["class_names_recorded"] = names is not None
    if names is None:
        facts["class_names"] = [str(index) for index in range(facts["num_classes"])]
    layer_names = {layer.name for layer in model.layers}
    facts["cam_layer"] = VGG_CAM_LAYER if VGG_CAM_LAYER in layer_names else None
    return facts


def _describe_functional(model):
    """`describe` for a plain functional model built by version 0.1.0."""
    pattern = re.compile(r"attention_pool_(\d+)$")
    count = sum(1 for layer in model.layers if pattern.match(layer.name))
    layer_names = {layer.name for layer in model.layers}
    variant = None
    if model.name.startswith("ltpa_") and "block1_conv1" in layer_names:
        variant = model.name[len("ltpa_"):].replace("_", "-")
    width = None
    if "block1_conv1" in layer_names:
        filters = model.get_layer("block1_conv1").filters
        width = filters / backbones.VGG_BLOCKS[0][2]
    mean = std = None
    if "pixel_normalization" in layer_names:
        rescaling = model.get_layer("pixel_normalization")
        # scale = 1 / (255 std), offset = -mean / std (see _pixel_normalization).
        std = tuple(1.0 / (255.0 * float(s)) for s in rescaling.scale)
        mean = tuple(-float(o) * s for o, s in zip(rescaling.offset, std))
    return {
        "variant": variant,
        "backbone": "vgg" if "block1_conv1" in layer_names else None,
        "width_multiplier": width,
        "input_shape": tuple(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "class_names": None,
        "pixel_mean": mean,
        "pixel_std": std,
        "attention_count": count,
    }


def attention_model(model):
    """A model sharing `model`'s weights that also returns the attention maps.

    Args:
        model: a model from `build_model` (or loaded from its `.keras` file).

    Returns:
        A `keras.Model` with the same input and a dict output:
        `"logits"` (N, K), `"probabilities"` (N, K) and, for each attention
        estimator k = 1..S, `"attention_<k>"` (N, H_k, W_k), the normalised
        map, and `"scores_<k>"`, the raw compatibility scores. The plain
        baseline has no attention entries.

    Example:
    >>> model = build_model(10, width_multiplier=0.125)
    >>> sorted(attention_model(model).output)[:3]
    ['attention_1', 'attention_2', 'attention_3']
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {model!r}.")
    logits = model.outputs[0]
    outputs = {
        "logits": logits,
        "probabilities": keras.layers.Softmax(name="probabilities", dtype="float32")(
            logits
        ),
    }
    for index in range(1, describe(model)["attention_count"] + 1):
        pool = model.get_layer(f"attention_pool_{index}")
        outputs[f"attention_{index}"] = pool.output[1]
        outputs[f"scores_{index}"] = model.get_layer(f"compatibility_{index}").output
    return keras.Model(model.input, outputs, name=f"{model.name}_with_attention")
