"""Shared test setup: backend-aware markers and paths to the shared data."""

import importlib.util
import os
import pathlib

import keras
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
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
    """Imports the one-file script at `path` (e.g. training/fit.py) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_backend_package(backend):
    """Skips a test that starts a `backend` subprocess when it is not installed."""
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
