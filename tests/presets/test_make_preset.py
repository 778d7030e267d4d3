"""training/make_preset.py on a tiny finished run: the preset folder it
writes, its metadata against the run's own files, and a run it refuses."""

import json

import h5py
import keras
import numpy as np
import pytest

from keras_ltpa.model import AttentionClassifier
from keras_ltpa.model import load_model_file
from tests.conftest import REPO_ROOT
from tests.conftest import load_script
from tests.conftest import run_fit as fit

make_preset = load_script(REPO_ROOT / "training" / "make_preset.py", "make_preset_cli")
COMMAND = "python training/fit.py --epochs 1 (tiny)"


def _train_tiny_run(run_dir, data_dir, precision="float32"):
    """One step of a width-0.0625 model on the tiny folder, finished."""
    assert fit.main([
        "--data-dir", str(data_dir), "--output-dir", str(run_dir),
        "--epochs", "1", "--steps-per-epoch", "1", "--width", "0.0625", "--batch-size", "4",
        "--seed", "0", "--precision", precision, "--jit-compile", "off", "--no-export",
        "--no-tensorboard", "--overlay-images", "0", "--verbose", "0",
    ]) == 0


@pytest.mark.slow
def test_make_preset_writes_a_preset_of_the_finished_run(tiny_cifar_folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _train_tiny_run(run_dir, tiny_cifar_folder)
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    capsys.readouterr()
    code = make_preset.main([
        str(run_dir), "--name", "tiny-run", "--command", COMMAND,
        "--subset-data-dir", str(tiny_cifar_folder), "--presets-dir", str(presets_dir),
        "--code-version", "test", "--wall-time-s", "12.5", "--description", "a tiny run",
    ])
    assert code == 0, capsys.readouterr().err
    folder = presets_dir / "tiny-run"
    assert capsys.readouterr().out.strip() == str(folder)
    assert sorted(p.name for p in presets_dir.iterdir()) == ["tiny-run"]  # No temporaries.
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metadata.json", "model.weights.h5"]

    preset = AttentionClassifier.from_preset(str(folder))
    trained = load_model_file(run_dir / "model.keras")
    for ours, theirs in zip(preset.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # Shipped uncompiled: no optimizer, no optimizer state, no compile settings.
    assert getattr(preset, "optimizer", None) is None
    assert "compile_config" not in (folder / "config.json").read_text()
    with h5py.File(folder / "model.weights.h5") as weights:
        assert "optimizer" not in weights
    assert keras.saving.serialize_keras_object(preset)["registered_name"] == "keras_ltpa>AttentionClassifier"

    metadata = json.loads((folder / "metadata.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metadata["name"], metadata["description"]) == ("tiny-run", "a tiny run")
    assert metadata["dataset"] == str(tiny_cifar_folder)
    assert metadata["width_multiplier"] == 0.0625 and metadata["input_shape"] == [32, 32, 3]
    assert metadata["class_names"] == ["airplane", "cat", "ship"]  # The folder's classes.
    assert metadata["test_accuracy"] == metrics["accuracy"]
    assert metadata["training"]["command"] == metadata["command"] == COMMAND
    assert metadata["backbone"] == "vgg" and metadata["variant"] == config["variant"]
    # keras-hub's own keys, beside ours at the top level.
    assert metadata["keras_version"] == keras.version()
    assert metadata["parameter_count"] == preset.count_params()
    assert metadata["training"]["wall_time_s"] == 12.5 and metadata["code_version"] == "test"
    assert metadata["training"]["seed"] == 0 and metadata["epochs"] == 1
    assert metadata["training"]["settings"]["variant"] == config["variant"]
    # The subset is the whole test split here (4 images of 3 classes), which
    # the run itself evaluated: the same model scores the same.
    subset = metadata["subset"]
    assert subset["count"] == 12 == metrics["test_examples"]
    assert subset["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)


def test_make_preset_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"variant": "att3-concat-pc"}))
    code = make_preset.main([
        str(tmp_path), "--name", "x", "--command", COMMAND,
        "--subset-data-dir", str(tmp_path), "--presets-dir", str(tmp_path),
    ])
    assert code != 0
    assert "is not a finished run" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_bfloat16_run_is_scored_as_the_float32_preset(tiny_cifar_folder, tmp_path, capsys, monkeypatch):
    # The recorded subset is what the tests reproduce from the preset, which
    # is saved in float32 whatever trained it: the model scored must be too.
    run_dir = tmp_path / "run"
    _train_tiny_run(run_dir, tiny_cifar_folder, precision="mixed_bfloat16")
    from keras_ltpa.evaluation import accuracy

    scored_policies, score = [], accuracy.subset_scores

    def recording(model, *args, **kwargs):
        scored_policies.append({layer.dtype_policy.name for layer in model._flatten_layers()})
        return score(model, *args, **kwargs)

    monkeypatch.setattr(accuracy, "subset_scores", recording)
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    code = make_preset.main([
        str(run_dir), "--name", "tiny-bf16", "--command", COMMAND,
        "--subset-data-dir", str(tiny_cifar_folder), "--presets-dir", str(presets_dir),
        "--code-version", "test",
    ])
    assert code == 0, capsys.readouterr().err
    assert scored_policies == [{"float32"}]
    assert "bfloat16" not in (presets_dir / "tiny-bf16" / "config.json").read_text()
