"""Image folders as example sources: label ids, the fixed file order, errors."""

import os

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


@pytest.fixture
def single_folder(tmp_path):
    """DIR/<class>/ without train/ and test/: ant 8, bee 5, cat 3, solo 1 images."""
    for name, count in (("ant", 8), ("bee", 5), ("cat", 3), ("solo", 1)):
        for index in range(count):
            write_image(tmp_path / "photos" / name / f"{index:02d}.png", 10 * index, size=(6, 4))
    return tmp_path / "photos"


def test_validation_split_holds_out_a_share_of_each_class(single_folder):
    split = sources.split_image_folder(single_folder, 0.25)
    # 0.25 x (8, 5, 3, 1), rounded half up, at least 1, at most all but one:
    # 2, 1.25 -> 1, 0.75 -> 1, and a lone file stays for training.
    assert split["counts"] == {"ant": [6, 2], "bee": [4, 1], "cat": [2, 1], "solo": [1, 0]}
    train, held = split["train"], split["validation"]
    assert not set(train[0]) & set(held[0])
    assert sorted(train[0] + held[0]) == sorted(str(p) for p in single_folder.rglob("*.png"))
    for paths, labels in (train, held):
        # Each file keeps its class's id (the sorted folder names).
        assert [split["class_names"][label] for label in labels] == [
            os.path.basename(os.path.dirname(path)) for path in paths
        ]
    # The same split every time, and a class keeps its own when another is
    # added: its order depends on the seed and its name alone.
    again = sources.split_image_folder(single_folder, 0.25)
    assert again["validation"][0] == held[0]
    write_image(single_folder / "ape" / "0.png")
    write_image(single_folder / "ape" / "1.png")
    grown = sources.split_image_folder(single_folder, 0.25)
    assert [p for p in grown["validation"][0] if "/ape/" not in p] == held[0]
    other_seed = sources.split_image_folder(single_folder, 0.25, seed=7)
    assert other_seed["counts"] == grown["counts"]


def test_the_pipeline_reads_the_split_and_records_it(single_folder):
    from keras_ltpa.data import pipelines

    record = pipelines.describe_split(single_folder, 0.4)
    assert record["seed"] == sources.VALIDATION_SPLIT_SEED and record["fraction"] == 0.4
    # 0.4 x (8, 5, 3, 1) -> 3.2 -> 3, 2, 1.2 -> 1, 0.
    assert [held for _, held in record["counts"].values()] == [3, 2, 1, 0]
    test, names = pipelines.load_dataset(
        "test", data_dir=single_folder, validation_split=0.4, image_size=(4, 6), batch_size=64
    )
    labels = np.concatenate([batch[1].numpy() for batch in test])
    assert np.bincount(labels, minlength=4).tolist() == [3, 2, 1, 0]
    counts, _ = pipelines.label_counts("train", data_dir=single_folder, validation_split=0.4)
    assert counts.tolist() == [5, 3, 2, 1] and names == ["ant", "bee", "cat", "solo"]
    # Paths relative to the folder: class/file.
    assert [p.split("/")[0] for p in record["validation_files"]] == ["ant"] * 3 + ["bee"] * 2 + ["cat"]


def test_validation_split_errors_name_the_layout(single_folder, folder):
    with pytest.raises(sources.DataError, match="has a 'train' folder; validation_split"):
        sources.folder_examples(folder, "train", (4, 6), validation_split=0.2)
    with pytest.raises(sources.DataError, match="no 'train' folder.*--validation-split"):
        sources.folder_examples(single_folder, "train", (4, 6))
    with pytest.raises(ValueError, match=r"`validation_split` must be a number in \(0, 1\)"):
        sources.split_image_folder(single_folder, 1.0)
