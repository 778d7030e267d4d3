"""Image folders as example sources: label ids, the fixed file order, errors."""

import numpy as np
import pytest

from keras_ltpa.data import sources
from tests.conftest import write_image


@pytest.fixture
def folder(tmp_path):
    """train/{ant,bee}/ (3 images each, ant dark, bee bright), test/bee/ (2)."""
    for split, name, count, value in (
        ("train", "ant", 3, 20), ("train", "bee", 3, 220), ("test", "bee", 2, 220),
    ):
        for index in range(count):
            write_image(tmp_path / split / name / f"{index}.png", value, size=(6, 4))
    return tmp_path


def _all(dataset):
    pairs = [(image.numpy(), int(label)) for image, label in dataset]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def test_other_splits_take_the_train_split_ids(folder):
    test, class_names = sources.folder_examples(folder, "test", (4, 6))
    images, labels = _all(test)
    assert class_names == ["ant", "bee"] and labels == [1, 1]
    assert images.shape == (2, 4, 6, 3) and images.dtype == np.uint8
    assert (images == 220).all()


def test_files_come_in_one_fixed_mixed_order(folder):
    paths, labels, _ = sources.list_image_folder(folder / "train")
    order = np.random.default_rng(sources.FILE_ORDER_SEED).permutation(len(paths))
    first, _ = sources.folder_examples(folder, "train", (4, 6), limit=4)
    again, _ = sources.folder_examples(folder, "train", (4, 6), limit=4)
    images, got = _all(first)
    assert got == labels[order[:4]].tolist() == _all(again)[1]
    # Each image is its class's shade: the pixels follow their labels.
    assert [int(image.mean() > 100) for image in images] == got


def test_bad_folders_are_named(folder):
    write_image(folder / "test" / "wasp" / "0.png")
    with pytest.raises(sources.DataError, match="'wasp'.*not classes of the training split"):
        sources.folder_examples(folder, "test", (4, 6))
    with pytest.raises(sources.DataError, match="has no 'train' folder"):
        sources.folder_examples(folder / "train", "test", (4, 6))
    (folder / "train" / "ant" / "3.png").write_bytes(b"not a png")
    with pytest.raises(sources.DataError, match="3.png"):
        sources.folder_examples(folder, "train", (4, 6))
