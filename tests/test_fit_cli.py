"""training/fit.py end to end: flags, errors, a tfds run, resume after SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_ltpa import optimizers
from keras_ltpa import runs
from tests.conftest import FIT_SCRIPT as FIT
from tests.conftest import backed_up_epochs
from tests.conftest import run_fit as fit
from tests.conftest import wait_for

# XLA is what makes JAX fast; elsewhere compiling costs more than it saves
# on these tiny runs.
JIT = "auto" if keras.backend.backend() == "jax" else "off"
TINY = ["--width", "0.0625", "--batch-size", "8", "--jit-compile", JIT, "--seed", "0"]


def _error_lines(stderr):
    """stderr without TensorFlow/absl start-up log lines."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(("WARNING: All log messages", "I0000", "W0000", "E0000"))
    ]


def test_help_explains_every_flag_in_groups():
    parser = fit.build_parser()
    groups = {group.title: group for group in parser._action_groups}
    assert {"data", "model", "optimisation", "output"} <= set(groups)
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    text = subprocess.run(
        [sys.executable, FIT, "--help"], capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(text.split())
    for flag in ("--data-dir", "--variant", "--precision", "--jit-compile", "--output-dir"):
        assert flag in text
    assert "(default: 300)" in text and "(default: att3-concat-pc)" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precision", "float64"], "invalid choice: 'float64'"),
        (["--epochs", "0"], "expected a positive integer, got '0'"),
        (["--dataset", "cifar10", "--data-dir", "x"], "not allowed with"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit.main(argv)
    assert exit_info.value.code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0]


def _break(folder, case):
    if case == "missing dir":
        shutil.rmtree(folder)
        return str(folder)
    if case == "empty class folder":
        (folder / "train" / "zebra").mkdir()
        return "zebra"
    if case == "corrupt image":
        (folder / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xffnot a jpeg")
        return "broken.jpg"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing dir", "empty class folder", "corrupt image"])
def test_bad_data_exits_2_naming_it_and_writes_nothing(case, tiny_cifar_folder, tmp_path, capsys):
    named = _break(tiny_cifar_folder, case)
    run_dir = tmp_path / "run"
    code = fit.main(["--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir)] + TINY)
    assert code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("fit.py: error:") and named in lines[0]
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--dataset", "no_such_set"], "'no_such_set'"),
        (["--variant", "att3-concat-xy"], "'xy'"),
        (["--image-size", "40"], "40"),
    ],
)
def test_bad_values_exit_2_naming_them(argv, named, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = fit.main(argv + ["--output-dir", str(run_dir)] + TINY)
    assert code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and named in lines[0]
    assert not run_dir.exists()


def _tensorboard_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for run in ("train", "validation", "attention"):
        accumulator = EventAccumulator(str(log_dir / run), size_guidance={"tensors": 0})
        accumulator.Reload()
        tags[run] = set(accumulator.Tags()["tensors"])
    return tags


@pytest.mark.slow
def test_trains_a_tfds_dataset_into_the_documented_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "--dataset", "cifar10", "--output-dir", str(run_dir), "--epochs", "2",
        "--steps-per-epoch", "2", "--limit", "16", "--test-limit", "8",
        "--overlay-images", "3", "--no-export", "--verbose", "0",
        "--precision", "float32",
    ] + TINY
    with tfds.testing.mock_data(num_examples=24):
        assert fit.main(argv) == 0
        out = capsys.readouterr().out.strip().splitlines()
        # Running the finished command again trains nothing more.
        assert fit.main(argv) == 0
        again = capsys.readouterr().out.strip().splitlines()

    assert out[0].startswith("epoch 1/2 - loss ") and out[1].startswith("epoch 2/2 - ")
    for name in (
        "config.json", "history.csv", "metrics.json", "model.keras",
        "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/best.json",
        "backup/training_metadata.json",
    ):
        assert (run_dir / name).exists(), name
    summary = json.loads(out[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert summary["model"] == str(run_dir / "model.keras") and summary["export"] is None
    assert metrics["test_examples"] == 8 and len(metrics["class_names"]) == 10
    assert metrics["epochs"] == 2 and metrics["precision"] == "float32"
    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx([0.1, 0.1])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["steps_per_epoch"] == 2
    model = keras.saving.load_model(run_dir / "model.keras")
    assert isinstance(model.optimizer, optimizers.CoupledWeightDecaySGD)
    tags = _tensorboard_tags(run_dir / "tensorboard")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags["train"]
    assert {"epoch_loss", "epoch_accuracy"} <= tags["validation"]
    assert "attention" in tags["attention"]
    # The second run: no epoch lines, the same history and test accuracy.
    assert not any(line.startswith("epoch ") for line in again)
    assert runs.read_history(run_dir / "history.csv") == rows
    assert json.loads(again[-1])["test_accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.slow
def test_resumes_after_sigkill_keeping_finished_epochs(tiny_cifar_folder, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, FIT, "--data-dir", str(tiny_cifar_folder), "--output-dir",
        str(run_dir), "--epochs", "4", "--steps-per-epoch", "3",
        "--overlay-images", "0", "--verbose", "2", "--precision", "float32",
    ] + TINY
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            backed_up = wait_for(lambda: backed_up_epochs(run_dir) >= 1, first, 400)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
    assert backed_up, (tmp_path / "first.log").read_text()[-3000:]
    done = backed_up_epochs(run_dir)
    kept = runs.read_history(run_dir / "history.csv")[:done]
    assert 1 <= done < 4 and len(kept) == done
    assert not (run_dir / "metrics.json").exists()

    second = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs_run = [
        line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")
    ]
    assert epochs_run[0] == f"{done + 1}/4"  # Continued, not started over.
    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    assert rows[:done] == kept  # The finished epochs' history is untouched.
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    assert summary["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["loss"])
    assert (run_dir / "model.keras").exists()
    assert (run_dir / "checkpoints" / "best.keras").exists()
    assert os.path.exists(os.path.join(summary["export"], "saved_model.pb"))
    assert not list(run_dir.rglob(".tmp-*"))
