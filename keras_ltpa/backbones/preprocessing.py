"""A backbone's own preprocessing, inside the model, as registered layers.

The model always takes raw pixels (0..255, uint8 or float). What it does to
them first is its `preprocessing`, one of:

- `"pixel_stats"`: `(x / 255 - mean) / std` with the model's `pixel_mean`
  and `pixel_std` (the paper's VGG, and any backbone trained from scratch);
- `"caffe"`: RGB to BGR, then the ImageNet mean subtracted per channel
  (`keras.applications` VGG and ResNet);
- `"tf"`: `x / 127.5 - 1` (ResNetV2, MobileNetV2);
- `"torch"`: `(x / 255 - mean) / std` with ImageNet's statistics (DenseNet);
- `"raw"`: pixels unchanged; the backbone rescales inside (EfficientNetV2,
  ConvNeXt, MobileNetV3), so nothing is done twice;
- `{"scale": s, "offset": o}`: `x * s + o` per channel, the map a keras-hub
  image converter holds.

Every choice but `"pixel_stats"` is one `PixelAffine` layer named
`backbone_preprocessing`; `"pixel_stats"` keeps the `Rescaling` layer named
`pixel_normalization` that models of earlier versions have.
"""

import keras

# ImageNet statistics of `keras.applications` (caffe: BGR means in 0..255;
# torch: RGB means and deviations in [0, 1]).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

PREPROCESSING_MODES = ("pixel_stats", "caffe", "tf", "torch", "raw")


@keras.saving.register_keras_serializable(package="keras_ltpa")
class PixelAffine(keras.layers.Layer):
    """Per-channel affine map of raw pixels, optionally after reversing the
    channel order:

        y = x[..., ::-1] * scale + offset     (reverse_channels=True)
        y = x * scale + offset                (reverse_channels=False)

    Inputs of any dtype (uint8 included) are cast to the layer's compute
    dtype first.

    Args:
        scale: float, or one float per channel.
        offset: float, or one float per channel.
        reverse_channels: bool. RGB to BGR (the "caffe" mode) before the map.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> layer = PixelAffine(scale=0.5, offset=[-1.0, -2.0, -3.0], reverse_channels=True)
    >>> pixels = np.array([[[[10, 20, 30]]]], "uint8")  # one RGB pixel
    >>> [float(v) for v in keras.ops.convert_to_numpy(layer(pixels))[0, 0, 0]]
    [14.0, 8.0, 2.0]
    """

    def __init__(self, scale=1.0, offset=0.0, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.scale = _floats(scale)
        self.offset = _floats(offset)
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = keras.ops.flip(x, axis=-1)
        scale = keras.ops.convert_to_tensor(self.scale, dtype=self.compute_dtype)
        offset = keras.ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)
        return x * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "scale": self.scale,
                "offset": self.offset,
                "reverse_channels": self.reverse_channels,
            }
        )
        return config


def _floats(value):
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def check_preprocessing(preprocessing):
    """`preprocessing` as stored in a model's config; ValueError naming it
    unless it is one of `PREPROCESSING_MODES` or a scale/offset dict."""
    if isinstance(preprocessing, dict):
        unknown = set(preprocessing) - {"scale", "offset", "reverse_channels"}
        if unknown or not {"scale", "offset"} <= set(preprocessing):
            raise ValueError(
                "A `preprocessing` dict needs the keys 'scale' and 'offset' (and "
                f"optionally 'reverse_channels'); received preprocessing={preprocessing!r}."
            )
        return {key: _floats(value) if key != "reverse_channels" else bool(value)
                for key, value in preprocessing.items()}
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"`preprocessing` must be one of {', '.join(map(repr, PREPROCESSING_MODES))} "
            f"or a dict with 'scale' and 'offset'; received preprocessing={preprocessing!r}."
        )
    return preprocessing


def affine_of(preprocessing):
    """The `PixelAffine` arguments of a preprocessing choice other than
    `"pixel_stats"`."""
    if isinstance(preprocessing, dict):
        return dict(preprocessing)
    if preprocessing == "caffe":
        return {"scale": 1.0, "offset": [-m for m in CAFFE_MEAN_BGR], "reverse_channels": True}
    if preprocessing == "tf":
        return {"scale": 1.0 / 127.5, "offset": -1.0}
    if preprocessing == "torch":
        return {
            "scale": [1.0 / (255.0 * s) for s in TORCH_STD],
            "offset": [-m / s for m, s in zip(TORCH_MEAN, TORCH_STD)],
        }
    return {"scale": 1.0, "offset": 0.0}  # "raw"


def pixel_normalization(input_shape, pixel_mean, pixel_std):
    """`(x / 255 - mean) / std` as one `Rescaling` on raw 0..255 pixels."""
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
    return keras.layers.Rescaling(
        scale=[1.0 / (255.0 * s) for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        name="pixel_normalization",
    )


def pixel_statistics(rescaling):
    """`(pixel_mean, pixel_std)` of a `pixel_normalization` layer:
    `scale = 1 / (255 std)`, `offset = -mean / std`."""
    std = tuple(1.0 / (255.0 * float(s)) for s in rescaling.scale)
    mean = tuple(-float(o) * s for o, s in zip(rescaling.offset, std))
    return mean, std


def preprocessing_layer(preprocessing, input_shape, pixel_mean, pixel_std):
    """The layer that maps raw pixels to what the backbone expects."""
    if preprocessing == "pixel_stats":
        return pixel_normalization(input_shape, pixel_mean, pixel_std)
    return PixelAffine(**affine_of(preprocessing), name="backbone_preprocessing")
