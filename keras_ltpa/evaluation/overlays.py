"""Attention overlays: maps upsampled, scaled, coloured and blended over images.

Each attention map `a^s` (N, H_s, W_s) is

1. upsampled to the image with bilinear interpolation (`upsample_map`),
2. min-max scaled to [0, 1] per image (`normalize_map`),
3. coloured with a matplotlib colour map, jet by default (`colorize`),
4. blended over the image, 0.6 image + 0.4 colour (`overlay`).

`attention_grid` runs a model on a batch and lays the results out as one
row per image: image | map 1 | map 2 | map 3, with the predicted (and true)
class written above the row. It is plain NumPy, Pillow and matplotlib after
the model call, so it runs the same on every backend; the TensorBoard
callback of `keras_ltpa.train` calls it every epoch.

Example:
>>> import numpy as np
>>> from keras_ltpa import build_model
>>> model = build_model(10, width_multiplier=0.0625)
>>> images = np.zeros((2, 32, 32, 3), dtype="uint8")
>>> attention_grid(model, images, tile_size=64).shape
(176, 262, 3)
"""

import os

import keras
import numpy as np
from matplotlib import colormaps
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from keras_ltpa.data import images as image_files
from keras_ltpa.model import attention_model
from keras_ltpa.utils import files
from keras_ltpa.utils.checks import check_size

# Grid layout, in pixels: a header band with the column titles, then per
# image a caption band (predicted/true class) above a row of tiles; tiles
# in a row are separated by a white gap.
CAPTION_HEIGHT = 16
TILE_GAP = 2
FONT_SIZE = 11
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)
RIGHT_COLOR = (0, 110, 0)
WRONG_COLOR = (190, 0, 0)


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


def save_png(array, path):
    """Writes a uint8 (H, W, 3) or (H, W) array to `path` as PNG.

    The file is written under a temporary name in the same folder and then
    renamed, so `path` never holds a half-written image. Missing parent
    folders are created.

    Returns:
        `path`.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
        array.ndim == 3 and array.shape[-1] not in (3, 4)
    ):
        raise ValueError(
            "`array` must be uint8 (H, W), (H, W, 3) or (H, W, 4); received "
            f"dtype {array.dtype} and shape {array.shape}."
        )
    return files.write_atomically(
        path, lambda temporary: Image.fromarray(array).save(temporary, format="PNG")
    )


def read_images(sources, size, class_names=None):
    """Reads image files and folders into one uint8 batch.

    Args:
        sources: image file paths and/or folders (every image under a folder,
            see `keras_ltpa.data.images.list_images`), in order.
        size: (height, width) every image is resized to
            (`keras_ltpa.data.images.resize_images`).
        class_names: optional class names; when every image sits in a folder
            named after a class (e.g. `test/cat/0001.jpg`), that class is its
            true label.

    Returns:
        `(images, labels, paths)`: uint8 (N, H, W, 3), an int array (N,) or
        None, and the list of file paths.

    Raises:
        ValueError: naming a missing path or a file that is not an image.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = []
    for source in sources:
        source = os.fspath(source)
        if os.path.isdir(source):
            paths.extend(image_files.list_images(source))
        elif os.path.isfile(source):
            paths.append(source)
        else:
            raise ValueError(f"Image path {source!r} does not exist.")
    if not paths:
        raise ValueError("No image files or folders were given.")
    images = image_files.resize_images([image_files.read_image(path) for path in paths], size)
    labels = None
    if class_names is not None:
        index = {str(name): i for i, name in enumerate(class_names)}
        folders = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
        if all(folder in index for folder in folders):
            labels = np.asarray([index[folder] for folder in folders], dtype=np.int64)
    return images, labels, paths


def _as_attention_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a keras.Model from build_model() or attention_model(); "
            f"received {model!r}."
        )
    if isinstance(model.output, dict) and "probabilities" in model.output:
        return model
    return attention_model(model)


def check_image_batch(images):
    """`images` as a uint8 NumPy batch (N, H, W, 3); a ValueError names a
    wrong dtype or shape."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            "`images` must be a uint8 array (N, H, W, 3) of raw RGB pixels; received "
            f"dtype {images.dtype} and shape {images.shape}."
        )
    return images


def attention_maps(model, images, batch_size=64):
    """Runs a model on raw images and returns its predictions and maps.

    Args:
        model: a `build_model()` model or its `attention_model()`.
        images: uint8 array (N, H, W, 3). Images whose size differs from the
            model's input are resized to it (bilinear) before the call.
        batch_size: images per model call.

    Returns:
        `(probabilities, maps)`: float32 (N, num_classes) and a list with one
        float32 (N, H_k, W_k) array per attention estimator (empty for the
        plain baseline).
    """
    images = check_image_batch(images)
    model = _as_attention_model(model)
    input_size = tuple(model.input_shape[1:3])
    if None not in input_size:
        images = image_files.resize_images(images, input_size)
    count = sum(1 for key in model.output if key.startswith("attention_"))
    keys = ["probabilities"] + [f"attention_{k}" for k in range(1, count + 1)]
    chunks = {key: [] for key in keys}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype("float32")
        outputs = model(batch, training=False)
        for key in keys:
            chunks[key].append(keras.ops.convert_to_numpy(outputs[key]))
    results = [np.concatenate(chunks[key]).astype(np.float32) for key in keys]
    return results[0], results[1:]


def _font():
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font.
        return ImageFont.load_default()


def _column_titles(maps, draw, font, width):
    # The longest title style that fits every tile, so narrow tiles stay
    # readable and all columns read alike.
    styles = ("attention {k} ({h}x{w})", "map {k} ({h}x{w})", "map {k}")
    for style in styles:
        titles = [
            style.format(k=k, h=m.shape[1], w=m.shape[2]) for k, m in enumerate(maps, 1)
        ]
        if all(draw.textlength(t, font=font) <= width - 4 for t in titles):
            break
    return ["image"] + titles


def _class_name(index, class_names):
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return f"class {index}"


def grid_size(num_images, num_maps, image_size, tile_size=128):
    """The (height, width) in pixels of an `attention_grid`.

    Tiles are `tile_size` high and keep the images' aspect ratio; a row has
    `1 + num_maps` tiles `TILE_GAP` apart, under a `CAPTION_HEIGHT` band,
    and the grid starts with a header band of the same height:

        height = CAPTION_HEIGHT + num_images * (CAPTION_HEIGHT + tile_height)
        width = (1 + num_maps) * tile_width + num_maps * TILE_GAP
    """
    tile_height, tile_width = _tile_shape(image_size, tile_size)
    columns = 1 + num_maps
    return (
        CAPTION_HEIGHT + num_images * (CAPTION_HEIGHT + tile_height),
        columns * tile_width + (columns - 1) * TILE_GAP,
    )


def _tile_shape(image_size, tile_size):
    if not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(
            f"`tile_size` must be a positive int; received tile_size={tile_size!r}."
        )
    height, width = image_size
    return int(tile_size), max(1, int(round(tile_size * width / height)))


def attention_grid(
    model,
    images,
    labels=None,
    class_names=None,
    *,
    tile_size=128,
    cmap="jet",
    image_weight=0.6,
    map_weight=0.4,
):
    """One row per image: image | overlay of map 1 | map 2 | map 3.

    The model sees the images resized to its input; the tiles show each
    image scaled to `tile_size` pixels high with every attention map
    upsampled to the tile, min-max scaled, coloured and blended over it.
    Above each row: the predicted class and its probability, and the true
    class when `labels` are given (the prediction in green when right, red
    when wrong). A header band names the columns and each map's size.
    The layout is given by `grid_size`.

    Args:
        model: a `build_model()` model or its `attention_model()`.
        images: uint8 array (N, H, W, 3) of raw RGB pixels.
        labels: optional int array (N,) of true classes.
        class_names: optional list of class names, indexed by class id.
        tile_size: height in pixels of each tile.
        cmap: matplotlib colour map for the maps.
        image_weight, map_weight: blend weights of image and coloured map.

    Returns:
        uint8 array (height, width, 3).
    """
    images = check_image_batch(images)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(
                f"`labels` has {len(labels)} entries for {len(images)} images."
            )
    probabilities, maps = attention_maps(model, images)
    tile_height, tile_width = _tile_shape(images.shape[1:3], tile_size)
    tiles = image_files.resize_images(images, (tile_height, tile_width))
    columns = [tiles] + [
        overlay(tiles, m, image_weight=image_weight, map_weight=map_weight, cmap=cmap)
        for m in maps
    ]
    height, width = grid_size(len(images), len(maps), images.shape[1:3], tile_size)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for column, title in enumerate(_column_titles(maps, draw, font, tile_width)):
        draw.text((column * (tile_width + TILE_GAP) + 2, 2), title, fill=TEXT_COLOR, font=font)
    predictions = probabilities.argmax(axis=-1)
    for row in range(len(images)):
        top = CAPTION_HEIGHT + row * (CAPTION_HEIGHT + tile_height)
        predicted = int(predictions[row])
        caption = (
            f"predicted: {_class_name(predicted, class_names)} "
            f"({probabilities[row, predicted]:.0%})"
        )
        color = TEXT_COLOR
        if labels is not None:
            truth = int(labels[row])
            caption += f"   true: {_class_name(truth, class_names)}"
            color = RIGHT_COLOR if truth == predicted else WRONG_COLOR
        draw.text((2, top + 2), caption, fill=color, font=font)
        for column, tile in enumerate(columns):
            canvas.paste(
                Image.fromarray(tile[row]),
                (column * (tile_width + TILE_GAP), top + CAPTION_HEIGHT),
            )
    return np.asarray(canvas, dtype=np.uint8)


def save_attention_grids(
    model,
    images,
    directory,
    labels=None,
    class_names=None,
    *,
    rows_per_grid=8,
    prefix="attention",
    **grid_kwargs,
):
    """Writes `attention_grid`s of up to `rows_per_grid` images as PNGs.

    Files are `<directory>/<prefix>_000.png`, `_001.png`, ... in image
    order. `grid_kwargs` go to `attention_grid` (tile_size, cmap, ...).

    Returns:
        The list of written paths.
    """
    images = check_image_batch(images)
    if not isinstance(rows_per_grid, int) or rows_per_grid < 1:
        raise ValueError(
            f"`rows_per_grid` must be a positive int; received {rows_per_grid!r}."
        )
    model = _as_attention_model(model)
    paths = []
    for index, start in enumerate(range(0, len(images), rows_per_grid)):
        stop = start + rows_per_grid
        grid = attention_grid(
            model,
            images[start:stop],
            None if labels is None else np.asarray(labels)[start:stop],
            class_names,
            **grid_kwargs,
        )
        paths.append(
            save_png(grid, os.path.join(directory, f"{prefix}_{index:03d}.png"))
        )
    return paths
