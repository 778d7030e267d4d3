"""Shared test setup: backend-aware markers and paths to the shared data."""

import importlib.util
import json
import os
import pathlib
import sys
import time

import base64

import keras
import numpy as np
import pytest

from keras_ltpa import attention_model
from keras_ltpa import build_model
from keras_ltpa import folding

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIT_SCRIPT = str(REPO_ROOT / "training" / "fit.py")
SHARED_DIR = pathlib.Path(
    os.environ.get("KERAS_LTPA_SHARED", REPO_ROOT.parent / "shared")
)
DATA_DIR = SHARED_DIR / "data"
FIXTURES_DIR = SHARED_DIR / "fixtures" / "torch_reference"


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
def shared_data_dir():
    if not DATA_DIR.is_dir():
        pytest.fail(f"shared data not found at {DATA_DIR}; set KERAS_LTPA_SHARED")
    return DATA_DIR


@pytest.fixture
def tiny_cifar_folder(tmp_path, shared_data_dir):
    """An image folder of real CIFAR-10 JPEGs: DIR/{train,test}/<class>/,
    3 classes (airplane, cat, ship), 8 train and 4 test images each."""
    import shutil

    root = tmp_path / "tiny_cifar"
    for name in ("airplane", "cat", "ship"):
        for split, count in (("train", 8), ("test", 4)):
            target = root / split / name
            target.mkdir(parents=True)
            source = shared_data_dir / "cifar10" / split / name
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


def require_backend_package(backend):
    """Skips a test that starts a `backend` subprocess when it is not installed."""
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")


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
    from keras_ltpa import export

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


run_fit = load_script(FIT_SCRIPT, "fit_cli")
