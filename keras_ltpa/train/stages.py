"""The backbone side of a training run: which model `fit.py` builds, and the
stages it trains in.

`model_options` turns a `TrainingConfig` into `build_model` arguments (the
paper's VGG, a keras.applications name or a keras-hub preset, the variant's
head, the taps). `training_stages` plans the epochs: with
`freeze_backbone_epochs = N`, epochs 1..N train the attention head and the
classifier with the backbone frozen (its batch norm in inference mode);
the epochs after train every layer, the backbone's batch norm still in
inference mode and its learning rate `backbone_lr_multiplier` times the
head's. With N = 0 a pretrained backbone is fine-tuned that way from the
first epoch, and a backbone from random weights (the paper's VGG among
them) trains like any other layer. Each stage keeps its own resumable
backup, so a run killed in either stage resumes where it was.
"""

import dataclasses
import os

import keras

from keras_ltpa import backbones
from keras_ltpa.backbones.resolve import VGG_NAMES
from keras_ltpa.backbones.resolve import uses_pixel_stats
from keras_ltpa.backbones.vgg import VGG_REDUCTION
from keras_ltpa.train import runs
from keras_ltpa.train.losses import compile_model
from keras_ltpa.utils.keras_internals import moving_averages
from keras_ltpa.variants import ATTENTION_PRESETS
from keras_ltpa.variants import parse_variant

# The smallest image a backbone other than the VGG takes: one pixel at
# stride 32, the last of the taps.
MIN_BACKBONE_IMAGE_SIZE = 32
# The default image side: the paper's CIFAR size for the VGG, the ImageNet
# size the other backbones are made for.
VGG_IMAGE_SIZE = 32
BACKBONE_IMAGE_SIZE = 224
# The frozen stage keeps its backup in this folder inside the run's backup/
# folder; the stage that trains the backbone (or the only one) backs up into
# backup/ itself. Their optimizers differ, so each restores only its own.
FROZEN_STAGE = "frozen_backbone"


def is_vgg(config):
    """Whether the run trains the paper's VGG."""
    return config.backbone.lower() in VGG_NAMES


def pretrained(config):
    """Whether the run starts from a pretrained backbone, whose own
    preprocessing replaces the pixel statistics."""
    return not uses_pixel_stats(config.backbone, config.weights)


def needs_pixel_statistics(config):
    """Whether the model normalises with the data's pixel statistics: a
    backbone from random weights, or a keras-hub preset without an image
    converter (reads the preset's files, fetched by `check_backbone_source`)."""
    if not pretrained(config):
        return True
    if is_vgg(config) or backbones.applications.is_application(config.backbone):
        return False
    return backbones.hub.converter_preprocessing(config.backbone) is None


def default_image_size(config):
    return VGG_IMAGE_SIZE if is_vgg(config) else BACKBONE_IMAGE_SIZE


def _layer_names(text):
    return tuple(name.strip() for name in text.split(",") if name.strip())


def check_backbone_settings(config):
    """The rules between the backbone and the other settings; raises a
    ValueError naming the setting and what is allowed."""
    if is_vgg(config):
        _check_vgg_settings(config)
    else:
        _check_other_backbone(config)
    if config.freeze_backbone_epochs > config.epochs:
        raise ValueError(
            f"`freeze_backbone_epochs` must be <= epochs ({config.epochs}); received "
            f"freeze_backbone_epochs={config.freeze_backbone_epochs}."
        )
    if config.pixel_stats != "auto" and pretrained(config):
        raise ValueError(
            f"`pixel_stats` applies to a backbone from random weights; pretrained backbone "
            f"{config.backbone!r} brings its own preprocessing. Leave pixel_stats='auto', or "
            f"train from random weights with weights='none'; received pixel_stats={config.pixel_stats!r}."
        )


def _check_vgg_settings(config):
    if config.weights not in (None, "none"):
        raise ValueError(
            "`weights` applies to keras.applications and keras-hub backbones; the paper's VGG "
            f"trains from random weights (weights='none'); received weights={config.weights!r}."
        )
    if config.image_size % VGG_REDUCTION:
        raise ValueError(
            f"`image_size` must be a multiple of {VGG_REDUCTION} (the VGG "
            f"backbone pools five times); received {config.image_size}."
        )
    if config.global_layer is not None:
        raise ValueError(
            "`global_layer` names a layer of a keras.applications or keras-hub backbone; the "
            f"VGG's g is its block 6. Received global_layer={config.global_layer!r}."
        )
    if config.attention_layers is not None:
        blocks = _layer_names(config.attention_layers)
        if not all(block.isdigit() for block in blocks):
            raise ValueError(
                "With the VGG backbone `attention_layers` lists block numbers (3, 4, 5), e.g. "
                f"'4,5'; received attention_layers={config.attention_layers!r}."
            )


def _check_other_backbone(config):
    name = config.backbone
    if config.image_size < MIN_BACKBONE_IMAGE_SIZE:
        raise ValueError(
            f"`image_size` must be >= {MIN_BACKBONE_IMAGE_SIZE} with backbone {name!r} (its "
            f"stride-32 stage needs a 32-pixel image); received {config.image_size}."
        )
    for setting, value, default in (
        ("width_multiplier", config.width_multiplier, 1.0),
        ("dropout", config.dropout, 0.0),
    ):
        if value != default:
            raise ValueError(
                f"`{setting}` is an option of the VGG backbone; with backbone {name!r} leave "
                f"it at {default}; received {setting}={value!r}."
            )
    head = parse_variant(config.variant)
    if head.get("attention_position", "before") != "before":
        raise ValueError(
            f"Variant token 'after' applies to the VGG backbone; with backbone {name!r} name "
            f"the layers to tap with attention_layers; received variant={config.variant!r}."
        )
    layers = head.get("attention_layers")
    if config.attention_layers is not None and layers == ():
        raise ValueError(
            f"variant={config.variant!r} has no attention estimator, but attention_layers="
            f"{config.attention_layers!r} names layers for them; drop one of the two."
        )
    if config.attention_layers is None and layers not in (None, (), ATTENTION_PRESETS["att3"]):
        raise ValueError(
            f"variant={config.variant!r} names VGG blocks; with backbone {name!r} name the "
            "layers to tap with attention_layers (default: the three taps at strides 8, 16, 32)."
        )


def model_options(config):
    """`build_model` keyword arguments (besides the classes, input shape and
    pixel statistics) for a checked config."""
    head = parse_variant(config.variant)
    if is_vgg(config):
        if config.attention_layers is not None:
            head["attention_layers"] = tuple(int(b) for b in _layer_names(config.attention_layers))
        return dict(
            backbone=config.backbone, width_multiplier=config.width_multiplier,
            dropout=config.dropout, **head,
        )
    head.pop("attention_position", None)
    layers = head.pop("attention_layers", None)
    if config.attention_layers is not None:
        layers = _layer_names(config.attention_layers)
    elif layers:
        layers = None  # att3: the backbone's default taps at strides 8, 16 and 32.
    return dict(
        backbone=config.backbone, weights=config.weights, attention_layers=layers,
        global_layer=config.global_layer, **head,
    )


@dataclasses.dataclass(frozen=True)
class Stage:
    """Epochs `start` (0-based, included) to `end` (excluded) trained with
    the backbone `backbone_trainable` (see
    `keras_ltpa.backbones.set_backbone_trainable`) at `lr_multiplier` times
    the head's rate, backed up in `backup` (relative to the run's backup
    folder)."""

    name: str
    start: int
    end: int
    backbone_trainable: str
    lr_multiplier: float
    backup: str

    def describe(self):
        """What config.json records: 1-based first and last epochs."""
        return dict(
            name=self.name, epochs=[self.start + 1, self.end],
            backbone_trainable=self.backbone_trainable, backbone_lr_multiplier=self.lr_multiplier,
            backup=self.backup,
        )


def training_stages(config):
    """The stages of a checked config's run, in order (one or two).

    Example:
    >>> from keras_ltpa.train.config import TrainingConfig
    >>> config = TrainingConfig(data_dir="images", backbone="resnet50", epochs=5,
    ...                         freeze_backbone_epochs=2).validate()
    >>> [(s.name, s.start, s.end, s.backbone_trainable) for s in training_stages(config)]
    [('frozen_backbone', 0, 2, 'none'), ('fine_tune', 2, 5, 'all_but_batch_norm')]
    """
    frozen = config.freeze_backbone_epochs
    stages = []
    if frozen:
        stages.append(Stage(FROZEN_STAGE, 0, frozen, "none", 1.0, FROZEN_STAGE))
    if frozen < config.epochs:
        if frozen or pretrained(config):
            multiplier = float(config.backbone_lr_multiplier)
            stages.append(Stage("fine_tune", frozen, config.epochs, "all_but_batch_norm", multiplier, "."))
        else:
            stages.append(Stage("train", 0, config.epochs, "all", 1.0, "."))
    return stages


def backup_dir(backup_root, stage):
    """The folder a stage's backup lives in."""
    return os.path.normpath(os.path.join(backup_root, stage.backup))


def first_stage(stages, backup_root):
    """The index of the stage to start from: the last one that has a backup
    in `backup_root` (a run killed in it resumes there), else 0."""
    for index in reversed(range(1, len(stages))):
        if runs.backup_epoch(backup_dir(backup_root, stages[index])) is not None:
            return index
    return 0


def compile_stage(model, stage, optimizer, previous_optimizer=None, **compile_options):
    """Sets which backbone layers train in `stage` and compiles `model` with
    `optimizer` (the backbone's rate scaled for the stage).

    After an earlier stage of the same call, the step count carries on from
    `previous_optimizer`, so the learning-rate schedule continues, and with
    weight averaging (`use_ema`) the averages of every variable the stage
    trains start from the model's weights, as Keras' first step would have
    them (a restored backup then overrides both). Call inside the
    distribution's scope.

    Args:
        model: the run's model (from `build_model`).
        stage: a `Stage`.
        optimizer: a new, unbuilt optimizer with the head's rate.
        previous_optimizer: the optimizer of the stage before, or None.
        **compile_options: `keras_ltpa.train.losses.compile_model`'s
            keywords.
    """
    if model.backbone_trainable != stage.backbone_trainable:
        backbones.set_backbone_trainable(model, stage.backbone_trainable)
    optimizer = backbones.backbone_learning_rate(optimizer, model, stage.lr_multiplier)
    compile_model(model, optimizer, **compile_options)
    if previous_optimizer is not None:
        model.optimizer.build(model.trainable_variables)
        for old, new in zip(_step_counters(previous_optimizer), _step_counters(model.optimizer)):
            new.iterations.assign(old.iterations)
            if getattr(new, "use_ema", False):
                # Keras copies the weights into the averages at step 0 only
                # (they start at zero): past it, copy them here. A copy, not
                # the same buffer: JAX's train step donates both.
                for variable, average in zip(model.trainable_variables, moving_averages(new)):
                    average.assign(keras.ops.copy(variable.value))


def _step_counters(optimizer):
    """The optimizer and, under loss scaling, the one it wraps: each counts
    the steps its schedule follows."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return [optimizer, optimizer.inner_optimizer]
    return [optimizer]


def check_backbone_source(config):
    """Fails fast, before any data is read, on a backbone name that names
    nothing and on a backbone that would be downloaded without a network
    (the library's one-line errors, within seconds). Building the backbone
    once for that caches what it downloads for the model built next."""
    if is_vgg(config):
        return
    name, weights = config.backbone, config.weights
    is_application = backbones.applications.is_application(name)
    remote_hub = not is_application and not os.path.isdir(name)
    downloads = is_application and weights in (None, "imagenet")
    if remote_hub or downloads:
        size = config.image_size
        backbones.resolve_backbone(name, weights, input_shape=(size, size, 3))
