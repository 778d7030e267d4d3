"""`run_training`: data checks before writing, the resume guard, pixel statistics."""

import json

import pytest

from keras_ltpa import train as training
from keras_ltpa.data.pipelines import DataError


def test_bad_data_fails_before_writing(tmp_path, tiny_cifar_folder):
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match="missing"):
        training.run_training(dict(data_dir=str(tmp_path / "missing"), output_dir=str(run_dir)))
    assert not run_dir.exists()
    with pytest.raises(training.SetupError, match="width_multiplier"):
        training.run_training(
            dict(data_dir=str(tiny_cifar_folder), output_dir=str(run_dir), width_multiplier=-1)
        )
    assert not run_dir.exists()


def test_resuming_another_model_is_refused(tmp_path, tiny_cifar_folder):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"variant": "att2-indep-dp"}))
    with pytest.raises(training.SetupError, match="variant='att2-indep-dp'"):
        training.run_training(
            dict(data_dir=str(tiny_cifar_folder), output_dir=str(run_dir), width_multiplier=0.0625)
        )


def _short_run(folder, run_dir, **changes):
    return training.run_training(
        dict(
            data_dir=str(folder), output_dir=str(run_dir), width_multiplier=0.0625,
            epochs=1, steps_per_epoch=1, batch_size=4, export=False, tensorboard=False,
            verbose=0, seed=0, precision="float32", jit_compile="off", **changes,
        )
    )


@pytest.mark.slow
def test_pixel_statistics_come_from_the_data_unless_fixed(tmp_path, tiny_cifar_folder):
    """Three CIFAR-10 classes are not CIFAR-10: the run computes its own
    statistics (recorded in config.json and the model); --pixel-stats cifar10
    keeps the fixed values."""
    from keras_ltpa.data import pipelines as data
    from keras_ltpa.model import CIFAR10_MEAN

    result = _short_run(tiny_cifar_folder, tmp_path / "computed")
    config = json.loads((tmp_path / "computed" / "config.json").read_text())
    plain, _ = data.load_dataset("train", data_dir=tiny_cifar_folder)
    mean, std = data.pixel_statistics(plain)
    assert config["pixel_stats_source"] == "train split"
    # The run sums in batches of 4, this check in batches of 128: float64
    # sums of ~2e4 terms in another order agree to ~1e-15 relative.
    assert config["pixel_mean"] == pytest.approx(mean, rel=1e-12)
    assert config["pixel_std"] == pytest.approx(std, rel=1e-12)
    assert result["model"].pixel_mean == tuple(config["pixel_mean"])
    assert result["model"].pixel_std == tuple(config["pixel_std"])
    assert result["model"].class_names == ["airplane", "cat", "ship"]

    fixed = _short_run(tiny_cifar_folder, tmp_path / "fixed", pixel_stats="cifar10")
    assert fixed["model"].pixel_mean == CIFAR10_MEAN
    config = json.loads((tmp_path / "fixed" / "config.json").read_text())
    assert config["pixel_stats_source"] == "cifar10"
