"""`build_model()`, `attention_model()`, `describe()` and `load_model_file()`.

`build_model` returns an `AttentionClassifier`: a functional model whose
config is its constructor arguments, so a saved model describes itself. The
variants are data (`keras_ltpa.variants`); backbones, their taps and
preprocessing live in `keras_ltpa.backbones`.

Reference: Jetley, Lord, Lee, Torr. "Learn To Pay Attention". ICLR 2018.
"""

import os
import re

import keras

from keras_ltpa import backbones
from keras_ltpa import heads
from keras_ltpa.backbones.preprocessing import pixel_statistics
from keras_ltpa.utils.scopes import dtype_policy_scope
from keras_ltpa.variants import check_head_arguments
from keras_ltpa.variants import parse_variant
from keras_ltpa.variants import variant_name

# Per-channel mean and std of CIFAR-10 training pixels in [0, 1], as used by
# the public PyTorch implementation's input transform.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# The VGG layer whose maps Grad-CAM explains: block 5's last activation.
VGG_CAM_LAYER = "block5_relu3"

# `AttentionClassifier`'s config: its constructor arguments, in order, and
# the attributes that hold those whose attribute name differs.
_CONFIG_KEYS = (
    "num_classes", "input_shape", "backbone", "backbone_weights", "backbone_name", "preprocessing",
    "backbone_trainable", "attention_layers", "global_layer", "compatibility", "normalization",
    "aggregation", "attention_position", "projector", "width_multiplier", "dropout", "conv_bias",
    "batch_norm_epsilon", "batch_norm_momentum", "pixel_mean", "pixel_std", "class_names", "dtype",
)
_CONFIG_ATTRIBUTES = {
    "input_shape": "image_shape",
    "backbone": "backbone_config",
    "backbone_name": "backbone_source",
    "dtype": "policy_name",
}


@keras.saving.register_keras_serializable(package="keras_ltpa")
class AttentionClassifier(keras.Model):
    """A "Learn To Pay Attention" classifier that describes itself.

    A functional model (raw pixels in, logits out) following the paper's
    figure: the backbone's preprocessing, its taps (local features `l^s`,
    global feature `g`), the attention head (`g_a^s` per tap), the
    classifier. Its constructor arguments are its config, so a `.keras` file
    rebuilds it (offline: the backbone is kept as its config) and says what
    it is (`describe(model)`).

    Args:
        num_classes: int >= 2.
        input_shape: (height, width, channels). For the VGG backbone height
            and width must be multiples of 32.
        backbone: `"vgg"` (the paper's CIFAR VGG; alias `"vgg-cifar"`), a
            `keras.applications` name (`keras_ltpa.backbones.APPLICATIONS`:
            `"resnet50"`, `"efficientnetv2b0"`, ...), a keras-hub preset (a
            local preset folder, a preset name, an `hf://` or `kaggle://`
            handle) or a functional `keras.Model` to tap.
        backbone_weights: None (the backbone's default), `"imagenet"`
            (keras.applications' default), `"preset"` (a keras-hub preset's
            own, its default), `"none"` (random) or a weights file path.
            The VGG and a given model keep None.
        backbone_name: the keras.applications name or keras-hub preset the
            backbone came from (recorded in the config by the model itself,
            beside the serialized backbone).
        preprocessing: what the model does to raw pixels first: None (the
            default: a pretrained backbone's own map, else `"pixel_stats"`),
            `"pixel_stats"`, `"caffe"`, `"tf"`, `"torch"`, `"raw"` or
            `{"scale": ..., "offset": ...}` (`keras_ltpa.backbones.preprocessing`).
        backbone_trainable: `"all"`, `"none"` (frozen) or
            `"all_but_batch_norm"`; set by `keras_ltpa.backbones.finetune`.
        attention_layers: VGG: blocks that get an attention estimator, a
            subset of (3, 4, 5) (None or `(3, 4, 5)` = att3, `(4, 5)` = att2,
            `()` = the plain VGG baseline). Other backbones: layer names
            (None: one at each of the strides 8, 16 and 32).
        global_layer: layer name giving `g` (other backbones; None: the last
            layer at stride 32, average-pooled).
        compatibility: `"pc"` (<u, l + g>) or `"dp"` (<l, g>).
        normalization: `"softmax"` or `"sigmoid"`.
        aggregation: `"concat"` or `"indep"`.
        attention_position: `"before"` or `"after"` max-pooling (VGG only).
        projector: bool. Project local features whose width differs from g's
            with a `LinearProjector`. Without it those widths must match.
        width_multiplier, dropout, conv_bias, batch_norm_epsilon,
            batch_norm_momentum: the VGG's options (`apply_vgg_backbone`).
        pixel_mean, pixel_std: per-channel statistics in [0, 1] units; with
            `"pixel_stats"` inputs are mapped to `(x / 255 - mean) / std`.
        class_names: optional list of `num_classes` strings.
        dtype: dtype policy name to build under (None: the current one).
        name: model name; defaults to `"ltpa_" + variant`.

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018.
    """

    def __init__(
        self,
        num_classes,
        input_shape=(32, 32, 3),
        *,
        backbone="vgg",
        backbone_weights=None,
        backbone_name=None,
        preprocessing=None,
        backbone_trainable="all",
        attention_layers=None,
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
        input_shape = tuple(input_shape)
        head = dict(compatibility=compatibility, normalization=normalization, aggregation=aggregation)
        vgg = dict(width_multiplier=width_multiplier, conv_bias=conv_bias, dropout=dropout,
                   batch_norm_epsilon=batch_norm_epsilon, batch_norm_momentum=batch_norm_momentum)
        check_head_arguments(num_classes=num_classes, input_shape=input_shape, class_names=class_names,
                             attention_position=attention_position, width_multiplier=width_multiplier,
                             dropout=dropout, **head)
        # === Functional Model ===
        with dtype_policy_scope(dtype):
            resolved = backbones.resolve_backbone(
                backbone, backbone_weights, preprocessing, input_shape, backbone_name
            )
            taps = backbones.choose_taps(
                resolved, input_shape, attention_layers, global_layer, attention_position
            )
            inputs = keras.Input(shape=input_shape, name="images")
            preprocess = backbones.preprocessing_layer(
                resolved.preprocessing, input_shape, pixel_mean, pixel_std
            )
            local_features, global_features = backbones.backbone_taps(
                preprocess(inputs), resolved.model, *taps, attention_position, **vgg
            )
            logits = heads.attention_logits(local_features, global_features, num_classes, projector, **head)
            variant = variant_name(taps[0], aggregation, compatibility, normalization, attention_position)
            super().__init__(inputs, logits, name=name or "ltpa_" + variant.replace("-", "_"), **kwargs)
            policy = keras.config.dtype_policy().name

        # === Config ===
        self._record_config(resolved, taps, input_shape, num_classes, attention_position, projector,
                            head, vgg, pixel_mean, pixel_std, class_names, policy, backbone_trainable)

    def _record_config(self, resolved, taps, input_shape, num_classes, attention_position, projector,
                       head, vgg, pixel_mean, pixel_std, class_names, policy, backbone_trainable):
        """Stores every constructor argument as resolved (see `get_config`)."""
        self.backbone_trainable = "all"
        if backbone_trainable != "all":  # Recorded by the call.
            backbones.finetune.set_backbone_trainable(self, backbone_trainable)
        self._backbone = resolved
        # A given model is named by its own name, also once rebuilt from a
        # saved config (where it is recognised as, e.g., a keras-hub class).
        given = resolved.source is None and resolved.model is not None
        self.backbone_name = resolved.model.name if given else resolved.name
        self.attention_layers, self.global_layer = taps
        values = dict(
            num_classes=num_classes, image_shape=input_shape, backbone_source=resolved.source,
            backbone_weights=resolved.weights, preprocessing=resolved.preprocessing,
            attention_position=attention_position, projector=projector, policy_name=policy,
            pixel_mean=tuple(float(m) for m in pixel_mean), pixel_std=tuple(float(s) for s in pixel_std),
            class_names=None if class_names is None else list(class_names), **head, **vgg,
        )
        values.update(width_multiplier=float(vgg["width_multiplier"]), dropout=float(vgg["dropout"]))
        for attribute, value in values.items():
            setattr(self, attribute, value)

    @property
    def backbone_config(self):
        """The config's `backbone`: "vgg" or the serialized backbone model."""
        # Serialized at each call: the backbone's layers change their
        # `trainable` flags between fine-tuning stages.
        return backbones.resolve.serialized(self._backbone)

    @property
    def variant(self):
        """The paper-style variant string, e.g. `"att3-concat-pc"`."""
        return variant_name(self.attention_layers, self.aggregation, self.compatibility,
                            self.normalization, self.attention_position)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        for key in _CONFIG_KEYS:
            value = getattr(self, _CONFIG_ATTRIBUTES.get(key, key))
            config[key] = list(value) if isinstance(value, (tuple, list)) else value
        return config

    @classmethod
    def from_config(cls, config):
        # The architecture only: the weights come from the file being loaded
        # (nothing is downloaded again).
        with backbones.architecture_only():
            return cls(**config)

    @classmethod
    def from_preset(cls, preset):
        """A trained classifier from a preset, loaded in safe mode.

        Args:
            preset: a built-in preset name (`keras_ltpa.list_presets()`;
                `preset:` prefix allowed), a local preset folder (keras-hub's
                layout, or the first layout: `model.keras` +
                `metadata.json`), or a model hub handle: `hf://OWNER/NAME`,
                `kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]`.

        Returns:
            An `AttentionClassifier`, not compiled.

        Raises:
            ValueError: one line naming an unknown preset, a missing or
                corrupt file, or a handle that cannot be downloaded.

        Example:
        >>> model = AttentionClassifier.from_preset("cifar10-att3-w0125")
        >>> describe(model)["variant"]
        'att3-concat-pc'

        Reference: keras-hub's `from_preset` and preset layout.
        """
        from keras_ltpa import presets

        return presets.from_preset(preset)

    def save_to_preset(self, preset_dir, metadata=None):
        """Saves the classifier as a preset folder in keras-hub's layout.

        Writes `config.json` (the constructor arguments, nested backbone
        included), `model.weights.h5` and `metadata.json` (keras-hub's keys
        and ours: variant, backbone, input shape, class names, ... and
        `metadata`) into a temporary folder beside `preset_dir`, renamed into
        place once complete. Always float32 and without optimizer state.
        `keras_hub.upload_preset(handle, preset_dir)` publishes the folder.

        Args:
            preset_dir: the folder to write.
            metadata: optional dict of further top-level metadata entries
                (dataset, recipe, accuracy, command, ...).

        Returns:
            `preset_dir` as an absolute path.

        Example:
        >>> import os, tempfile
        >>> model = build_model(10, width_multiplier=0.0625)
        >>> folder = model.save_to_preset(os.path.join(tempfile.mkdtemp(), "mine"))
        >>> AttentionClassifier.from_preset(folder).count_params() == model.count_params()
        True
        """
        from keras_ltpa import presets

        return presets.save_to_preset(self, preset_dir, metadata)



def build_model(
    num_classes, input_shape=(32, 32, 3), *, variant=None, attention=True, weights=None, **options
):
    """Builds a "Learn To Pay Attention" classifier.

    The returned functional model takes raw pixels (0..255, uint8 or float)
    and outputs class logits, so `compile(loss=SparseCategoricalCrossentropy(
    from_logits=True))`, `fit` and metrics work with plain integer labels.
    Use `attention_model(model)` for the attention maps.

    Args:
        num_classes: int >= 2.
        input_shape: (height, width, channels).
        variant: optional paper-style string such as `"att2-indep-dp"` or
            `"att3-concat-pc-sigmoid-after"`; the settings it names replace
            `attention_layers`, `aggregation`, `compatibility`,
            `normalization` and `attention_position`.
        attention: bool. False gives the plain baseline, the classifier on
            g alone (same as `attention_layers=()`).
        weights: the backbone's weights: None (its default: `"imagenet"` for
            a keras.applications name, the preset's own for keras-hub),
            `"imagenet"`, `"preset"`, `"none"` (random) or a weights file.
            A pretrained backbone brings its own preprocessing; a random one
            keeps `pixel_mean` / `pixel_std`.
        **options: `AttentionClassifier`'s arguments (`backbone`,
            `attention_layers`, `global_layer`, `compatibility`, ...,
            `width_multiplier`, `pixel_mean`, `pixel_std`, `class_names`).

    Returns:
        An `AttentionClassifier` (a functional `keras.Model`) with one
        output, the (N, num_classes) logits.

    Example:
    >>> model = build_model(10, width_multiplier=0.125)
    >>> model.output_shape
    (None, 10)
    >>> describe(model)["variant"]
    'att3-concat-pc'
    >>> model = build_model(5, (64, 64, 3), backbone="mobilenetv3small", weights="none")
    >>> [attention_model(model).output[f"attention_{k}"].shape for k in (1, 2, 3)]
    [(None, 8, 8), (None, 4, 4), (None, 2, 2)]
    >>> [describe(model)[key] for key in ("backbone", "backbone_weights", "preprocessing")]
    ['mobilenetv3small', 'none', 'pixel_stats']

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018.
    """
    if variant is not None:
        options.update(parse_variant(variant))
    if not attention:
        options["attention_layers"] = ()
    if weights is not None:
        options["backbone_weights"] = weights
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
        A dict: `variant` (e.g. `"att3-concat-pc"`; None for a custom
        backbone of an old file), `backbone` (`"vgg"`, a keras.applications
        name, a keras-hub preset or the tapped model's name),
        `backbone_weights` and `preprocessing` (as `AttentionClassifier`
        records them), `width_multiplier` (None when unknown), `input_shape`,
        `num_classes`, `class_names` (recorded, else `"0"`..`"K-1"`),
        `class_names_recorded`, `pixel_mean` and `pixel_std` (None unless
        the preprocessing is `"pixel_stats"`), `attention_count` and
        `cam_layer` (the VGG's last block-5 activation, for Grad-CAM).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {model!r}.")
    if isinstance(model, AttentionClassifier):
        names = model.class_names
        stats = model.preprocessing == "pixel_stats"
        facts = {
            "variant": model.variant,
            "backbone": model.backbone_name,
            "backbone_weights": model.backbone_weights,
            "preprocessing": model.preprocessing,
            "width_multiplier": model.width_multiplier,
            "input_shape": tuple(model.image_shape),
            "num_classes": model.num_classes,
            "class_names": names,
            "pixel_mean": model.pixel_mean if stats else None,
            "pixel_std": model.pixel_std if stats else None,
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
    is_vgg = "block1_conv1" in layer_names
    variant = None
    if model.name.startswith("ltpa_") and is_vgg:
        variant = model.name[len("ltpa_"):].replace("_", "-")
    width = model.get_layer("block1_conv1").filters / backbones.VGG_BLOCKS[0][2] if is_vgg else None
    mean = std = None
    if "pixel_normalization" in layer_names:
        mean, std = pixel_statistics(model.get_layer("pixel_normalization"))
    return {
        "variant": variant,
        "backbone": "vgg" if is_vgg else None,
        "backbone_weights": None,
        "preprocessing": "pixel_stats" if mean is not None else None,
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
        "probabilities": keras.layers.Softmax(name="probabilities", dtype="float32")(logits),
    }
    for index in range(1, describe(model)["attention_count"] + 1):
        pool = model.get_layer(f"attention_pool_{index}")
        outputs[f"attention_{index}"] = pool.output[1]
        outputs[f"scores_{index}"] = model.get_layer(f"compatibility_{index}").output
    return keras.Model(model.input, outputs, name=f"{model.name}_with_attention")
