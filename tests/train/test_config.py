"""`TrainingConfig`: the paper's defaults, every check in one place, the
augmentation and label-mode rules."""

import dataclasses

import pytest

from keras_ltpa import train as training
from keras_ltpa.train import options


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(variant="att4"), "att4"),
        (dict(image_size=48), "multiple of 32"),
        (dict(dataset="cifar10", data_dir="x"), "not both"),
        (dict(epochs=0), "epochs"),
        (dict(augment="zoom"), "zoom"),
        (dict(lr_decay_factor=2.0), "lr_decay_factor"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        training.TrainingConfig(**changes).validate()


def test_config_defaults_are_the_paper_s():
    config = training.TrainingConfig().validate()
    assert config.dataset == "cifar10"
    assert (config.learning_rate, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert (config.batch_size, config.epochs) == (128, 300)
    assert (config.lr_decay_epochs, config.lr_decay_factor) == (25, 0.5)
    assert config.variant == "att3-concat-pc"


def _outside(bounds):
    values = [bounds.low if bounds.low_open else bounds.low - 1]
    if bounds.high is not None:
        values.append(bounds.high if bounds.high_open else bounds.high + 1)
    return values


@pytest.mark.parametrize(
    "field",
    [f for f in options.declared_fields(training.TrainingConfig) if f.metadata["bounds"]],
    ids=lambda field: field.name,
)
def test_every_bounded_setting_is_checked_naming_it(field):
    bounds = field.metadata["bounds"]
    for value in _outside(bounds) + ["3"]:
        config = training.TrainingConfig(data_dir="images", **{field.name: value})
        with pytest.raises(ValueError) as error:
            config.validate()
        assert f"`{field.name}` must be {bounds.describe()}" in str(error.value)
        assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    "field",
    [f for f in options.declared_fields(training.TrainingConfig) if f.metadata["choices"]],
    ids=lambda field: field.name,
)
def test_every_choice_is_checked_naming_it(field):
    config = training.TrainingConfig(**{field.name: "nonsense"})
    with pytest.raises(ValueError, match=f"`{field.name}` must be one of .*'nonsense'"):
        config.validate()


def test_the_recipe_fills_what_was_not_given():
    budget = training.TrainingConfig(recipe="budget", epochs=10).validate()
    assert (budget.lr_schedule, budget.warmup_epochs, budget.label_smoothing) == ("cosine", 2, 0.1)
    given = training.TrainingConfig(recipe="budget", label_smoothing=0.0).validate()
    assert given.label_smoothing == 0.0
    with pytest.raises(ValueError, match=r"`warmup_epochs` must be >= 0 and < epochs \(2\)"):
        training.TrainingConfig(recipe="budget", epochs=2).validate()
    # The step schedule ignores the warm-up.
    training.TrainingConfig(epochs=2, warmup_epochs=5).validate()


@pytest.mark.parametrize(
    "augment, augmentations, label_mode",
    [
        ("paper", ("crop", "flip"), "int"),
        ("none", (), "int"),
        ("flip,crop", ("crop", "flip"), "int"),
        ("mixup,randaugment", ("randaugment", "mixup"), "categorical"),
        ("cutmix", ("cutmix",), "categorical"),
    ],
)
def test_augmentations_and_label_mode(augment, augmentations, label_mode):
    config = training.TrainingConfig(augment=augment).validate()
    assert config.augmentations == augmentations
    assert config.label_mode == label_mode


def test_from_any_takes_a_config_a_dict_or_a_namespace():
    import argparse

    config = training.TrainingConfig(epochs=7)
    copy = training.TrainingConfig.from_any(config)
    assert copy == config and copy is not config
    assert training.TrainingConfig.from_any({"epochs": 7, "unknown": 1}) == config
    assert training.TrainingConfig.from_any(argparse.Namespace(epochs=7)) == config
    assert dataclasses.asdict(config)["epochs"] == 7


def test_augment_help_names_every_augmentation():
    from keras_ltpa.data import pipelines

    (augment,) = [f for f in dataclasses.fields(training.TrainingConfig) if f.name == "augment"]
    for name in pipelines.AUGMENTATIONS:
        assert name in augment.metadata["help"]


def test_image_size_defaults_to_the_backbone_s():
    assert training.TrainingConfig().validate().image_size == 32
    for backbone in ("resnet50", "tests/fixtures"):  # a keras.applications name, a folder
        config = training.TrainingConfig(data_dir="images", backbone=backbone).validate()
        assert config.image_size == 224
    # Any size from 32 for backbones other than the VGG.
    training.TrainingConfig(data_dir="images", backbone="resnet50", image_size=72).validate()


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(backbone="resnet50", image_size=31), r"`image_size` must be >= 32 with backbone 'resnet50'"),
        (dict(weights="imagenet"), r"`weights` applies to keras.applications and keras-hub"),
        (dict(global_layer="conv5"), r"`global_layer` names a layer of a keras.applications"),
        (dict(attention_layers="block4"), r"VGG backbone `attention_layers` lists block numbers"),
        (dict(backbone="resnet50", width_multiplier=0.5), r"`width_multiplier` is an option of the VGG"),
        (dict(backbone="resnet50", variant="att2"), r"variant='att2' names VGG blocks"),
        (dict(backbone="resnet50", variant="noatt", attention_layers="a", global_layer="b"),
         r"no attention estimator"),
        (dict(backbone="resnet50", variant="att3-after"), r"token 'after' applies to the VGG"),
        (dict(freeze_backbone_epochs=4, epochs=3), r"`freeze_backbone_epochs` must be <= epochs \(3\)"),
        (dict(backbone="resnet50", pixel_stats="data"), r"`pixel_stats` applies to a backbone from random"),
        (dict(dataset="cifar10", data_dir=None, validation_split=0.2), r"`validation_split` splits an image folder"),
        (dict(augment="cutmix", class_weight="balanced"), r"`class_weight` weighs each example by its class"),
    ],
)
def test_backbone_settings_are_checked_together(changes, match):
    settings = dict(data_dir="images", epochs=3)
    settings.update(changes)
    with pytest.raises(ValueError, match=match):
        training.TrainingConfig(**settings).validate()


@pytest.mark.parametrize(
    "changes, planned",
    [
        # The paper's VGG, and any backbone from random weights: one stage.
        (dict(), [("train", 0, 4, "all", 1.0)]),
        (dict(backbone="resnet50", weights="none"), [("train", 0, 4, "all", 1.0)]),
        # A pretrained backbone is fine-tuned from the start...
        (dict(backbone="resnet50"), [("fine_tune", 0, 4, "all_but_batch_norm", 0.1)]),
        # ...or after frozen epochs, as is any backbone given some.
        (dict(backbone="resnet50", freeze_backbone_epochs=1, backbone_lr_multiplier=0.5),
         [("frozen_backbone", 0, 1, "none", 1.0), ("fine_tune", 1, 4, "all_but_batch_norm", 0.5)]),
        (dict(freeze_backbone_epochs=4), [("frozen_backbone", 0, 4, "none", 1.0)]),
    ],
)
def test_training_stages(changes, planned):
    from keras_ltpa.train import stages

    config = training.TrainingConfig(data_dir="images", epochs=4, **changes).validate()
    plan = stages.training_stages(config)
    assert [(s.name, s.start, s.end, s.backbone_trainable, s.lr_multiplier) for s in plan] == planned
    # Only the frozen stage keeps its backup apart from backup/.
    assert [s.backup for s in plan] == ["frozen_backbone" if s.name == "frozen_backbone" else "." for s in plan]


@pytest.mark.parametrize(
    "changes",
    [dict(backbone="resnet50"), dict(backbone="resnet50", freeze_backbone_epochs=1), dict(freeze_backbone_epochs=1)],
)
def test_ema_goes_with_the_backbone_s_own_learning_rate(changes):
    from keras_ltpa.train import stages

    config = training.TrainingConfig(
        data_dir="images", epochs=3, ema=True, backbone_lr_multiplier=0.1, **changes
    ).validate()
    assert stages.training_stages(config)[-1].lr_multiplier == 0.1


def test_the_second_stage_averages_every_layer_from_the_weights_it_starts_with():
    """Stage 1 (frozen VGG, ema) one step, then stage 2 (LearningRateMultiplier,
    ema): its averages, which Keras would zero and never copy past step 0,
    start as the model's weights; one step later each is
    0.5 * start + 0.5 * theta (ema_momentum 0.5)."""
    import keras
    import numpy as np

    import keras_ltpa
    from keras_ltpa import backbones
    from keras_ltpa.backbones import finetune
    from keras_ltpa.train import optimizers
    from keras_ltpa.train import stages

    config = training.TrainingConfig(
        data_dir="images", epochs=2, freeze_backbone_epochs=1, ema=True, ema_momentum=0.5
    ).validate()
    first, second = stages.training_stages(config)
    keras.utils.set_random_seed(5)
    model = keras_ltpa.build_model(3, width_multiplier=0.0625)
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    labels = np.array([0, 2])

    def optimizer():
        return optimizers.make_optimizer(1, learning_rate=0.05, decay_epochs=0, ema=True, ema_momentum=0.5)

    stages.compile_stage(model, first, optimizer(), jit_compile=False)
    model.train_on_batch(images, labels)
    stages.compile_stage(model, second, optimizer(), model.optimizer, jit_compile=False)
    averaging = model.optimizer
    assert isinstance(averaging, backbones.LearningRateMultiplier) and averaging.use_ema
    assert int(keras.ops.convert_to_numpy(averaging.iterations)) == 1
    backbone = set(finetune.backbone_variable_paths(model))
    variables = model.trainable_variables
    assert any(v.path in backbone for v in variables) and any(v.path not in backbone for v in variables)
    start = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    for average, expected in zip(averaging._model_variables_moving_average, start):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(average), expected)
    model.train_on_batch(images, labels)
    for variable, average, before in zip(variables, averaging._model_variables_moving_average, start):
        theta = keras.ops.convert_to_numpy(variable)
        # Two float32 roundings (a product, a sum) of values within |start| + |theta|.
        bound = 2 * np.finfo("float32").eps * (np.abs(before) + np.abs(theta))
        assert np.all(np.abs(keras.ops.convert_to_numpy(average) - (0.5 * before + 0.5 * theta)) <= bound)


def test_model_options_follow_the_variant_and_the_taps():
    from keras_ltpa.train import stages

    vgg = training.TrainingConfig(variant="att2-indep-dp", attention_layers="3,5").validate()
    assert stages.model_options(vgg) == dict(
        backbone="vgg", width_multiplier=1.0, dropout=0.0, attention_layers=(3, 5),
        aggregation="indep", compatibility="dp",
    )
    other = training.TrainingConfig(
        data_dir="images", backbone="resnet50", attention_layers="a, b", global_layer="c"
    ).validate()
    assert stages.model_options(other) == dict(
        backbone="resnet50", weights=None, attention_layers=("a", "b"), global_layer="c",
        aggregation="concat", compatibility="pc",
    )
    default_taps = training.TrainingConfig(data_dir="images", backbone="resnet50").validate()
    assert stages.model_options(default_taps)["attention_layers"] is None
    baseline = training.TrainingConfig(data_dir="images", backbone="resnet50", variant="noatt").validate()
    assert stages.model_options(baseline)["attention_layers"] == ()
