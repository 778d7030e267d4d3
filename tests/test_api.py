"""The lazy top-level names of `keras_ltpa` resolve to the objects of the
modules that define them."""

import importlib

import pytest

import keras_ltpa

# Name -> the module that defines it, as the package documents it.
DEFINED_IN = {
    "run_training": "keras_ltpa.train.loop",
    "TrainingConfig": "keras_ltpa.train.config",
    "export_saved_model": "keras_ltpa.serving.export",
    "choose_precision": "keras_ltpa.devices.precision",
    "precision_record": "keras_ltpa.devices.precision",
    "build_model_from_torch": "keras_ltpa.convert",
}


@pytest.mark.parametrize("name", sorted(DEFINED_IN))
def test_lazy_top_level_name_is_the_module_s_object(name):
    module = importlib.import_module(DEFINED_IN[name])
    value = getattr(keras_ltpa, name)
    assert value is getattr(module, name)
    assert value.__module__ == DEFINED_IN[name] and value.__name__ == name


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        keras_ltpa.no_such_name  # noqa: B018
