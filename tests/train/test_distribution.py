"""Distributed training: strategy choice, TF MirroredStrategy and JAX
DataParallel against one device, two JAX processes through the CLI, resume
after SIGKILL under MirroredStrategy, and a `.keras` file saved under
MirroredStrategy that keeps its optimizer state on one device.

Device counts are fixed when a backend starts, so every run on several
devices is a subprocess: TensorFlow splits its CPU into 2 logical devices
(`tf.config.set_logical_device_configuration`), JAX gets 2 host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`) or 2 processes on
127.0.0.1. Each subprocess test runs under the backend it is about (the
others skip it) and is bounded by a timeout.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_ltpa.train import distribution as ltpa_distribution
from keras_ltpa.train import runs
from tests.conftest import BIND_FAILURES
from tests.conftest import backed_up_epochs
from tests.conftest import free_port
from tests.conftest import run_fit as fit
from tests.conftest import run_until_marker
from tests.conftest import write_fit_wrapper

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIT = os.path.join(REPO_ROOT, "training", "fit.py")
BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(
    BACKEND != "jax", reason=f"runs JAX subprocesses (running under {BACKEND})"
)
# A subprocess that has not finished by then has hung: fail, do not wait.
TIMEOUT_S = 420
TINY = ["--width", "0.0625", "--batch-size", "4", "--seed", "0", "--precision", "float32"]

# Trains the same tiny model from the same weights on the same global batches,
# once under `resolve_distribution("mirrored")` on 2 devices and once on one
# device, and writes what the test compares. argv: output folder.
EQUALITY_SCRIPT = r'''
import contextlib, json, os, sys
import numpy as np
out = sys.argv[1]
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import tensorflow as tf
from keras_ltpa import build_model
from keras_ltpa.train import distribution as ltpa_distribution
from keras_ltpa.train import optimizers
from keras_ltpa.train import losses

distribution = ltpa_distribution.resolve_distribution("mirrored")
one_device = ltpa_distribution.resolve_distribution("one_device")
# XLA cannot compile a MirroredStrategy step; both TF runs go without it.
JIT = "off" if keras.backend.backend() == "tensorflow" else "auto"
PER_REPLICA, STEPS = 4, 3
GLOBAL = PER_REPLICA * distribution.num_replicas
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (STEPS * GLOBAL, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 10, STEPS * GLOBAL).astype("int32")

def make(frozen_bn):
    model = build_model(10, width_multiplier=0.0625)
    for layer in model.layers:
        if frozen_bn and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # Inference mode: moving statistics.
    return model

keras.utils.set_random_seed(0)
initial = make(False).get_weights()

def train(dist, frozen_bn, x, y, batch_size, learning_rate):
    with dist.scope():
        model = make(frozen_bn)
        model.set_weights(initial)
        optimizer = optimizers.make_optimizer(100, learning_rate=learning_rate)
        losses.compile_model(model, optimizer, jit_compile=JIT)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    return model

def max_diff(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))

# 1. Batch norm frozen: the step is the same maths on both sides.
many = train(distribution, True, images, labels, GLOBAL, 0.01)
one = train(one_device, True, images, labels, GLOBAL, 0.01)
result = {
    "replicas": distribution.num_replicas,
    "engine": distribution.describe()["engine"],
    "frozen_max_diff": max_diff(many.get_weights(), one.get_weights()),
    "frozen_max_update": max_diff(many.get_weights(), initial),
}
path = os.path.join(out, "distributed.keras")
many.save(path)
np.save(os.path.join(out, "distributed_predictions.npy"),
        np.asarray(many.predict(images[:8], verbose=0)))

# 2. Batch norm training: whose statistics? One step on [a, b], compared
# with one device on [a, b] (global statistics) and on a (replica 0's).
x, y = images[:GLOBAL], labels[:GLOBAL]
moving = lambda m: [np.asarray(w.numpy())
                    for w in m.non_trainable_weights if "moving" in w.path]
stats = moving(train(distribution, False, x, y, GLOBAL, 0.1))
result["bn_vs_global_batch"] = max_diff(
    stats, moving(train(one_device, False, x, y, GLOBAL, 0.1)))
if keras.backend.backend() == "tensorflow":  # (A JAX fit compiles slowly.)
    result["bn_vs_first_replica"] = max_diff(
        stats, moving(train(one_device, False, x[:PER_REPLICA], y[:PER_REPLICA],
                            PER_REPLICA, 0.1)))
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump(result, f)
'''

def _env(**extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def _run_script(tmp_path, script, args, env, timeout=TIMEOUT_S):
    path = tmp_path / "script.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, str(path)] + [str(a) for a in args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def run_process_group(tmp_path, wrapper, data_dir, flags, run_dirs=("run0", "run1"), attempts=3):
    """Runs fit.py as a two-process JAX group on 127.0.0.1 (process i writes
    to run_dirs[i], its weights to w<i>.npz). A coordinator that cannot bind
    its free port (taken between the probe and the bind) is retried on
    another. Returns each process' output and exit code."""
    for attempt in range(attempts):
        address = f"127.0.0.1:{free_port()}"
        processes, logs = [], []
        try:
            for rank in (0, 1):
                command = [
                    sys.executable, str(wrapper), FIT, "--data-dir", str(data_dir),
                    "--output-dir", str(tmp_path / run_dirs[rank]),
                    "--strategy", "multi_worker", "--coordinator-address", address,
                    "--num-processes", "2", "--process-id", str(rank),
                ] + flags + TINY
                log = open(tmp_path / f"process{rank}.log", "w")
                logs.append(log)
                env = _env(KERAS_BACKEND="jax", LTPA_WEIGHTS_OUT=str(tmp_path / f"w{rank}.npz"))
                processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                )
            deadline = time.time() + TIMEOUT_S
            for process in processes:
                process.wait(timeout=max(1, deadline - time.time()))
        finally:
            for process in processes:
                _stop(process)
            for log in logs:
                log.close()
        outputs = [(tmp_path / f"process{rank}.log").read_text() for rank in (0, 1)]
        codes = [process.returncode for process in processes]
        if not any(failure in output for output in outputs for failure in BIND_FAILURES):
            return outputs, codes
    return outputs, codes


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


# --- Settings (every backend, in-process) ----------------------------------


def test_process_group_from_flags_environment_and_cluster_managers():
    assert ltpa_distribution.process_group_settings(environ={}) is None
    assert ltpa_distribution.process_group_settings(num_processes=1, environ={}) is None
    group = ltpa_distribution.process_group_settings("10.0.0.1:8476", 4, 3, environ={})
    assert (group.coordinator_address, group.num_processes, group.process_id) == (
        "10.0.0.1:8476", 4, 3
    )
    assert group.source == "flags"
    jax_env = {
        "JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    group = ltpa_distribution.process_group_settings(environ=jax_env)
    assert (group.coordinator_address, group.num_processes, group.process_id) == (
        "h0:1234", 2, 1
    )
    # A flag wins over the environment.
    assert ltpa_distribution.process_group_settings(process_id=0, environ=jax_env).process_id == 0
    keras_env = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "h0:99,h1:99,h2:99",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "3",
        "KERAS_DISTRIBUTION_PROCESS_ID": "2",
    }
    group = ltpa_distribution.process_group_settings(environ=keras_env)
    assert (group.coordinator_address, group.num_processes, group.process_id) == (
        "h0:99", 3, 2
    )
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_STEP_NODELIST": "n[1-8]"}
    group = ltpa_distribution.process_group_settings(environ=slurm)
    # The coordinator is left to jax.distributed, which reads the node list.
    assert (group.coordinator_address, group.num_processes, group.process_id) == (None, 8, 5)
    assert group.source == "SLURM"
    mpi = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    assert ltpa_distribution.process_group_settings(environ=mpi).num_processes == 2


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(coordinator_address="h:1", num_processes=2), "--process-id"),
        (dict(num_processes=2, process_id=0), "--coordinator-address"),
        (dict(coordinator_address="h:1", num_processes=2, process_id=2), "[0, 1]"),
        (dict(coordinator_address="no-port", num_processes=2, process_id=0), "'no-port'"),
        (dict(coordinator_address="h:1", process_id=1), "--num-processes"),
    ],
)
def test_bad_process_group_names_the_setting(kwargs, named):
    with pytest.raises(ValueError, match=None) as error:
        ltpa_distribution.process_group_settings(environ={}, **kwargs)
    assert named in str(error.value)


def test_unknown_strategy_and_backend_limits_are_clear_errors():
    with pytest.raises(ValueError, match="'parameter_server'"):
        ltpa_distribution.resolve_distribution("parameter_server")
    distribution = ltpa_distribution.resolve_distribution("one_device")
    assert (distribution.num_replicas, distribution.is_chief) == (1, True)
    assert distribution.global_batch_size(128) == 128
    assert ltpa_distribution.scaled_learning_rate(0.1, distribution, lr_scaling=True) == 0.1
    if BACKEND == "tensorflow":
        for kwargs in (
            dict(strategy="multi_worker"),
            dict(strategy="auto", environ={"TF_CONFIG": json.dumps(
                {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
            )}),
        ):
            with pytest.raises(ValueError) as error:
                ltpa_distribution.resolve_distribution(**kwargs)
            message = str(error.value)
            assert "keras-team/keras#20585" in message and "KERAS_BACKEND=jax" in message
            assert "--strategy multi_worker" in message
    elif BACKEND == "jax":
        with pytest.raises(ValueError, match="--coordinator-address"):
            ltpa_distribution.resolve_distribution("multi_worker", environ={})
    else:
        for strategy in ("mirrored", "multi_worker"):
            with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
                ltpa_distribution.resolve_distribution(strategy)


@pytest.mark.tf_only
def test_cli_multi_worker_on_tensorflow_stops_naming_the_jax_path(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = fit.main(["--strategy", "multi_worker", "--output-dir", str(run_dir)] + TINY)
    assert code == 2
    lines = [
        line for line in capsys.readouterr().err.splitlines()
        if line.strip() and not line.startswith(("I0000", "W0000", "E0000", "WARNING"))
    ]
    assert len(lines) == 1 and lines[0].startswith("fit.py: error:")
    assert "KERAS_BACKEND=jax" in lines[0] and "#20585" in lines[0]
    assert not run_dir.exists()


# --- Two devices against one -----------------------------------------------

# Tolerances. With batch norm frozen (inference mode), a replicated step and
# a one-device step compute the same sums in another order (each replica sums
# its half of the batch, then the halves are added), so the weights differ by
# float32 rounding only: measured 2e-7 after 3 steps. FROZEN_ATOL is 50x that,
# and 100x below the update itself (asserted), so a real fault (a gradient
# summed instead of averaged, a replica reading the wrong half, weight decay
# counted per replica) is far outside it. In training mode, batch norm's
# backward pass subtracts batch means, which amplifies rounding: one device
# on [a, a] vs on [a] already differs by ~0.5% of the update, so trainable
# weights are compared with batch norm frozen, and the statistics, a forward
# quantity, in training mode.
FROZEN_ATOL = 1e-5
STATS_ATOL = 1e-5


def _check_two_devices_match_one(tmp_path, env, engine):
    _run_script(tmp_path, EQUALITY_SCRIPT, [tmp_path], env)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["replicas"] == 2 and result["engine"] == engine
    assert result["frozen_max_update"] > 100 * FROZEN_ATOL
    assert result["frozen_max_diff"] < FROZEN_ATOL, result
    # Its .keras file loads and predicts on one device (this process). Not
    # compiled: its batch norm was frozen by hand, which the model's config
    # does not record, so the reloaded optimizer would expect slots for it
    # (the optimizer state round trip is tested below, on a model as built).
    model = keras.saving.load_model(tmp_path / "distributed.keras", compile=False)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        np.load(tmp_path / "distributed_predictions.npy"),
        rtol=1e-5, atol=1e-5,
    )
    return result


@pytest.mark.slow
@pytest.mark.tf_only
def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(tmp_path):
    result = _check_two_devices_match_one(
        tmp_path, _env(KERAS_BACKEND="tensorflow"), "tf.distribute.MirroredStrategy"
    )
    # MirroredStrategy normalises each replica's half batch by its own
    # statistics and keeps replica 0's moving statistics (Keras creates them
    # without cross-replica aggregation): equal to one device on that half.
    assert result["bn_vs_first_replica"] < STATS_ATOL, result
    assert result["bn_vs_global_batch"] > 100 * STATS_ATOL, result


@pytest.mark.slow
@jax_only
def test_jax_data_parallel_on_two_host_devices_matches_one_device(tmp_path):
    env = _env(
        KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    result = _check_two_devices_match_one(
        tmp_path, env, "keras.distribution.DataParallel"
    )
    # One program over both devices: batch norm statistics are those of the
    # global batch, as on one device (per-replica statistics differ from
    # them by ~3e-2 here: see the MirroredStrategy test).
    assert result["bn_vs_global_batch"] < STATS_ATOL, result


# --- Through the CLI -------------------------------------------------------


@pytest.mark.slow
@jax_only
def test_two_jax_processes_train_together_and_only_the_chief_writes(tiny_cifar_folder, tmp_path):
    wrapper = write_fit_wrapper(tmp_path)
    flags = ["--epochs", "2", "--steps-per-epoch", "2", "--no-export", "--verbose", "2"]
    outputs, codes = run_process_group(tmp_path, wrapper, tiny_cifar_folder, flags)
    for code, output in zip(codes, outputs):
        assert code == 0, output[-4000:]

    # Both processes end with the same weights, bit for bit.
    weights = [np.load(tmp_path / f"w{rank}.npz") for rank in (0, 1)]
    assert len(weights[0].files) == len(weights[1].files) > 0
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    # Only process 0 wrote a run directory, and its model is that state.
    assert not (tmp_path / "run1").exists()
    run_dir = tmp_path / "run0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["processes"] == 2
    assert config["distribution"]["replicas"] == 2 and config["global_batch_size"] == 8
    assert len(runs.read_history(run_dir / "history.csv")) == 2
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run_dir / "backup" / "latest.weights.h5").exists()
    saved = keras.saving.load_model(run_dir / "model.keras").get_weights()
    for name, value in zip(weights[0].files, saved):
        np.testing.assert_array_equal(weights[0][name], value)
    summaries = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    assert summaries[0]["model"] == str(run_dir / "model.keras")
    assert summaries[1]["model"] is None
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"]


@pytest.mark.slow
@pytest.mark.tf_only
def test_mirrored_run_killed_mid_way_resumes(tiny_cifar_folder, tmp_path):
    wrapper = write_fit_wrapper(tmp_path)
    run_dir = tmp_path / "run"
    command = [
        sys.executable, str(wrapper), FIT, "--data-dir", str(tiny_cifar_folder),
        "--output-dir", str(run_dir), "--epochs", "3", "--steps-per-epoch", "2",
        "--strategy", "mirrored", "--no-export", "--overlay-images", "2",
        "--verbose", "2", "--learning-rate", "0.05", "--lr-scaling",
    ] + TINY
    env = _env(KERAS_BACKEND="tensorflow", LTPA_TF_CPU_DEVICES="2")

    # Killed as epoch 2 begins, epoch 1 and its backup done.
    paused = run_until_marker(
        command, dict(env, LTPA_PAUSE_AT="epoch:1"), tmp_path / "paused",
        tmp_path / "first.log", TIMEOUT_S,
    )
    assert paused, (tmp_path / "first.log").read_text()[-3000:]
    done = backed_up_epochs(run_dir)
    assert done == 1
    kept = runs.read_history(run_dir / "history.csv")[:done]
    assert len(kept) == done and not (run_dir / "metrics.json").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["replicas"] == 2
    assert config["distribution"]["engine"] == "tf.distribute.MirroredStrategy"
    # 4 examples per replica, 2 replicas; the rate scaled by the replicas.
    assert config["global_batch_size"] == 8 and config["learning_rate_used"] == 0.1
    assert float(kept[0]["learning_rate"]) == pytest.approx(0.1)

    second = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs_run = [
        line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")
    ]
    assert epochs_run[0] == f"{done + 1}/3"  # Continued, not started over.
    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert rows[:done] == kept
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["test_examples"] == 8
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
@jax_only
def test_two_jax_processes_resume_from_the_chief_s_backup(tiny_cifar_folder, tmp_path):
    """Both processes share one run directory: a second command with more
    epochs restores the chief's backup in both (they end equal, and the
    history continues); a process that sees another backup stops both with
    the documented error instead of a hang."""
    wrapper = write_fit_wrapper(tmp_path)
    flags = ["--steps-per-epoch", "2", "--no-export", "--verbose", "2", "--overlay-images", "0"]
    shared = ("run", "run")
    outputs, codes = run_process_group(
        tmp_path, wrapper, tiny_cifar_folder, ["--epochs", "1"] + flags, shared
    )
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    outputs, codes = run_process_group(
        tmp_path, wrapper, tiny_cifar_folder, ["--epochs", "2"] + flags, shared
    )
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for output in outputs:
        epochs = [line.split()[1] for line in output.splitlines() if line.startswith("Epoch ")]
        assert epochs in ([], ["2/2"])  # Only the chief prints; it resumed.
    assert "epoch 2/2" in outputs[0] and "epoch 1/2" not in outputs[0]
    weights = [np.load(tmp_path / f"w{rank}.npz") for rank in (0, 1)]
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    assert [int(r["epoch"]) for r in runs.read_history(tmp_path / "run" / "history.csv")] == [0, 1]

    # Process 1 looks at a folder without the chief's backup.
    outputs, codes = run_process_group(
        tmp_path, wrapper, tiny_cifar_folder, ["--epochs", "3"] + flags, ("run", "elsewhere")
    )
    assert codes[0] != 0 and codes[1] != 0
    for output in outputs:
        assert "The processes see different backups" in output, output[-3000:]


# Trains a tiny model 2 steps under `resolve_distribution("mirrored")` on 2
# devices, saves it as a run does (`runs.save_model`), and writes the
# optimizer's variables (by path) and the batch of the next step. argv:
# output folder.
MIRRORED_SAVE_SCRIPT = r'''
import os, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_ltpa import build_model
from keras_ltpa.train import distribution as ltpa_distribution
from keras_ltpa.train import losses, optimizers, runs

out = sys.argv[1]
distribution = ltpa_distribution.resolve_distribution("mirrored")
assert distribution.num_replicas == 2
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 10, 24).astype("int32")
with distribution.scope():
    keras.utils.set_random_seed(0)
    model = build_model(10, width_multiplier=0.0625)
    optimizer = optimizers.make_optimizer(100, learning_rate=0.05)
    losses.compile_model(model, optimizer, jit_compile="off")
    data = tf.data.Dataset.from_tensor_slices((images[:16], labels[:16])).batch(8)
    model.fit(data, epochs=1, verbose=0, shuffle=False)
runs.save_model(model, os.path.join(out, "mirrored.keras"))
np.savez(os.path.join(out, "optimizer.npz"),
         **{v.path: np.asarray(v.numpy()) for v in optimizer.variables})
np.savez(os.path.join(out, "next_batch.npz"), x=images[16:], y=labels[16:])
'''


def _optimizer_state(model):
    return {v.path: np.asarray(v.numpy()) for v in model.optimizer.variables}


@pytest.mark.slow
@pytest.mark.tf_only
def test_mirrored_keras_file_keeps_the_optimizer_state_on_one_device(tmp_path):
    import warnings

    import keras_ltpa.train.optimizers  # noqa: F401  (registers the optimizer)

    _run_script(tmp_path, MIRRORED_SAVE_SCRIPT, [tmp_path], _env(KERAS_BACKEND="tensorflow"))
    saved = dict(np.load(tmp_path / "optimizer.npz"))
    momenta = sorted(path for path in saved if path.endswith("_momentum"))
    # SGD keeps one momentum per trainable weight, and 2 steps were taken.
    assert len(momenta) == len(saved) - 1 and len(momenta) > 30
    assert int(saved["coupled_weight_decay_sgd/iteration"]) == 2
    assert all(np.any(saved[path] != 0) for path in momenta)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "Skipping variable loading"
        model = keras.saving.load_model(tmp_path / "mirrored.keras")
    state = _optimizer_state(model)
    assert sorted(state) == sorted(saved)
    for path, value in saved.items():
        np.testing.assert_array_equal(state[path], value, err_msg=path)

    # One more step continues from those slots: v1 = 0.9 v0 - lr g', where
    # the same step from zeroed slots gives -lr g' alone.
    batch = np.load(tmp_path / "next_batch.npz")
    fresh = keras.saving.load_model(tmp_path / "mirrored.keras")
    for variable in fresh.optimizer.variables:
        if variable.path.endswith("_momentum"):
            variable.assign(np.zeros(variable.shape, variable.dtype))
    model.train_on_batch(batch["x"], batch["y"])
    fresh.train_on_batch(batch["x"], batch["y"])
    after, alone = _optimizer_state(model), _optimizer_state(fresh)
    assert int(after["coupled_weight_decay_sgd/iteration"]) == 3
    momentum = model.optimizer.momentum
    for path in momenta:
        expected = momentum * saved[path] + alone[path]
        scale = np.max(np.abs(expected)) + np.max(np.abs(alone[path]))
        # One float32 multiply-add apart: a few units of rounding.
        np.testing.assert_allclose(
            after[path], expected, rtol=0, atol=8 * np.finfo(np.float32).eps * scale,
            err_msg=path,
        )
        assert np.max(np.abs(after[path] - alone[path])) > 0.1 * np.max(np.abs(saved[path]))
