"""Test-wide settings, and doctest collection over keras_ltpa.

`pytest` collects `tests/` and, with `--doctest-modules`, every module of
`keras_ltpa`. The examples print backend-neutral values but are checked
under the TensorFlow backend only (the default backend of the package);
under JAX and torch the modules are not collected. A module whose top-level
imports need an optional extra that is not installed (keras-hub, TF
Serving's API, jax, torch) is not collected either.
"""

import ast
import importlib.util
import os
import pathlib
import tempfile

# `--precision auto` caches its measured verdict in the user's cache
# directory; tests (and the processes they start, which inherit the
# variable) use a temporary one instead, so they never write the user's.
os.environ.setdefault("KERAS_LTPA_CACHE_DIR", tempfile.mkdtemp(prefix="keras_ltpa_cache_"))

OPTIONAL_PACKAGES = {"jax", "torch", "keras_hub", "tensorflow_serving", "kagglehub", "huggingface_hub"}
PACKAGE = pathlib.Path(__file__).parent / "keras_ltpa"


def _missing_optional_import(path):
    """The first optional package `path` imports at module level and that
    is not installed, or None."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            root = name.split(".")[0]
            if root in OPTIONAL_PACKAGES and importlib.util.find_spec(root) is None:
                return root
    return None


def pytest_ignore_collect(collection_path, config):
    path = pathlib.Path(collection_path)
    if PACKAGE not in path.parents and path != PACKAGE:
        return None
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return True
    if path.suffix == ".py" and _missing_optional_import(path):
        return True
    return None
