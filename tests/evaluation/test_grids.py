"""The attention grid's layout: tile sizes, captions, where tiles land."""

import numpy as np
import pytest

from keras_ltpa.evaluation import grids


def test_tile_shape_keeps_the_aspect_ratio_and_names_a_bad_size():
    assert grids.tile_shape((32, 32), 48) == (48, 48)
    assert grids.tile_shape((30, 90), 10) == (10, 30)
    assert grids.tile_shape((100, 1), 10) == (10, 1)  # never zero wide
    for bad in (0, -3, 2.5, "8"):
        with pytest.raises(ValueError, match=f"tile_size={bad!r}"):
            grids.tile_shape((32, 32), bad)


def test_captions_name_the_classes_and_colour_by_correctness():
    probabilities = np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]])
    assert grids.captions(probabilities) == [
        ("predicted: class 1 (90%)", grids.TEXT_COLOR),
        ("predicted: class 0 (60%)", grids.TEXT_COLOR),
        ("predicted: class 0 (50%)", grids.TEXT_COLOR),
    ]
    named = grids.captions(probabilities, [1, 1, 7], ["cat", "dog"])
    assert named[0] == ("predicted: dog (90%)   true: dog", grids.RIGHT_COLOR)
    assert named[1] == ("predicted: cat (60%)   true: dog", grids.WRONG_COLOR)
    assert named[2] == ("predicted: cat (50%)   true: class 7", grids.WRONG_COLOR)


def test_draw_grid_places_every_tile_under_its_caption():
    rng = np.random.default_rng(0)
    columns = [rng.integers(0, 256, (2, 10, 14, 3), dtype=np.uint8) for _ in range(3)]
    grid = grids.draw_grid(columns, [("a", (0, 0, 0)), ("b", (0, 0, 0))], [(4, 4), (2, 2)])
    caption, gap = grids.CAPTION_HEIGHT, grids.TILE_GAP
    assert grid.shape == grids.grid_size(2, 2, (10, 14), tile_size=10) + (3,)
    assert grid.shape == (caption + 2 * (caption + 10), 3 * 14 + 2 * gap, 3)
    for row in range(2):
        top = caption + row * (caption + 10) + caption
        for column, tiles in enumerate(columns):
            left = column * (14 + gap)
            np.testing.assert_array_equal(grid[top : top + 10, left : left + 14], tiles[row])
    # The header band carries the column titles (dark text on white).
    assert (grid[:caption] < 128).any() and (grid[:caption] == 255).any()
