"""training/fit.py end to end: flags, errors, a tfds run, resume after SIGKILL."""

import argparse
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_ltpa.devices import cpu_kernels as cpu_defaults
from keras_ltpa.train import losses
from keras_ltpa.train import optimizers
from keras_ltpa.train import runs
from tests.conftest import FIT_SCRIPT as FIT
from tests.conftest import backed_up_epochs
from tests.conftest import modules_loaded_by
from tests.conftest import run_fit as fit
from tests.conftest import run_until_marker
from tests.conftest import write_fit_wrapper

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
    text = subprocess.run(
        [sys.executable, FIT, "--help"], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    text = " ".join(text.split())
    helps = [action.help for action in parser._actions if action.help != argparse.SUPPRESS]
    assert len(set(helps)) == len(helps)  # Each flag its own text.
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            # Printed by `--help`: its text up to any %(default)s-style field
            # (argparse may wrap a line after a hyphen).
            shown = " ".join(action.help.split("%(")[0].split()).replace("%%", "%")
            assert shown and shown.replace("- ", "-") in text.replace("- ", "-"), action.option_strings
    for flag in ("--data-dir", "--variant", "--precision", "--jit-compile", "--output-dir"):
        assert flag in text
    assert "(default: 300)" in text and "(default: att3-concat-pc)" in text


def test_the_parser_loads_no_tensorflow_nor_the_training_loop():
    """`fit.py --help` costs importing Keras and nothing more: the config
    and the parser load neither the data pipeline (TensorFlow) nor the loop."""
    loaded = modules_loaded_by(
        "from keras_ltpa.cli import fit; fit.build_parser().parse_args([])",
        ("tensorflow", "keras_ltpa.data.pipelines", "keras_ltpa.train.loop"),
    )
    assert loaded == "[]"


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
@pytest.mark.slow
def test_the_readme_command_offline_fails_fast_in_one_line(tmp_path):
    # README command 1 on a machine without network (simulated for any
    # machine by proxies nothing listens on): tfds would retry its downloads
    # for minutes (3.5 were seen); the check fails first, in one line, exit 2.
    import time

    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    run_dir, tfds_dir = tmp_path / "run", tmp_path / "tfds"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, FIT, "--output-dir", str(run_dir), "--tfds-data-dir", str(tfds_dir)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("fit.py: error:")]
    assert len(errors) == 1 and "no network" in errors[0] and "--data-dir" in errors[0], result.stderr
    assert not run_dir.exists()  # nothing half-written
    # Minutes of retries before; the imports take ~10-25 s on a busy 2-core CPU.
    assert elapsed < 90, elapsed


def test_trains_a_tfds_dataset_into_the_documented_run_directory(tmp_path, capsys, monkeypatch):
    from keras_ltpa.data import sources

    # mock_data downloads nothing: no network check before it.
    monkeypatch.setattr(sources, "_check_download_hosts", lambda: None)
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

    # On a CPU, one estimate of the run's time after the first steps.
    estimates = [line for line in out if line.startswith("estimated ")]
    assert len(estimates) == 1 and "min per epoch" in estimates[0], out
    out = [line for line in out if line not in estimates]
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
    assert all(float(row["epoch_seconds"]) > 0 for row in rows)
    # The milestones metrics.json records are those of the history's rows.
    assert metrics["val_accuracy_milestones"] == runs.accuracy_milestones(rows)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["steps_per_epoch"] == 2
    assert config["recipe"] == "paper" and config["lr_schedule"] == "step"
    assert config["label_smoothing"] == 0.0 and config["warmup_epochs"] == 0
    assert config["cpu_kernels"] == cpu_defaults.describe()
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


def _fit_command(wrapper, data_dir, run_dir, *flags):
    return [
        sys.executable, str(wrapper), FIT, "--data-dir", str(data_dir),
        "--output-dir", str(run_dir), "--verbose", "2", *map(str, flags),
    ] + TINY


ENV = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.slow
def test_resumes_after_sigkill_keeping_finished_epochs(tiny_cifar_folder, tmp_path):
    run_dir = tmp_path / "run"
    wrapper = write_fit_wrapper(tmp_path)
    command = _fit_command(
        wrapper, tiny_cifar_folder, run_dir, "--epochs", 4, "--steps-per-epoch", 3,
        "--overlay-images", 0, "--precision", "float32",
    )
    # Killed as epoch 3 begins: epochs 1-2 and their backup are done.
    paused = run_until_marker(
        command, dict(ENV, LTPA_PAUSE_AT="epoch:2"), tmp_path / "paused",
        tmp_path / "first.log", 400,
    )
    assert paused, (tmp_path / "first.log").read_text()[-3000:]
    done = backed_up_epochs(run_dir)
    kept = runs.read_history(run_dir / "history.csv")
    assert done == 2 and len(kept) == 2
    assert not (run_dir / "metrics.json").exists()

    second = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs_run = [
        line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")
    ]
    assert epochs_run == ["3/4", "4/4"]  # Continued, not started over.
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


@pytest.mark.slow
def test_save_freq_resume_restarts_the_epoch_with_the_step_s_weights(tiny_cifar_folder, tmp_path):
    """Backed up every 2 steps, killed right after step 5 (mid-epoch 2 of 3
    steps each): the rerun restores step 5's weights and optimizer state and
    trains epoch 2 again from its first batch, so the optimizer ends at
    5 + 3 + 3 = 11 steps (an epoch-end restore would give 9)."""
    run_dir = tmp_path / "run"
    wrapper = write_fit_wrapper(tmp_path)
    command = _fit_command(
        wrapper, tiny_cifar_folder, run_dir, "--epochs", 3, "--steps-per-epoch", 3,
        "--save-freq", 1, "--overlay-images", 0, "--no-export", "--precision", "float32",
    )
    paused = run_until_marker(
        command, dict(ENV, LTPA_PAUSE_AT="step:5"), tmp_path / "paused",
        tmp_path / "first.log", 400,
    )
    assert paused, (tmp_path / "first.log").read_text()[-3000:]
    metadata = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1  # Inside the second epoch.
    assert len(runs.read_history(run_dir / "history.csv")) == 1

    second = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs_run = [
        line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")
    ]
    assert epochs_run == ["2/3", "3/3"]
    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]  # No duplicate row.
    model = keras.saving.load_model(run_dir / "model.keras")
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 11


def _backup_h5_vars(file):
    """The model optimizer's variables in a Keras weights file, in the order
    of `optimizer.variables` (a loss-scale optimizer's own, then its inner
    optimizer's)."""
    return file["optimizer"]["vars"]


def _backup_optimizer_vars(run_dir, copy_to):
    """The backup's optimizer variables, {index: array}, and a copy of the file."""
    import h5py

    path = run_dir / "backup" / "latest.weights.h5"
    shutil.copyfile(path, copy_to)
    with h5py.File(path, "r") as file:
        group = _backup_h5_vars(file)
        return {int(key): np.asarray(group[key]) for key in group.keys()}


def _set_backup_optimizer_var(run_dir, index, value):
    import h5py

    with h5py.File(run_dir / "backup" / "latest.weights.h5", "r+") as file:
        _backup_h5_vars(file)[str(index)][...] = value


def _is_power_of_two_scalar(value):
    """A float scalar 2^k, k >= 1: only the loss scale (the rates are 0.01 and
    0.005, the counters integers, the momenta per weight)."""
    if value.shape != () or value.dtype.kind != "f" or value < 2:
        return False
    return float(value) == 2.0 ** round(np.log2(float(value)))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_run_resumes_and_exports(precision, tiny_cifar_folder, tmp_path):
    """Through the CLI: train, kill, resume, log the learning rate, save and
    export in mixed precision, with the flags no other test passes."""
    import tensorflow as tf

    run_dir, export_dir = tmp_path / "run", tmp_path / "serving"
    wrapper = write_fit_wrapper(tmp_path)
    command = _fit_command(
        wrapper, tiny_cifar_folder, run_dir, "--epochs", 2, "--steps-per-epoch", 2,
        # A small rate keeps the logits moderate: 16-bit rounding grows with them.
        "--precision", precision, "--learning-rate", 0.01,
        "--lr-decay-epochs", 1, "--lr-decay-factor", 0.5,
        "--momentum", 0.8, "--weight-decay", 1e-3, "--weight-decay-mode", "coupled",
        "--dropout", 0.25, "--no-tensorboard", "--image-size", 64,
        "--export-name", "demo", "--export-dir", export_dir,
    )
    paused = run_until_marker(
        command, dict(ENV, LTPA_PAUSE_AT="epoch:1"), tmp_path / "paused",
        tmp_path / "first.log", 400,
    )
    assert paused, (tmp_path / "first.log").read_text()[-3000:]
    assert backed_up_epochs(run_dir) == 1
    kept = runs.read_history(run_dir / "history.csv")
    assert len(kept) == 1
    # The backup's optimizer state, kept before the rerun overwrites it. Under
    # float16 its loss scale is set to 2^9, a value no run reaches from the
    # initial 2^15 in 4 steps (halving only, growth after 2000 steps): the
    # rerun must carry on from it rather than from a fresh optimizer.
    backup_vars = _backup_optimizer_vars(run_dir, tmp_path / "epoch1.weights.h5")
    if precision == "mixed_float16":
        scales = [key for key, value in backup_vars.items() if _is_power_of_two_scalar(value)]
        assert len(scales) == 1, backup_vars
        _set_backup_optimizer_var(run_dir, scales[0], 2.0**9)
    second = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs_run = [
        line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")
    ]
    assert epochs_run == ["2/2"]  # Continued, not started over.

    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1] and rows[:1] == kept
    rates = [float(row["learning_rate"]) for row in rows]
    if precision == "mixed_bfloat16":
        # The step schedule inside a real fit: halved after each epoch.
        assert rates == pytest.approx([0.01, 0.005])
    else:
        # Dynamic loss scaling skips the steps whose scaled gradients
        # overflow, and the schedule follows the applied steps.
        assert rates[0] == pytest.approx(0.01)
        assert rates[1] in (pytest.approx(0.01), pytest.approx(0.005))
    assert not (run_dir / "tensorboard").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["precision_policy"] == precision
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.dtype_policy.name == precision and model.input_shape == (None, 64, 64, 3)
    assert model.get_layer("block6_dropout").rate == 0.25
    optimizer = model.optimizer
    if precision == "mixed_float16":  # Loss scaling wraps the coupled-decay SGD.
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        optimizer = optimizer.inner_optimizer
    assert isinstance(optimizer, optimizers.CoupledWeightDecaySGD)
    applied = int(keras.ops.convert_to_numpy(optimizer.iterations))
    # The optimizer continued from the backup's state: epoch 2's 2 steps on
    # top of the steps applied in epoch 1 (all of them under bfloat16, the
    # finite ones under float16).
    variables = list(model.optimizer.variables)
    index = next(i for i, v in enumerate(variables) if v is optimizer.iterations)
    restored = int(backup_vars[index])
    skipped = 2 - (applied - restored)
    assert 0 <= restored <= 2 and 0 <= skipped <= 2
    if precision == "mixed_bfloat16":
        assert (restored, applied) == (2, 4)
    else:
        loss_scaler = model.optimizer
        index = next(i for i, v in enumerate(variables) if v is loss_scaler.dynamic_scale)
        assert index == scales[0]
        # Restored at 2^9, halved once per skipped step of epoch 2 (exact in
        # float32: powers of two).
        scale = float(keras.ops.convert_to_numpy(loss_scaler.dynamic_scale))
        assert scale == 2.0**9 * 0.5**skipped
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    assert rate == pytest.approx(0.01 * 0.5 ** (applied // 2))  # 2 steps per epoch.
    assert optimizer.momentum == pytest.approx(0.8)
    assert optimizer.l2_weight_decay == pytest.approx(1e-3)

    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["export"] == str(export_dir / "demo" / "1")
    saved = tf.saved_model.load(summary["export"])
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = saved.signatures["serving_default"](images=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32
    logits = keras.ops.convert_to_numpy(
        keras.ops.cast(model(images.astype("float32")), "float32")
    )
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    # Both run the model in 16-bit floats (unit roundoff u = 2^-11 for
    # float16, 2^-8 for bfloat16), one with batch norm folded: the logits
    # agree to ~20 roundings of their own scale, and the softmax moves each
    # probability by at most half the largest logit change.
    unit = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}[precision]
    bound = 0.5 * 20 * unit * np.abs(logits).max()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=bound)


@pytest.mark.slow
def test_nan_loss_stops_with_exit_code_1(tiny_cifar_folder, tmp_path, capsys):
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(tmp_path / "run"),
        "--epochs", "3", "--steps-per-epoch", "3", "--learning-rate", "1e6",
        "--no-export", "--no-tensorboard", "--verbose", "0", "--precision", "float32",
    ] + TINY
    assert fit.main(argv) == 1
    lines = [line for line in _error_lines(capsys.readouterr().err) if "error" in line]
    assert lines == [
        "fit.py: error: Training stopped: the loss became NaN/inf (TerminateOnNaN). "
        "Try a lower --learning-rate or --precision float32."
    ]
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
@pytest.mark.tf_only
def test_batch_augmentations_train_with_soft_labels(tiny_cifar_folder, tmp_path, capsys):
    """mixup, cutmix and randaugment through fit: soft labels, categorical
    cross-entropy, and the TensorBoard attention grid from the soft batch."""
    run_dir = tmp_path / "run"
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir),
        "--epochs", "1", "--steps-per-epoch", "2", "--augment", "mixup,cutmix,randaugment",
        "--cache", "--overlay-images", "2", "--no-export", "--verbose", "0",
        "--precision", "float32",
    ] + TINY
    assert fit.main(argv) == 0
    model = keras.saving.load_model(run_dir / "model.keras")
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert np.isfinite(float(runs.read_history(run_dir / "history.csv")[0]["loss"]))
    assert "attention" in _tensorboard_tags(run_dir / "tensorboard")["attention"]


@pytest.mark.slow
def test_budget_recipe_warms_up_decays_and_smooths(tiny_cifar_folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir),
        "--recipe", "budget", "--epochs", "3", "--steps-per-epoch", "2",
        "--no-export", "--no-tensorboard", "--verbose", "0", "--precision", "float32",
    ] + TINY
    assert fit.main(argv) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["lr_schedule"], config["warmup_epochs"], config["label_smoothing"]) == (
        "cosine", 2, 0.1
    )
    # The rate at each epoch's start: steps 0, 2, 4 of 6, warm-up over 4.
    rows = runs.read_history(run_dir / "history.csv")
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx([0.0, 0.05, 0.1])
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert isinstance(model.loss, losses.SparseCrossentropyWithSmoothing)
    assert model.loss.label_smoothing == pytest.approx(0.1)
    # An explicit flag wins over the recipe.
    argv_override = argv[:3] + [str(tmp_path / "run2")] + argv[4:] + ["--label-smoothing", "0"]
    assert fit.main(argv_override) == 0
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["label_smoothing"] == 0.0


@pytest.mark.slow
def test_precision_auto_records_its_choice_and_trains_with_it(tiny_cifar_folder, tmp_path):
    run_dir = tmp_path / "run"
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir),
        "--epochs", "1", "--steps-per-epoch", "1", "--no-export", "--no-tensorboard",
        "--overlay-images", "0", "--verbose", "0", "--precision", "auto",
    ] + TINY
    assert fit.main(argv) == 0
    config = json.loads((run_dir / "config.json").read_text())
    choice = config["precision_choice"]
    assert choice["requested"] == "auto" and choice["purpose"] == "training"
    assert choice["how"] in ("measured", "gpu capability"), choice
    assert choice["policy"] == config["precision_policy"]
    assert config["precision_policy"] in ("float32", "mixed_float16", "mixed_bfloat16")
    if choice["how"] == "measured":  # On a CPU: a bfloat16/float32 speed ratio.
        assert choice["ratio"] > 0 and choice["gpu_compute_capability"] is None
        # The verdict went to the tests' temporary cache, not the user's.
        cache = os.environ["KERAS_LTPA_CACHE_DIR"]
        assert any(files for _, _, files in os.walk(cache))
    # The model was trained and saved under the recorded policy.
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    assert model.dtype_policy.name == config["precision_policy"]


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="torch.compile takes minutes for this model on a CPU"
)
def test_jit_compile_on_trains_a_compiled_model(tiny_cifar_folder, tmp_path):
    run_dir = tmp_path / "run"
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir),
        "--epochs", "1", "--steps-per-epoch", "1", "--no-export", "--no-tensorboard",
        "--overlay-images", "0", "--verbose", "0", "--precision", "float32",
        "--width", "0.0625", "--batch-size", "8", "--seed", "0", "--jit-compile", "on",
    ]
    assert fit.main(argv) == 0
    assert json.loads((run_dir / "config.json").read_text())["jit_compile"] == "on"
    # XLA on TensorFlow's CPU too, where "auto" would not compile.
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.jit_compile is True
    assert np.isfinite(float(runs.read_history(run_dir / "history.csv")[0]["loss"]))


@pytest.mark.slow
def test_tfds_data_dir_is_where_tfds_looks(tmp_path, capsys, monkeypatch):
    from keras_ltpa.data import sources

    # mock_data prepares nothing and downloads nothing: no host to ask.
    monkeypatch.setattr(sources, "_check_download_hosts", lambda: None)
    asked = []
    with tfds.testing.mock_data(num_examples=16):
        builder = tfds.builder

        def recording_builder(name, *args, **kwargs):
            asked.append((name, kwargs.get("data_dir")))
            return builder(name, *args, **kwargs)

        monkeypatch.setattr(tfds, "builder", recording_builder)
        run_dir, tfds_dir = tmp_path / "run", tmp_path / "tfds"
        assert fit.main([
            "--dataset", "cifar10", "--tfds-data-dir", str(tfds_dir), "--output-dir", str(run_dir),
            "--epochs", "1", "--steps-per-epoch", "1", "--limit", "8", "--test-limit", "8",
            "--overlay-images", "0", "--no-export", "--no-tensorboard", "--verbose", "0",
            "--precision", "float32",
        ] + TINY) == 0
    assert asked and set(asked) == {("cifar10", str(tfds_dir))}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tfds_data_dir"] == str(tfds_dir) and config["dataset"] == "cifar10"


@pytest.mark.slow
def test_ema_validates_and_saves_the_averages_and_backs_up_the_raw_weights(
    tiny_cifar_folder, tmp_path, capsys
):
    """--ema: the history's validation loss is the checkpoint's own (it was
    computed with the averaged weights), model.keras holds the same
    averages, and the backup holds the raw weights beside them."""
    from keras_ltpa.data import pipelines

    run_dir = tmp_path / "run"
    argv = [
        "--data-dir", str(tiny_cifar_folder), "--output-dir", str(run_dir), "--ema",
        "--ema-momentum", "0.5", "--epochs", "2",
        "--steps-per-epoch", "2", "--no-export", "--no-tensorboard", "--verbose", "0",
        "--precision", "float32",
    ] + TINY
    assert fit.main(argv) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["ema"], config["ema_momentum"]) == (True, 0.5)

    def weights(model):
        return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]

    last = keras.saving.load_model(run_dir / "checkpoints" / "last.keras")
    final = keras.saving.load_model(run_dir / "model.keras")
    for a, b in zip(weights(last), weights(final)):
        np.testing.assert_array_equal(a, b)
    # The backup: the raw weights, and the averages last.keras holds.
    backup = keras.saving.load_model(run_dir / "checkpoints" / "last.keras")
    backup.load_weights(run_dir / "backup" / "latest.weights.h5")
    averages = [keras.ops.convert_to_numpy(v) for v in backup.optimizer._model_variables_moving_average]
    for a, b in zip(averages, weights(last)):
        np.testing.assert_array_equal(a, b)
    assert max(np.max(np.abs(a - b)) for a, b in zip(weights(backup), averages)) > 1e-3

    test, _ = pipelines.load_dataset("test", data_dir=tiny_cifar_folder, batch_size=8)
    loss = last.evaluate(test, verbose=0, return_dict=True)["loss"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = runs.read_history(run_dir / "history.csv")
    # Under JAX and torch validation ran with exactly these weights: the same
    # float32 computation, equal up to rounding (1e-6). TensorFlow's swap
    # leaves each weight within 4 eps (|w| + |e|) of its average, about 1e-6
    # relative (the loss bound is derived for a linear model in
    # tests/train/test_callbacks.py); through this network's dozen layers we
    # estimate (not bound) at most 1e-5 of the loss, and allow 1e-4.
    tolerance = 1e-4 if keras.backend.backend() == "tensorflow" else 1e-6
    assert float(rows[-1]["val_loss"]) == pytest.approx(loss, rel=tolerance)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-6)

    # Resumed with a larger --epochs: the backup's raw weights and averages
    # come back (a structure mismatch would fail the load) and training goes
    # on; without --ema the run is refused, its backup holding averages.
    assert fit.main(argv[:argv.index("--epochs") + 1] + ["3"] + argv[argv.index("--epochs") + 2:]) == 0
    assert [int(row["epoch"]) for row in runs.read_history(run_dir / "history.csv")] == [0, 1, 2]
    resumed = keras.saving.load_model(run_dir / "model.keras")
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 6
    without = [flag for flag in argv if flag != "--ema"]
    capsys.readouterr()
    assert fit.main(without) == 2
    assert "ema=True" in capsys.readouterr().err
