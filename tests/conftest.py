"""Shared test setup: backend-aware markers and the paths to the test data.

Real-data tests read the small fixtures the repository carries
(`small_data_dir`, `FIXTURES_DIR`: tests/fixtures/README.md). The few that
need the full data sets read `shared_data_dir` (../shared/data, or
$KERAS_LTPA_SHARED/data) and skip without it, saying how to provide it.
"""

import base64
import importlib
import importlib.util
import json
import os
import pathlib
import socket
import sys
import time

import keras
import numpy as np
import pytest

from keras_ltpa import attention_model
from keras_ltpa import build_model
from keras_ltpa.serving import folding

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIT_SCRIPT = str(REPO_ROOT / "training" / "fit.py")
# The fixtures the repository carries: SMALL_DATA_DIR holds a few files of
# each full set, in the full sets' layout (cifar10/, weizmann_horse/,
# caltech101/); FIXTURES_DIR the PyTorch reference models.
FIXTURES_ROOT = REPO_ROOT / "tests" / "fixtures"
SMALL_DATA_DIR = FIXTURES_ROOT / "data"
FIXTURES_DIR = FIXTURES_ROOT / "torch_reference"
# The full data sets, for the few tests that need them.
SHARED_DIR = pathlib.Path(
    os.environ.get("KERAS_LTPA_SHARED", REPO_ROOT.parent / "shared")
)
DATA_DIR = SHARED_DIR / "data"
# The reason a test skips without the full data sets starts with this;
# .ci/run, which provides them, fails when it sees one.
MISSING_DATA = "full data sets not found"


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (running under {backend})"
    )
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def small_data_dir():
    """The committed real-data fixtures: cifar10/, weizmann_horse/ and
    caltech101/, each a few files of the full set in its layout."""
    return SMALL_DATA_DIR


@pytest.fixture
def shared_data_dir():
    """The full data sets (../shared/data or $KERAS_LTPA_SHARED/data); the
    test skips, saying how to provide them, where they are absent."""
    if not (DATA_DIR / "cifar10").is_dir():
        pytest.skip(
            f"{MISSING_DATA} at {DATA_DIR}: set KERAS_LTPA_SHARED to a folder whose data/ holds "
            "them, laid out as in tests/fixtures/README.md"
        )
    return DATA_DIR


@pytest.fixture
def tiny_cifar_folder(tmp_path, small_data_dir):
    """An image folder of real CIFAR-10 JPEGs: DIR/{train,test}/<class>/,
    3 classes (airplane, cat, ship), 8 train and 4 test images each."""
    import shutil

    root = tmp_path / "tiny_cifar"
    for name in ("airplane", "cat", "ship"):
        for split, count in (("train", 8), ("test", 4)):
            target = root / split / name
            target.mkdir(parents=True)
            source = small_data_dir / "cifar10" / split / name
            for file in sorted(source.iterdir())[:count]:
                shutil.copy(file, target / file.name)
    return root


def write_image(path, value=100, size=(12, 10)):
    """Writes a flat grey image of `size` (width, height) to `path` (any PIL format)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def load_script(path, name):
    """Imports the one-file script at `path` (e.g. training/fit.py) as module
    `name`, with its folder importable as when it runs (for `cli_common`)."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def modules_loaded_by(statements, modules):
    """Which of `modules` a fresh Python imports running `statements`.

    Runs under JAX or PyTorch (the first installed): under TensorFlow, Keras
    itself loads TensorFlow, so the question has no answer there and the test
    skips.
    """
    import subprocess

    backend = next((name for name in ("jax", "torch") if importlib.util.find_spec(name)), None)
    if backend is None:
        pytest.skip("needs jax or torch: under TensorFlow, Keras itself loads TensorFlow")
    code = f"import sys; {statements}; print([m for m in {tuple(modules)!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=dict(os.environ, KERAS_BACKEND=backend), timeout=300,
    )
    return result.stdout.strip().splitlines()[-1]


# The reason a test skips for a missing optional package starts with this;
# .ci/run, which installs every extra, fails when it sees one.
MISSING_PACKAGE = "missing optional package"


def require_package(module, extra):
    """Skips the test, naming the extra to install, when `module` is missing."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{MISSING_PACKAGE} {module}: pip install -e '.[{extra}]'")


def require_backend_package(backend):
    """Skips a test that starts a `backend` subprocess when it is not installed."""
    require_package(backend, {"tensorflow": "test", "jax": "jax", "torch": "torch"}[backend])


# --- A tiny model and its exports, shared by the serving tests -------------

SERVING_WIDTH = 0.0625
SERVING_CLASS_NAMES = [f"class {i}" for i in range(10)]


def randomize_batch_norm(model, seed=0):
    """Trained-like BN statistics, so that folding has something to fold."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.5, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, channels).astype("float32"))


def tiny_model(seed=0, **kwargs):
    """A width-1/16 paper model (10 classes) with trained-like BN statistics."""
    keras.utils.set_random_seed(seed)
    model = build_model(10, width_multiplier=SERVING_WIDTH, **kwargs)
    randomize_batch_norm(model, seed)
    return model


def keras_outputs(model, images):
    images = np.asarray(images, "float32")
    if keras.backend.backend() == "jax":
        # One compiled step; JAX's op-by-op eager calls are far slower here.
        return attention_model(model).predict_on_batch(images)
    outputs = attention_model(model)(images, training=False)
    return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}


def max_relative(outputs, reference):
    """Largest per-image difference relative to the reference's peak there
    (`folding.relative_difference` on two arrays)."""
    return folding.relative_difference({"x": outputs}, {"x": reference})


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


PROBE_IMAGES = folding.probe_images(32, 32, count=3, seed=7)


@pytest.fixture(scope="session")
def serving_model():
    """The tiny model the export, REST and folding tests share."""
    return tiny_model()


@pytest.fixture(scope="session")
def serving_exports(serving_model, tmp_path_factory):
    """The same model exported unfolded (version 1) and folded (version 2)."""
    root = tmp_path_factory.mktemp("saved_models")
    from keras_ltpa.serving import export

    unfolded = export.export_saved_model(
        serving_model, root, class_names=SERVING_CLASS_NAMES, top_k=3, fold_batch_norm=False
    )
    folded = export.export_saved_model(serving_model, root, class_names=SERVING_CLASS_NAMES, top_k=3)
    return {"root": root, "unfolded": unfolded, "folded": folded}


@pytest.fixture(scope="session")
def serving_loaded(serving_exports):
    import tensorflow as tf

    return {key: tf.saved_model.load(serving_exports[key]) for key in ("unfolded", "folded")}


def png_bytes(image):
    import tensorflow as tf

    return tf.io.encode_png(image).numpy()


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


# --- Watching a training child process --------------------------------------


def wait_for(condition, process, timeout):
    """Polls `condition()` until it holds (True), `process` exits or
    `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def backed_up_epochs(run_dir):
    """Epochs recorded in a run directory's BackupAndRestore state (0: none)."""
    try:
        with open(pathlib.Path(run_dir) / "backup" / "training_metadata.json") as file:
            return json.load(file)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


run_fit = importlib.import_module("keras_ltpa.cli.fit")


# Runs training/fit.py's main() (argv[1]: fit.py, then its flags) with test
# hooks from the environment:
# - $LTPA_TF_CPU_DEVICES: split the CPU into that many TensorFlow devices;
# - $LTPA_WEIGHTS_OUT: save this process' trained weights there (.npz), even
#   where the run directory is not written;
# - $LTPA_PAUSE_AT ("epoch:N" or "step:N") and $LTPA_PAUSE_MARKER: once
#   epoch N begins (all of epoch N-1's callbacks, its backup included, are
#   done) or optimizer step N has ended (its step backup written), write the
#   marker file and sleep: a test that waits for the marker kills the run at
#   a known point, never after it has finished.
FIT_WRAPPER = r"""
import os, sys, time
import numpy as np
devices = int(os.environ.get("LTPA_TF_CPU_DEVICES", "0"))
if devices:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import keras
import fit
from keras_ltpa.train import callbacks
from keras_ltpa import train as training


class Pause(keras.callbacks.Callback):
    def __init__(self, kind, number, marker):
        super().__init__()
        self.kind, self.number, self.marker, self.steps = kind, number, marker, 0

    def _pause(self):
        open(self.marker, "w").close()
        time.sleep(3600)

    def on_epoch_begin(self, epoch, logs=None):
        if self.kind == "epoch" and epoch == self.number:
            self._pause()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.kind == "step" and self.steps == self.number:
            self._pause()


make_callbacks = callbacks.make_callbacks


def make_callbacks_with_pause(*args, **kwargs):
    made = make_callbacks(*args, **kwargs)
    if os.environ.get("LTPA_PAUSE_AT"):
        kind, number = os.environ["LTPA_PAUSE_AT"].split(":")
        made.append(Pause(kind, int(number), os.environ["LTPA_PAUSE_MARKER"]))
    return made


callbacks.make_callbacks = make_callbacks_with_pause
run_training = training.run_training


def run_and_keep_weights(config):
    result = run_training(config)
    if os.environ.get("LTPA_WEIGHTS_OUT"):
        np.savez(os.environ["LTPA_WEIGHTS_OUT"], *result["model"].get_weights())
    return result


training.run_training = run_and_keep_weights
sys.exit(fit.main(sys.argv[2:]))
"""


def write_fit_wrapper(folder):
    """Writes `FIT_WRAPPER` into `folder`; returns its path."""
    path = pathlib.Path(folder) / "run_fit.py"
    path.write_text(FIT_WRAPPER)
    return path


def run_until_marker(command, env, marker, log_path, timeout):
    """Starts `command` (a `FIT_WRAPPER` run with $LTPA_PAUSE_AT), waits for
    it to write `marker`, then kills it (SIGKILL). Returns True when it
    paused there, False when it exited or timed out first."""
    import signal
    import subprocess

    env = dict(env, LTPA_PAUSE_MARKER=str(marker))
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            paused = wait_for(lambda: os.path.exists(marker), process, timeout)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
    return paused


# Messages of a coordinator that could not bind its port (another process
# took the free port between the test's probe and the bind).
BIND_FAILURES = ("Address already in use", "Failed to bind", "bind failed")


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (it may be taken
    again before use: callers retry on `BIND_FAILURES`)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Folding checks: a bound of the tests' own, against a float64 evaluation.
# Each of the model's 17 layers of sums (13 VGG convolutions, 2 in block 6,
# the attention estimator and the classifier) rounds its products, its sum
# and its bias once each in float32, and folding rounds W * s once more: at
# most 4 eps relative to the layer's peak per layer, carried forward through
# the depth. The attention softmax turns an absolute error d in its scores
# into at most 2 d relative to its peak. A fold with any per-channel error of
# 1e-4 or more (a dropped BN epsilon, a wrong mean) breaks it.
FOLD_DEPTH = 17
FOLD_BOUND = 2 * 4 * FOLD_DEPTH * float(np.finfo(np.float32).eps)  # 1.6e-5


def float64_outputs(model, images):
    """`model`'s outputs on `images`, evaluated in float64 (a fresh model of the
    same architecture, the weights cast up)."""
    keras.config.set_dtype_policy("float64")
    try:
        exact = build_model(10, width_multiplier=SERVING_WIDTH)
    finally:
        keras.config.set_dtype_policy("float32")
    exact.set_weights([np.asarray(w, "float64") for w in model.get_weights()])
    return keras_outputs(exact, np.asarray(images, "float64"))


def relative_to_peak(outputs, reference):
    """The largest |outputs - reference| per image over the reference's peak
    magnitude in that image, computed here in float64."""
    reference = np.asarray(reference, "float64").reshape(len(reference), -1)
    outputs = np.asarray(outputs, "float64").reshape(reference.shape)
    return float((np.abs(outputs - reference).max(axis=1) / np.abs(reference).max(axis=1)).max())


@pytest.fixture
def recorded_tfds_loads(monkeypatch):
    """A `(split, dataset)` list of every `load_dataset` call, for CLI tests
    run under `tfds.testing.mock_data` (which downloads nothing, so the
    download-host check is off)."""
    from keras_ltpa.data import pipelines
    from keras_ltpa.data import sources

    monkeypatch.setattr(sources, "_check_download_hosts", lambda: None)
    asked = []
    load_dataset = pipelines.load_dataset

    def recording_load(split, *args, **kwargs):
        asked.append((split, kwargs.get("dataset")))
        return load_dataset(split, *args, **kwargs)

    monkeypatch.setattr(pipelines, "load_dataset", recording_load)
    return asked


@pytest.fixture
def no_network(monkeypatch):
    """Every connection fails at once, as on a machine without network."""

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (simulated)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
