"""Input pipelines: image folders (real CIFAR-10 JPEGs), tfds (mocked),
augmentation and the errors on bad input."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_ltpa.data import images as image_files
from keras_ltpa.data import pipelines as data

CLASSES = ("cat", "dog", "horse")


def _copy_images(source, target, count):
    os.makedirs(target, exist_ok=True)
    names = sorted(os.listdir(source))[:count]
    for name in names:
        shutil.copy(os.path.join(source, name), os.path.join(target, name))
    return names


@pytest.fixture
def image_folder(tmp_path, small_data_dir):
    """DIR/train/{cat,dog,horse}/ (4 each) and DIR/test/{cat,horse}/ (2 each)."""
    cifar = small_data_dir / "cifar10"
    root = tmp_path / "images"
    for name in CLASSES:
        _copy_images(cifar / "train" / name, root / "train" / name, 4)
    for name in ("cat", "horse"):
        _copy_images(cifar / "test" / name, root / "test" / name, 2)
    return root


def _all(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def test_list_image_folder_labels_follow_sorted_class_folders(image_folder):
    (image_folder / "train" / "dog" / "notes.txt").write_text("not an image")
    paths, labels, class_names = data.list_image_folder(image_folder / "train")
    assert class_names == list(CLASSES)
    assert len(paths) == 12 and labels.dtype == np.int32
    for path, label in zip(paths, labels):
        assert os.path.basename(os.path.dirname(path)) == CLASSES[label]
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 4))


def test_folder_pipeline_gives_the_decoded_pixels_and_train_class_ids(image_folder):
    test, class_names = data.load_dataset(
        "test", data_dir=image_folder, batch_size=3
    )
    assert class_names == list(CLASSES)
    images, labels = _all(test)
    assert images.dtype == np.uint8 and images.shape == (4, 32, 32, 3)
    assert labels.dtype == np.int32
    # The test split has cat and horse only: their ids are the train split's.
    assert sorted(labels.tolist()) == [0, 0, 2, 2]
    # The pixels are the JPEG files' as Pillow decodes them.
    files = sorted((image_folder / "test").glob("*/*.jpg"))
    pillow = [np.asarray(Image.open(f).convert("RGB"), np.int16) for f in files]
    for image in images.astype(np.int16):
        matches = [p for p in pillow if np.array_equal(p, image)]
        assert len(matches) == 1


def test_limit_takes_a_fixed_mix_of_classes(small_data_dir):
    first, _ = data.load_dataset(
        "test", data_dir=small_data_dir / "cifar10", limit=60, batch_size=60
    )
    second, _ = data.load_dataset(
        "test", data_dir=small_data_dir / "cifar10", limit=60, batch_size=60
    )
    images_1, labels_1 = _all(first)
    images_2, labels_2 = _all(second)
    assert images_1.shape == (60, 32, 32, 3)
    assert len(set(labels_1.tolist())) >= 8  # Not the first class only.
    np.testing.assert_array_equal(labels_1, labels_2)
    np.testing.assert_array_equal(images_1, images_2)


def test_training_pipeline_shuffles_every_epoch(image_folder):
    train, _ = data.load_dataset(
        "train", data_dir=image_folder, batch_size=12, training=True,
        augment="none", seed=3,
    )
    orders = [tuple(_all(train)[1].tolist()) for _ in range(4)]
    assert all(sorted(order) == sorted(orders[0]) for order in orders)
    assert len(set(orders)) > 1


def _is_padded_crop_or_flip(output, image, pad=4):
    """Is `output` a 32x32 window of `image` zero-padded by `pad`, maybe flipped?"""
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    size = image.shape[0]
    for candidate in (output, output[:, ::-1]):
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if np.array_equal(padded[dy:dy + size, dx:dx + size], candidate):
                    return True
    return False


def test_paper_augmentation_is_padded_crop_and_flip(image_folder):
    kwargs = dict(data_dir=image_folder, batch_size=12, shuffle=False)
    plain, _ = data.load_dataset("train", augment="none", **kwargs)
    augmented, _ = data.load_dataset("train", training=True, seed=7, **kwargs)
    images, labels = _all(plain)
    changed = 0
    for _ in range(2):
        outputs, output_labels = _all(augmented)
        assert outputs.dtype == np.uint8 and outputs.shape == images.shape
        np.testing.assert_array_equal(output_labels, labels)
        for output, image in zip(outputs, images):
            assert _is_padded_crop_or_flip(output, image)
            changed += not np.array_equal(output, image)
    assert changed >= 12  # Most of 24 draws move or flip the image.


def test_mixup_and_cutmix_give_soft_labels(image_folder):
    train, class_names = data.load_dataset(
        "train", data_dir=image_folder, batch_size=12, training=True,
        augment="crop,flip,mixup,cutmix", seed=1,
    )
    images, labels = _all(train)
    assert images.dtype == np.uint8 and images.shape == (12, 32, 32, 3)
    assert labels.dtype == np.float32 and labels.shape == (12, len(class_names))
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert ((labels > 0) & (labels < 1)).any()  # Some labels are mixed.


def test_randaugment_keeps_shape_and_dtype_and_changes_images(image_folder):
    kwargs = dict(data_dir=image_folder, batch_size=12, shuffle=False)
    plain, _ = data.load_dataset("train", augment="none", **kwargs)
    augmented, _ = data.load_dataset("train", augment="randaugment", seed=2, **kwargs)
    images, _ = _all(plain)
    outputs, labels = _all(augmented)
    assert outputs.dtype == np.uint8 and outputs.shape == images.shape
    assert labels.dtype == np.int32
    assert sum(not np.array_equal(a, b) for a, b in zip(outputs, images)) >= 6


def test_images_of_other_sizes_are_resized(tmp_path, small_data_dir):
    horses = small_data_dir / "weizmann_horse" / "rgb"
    _copy_images(horses, tmp_path / "train" / "horse", 2)
    _copy_images(small_data_dir / "cifar10" / "train" / "cat", tmp_path / "train" / "cat", 2)
    train, _ = data.load_dataset("train", data_dir=tmp_path, image_size=(64, 48), batch_size=4)
    images, labels = _all(train)
    assert images.shape == (4, 64, 48, 3) and images.dtype == np.uint8
    # A horse photo becomes its resized self, not a crop or padding.
    path = sorted((tmp_path / "train" / "horse").iterdir())[0]
    original = np.asarray(Image.open(path).convert("RGB"))
    expected = tf.image.resize(original, (64, 48), antialias=True).numpy()
    errors = [np.abs(image.astype(float) - expected).mean() for image in images]
    assert min(errors) < 3.0


def test_tfds_pipeline_with_mock_data(monkeypatch):
    from keras_ltpa.data import sources

    # mock_data downloads nothing: no download hosts to ask first.
    monkeypatch.setattr(sources, "_check_download_hosts", lambda: None)
    with tfds.testing.mock_data(num_examples=20):
        train, class_names = data.load_dataset(
            "train", dataset="cifar10", batch_size=8, training=True, seed=0
        )
        images, labels = _all(train)
        mnist, mnist_classes = data.load_dataset(
            "test", dataset="mnist", batch_size=8, limit=10
        )
        grey, _ = _all(mnist)
    assert len(class_names) == 10
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and set(labels.tolist()) <= set(range(10))
    # MNIST: 28x28 grey -> 32x32 RGB with three equal channels, limit applied.
    assert grey.shape == (10, 32, 32, 3) and len(mnist_classes) == 10
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


# --- Bad input -------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="not a directory"):
        data.load_dataset("train", data_dir=tmp_path / "missing")


def test_folder_without_train_split(tmp_path):
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(data.DataError, match="no 'train' folder"):
        data.load_dataset("train", data_dir=tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(data.DataError, match="has no class folders"):
        data.load_dataset("train", data_dir=tmp_path)


def test_class_folder_without_images(image_folder):
    empty = image_folder / "train" / "zebra"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(data.DataError, match="zebra.*contains no image files"):
        data.load_dataset("train", data_dir=image_folder)


def test_test_class_unknown_to_train(image_folder):
    _copy_images(image_folder / "train" / "cat", image_folder / "test" / "ship", 1)
    with pytest.raises(data.DataError, match="'ship'.*not classes of the training"):
        data.load_dataset("test", data_dir=image_folder)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_image_is_named(image_folder, kind):
    bad = image_folder / "train" / "dog" / "broken.jpg"
    good = sorted((image_folder / "train" / "dog").iterdir())[0].read_bytes()
    bad.write_bytes(b"not a jpeg" if kind == "garbage" else good[: len(good) // 3])
    with pytest.raises(data.DataError, match="broken.jpg"):
        data.load_dataset("train", data_dir=image_folder)
    assert image_files.find_unreadable_images(
        sorted((image_folder / "train" / "dog").iterdir())
    ) == [str(bad)]


def test_tfds_download_failure_is_one_clear_error(monkeypatch):
    with tfds.testing.mock_data(num_examples=4):
        builder = tfds.builder("cifar10")

    def _offline():
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'\nmore detail")

    monkeypatch.setattr(builder, "download_and_prepare", _offline)
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: builder)
    with pytest.raises(data.DataError) as error:
        data.load_dataset("train", dataset="cifar10")
    message = str(error.value)
    assert "'cifar10'" in message and "ConnectionError" in message
    assert "--data-dir" in message and "\n" not in message


def test_download_hosts_check_asks_each_host_then_names_them(monkeypatch):
    import requests

    from keras_ltpa.data import sources

    asked = []

    def head(url, timeout):
        asked.append((url, timeout))
        raise requests.ConnectionError("no route")

    monkeypatch.setattr(requests, "head", head)
    with pytest.raises(ConnectionError, match="no network: none of https://a.example, https://b.example"):
        sources._check_download_hosts(("https://a.example", "https://b.example"), timeout=3)
    assert asked == [("https://a.example", 3), ("https://b.example", 3)]
    # One host answering is enough.
    monkeypatch.setattr(requests, "head", lambda url, timeout: url == "https://b.example" or head(url, timeout))
    sources._check_download_hosts(("https://a.example", "https://b.example"), timeout=3)


def test_unknown_tfds_name():
    with pytest.raises(data.DataError, match="'no_such_dataset'"):
        data.load_dataset("train", dataset="no_such_dataset")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "exactly one of"),
        (dict(dataset="cifar10", data_dir="x"), "exactly one of"),
        (dict(dataset="cifar10", augment="crop,zoom"), "'zoom'"),
        (dict(dataset="cifar10", batch_size=0), "batch_size"),
        (dict(dataset="cifar10", image_size=(32,)), "image_size"),
        (dict(dataset="cifar10", augment="mixup", label_mode="int"), "label_mode"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset("train", **kwargs)


def test_parse_augment():
    assert data.parse_augment(None, training=True) == ("crop", "flip")
    assert data.parse_augment(None, training=False) == ()
    assert data.parse_augment("paper") == ("crop", "flip")
    assert data.parse_augment("none") == ()
    assert data.parse_augment("mixup, flip") == ("flip", "mixup")


def test_pixel_statistics_are_the_per_channel_mean_and_std():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 4, 4, 3)).astype("uint8")
    pixels[..., 2] = 7  # A constant channel: its std is floored, not zero.
    batches = [(pixels[:6], None), (pixels[6:], None)]
    mean, std = data.pixel_statistics(batches)
    expected = pixels.reshape(-1, 3).astype("float64") / 255.0
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std[:2], expected.std(axis=0)[:2], rtol=1e-9)
    assert std[2] == 1e-3
    with pytest.raises(data.DataError, match="no images"):
        data.pixel_statistics([])


def test_cache_gives_the_same_pixels(image_folder):
    # 4 test images in batches of 3: two batches, the last one short.
    plain, _ = data.load_dataset("test", data_dir=image_folder, batch_size=3)
    cached, _ = data.load_dataset("test", data_dir=image_folder, batch_size=3, cache=True)
    expected = [(x.numpy(), y.numpy()) for x, y in plain]
    assert [len(y) for _, y in expected] == [3, 1]

    def check(batches):
        batches = [(x.numpy(), y.numpy()) for x, y in batches]
        assert len(batches) == len(expected)  # zip() would hide a missing batch.
        for (a, la), (b, lb) in zip(expected, batches):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)

    check(cached)  # The first pass reads the files and fills the cache.
    shutil.rmtree(image_folder / "test")
    check(cached)  # The second pass reads the cache only: the files are gone.
    with pytest.raises(tf.errors.NotFoundError):  # Nothing else kept the pixels.
        next(iter(plain))
