"""The layout of an attention grid: tiles, captions and column titles.

A grid starts with a header band naming the columns (`image`, then each map
and its size), then has one row per image: a caption band (the predicted
class and its probability, and the true class when known: green when
right, red when wrong) above a row of tiles `TILE_GAP` pixels apart. The
tiles themselves (the image, its overlays) come from
`keras_ltpa.evaluation.overlays.attention_grid`; this module only draws.
"""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

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


def tile_shape(image_size, tile_size):
    """(height, width) of a tile: `tile_size` high, the images' aspect ratio.

    Example:
    >>> tile_shape((40, 80), 20)
    (20, 40)
    """
    if not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"`tile_size` must be a positive int; received tile_size={tile_size!r}.")
    height, width = image_size
    return int(tile_size), max(1, int(round(tile_size * width / height)))


def grid_size(num_images, num_maps, image_size, tile_size=128):
    """The (height, width) in pixels of an `attention_grid`.

    Tiles are `tile_size` high and keep the images' aspect ratio; a row has
    `1 + num_maps` tiles `TILE_GAP` apart, under a `CAPTION_HEIGHT` band,
    and the grid starts with a header band of the same height:

        height = CAPTION_HEIGHT + num_images * (CAPTION_HEIGHT + tile_height)
        width = (1 + num_maps) * tile_width + num_maps * TILE_GAP

    Example:
    >>> grid_size(2, 3, (32, 32), tile_size=64)
    (176, 262)
    """
    return _pixels(num_images, 1 + num_maps, *tile_shape(image_size, tile_size))


def _pixels(rows, columns, tile_height, tile_width):
    return (
        CAPTION_HEIGHT + rows * (CAPTION_HEIGHT + tile_height),
        columns * tile_width + (columns - 1) * TILE_GAP,
    )


def _font():
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font.
        return ImageFont.load_default()


def _column_titles(map_sizes, draw, font, width):
    # The longest title style that fits every tile, so narrow tiles stay
    # readable and all columns read alike.
    styles = ("attention {k} ({h}x{w})", "map {k} ({h}x{w})", "map {k}")
    for style in styles:
        titles = [style.format(k=k, h=h, w=w) for k, (h, w) in enumerate(map_sizes, 1)]
        if all(draw.textlength(t, font=font) <= width - 4 for t in titles):
            break
    return ["image"] + titles


def _class_name(index, class_names):
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return f"class {index}"


def captions(probabilities, labels=None, class_names=None):
    """The caption of each row, and its colour.

    Args:
        probabilities: float array (N, num_classes).
        labels: optional int array (N,) of true classes.
        class_names: optional class names, indexed by class id.

    Returns:
        A list of `(text, rgb)` pairs: black without labels, green for a
        right prediction, red for a wrong one.

    Example:
    >>> captions(np.array([[0.25, 0.75]]), [0], ["cat", "dog"])
    [('predicted: dog (75%)   true: cat', (190, 0, 0))]
    """
    probabilities = np.asarray(probabilities)
    rows = []
    for row, predicted in enumerate(probabilities.argmax(axis=-1)):
        predicted = int(predicted)
        text = (
            f"predicted: {_class_name(predicted, class_names)} "
            f"({probabilities[row, predicted]:.0%})"
        )
        color = TEXT_COLOR
        if labels is not None:
            truth = int(labels[row])
            text += f"   true: {_class_name(truth, class_names)}"
            color = RIGHT_COLOR if truth == predicted else WRONG_COLOR
        rows.append((text, color))
    return rows


def draw_grid(columns, row_captions, map_sizes):
    """Lays tiles out as a grid under their captions and column titles.

    Args:
        columns: uint8 arrays (N, tile_height, tile_width, 3), one per
            column: the images, then one overlay per map.
        row_captions: `(text, rgb)` per row, from `captions`.
        map_sizes: (h, w) of each map, for the column titles.

    Returns:
        uint8 array (height, width, 3) of the size `grid_size` gives.

    Example:
    >>> tiles = np.zeros((1, 8, 8, 3), "uint8")
    >>> draw_grid([tiles, tiles], [("a cat", (0, 0, 0))], [(2, 2)]).shape
    (40, 18, 3)
    """
    count, tile_height, tile_width = columns[0].shape[:3]
    height, width = _pixels(count, len(columns), tile_height, tile_width)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for column, title in enumerate(_column_titles(map_sizes, draw, font, tile_width)):
        draw.text((column * (tile_width + TILE_GAP) + 2, 2), title, fill=TEXT_COLOR, font=font)
    for row, (text, color) in enumerate(row_captions):
        top = CAPTION_HEIGHT + row * (CAPTION_HEIGHT + tile_height)
        draw.text((2, top + 2), text, fill=color, font=font)
        for column, tile in enumerate(columns):
            canvas.paste(
                Image.fromarray(tile[row]), (column * (tile_width + TILE_GAP), top + CAPTION_HEIGHT)
            )
    return np.asarray(canvas, dtype=np.uint8)
