"""Tests of keras_ltpa.evaluation.overlays (the CLI: tests/cli/test_visualize.py)."""

import os

import keras
import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from keras_ltpa import attention_model
from keras_ltpa import build_model
from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import overlays as visualize
from tests.conftest import write_image

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(10, width_multiplier=0.0625)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


# --- Map operations --------------------------------------------------------


def test_upsample_map_matches_pil_bilinear():
    attention = np.random.default_rng(1).random((5, 7)).astype(np.float32)
    expected = np.asarray(
        Image.fromarray(attention, mode="F").resize((21, 15), Image.BILINEAR)
    )
    np.testing.assert_allclose(visualize.upsample_map(attention, (15, 21)), expected, atol=1e-5)


def test_upsample_map_batch_and_constant():
    batch = np.stack([np.full((4, 4), 3.0), np.arange(16.0).reshape(4, 4)])
    out = visualize.upsample_map(batch, (8, 12))
    assert out.shape == (2, 8, 12)
    np.testing.assert_allclose(out[0], 3.0)
    # Corners keep the corner values; the mean of a linear ramp is kept.
    assert out[1, 0, 0] == 0.0 and out[1, -1, -1] == 15.0
    np.testing.assert_allclose(out[1].mean(), 7.5, atol=1e-5)
    np.testing.assert_allclose(
        visualize.upsample_map(np.array([[0.0, 1.0]]), (1, 4)), [[0.0, 0.25, 0.75, 1.0]]
    )


def test_normalize_map_per_image():
    batch = np.stack([np.array([[1.0, 3.0], [2.0, 5.0]]), np.full((2, 2), 7.0)])
    out = visualize.normalize_map(batch)
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [0.25, 1.0]])
    np.testing.assert_allclose(out[1], 0.0)


def test_colorize_uses_the_matplotlib_colour_map():
    values = np.array([[0.0, 0.5, 1.0]])
    out = visualize.colorize(values, cmap="inferno")
    expected = np.round(colormaps["inferno"](values)[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    jet = visualize.colorize(values)
    assert jet.dtype == np.uint8 and jet.shape == (1, 3, 3)
    assert jet[0, 0, 2] > 100 and jet[0, 0, 0] == 0  # low: blue
    assert jet[0, 2, 0] > 100 and jet[0, 2, 2] == 0  # high: red
    with pytest.raises(ValueError, match="cmap"):
        visualize.colorize(values, cmap="no-such-map")


def test_hot_spot_comes_out_hot_at_the_right_pixels():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    attention = np.zeros((8, 8), dtype=np.float32)
    attention[2, 5] = 1.0  # covers rows 16..23, columns 40..47 of the image
    out = visualize.overlay(image, attention)
    hotness = out[..., 0].astype(int) - out[..., 2].astype(int)
    row, column = np.unravel_index(hotness.argmax(), hotness.shape)
    assert 16 <= row <= 23 and 40 <= column <= 47
    # The cell's centre is red (jet's top); far pixels are blue (jet's bottom).
    centre = out[19:21, 43:45].reshape(-1, 3).astype(int)
    assert (centre[:, 0] > centre[:, 2] + 40).all()
    far = np.concatenate([out[:8].reshape(-1, 3), out[40:, :24].reshape(-1, 3)]).astype(int)
    assert (far[:, 2] > far[:, 0] + 40).all()
    # The blend is exactly 0.6 image + 0.4 colour at the peak (colour 1.0).
    peak = visualize.colorize(np.ones((1, 1)))[0, 0]
    expected = np.round(0.6 * 128 + 0.4 * peak.astype(float))
    upsampled = visualize.normalize_map(visualize.upsample_map(attention, (64, 64)))
    peak_pixel = np.unravel_index(upsampled.argmax(), upsampled.shape)
    np.testing.assert_array_equal(out[peak_pixel], expected)


def test_overlay_checks_shapes():
    with pytest.raises(ValueError, match="image"):
        visualize.overlay(np.zeros((8, 8), np.uint8), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="attention"):
        visualize.overlay(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 2, 2)))


# --- Grids ---------------------------------------------------------------------


def test_attention_grid_layout(tiny_model, images):
    tile = 48
    grid = visualize.attention_grid(
        tiny_model, images, labels=[3, 5, 7], class_names=CIFAR10_CLASSES, tile_size=tile
    )
    caption, gap = visualize.CAPTION_HEIGHT, visualize.TILE_GAP
    # Header + 3 rows of (caption + tile); 4 columns (image + 3 maps), 3 gaps.
    assert grid.shape == (caption + 3 * (caption + tile), 4 * tile + 3 * gap, 3)
    assert grid.dtype == np.uint8
    assert grid.shape[:2] == visualize.grid_size(3, 3, (32, 32), tile)

    probabilities, maps = visualize.attention_maps(tiny_model, images)
    tiles = image_files.resize_images(images, (tile, tile))
    for row in range(3):
        top = caption + row * (caption + tile) + caption
        np.testing.assert_array_equal(grid[top : top + tile, :tile], tiles[row])
        for k, attention in enumerate(maps, start=1):
            left = k * (tile + gap)
            np.testing.assert_array_equal(
                grid[top : top + tile, left : left + tile],
                visualize.overlay(tiles[row], attention[row]),
            )
            assert (grid[top : top + tile, left - gap : left] == 255).all()
        # The caption band above the tiles holds text (non-white pixels).
        band = grid[top - caption : top]
        assert (band < 200).any()
    assert probabilities.shape == (3, 10)
    assert [m.shape for m in maps] == [(3, 32, 32), (3, 16, 16), (3, 8, 8)]


def test_attention_grid_same_for_attention_model_and_baseline(tiny_model, images):
    direct = visualize.attention_grid(tiny_model, images[:1], tile_size=32)
    via = visualize.attention_grid(attention_model(tiny_model), images[:1], tile_size=32)
    np.testing.assert_array_equal(direct, via)
    baseline = build_model(10, variant="noatt", width_multiplier=0.0625)
    grid = visualize.attention_grid(baseline, images[:2], tile_size=32)
    assert grid.shape == (16 + 2 * (16 + 32), 32, 3)


def test_attention_grid_resizes_other_image_sizes(tiny_model):
    images = np.zeros((1, 40, 80, 3), dtype=np.uint8)
    grid = visualize.attention_grid(tiny_model, images, tile_size=20)
    # Tiles keep the images' 1:2 aspect ratio.
    assert grid.shape == (16 + 16 + 20, 4 * 40 + 3 * 2, 3)


def test_attention_grid_rejects_bad_input(tiny_model):
    with pytest.raises(ValueError, match="uint8"):
        visualize.attention_grid(tiny_model, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="labels"):
        visualize.attention_grid(tiny_model, np.zeros((2, 32, 32, 3), np.uint8), labels=[1])
    with pytest.raises(ValueError, match="tile_size"):
        visualize.attention_grid(tiny_model, np.zeros((1, 32, 32, 3), np.uint8), tile_size=0)


def test_save_png_round_trip(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, (10, 7, 3), dtype=np.uint8)
    path = visualize.save_png(array, tmp_path / "sub" / "a.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (7, 10)
        np.testing.assert_array_equal(np.asarray(image), array)
    assert os.listdir(tmp_path / "sub") == ["a.png"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ValueError, match="uint8"):
        visualize.save_png(array.astype(np.float32), tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_save_attention_grids_splits_rows(tiny_model, tmp_path):
    images = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    paths = visualize.save_attention_grids(
        tiny_model, images, tmp_path, rows_per_grid=2, tile_size=32
    )
    assert [os.path.basename(p) for p in paths] == [
        "attention_000.png", "attention_001.png", "attention_002.png",
    ]
    heights = [Image.open(p).size[1] for p in paths]
    assert heights == [16 + 2 * 48, 16 + 2 * 48, 16 + 48]


# --- Image files -----------------------------------------------------------------


def test_read_images_resizes_and_labels_from_class_folders(tmp_path):
    write_image(tmp_path / "cat" / "a.png", 10)
    write_image(tmp_path / "dog" / "b.jpg", 200, size=(40, 20))
    images, labels, paths = visualize.read_images([tmp_path], (8, 8), ["cat", "dog"])
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1]
    assert abs(int(images[0].mean()) - 10) <= 1 and abs(int(images[1].mean()) - 200) <= 2
    _, labels, _ = visualize.read_images([paths[0]], (8, 8), ["horse"])
    assert labels is None


def test_non_image_file_in_folder_is_named(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        visualize.read_images([tmp_path], (8, 8))
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        visualize.read_images([tmp_path], (8, 8))
    with pytest.raises(ValueError, match="missing.png"):
        visualize.read_images([tmp_path / "missing.png"], (8, 8))


def test_attention_grid_under_mixed_precision(images):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_model(10, width_multiplier=0.0625)
    probabilities, maps = visualize.attention_maps(model, images[:2])
    assert probabilities.dtype == np.float32
    for attention in maps:
        assert attention.dtype == np.float32
        np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=1e-2)
    grid = visualize.attention_grid(model, images[:2], tile_size=32)
    assert grid.shape == visualize.grid_size(2, 3, (32, 32), 32) + (3,)


def test_read_images_fitted_to_a_model_match_the_resized_ones(tiny_model, tmp_path):
    write_image(tmp_path / "cat" / "a.png", 10, size=(40, 20))
    write_image(tmp_path / "dog" / "b.jpg", 200, size=(64, 64))
    fitted, labels, _ = visualize.read_images([tmp_path], class_names=["cat", "dog"], model=tiny_model)
    resized, _, _ = visualize.read_images([tmp_path], (32, 32))
    assert fitted.shape == (2, 32, 32, 3) and labels.tolist() == [0, 1]
    np.testing.assert_array_equal(fitted, resized)
    with pytest.raises(ValueError, match="exactly one of `size`"):
        visualize.read_images([tmp_path], (32, 32), model=tiny_model)
    with pytest.raises(ValueError, match="exactly one of `size`"):
        visualize.read_images([tmp_path])
