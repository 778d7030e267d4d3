"""`keras.applications` backbones by their lower-case function names.

`APPLICATIONS` is the table the README shows: each name, the
`keras.applications` function that builds it, and the preprocessing its
ImageNet weights expect (`keras_ltpa.backbones.preprocessing`). `"raw"`
marks the families that rescale inside (EfficientNetV2, ConvNeXt,
MobileNetV3): pretrained, they get raw pixels and keep their own layers; from
scratch, they are built without them (`include_preprocessing=False`) and the
model's pixel statistics take their place, so nothing is done twice.
"""


import keras

from keras_ltpa.backbones import downloads

# name: (keras.applications function, preprocessing of its ImageNet weights)
APPLICATIONS = {
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "resnet101v2": ("ResNet101V2", "tf"),
    "resnet152v2": ("ResNet152V2", "tf"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "mobilenetv3small": ("MobileNetV3Small", "raw"),
    "mobilenetv3large": ("MobileNetV3Large", "raw"),
    "densenet121": ("DenseNet121", "torch"),
    "densenet169": ("DenseNet169", "torch"),
    "densenet201": ("DenseNet201", "torch"),
    "efficientnetv2b0": ("EfficientNetV2B0", "raw"),
    "efficientnetv2b1": ("EfficientNetV2B1", "raw"),
    "efficientnetv2b2": ("EfficientNetV2B2", "raw"),
    "efficientnetv2b3": ("EfficientNetV2B3", "raw"),
    "efficientnetv2s": ("EfficientNetV2S", "raw"),
    "convnexttiny": ("ConvNeXtTiny", "raw"),
    "convnextsmall": ("ConvNeXtSmall", "raw"),
    "convnextbase": ("ConvNeXtBase", "raw"),
}
APPLICATION_WEIGHTS = ("imagenet", "none")
# Where keras.applications downloads its ImageNet weights from.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def is_application(name):
    """True for a name of the `APPLICATIONS` table (any case)."""
    return isinstance(name, str) and name.lower() in APPLICATIONS


def application_preprocessing(name):
    """The preprocessing the ImageNet weights of `name` expect."""
    return APPLICATIONS[name.lower()][1]


def check_application_weights(weights):
    """`weights` of a keras.applications backbone: "imagenet" (the default,
    for None), "none", or the path of a weights file."""
    return downloads.check_weights(
        weights, APPLICATION_WEIGHTS, "keras.applications", "'imagenet', 'none'"
    )


def build_application(name, input_shape, weights, preprocessing, *, load_weights=True):
    """The headless `keras.applications` model `name` at `input_shape`.

    Args:
        name: a key of `APPLICATIONS` (any case).
        input_shape: (height, width, channels).
        weights: "imagenet", "none" or a weights file path.
        preprocessing: the model's resolved preprocessing; `"raw"` keeps the
            family's own rescaling layers (where it has them).
        load_weights: False builds the architecture only (a model being
            rebuilt from its config, whose weights come from its file).

    Returns:
        A functional `keras.Model` (`include_top=False`).
    """
    function, mode = APPLICATIONS[name.lower()]
    constructor = getattr(keras.applications, function)
    kwargs = {"include_top": False, "input_shape": tuple(input_shape), "weights": None}
    if mode == "raw":
        kwargs["include_preprocessing"] = preprocessing == "raw"
    if not load_weights or weights == "none":
        return constructor(**kwargs)
    kwargs["weights"] = weights
    if weights != "imagenet":
        return constructor(**kwargs)
    what = f"the ImageNet weights of backbone {name!r}"
    with downloads.download_guard(what, WEIGHTS_URL):
        return constructor(**kwargs)
