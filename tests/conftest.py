"""Shared test setup: backend-aware markers and paths to the shared data."""

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
