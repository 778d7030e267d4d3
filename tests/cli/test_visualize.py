"""training/visualize.py end to end: grids from a run folder, files, errors."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_ltpa import build_model
from keras_ltpa.evaluation import overlays as visualize
from tests.conftest import write_image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / "training" / "visualize.py"
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


visualize_cli = importlib.import_module("keras_ltpa.cli.visualize")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    build_model(10, width_multiplier=0.0625).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"class_names": CIFAR10_CLASSES}))
    return run


def _coloured_caption_pixels(grid, row, tile):
    top = visualize.CAPTION_HEIGHT + row * (visualize.CAPTION_HEIGHT + tile)
    band = grid[top : top + visualize.CAPTION_HEIGHT].astype(int)
    return int((np.abs(band[..., 0] - band[..., 1]) > 50).sum())


def test_cli_labels_images_in_class_folders(saved_model, small_data_dir, tmp_path, capsys):
    # Class names come from the run's config.json; the folder names the class,
    # so the caption gives the true class, coloured green or red.
    cat = small_data_dir / "cifar10" / "test" / "cat"
    files = sorted(cat.iterdir())[:2]
    code = visualize_cli.main([
        "--model", str(saved_model), "--images", *map(str, files),
        "--tile-size", "32", "--output", str(tmp_path / "labelled"),
    ])
    assert code == 0
    (path,) = capsys.readouterr().out.split()
    grid = np.asarray(Image.open(path))
    assert all(_coloured_caption_pixels(grid, row, 32) > 0 for row in range(2))
    # Outside class folders there is no true class: black captions only.
    for index, file in enumerate(files):
        (tmp_path / "loose").mkdir(exist_ok=True)
        (tmp_path / "loose" / f"{index}.jpg").write_bytes(file.read_bytes())
    code = visualize_cli.main([
        "--model", str(saved_model), "--images", str(tmp_path / "loose"),
        "--tile-size", "32", "--output", str(tmp_path / "plain"),
    ])
    assert code == 0
    (path,) = capsys.readouterr().out.split()
    grid = np.asarray(Image.open(path))
    assert all(_coloured_caption_pixels(grid, row, 32) == 0 for row in range(2))


def test_cli_on_cifar_test_images(saved_model, small_data_dir, tmp_path, capsys):
    code = visualize_cli.main([
        "--model", str(saved_model),
        "--data-dir", str(small_data_dir / "cifar10"), "--split", "test",
        "--num-images", "3", "--rows-per-grid", "2", "--tile-size", "32",
        "--output", str(tmp_path),
    ])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in printed] == ["attention_000.png", "attention_001.png"]
    sizes = [Image.open(p).size for p in printed]
    assert sizes == [(4 * 32 + 6, 16 + 2 * 48), (4 * 32 + 6, 16 + 48)]


def test_cli_on_horse_files(saved_model, small_data_dir, tmp_path, capsys):
    rgb = small_data_dir / "weizmann_horse" / "rgb"
    code = visualize_cli.main([
        "--model", str(saved_model / "model.keras"),
        "--images", str(rgb / "horse001.jpg"), str(rgb / "horse002.jpg"),
        "--class-names", ",".join(CIFAR10_CLASSES), "--tile-size", "32",
        "--output", str(tmp_path), "--prefix", "horses",
    ])
    assert code == 0
    (path,) = capsys.readouterr().out.split()
    assert os.path.basename(path) == "horses_000.png"
    assert Image.open(path).size == (4 * 32 + 6, 16 + 2 * 48)


def test_cli_errors_name_the_problem(saved_model, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "readme.md").write_text("#")
    code = visualize_cli.main([
        "--model", str(saved_model), "--images", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"),
    ])
    assert code == 2
    assert "readme.md" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    code = visualize_cli.main([
        "--model", str(tmp_path / "nothing"), "--images", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"),
    ])
    assert code == 2
    assert "nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_process_exits_2_naming_the_bad_file(saved_model, tmp_path):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "labels.csv").write_text("a,0")
    result = subprocess.run(
        [sys.executable, str(CLI), "--model", str(saved_model),
         "--images", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True,
        # Exit codes do not depend on the backend; TensorFlow loads fastest.
        env=dict(os.environ, KERAS_BACKEND="tensorflow"), timeout=300,
    )
    assert result.returncode == 2
    assert "labels.csv" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_on_a_tfds_split_with_another_colour_map(saved_model, tmp_path, capsys, recorded_tfds_loads):
    import tensorflow_datasets as tfds

    asked = recorded_tfds_loads
    grids = {}
    with tfds.testing.mock_data(num_examples=6):
        for cmap in ("jet", "gray"):
            code = visualize_cli.main([
                "--model", str(saved_model), "--dataset", "cifar10", "--split", "train",
                "--num-images", "3", "--tile-size", "32", "--cmap", cmap,
                "--output", str(tmp_path / cmap),
            ])
            assert code == 0
            (path,) = capsys.readouterr().out.split()
            assert os.path.dirname(path) == str(tmp_path / cmap)
            grids[cmap] = np.asarray(Image.open(path)).astype(int)
        code = visualize_cli.main([
            "--model", str(saved_model), "--dataset", "cifar10", "--num-images", "3",
            "--cmap", "no_such_map", "--output", str(tmp_path / "bad"),
        ])
    assert code == 2 and "no_such_map" in capsys.readouterr().err
    assert asked[:2] == [("train", "cifar10")] * 2
    # The same images, layout and captions; only the maps' colours differ.
    assert grids["jet"].shape == grids["gray"].shape
    differ = np.any(grids["jet"] != grids["gray"], axis=-1)
    assert differ.any()
    # The image column (the first tile of each row) is the same in both.
    assert not differ[:, :32].any()


def test_a_single_folder_run_draws_its_held_out_images(tmp_path, capsys):
    """The held-out files of the run's recorded split, and no others: each
    file is a flat grey of its own level, read back from each row's image tile."""
    from keras_ltpa.evaluation.grids import CAPTION_HEIGHT
    from tests.cli.test_evaluate import file_shades
    from tests.cli.test_evaluate import single_folder_run

    photos, run = single_folder_run(tmp_path)
    recorded = json.loads((run / "config.json").read_text())["validation_split_files"]
    shades = file_shades(photos)
    capsys.readouterr()  # what fit.py printed
    tile = 32
    code = visualize_cli.main([
        "--model", str(run), "--data-dir", str(photos), "--num-images", "8",
        "--tile-size", str(tile), "--output", str(tmp_path / "overlays"),
    ])
    assert code == 0, capsys.readouterr().err
    (path,) = capsys.readouterr().out.split()
    grid = np.asarray(Image.open(path).convert("RGB")).astype(int)
    rows = (grid.shape[0] - CAPTION_HEIGHT) // (CAPTION_HEIGHT + tile)
    drawn = [
        int(grid[CAPTION_HEIGHT + row * (CAPTION_HEIGHT + tile) + CAPTION_HEIGHT + tile // 2,
                 tile // 2, 0])
        for row in range(rows)
    ]
    assert sorted(drawn) == sorted(shades[f] for f in recorded["validation_files"])
    # A model file outside its run needs the share: one line naming the flag.
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "m.keras").write_bytes((run / "model.keras").read_bytes())
    code = visualize_cli.main([
        "--model", str(tmp_path / "alone" / "m.keras"), "--data-dir", str(photos),
        "--output", str(tmp_path / "none"),
    ])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--validation-split" in lines[0]
    assert not (tmp_path / "none").exists()
