"""Attention maps as pictures: upsampled, scaled, coloured and blended.

Each attention map `a^s` (N, H_s, W_s) is

1. upsampled to the image with bilinear interpolation (`upsample_map`),
2. min-max scaled to [0, 1] per image (`normalize_map`),
3. coloured with a matplotlib colour map, jet by default (`colorize`),
4. blended over the image, 0.6 image + 0.4 colour (`overlay`).

Plain NumPy and matplotlib: the same on every backend.
"""

import numpy as np
from matplotlib import colormaps

from keras_ltpa.utils.checks import check_size


def _resize_indices(in_size, out_size):
    # Half-pixel centres, as PIL and tf.image.resize: output pixel j samples
    # input coordinate (j + 0.5) * in / out - 0.5, clamped to the edges.
    coords = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    coords = np.clip(coords, 0.0, in_size - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (coords - low).astype(np.float32)


def upsample_map(attention, size):
    """Bilinear resize of maps to `size`, over the last two axes.

    Args:
        attention: array (..., h, w), e.g. one map (h, w) or a batch
            (N, h, w).
        size: (height, width) of the output.

    Returns:
        float32 array (..., height, width). Pixel centres are aligned the
        way PIL and `tf.image.resize` align them, so a map covers the whole
        image (no half-cell shift).

    Example:
    >>> upsample_map(np.array([[0.0, 1.0]]), (1, 4)).tolist()
    [[0.0, 0.25, 0.75, 1.0]]
    """
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim < 2:
        raise ValueError(
            "`attention` must have at least 2 dimensions (..., height, width); "
            f"received shape {attention.shape}."
        )
    height, width = check_size(size)
    y_low, y_high, y_frac = _resize_indices(attention.shape[-2], height)
    x_low, x_high, x_frac = _resize_indices(attention.shape[-1], width)
    rows = (
        attention[..., y_low, :] * (1.0 - y_frac)[:, None]
        + attention[..., y_high, :] * y_frac[:, None]
    )
    return rows[..., x_low] * (1.0 - x_frac) + rows[..., x_high] * x_frac


def normalize_map(attention):
    """Min-max scales each map to [0, 1] over its last two axes.

    A constant map (no maximum above its minimum) becomes all zeros.

    Args:
        attention: array (..., H, W).

    Returns:
        float32 array of the same shape.

    Example:
    >>> normalize_map(np.array([[1.0, 3.0], [2.0, 5.0]])).tolist()
    [[0.0, 0.5], [0.25, 1.0]]
    """
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim < 2:
        raise ValueError(
            "`attention` must have at least 2 dimensions (..., height, width); "
            f"received shape {attention.shape}."
        )
    low = attention.min(axis=(-2, -1), keepdims=True)
    span = attention.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (attention - low) / np.where(span > 0, span, 1.0), 0.0).astype(
        np.float32
    )


def colorize(attention, cmap="jet"):
    """Colours maps with values in [0, 1] through a matplotlib colour map.

    Args:
        attention: array (..., H, W) of values in [0, 1] (clipped).
        cmap: name of a matplotlib colour map, e.g. `"jet"`, `"inferno"`.

    Returns:
        uint8 array (..., H, W, 3).

    Example:
    >>> colorize(np.array([[0.0, 1.0]])).tolist()  # jet: dark blue to dark red
    [[[0, 0, 128], [128, 0, 0]]]
    """
    if cmap not in colormaps:
        raise ValueError(
            f"`cmap` must name a matplotlib colour map such as 'jet' or 'inferno'; "
            f"received cmap={cmap!r}."
        )
    values = np.clip(np.asarray(attention, dtype=np.float32), 0.0, 1.0)
    rgba = colormaps[cmap](values)
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8)


def overlay(image, attention, image_weight=0.6, map_weight=0.4, cmap="jet"):
    """Blends a coloured attention map over an image.

    The map is upsampled to the image (bilinear), min-max scaled, coloured
    and mixed: `image_weight * image + map_weight * colour`.

    Args:
        image: uint8 array (H, W, 3), or a batch (N, H, W, 3).
        attention: array (h, w), or (N, h, w) for a batch, any range.
        image_weight: weight of the image.
        map_weight: weight of the coloured map.
        cmap: matplotlib colour map name.

    Returns:
        uint8 array shaped like `image`.

    Example:
    >>> image = np.full((4, 4, 3), 100, "uint8")
    >>> overlay(image, np.eye(2)).shape
    (4, 4, 3)
    """
    image = np.asarray(image)
    attention = np.asarray(attention)
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(
            "`image` must be (H, W, 3) or (N, H, W, 3) RGB; received shape "
            f"{image.shape}."
        )
    if attention.ndim != image.ndim - 1 or attention.shape[:-2] != image.shape[:-3]:
        raise ValueError(
            f"`attention` of shape {attention.shape} does not match `image` of shape "
            f"{image.shape}: expected (h, w) for one image or (N, h, w) for a batch."
        )
    colour = colorize(
        normalize_map(upsample_map(attention, image.shape[-3:-1])), cmap=cmap
    )
    blended = image_weight * image.astype(np.float32) + map_weight * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
