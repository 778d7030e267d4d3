"""keras_ltpa.data.images: one way to list, decode and resize image files, and
the same model input from a file on every path that reads one."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_ltpa import evaluation as evaluate
from keras_ltpa.data import images
from keras_ltpa.data import pipelines as data
from keras_ltpa.evaluation import overlays as visualize
from tests.conftest import write_image


def test_list_images_takes_the_one_extension_set(tmp_path):
    for name in ("b.JPG", "a.png", "c.bmp", "d.gif", "e.jpeg"):
        write_image(tmp_path / "sub" / name)
    (tmp_path / ".hidden.png").write_bytes(b"")
    listed = images.list_images(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in listed] == ["a.png", "b.JPG", "c.bmp", "d.gif", "e.jpeg"]
    write_image(tmp_path / "photo.webp")
    with pytest.raises(ValueError, match=r"photo.webp.*\.jpg, \.jpeg, \.png, \.bmp, \.gif"):
        images.list_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        images.list_images(tmp_path / "empty")


def test_read_image_gives_rgb_for_grey_rgba_and_gif(tmp_path):
    colour = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(colour, "RGB").save(tmp_path / "colour.png")  # lossless: exact
    np.testing.assert_array_equal(images.read_image(tmp_path / "colour.png"), colour)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "grey.png"), np.stack([grey] * 3, -1))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert images.read_image(tmp_path / "rgba.png")[..., 0].tolist() == [[200, 200], [200, 200]]
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first = images.read_image(tmp_path / "anim.gif")
    assert first.shape == (4, 4, 3) and first[0, 0, 0] > 200 and first[0, 0, 2] < 50
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(ValueError, match="broken.jpg"):
        images.read_image(tmp_path / "broken.jpg")


def test_resize_is_antialiased_bilinear_rounded_and_skips_same_size():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    assert images.resize_images(batch, (20, 30)) is batch
    resized = images.resize_images(batch, (8, 12))
    expected = np.round(tf.image.resize(batch, (8, 12), antialias=True).numpy())
    np.testing.assert_array_equal(resized, np.clip(expected, 0, 255).astype(np.uint8))
    # Pillow's antialiased bilinear is the same triangle filter (support
    # scaled by the reduction) but rounds to uint8 between its horizontal
    # and vertical passes: <= 0.5 carried through the convex vertical pass,
    # plus each side's final rounding, differ by at most 1 grey level.
    pillow = np.stack([np.asarray(Image.fromarray(b).resize((12, 8), Image.BILINEAR)) for b in batch])
    assert np.abs(resized.astype(int) - pillow.astype(int)).max() <= 1
    mixed = images.resize_images([batch[0], batch[1, :10]], (8, 12))
    assert mixed.shape == (2, 8, 12, 3) and mixed.dtype == np.uint8


@pytest.fixture
def one_photo_folder(tmp_path, small_data_dir):
    """A data folder whose only image is a real 300-pixel-wide horse JPEG."""
    source = sorted((small_data_dir / "weizmann_horse" / "rgb").glob("*.jpg"))[0]
    for split in ("train", "test"):
        (tmp_path / split / "horse").mkdir(parents=True)
        shutil.copy(source, tmp_path / split / "horse" / source.name)
    return tmp_path, tmp_path / "test" / "horse" / source.name


def test_a_jpeg_gives_the_same_input_on_every_path(one_photo_folder, small_data_dir):
    """Training, visualisation and evaluation see the same pixels (the
    serving path: `test_serve_bytes_sees_the_training_pixels`)."""
    root, path = one_photo_folder
    assert Image.open(path).size[0] > 32  # The resize path is exercised.
    batches, _ = data.load_dataset("test", data_dir=root, image_size=(32, 32))
    from_training = next(iter(batches))[0].numpy()[0]
    from_visualize = visualize.read_images([path], (32, 32))[0][0]
    samples = evaluate.load_mask_dataset(
        small_data_dir / "weizmann_horse", limit=1
    )  # The same horse: the localisation path.
    from_evaluate = images.resize_images([samples[0][1]], (32, 32))[0]
    for pixels in (from_visualize, from_evaluate):
        assert np.abs(pixels.astype(int) - from_training.astype(int)).max() <= 1
    # Independently, Pillow's decoder: conforming JPEG decoders' IDCTs may
    # differ by 1 grey level (ITU-T T.83's accuracy for 8-bit samples), and
    # the resizes by 1 more (see the resize test): within 2 after resizing.
    with Image.open(path) as photo:
        decoded = np.asarray(photo.convert("RGB"))
        by_pillow = np.asarray(photo.convert("RGB").resize((32, 32), Image.BILINEAR))
    assert np.abs(images.read_image(path).astype(int) - decoded.astype(int)).max() <= 1
    assert np.abs(from_training.astype(int) - by_pillow.astype(int)).max() <= 2


@pytest.mark.tf_only
def test_serve_bytes_sees_the_training_pixels(one_photo_folder, serving_loaded):
    root, path = one_photo_folder
    batches, _ = data.load_dataset("test", data_dir=root, image_size=(32, 32))
    pixels = next(iter(batches))[0]
    saved = serving_loaded["unfolded"]
    from_bytes = saved.signatures["serve_bytes"](image_bytes=tf.constant([path.read_bytes()]))
    from_pixels = saved.signatures["serving_default"](images=pixels)
    # The same uint8 input gives the same graph the same values: only the
    # decode/resize could differ, and a grey level moves the outputs ~1e-3.
    for key in ("probabilities", "attention_1", "attention_3"):
        np.testing.assert_allclose(from_bytes[key].numpy(), from_pixels[key].numpy(), atol=1e-6)
