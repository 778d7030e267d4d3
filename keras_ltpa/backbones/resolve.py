"""From what the caller names to a backbone: `resolve_backbone`.

`backbone` may be the paper's VGG (`"vgg"`, alias `"vgg-cifar"`), a
`keras.applications` name (`keras_ltpa.backbones.applications`), a keras-hub
preset (`keras_ltpa.backbones.hub`), a functional `keras.Model`, or a
serialized model (from a saved config). The result says what a model's
config records for it: `backbone` ("vgg", else the serialized model, so that
a `.keras` file rebuilds the same layers, names included, without a
network), `backbone_name` (the keras.applications name or keras-hub preset
it was asked for), `backbone_weights` and `preprocessing`.

A model rebuilt from its config (`keras.saving.load_model`, `from_config`)
builds its backbone inside `architecture_only()`: no weights are loaded or
downloaded, since they come from the file.
"""

import contextlib
import contextvars
import copy
import dataclasses
import json

import keras

from keras_ltpa.backbones import applications
from keras_ltpa.backbones import hub
from keras_ltpa.backbones.preprocessing import check_preprocessing

VGG_NAMES = ("vgg", "vgg-cifar")
_ARCHITECTURE_ONLY = contextvars.ContextVar("architecture_only", default=False)


@contextlib.contextmanager
def architecture_only():
    """Backbones resolved inside get random weights: nothing is loaded or
    downloaded (a model rebuilt from its config loads its weights next)."""
    token = _ARCHITECTURE_ONLY.set(True)
    try:
        yield
    finally:
        _ARCHITECTURE_ONLY.reset(token)


@dataclasses.dataclass(frozen=True)
class ResolvedBackbone:
    """A backbone and what a model's config records about it.

    Attributes:
        kind: "vgg", "applications", "hub" or "model".
        model: the functional `keras.Model` (None for the VGG, which is built
            into the classifier's own graph).
        config: what the config's `backbone` holds ("vgg", else the model,
            serialized by `serialized()`).
        weights: the weights it started from ("imagenet", "preset", "none",
            a path; None for the VGG and for a given model).
        source: the keras.applications name or keras-hub preset it came
            from, else None.
        preprocessing: the model's pixel preprocessing (see
            `keras_ltpa.backbones.preprocessing`).
    """

    kind: str
    model: object
    config: object
    weights: object
    source: object
    preprocessing: object

    @property
    def name(self):
        """A short name: "vgg", the keras.applications name, the keras-hub
        preset (else its class) or the given model's name."""
        if self.kind == "vgg":
            return "vgg"
        if self.source is not None:
            return self.source
        if self.kind == "hub":
            return type(self.model).__name__
        return self.model.name


def _allowed():
    names = ", ".join(repr(name) for name in applications.APPLICATIONS)
    return (
        f"'vgg' (the paper's CIFAR VGG), a keras.applications name ({names}), a keras-hub preset "
        "(a local preset folder, a preset name such as 'resnet_18_imagenet', or an "
        "hf:// or kaggle:// handle) or a functional keras.Model"
    )


def _check_no_weights(kind, weights):
    if weights not in (None, "none"):
        raise ValueError(
            f"`weights` applies to keras.applications and keras-hub backbones; the {kind} "
            f"takes weights=None or 'none'; received weights={weights!r}."
        )


def _resolve_vgg(weights, preprocessing):
    _check_no_weights("paper's VGG (trained from scratch)", weights)
    return ResolvedBackbone("vgg", None, "vgg", None, None, preprocessing or "pixel_stats")


def _resolve_application(name, weights, preprocessing, input_shape):
    name = name.lower()
    weights = applications.check_application_weights(weights)
    if preprocessing is None:
        pretrained = weights != "none"
        preprocessing = applications.application_preprocessing(name) if pretrained else "pixel_stats"
    model = applications.build_application(
        name, input_shape, weights, preprocessing, load_weights=not _ARCHITECTURE_ONLY.get()
    )
    return ResolvedBackbone("applications", model, model, weights, name, preprocessing)


def _resolve_hub(preset, weights, preprocessing):
    weights = hub.check_hub_weights(weights)
    model = hub.load_hub_backbone(
        preset, weights, load_weights=not _ARCHITECTURE_ONLY.get(),
        dtype=keras.config.dtype_policy().name,
    )
    if preprocessing is None:
        converted = hub.converter_preprocessing(preset) if weights != "none" else None
        preprocessing = converted or "pixel_stats"
    return ResolvedBackbone("hub", model, model, weights, preset, preprocessing)


def _resolve_serialized(config, weights, source, preprocessing):
    """A model saved in a config: rebuilt (random weights) from it."""
    module = str(config.get("module") or "") + str(config.get("registered_name") or "")
    if "keras_hub" in module:
        hub.import_keras_hub(source or config.get("class_name"))
    # Deserializing consumes parts of the dict: the config keeps its own.
    model = keras.saving.deserialize_keras_object(copy.deepcopy(config))
    kind = "hub" if "keras_hub" in module else "model"
    if applications.is_application(source):
        kind = "applications"
    return ResolvedBackbone(kind, model, config, weights, source, preprocessing or "pixel_stats")


def resolve_backbone(backbone, weights=None, preprocessing=None, input_shape=None, source=None):
    """The backbone `backbone` names, with its weights and preprocessing.

    Args:
        backbone: "vgg" / "vgg-cifar", a keras.applications name, a keras-hub
            preset (folder, name, `hf://` or `kaggle://` handle), a functional
            `keras.Model`, or a serialized model (a dict from a config).
        weights: None (the backbone's default: "imagenet" for
            keras.applications, "preset" for keras-hub), "imagenet",
            "preset", "none" or a weights file path.
        preprocessing: None (the default: the pretrained backbone's own
            pixel map, else `"pixel_stats"`) or a choice of
            `keras_ltpa.backbones.preprocessing`.
        input_shape: (height, width, channels) the model takes.
        source: the keras.applications name or keras-hub preset a
            serialized backbone came from (a record, never read).

    Returns:
        A `ResolvedBackbone`.

    Raises:
        ValueError naming `backbone` (or `weights`, `preprocessing`) and what
        is allowed; a download that cannot happen fails within seconds.
    """
    if preprocessing is not None:
        preprocessing = check_preprocessing(preprocessing)
    if isinstance(backbone, dict):
        return _resolve_serialized(backbone, weights, source, preprocessing)
    if isinstance(backbone, keras.Model):
        _check_no_weights(f"given model {backbone.name!r}", weights)
        return ResolvedBackbone(
            "model", backbone, backbone, None, None, preprocessing or "pixel_stats"
        )
    if isinstance(backbone, str) and backbone.lower() in VGG_NAMES:
        return _resolve_vgg(weights, preprocessing)
    if applications.is_application(backbone):
        return _resolve_application(backbone, weights, preprocessing, input_shape)
    if hub.is_hub_preset(backbone):
        return _resolve_hub(backbone, weights, preprocessing)
    raise ValueError(f"`backbone` must be {_allowed()}; received backbone={backbone!r}.")


def uses_pixel_stats(backbone, weights=None):
    """Whether a model on `backbone` normalises pixels with its own
    `pixel_mean` / `pixel_std` (the VGG, a given model, a backbone from
    random weights) rather than a pretrained backbone's preprocessing.

    Decided from the arguments alone (nothing is built or downloaded), for a
    caller that measures pixel statistics only when they are used; a
    keras-hub preset is taken to have an image converter.

    Example:
    >>> uses_pixel_stats("vgg"), uses_pixel_stats("resnet50"), uses_pixel_stats("resnet50", "none")
    (True, False, True)
    """
    if isinstance(backbone, (keras.Model, dict)):
        return True
    if isinstance(backbone, str) and backbone.lower() in VGG_NAMES:
        return True
    return weights == "none"


def serialized(resolved):
    """`resolved.config` as plain JSON data (lists, not tuples), as a saved
    config reads back."""
    config = resolved.config
    if isinstance(resolved.model, keras.Model):
        # The live model, not a stored config: its layers' `trainable` flags
        # change between fine-tuning stages, also after a reload.
        config = resolved.model
    if isinstance(config, keras.Model):
        config = keras.saving.serialize_keras_object(config)
    return json.loads(json.dumps(config))

