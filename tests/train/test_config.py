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
