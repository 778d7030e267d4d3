"""Attention overlays: a model's maps over its images, as grids and PNG files.

`attention_maps` runs a model on raw images and returns its probabilities
and attention maps; each map is then drawn over its image the way
`keras_ltpa.evaluation.heatmaps` says (upsampled, min-max scaled, coloured
with jet, blended 0.6 image + 0.4 colour), and `attention_grid` lays the
results out as one row per image: image | map 1 | map 2 | map 3, with the
predicted (and true) class written above the row
(`keras_ltpa.evaluation.grids`). It is plain NumPy, Pillow and matplotlib
after the model call, so it runs the same on every backend; the TensorBoard
callback of `keras_ltpa.train` calls it every epoch.

The names of `heatmaps` and `grids` are importable from here too.

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
from PIL import Image

from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import grids
from keras_ltpa.evaluation.grids import BACKGROUND
from keras_ltpa.evaluation.grids import CAPTION_HEIGHT
from keras_ltpa.evaluation.grids import FONT_SIZE
from keras_ltpa.evaluation.grids import RIGHT_COLOR
from keras_ltpa.evaluation.grids import TEXT_COLOR
from keras_ltpa.evaluation.grids import TILE_GAP
from keras_ltpa.evaluation.grids import WRONG_COLOR
from keras_ltpa.evaluation.grids import grid_size
from keras_ltpa.evaluation.heatmaps import colorize
from keras_ltpa.evaluation.heatmaps import normalize_map
from keras_ltpa.evaluation.heatmaps import overlay
from keras_ltpa.evaluation.heatmaps import upsample_map
from keras_ltpa.model import attention_model
from keras_ltpa.utils import files
from keras_ltpa.utils.batches import map_batches

__all__ = [
    "BACKGROUND",
    "CAPTION_HEIGHT",
    "FONT_SIZE",
    "RIGHT_COLOR",
    "TEXT_COLOR",
    "TILE_GAP",
    "WRONG_COLOR",
    "attention_grid",
    "attention_maps",
    "check_image_batch",
    "colorize",
    "grid_size",
    "normalize_map",
    "overlay",
    "read_images",
    "save_attention_grids",
    "save_png",
    "upsample_map",
]


def save_png(array, path):
    """Writes a uint8 (H, W, 3) or (H, W) array to `path` as PNG.

    The file is written under a temporary name in the same folder and then
    renamed, so `path` never holds a half-written image. Missing parent
    folders are created.

    Args:
        array: uint8 array (H, W), (H, W, 3) or (H, W, 4).
        path: the file to write.

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


def _image_paths(sources):
    """The image files of `sources` (files, and every image under folders)."""
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
    return paths


def _folder_labels(paths, class_names):
    """Class ids from the folder names, or None unless every folder is a class."""
    if class_names is None:
        return None
    index = {str(name): i for i, name in enumerate(class_names)}
    folders = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    if all(folder in index for folder in folders):
        return np.asarray([index[folder] for folder in folders], dtype=np.int64)
    return None


def read_images(sources, size=None, class_names=None, *, model=None):
    """Reads image files and folders into one uint8 batch.

    Args:
        sources: image file paths and/or folders (every image under a folder,
            see `keras_ltpa.data.images.list_images`), in order.
        size: (height, width) every image is resized to
            (`keras_ltpa.data.images.resize_images`).
        class_names: optional class names; when every image sits in a folder
            named after a class (e.g. `test/cat/0001.jpg`), that class is its
            true label.
        model: instead of `size`, a model: the images are fitted to its
            input (`keras_ltpa.data.images.fit_to_model_input`).

    Returns:
        `(images, labels, paths)`: uint8 (N, H, W, 3), an int array (N,) or
        None, and the list of file paths.

    Raises:
        ValueError: naming a missing path or a file that is not an image,
            or when not exactly one of `size` and `model` is given.
    """
    if (size is None) == (model is None):
        raise ValueError(
            "Give exactly one of `size` (height, width) and `model` (fit the images "
            f"to its input); received size={size!r}, model={model!r}."
        )
    paths = _image_paths(sources)
    decoded = [image_files.read_image(path) for path in paths]
    if model is not None:
        images = image_files.fit_to_model_input(decoded, model)
    else:
        images = image_files.resize_images(decoded, size)
    return images, _folder_labels(paths, class_names), paths


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
    """`images` as a uint8 NumPy batch (N, H, W, 3).

    Raises:
        ValueError: naming a wrong dtype or shape.

    Example:
    >>> check_image_batch(np.zeros((1, 4, 4, 3), "uint8")).shape
    (1, 4, 4, 3)
    """
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

    Example:
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> probabilities, maps = attention_maps(model, np.zeros((2, 32, 32, 3), "uint8"))
    >>> probabilities.shape, [m.shape for m in maps]
    ((2, 10), [(2, 32, 32), (2, 16, 16), (2, 8, 8)])
    """
    images = check_image_batch(images)
    model = _as_attention_model(model)
    images = image_files.fit_to_model_input(images, model)
    count = sum(1 for key in model.output if key.startswith("attention_"))
    keys = ["probabilities"] + [f"attention_{k}" for k in range(1, count + 1)]

    def predict(batch):
        outputs = model(batch.astype("float32"), training=False)
        return {key: outputs[key] for key in keys}

    results = map_batches(predict, images, batch_size=batch_size)
    return results["probabilities"], [results[key] for key in keys[1:]]


def _check_labels(labels, count):
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != count:
        raise ValueError(f"`labels` has {len(labels)} entries for {count} images.")
    return labels


def attention_grid(
    model, images, labels=None, class_names=None, *, tile_size=128, cmap="jet",
    image_weight=0.6, map_weight=0.4,
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
    labels = _check_labels(labels, len(images))
    tile_height, tile_width = grids.tile_shape(images.shape[1:3], tile_size)
    probabilities, maps = attention_maps(model, images)
    tiles = image_files.resize_images(images, (tile_height, tile_width))
    columns = [tiles] + [
        overlay(tiles, m, image_weight=image_weight, map_weight=map_weight, cmap=cmap)
        for m in maps
    ]
    captions = grids.captions(probabilities, labels, class_names)
    return grids.draw_grid(columns, captions, [m.shape[1:] for m in maps])


def save_attention_grids(
    model, images, directory, labels=None, class_names=None, *, rows_per_grid=8,
    prefix="attention", **grid_kwargs,
):
    """Writes `attention_grid`s of up to `rows_per_grid` images as PNGs.

    Files are `<directory>/<prefix>_000.png`, `_001.png`, ... in image
    order.

    Args:
        model: a `build_model()` model or its `attention_model()`.
        images: uint8 array (N, H, W, 3) of raw RGB pixels.
        directory: the output folder (created if missing).
        labels, class_names: as for `attention_grid`.
        rows_per_grid: images per file.
        prefix: the file names' prefix.
        **grid_kwargs: passed to `attention_grid` (tile_size, cmap, ...).

    Returns:
        The list of written paths.
    """
    images = check_image_batch(images)
    if not isinstance(rows_per_grid, int) or rows_per_grid < 1:
        raise ValueError(f"`rows_per_grid` must be a positive int; received {rows_per_grid!r}.")
    model = _as_attention_model(model)
    paths = []
    # One file per `rows_per_grid` images (a page each, not a model batch).
    for index, first in enumerate(range(0, len(images), rows_per_grid)):
        page = slice(first, first + rows_per_grid)
        grid = attention_grid(
            model,
            images[page],
            None if labels is None else np.asarray(labels)[page],
            class_names,
            **grid_kwargs,
        )
        paths.append(save_png(grid, os.path.join(directory, f"{prefix}_{index:03d}.png")))
    return paths
