"""The package layout: imports run one way, and every documented name imports.

The one-way rule (docs/ARCHITECTURE.md): the model core (the top-level
modules, `backbones/`, `devices/`, `presets/`) and `utils/` import nothing
above them; `data/` builds on the core; `serving/` and `evaluation/` build on
the core and `data/` and never import `train/`; only `cli/` sees everything.
The rule is read from every import statement of every module, including
imports inside functions.
"""

import ast
import importlib
import pathlib
import warnings

import pytest

import keras_ltpa
from keras_ltpa import _moved

PACKAGE = pathlib.Path(keras_ltpa.__file__).parent
CORE = {"layers", "variants", "heads", "model", "convert", "backbones", "devices", "presets"}
# What each part may import (besides itself).
ALLOWED = {
    "utils": set(),
    "core": {"utils"},
    "data": {"core", "utils"},
    "serving": {"core", "utils", "data"},
    "evaluation": {"core", "utils", "data"},
    "train": {"core", "utils", "data", "serving", "evaluation"},
    "cli": {"core", "utils", "data", "serving", "evaluation", "train"},
}


def _part(module_path):
    """`keras_ltpa.train.loop` -> "train"; a core module -> "core"."""
    parts = module_path.split(".")
    if len(parts) < 2 or parts[0] != "keras_ltpa":
        return None
    first = parts[1]
    # Names of the top-level API (`keras_ltpa.describe`) are the core's.
    return first if first in ALLOWED else "core"


def _imports(path, module=None):
    """Every `keras_ltpa...` module a source file imports, anywhere in it."""
    if module is None:
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(module.split(".")[: -node.level] + [node.module])
            found.add(base)
            # `from keras_ltpa import train` names a subpackage.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return module, {name for name in found if name.startswith("keras_ltpa.")}


def test_imports_run_one_way():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_moved.py" or path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the compatibility layer and the public API re-export by design
        module, imported = _imports(path)
        source_part = _part(module)
        for name in imported:
            target = _part(name)
            if target is None or target == source_part or name.split(".")[1] in _moved.MOVED:
                continue
            if target not in ALLOWED[source_part]:
                violations.append(f"{module} imports {name} ({source_part} -> {target})")
    assert not violations, "\n".join(sorted(violations))


def test_rule_catches_a_violation(tmp_path):
    # The checker itself: a serving module importing train/ is reported.
    bad = tmp_path / "probe.py"
    bad.write_text("def f():\n    from keras_ltpa.train import loop\n")
    module, imported = _imports(bad, module="keras_ltpa.serving.probe")
    assert _part(module) == "serving"
    assert "keras_ltpa.train.loop" in imported and "train" not in ALLOWED["serving"]


PUBLIC_NAMES = [
    "build_model",
    "attention_model",
    "describe",
    "load_model_file",
    "load_preset",
    "list_presets",
    "preset_metadata",
    "parse_variant",
    "export_saved_model",
    "run_training",
    "TrainingConfig",
    "choose_precision",
    "build_model_from_torch",
    "AttentionClassifier",
    "AttentionPool",
    "CompatibilityScore",
    "LinearProjector",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_documented_top_level_names(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert callable(getattr(keras_ltpa, name))


SUBPACKAGES = ["backbones", "devices", "utils", "data", "train", "serving", "evaluation", "cli"]


@pytest.mark.parametrize("module", ["layers", "convert", *SUBPACKAGES])
def test_subpackages_import_without_warning(module):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert importlib.import_module(f"keras_ltpa.{module}").__doc__


@pytest.mark.parametrize("old_name", sorted(_moved.MOVED))
def test_old_module_paths_import_with_a_warning(old_name):
    with pytest.warns(DeprecationWarning, match=f"keras_ltpa.{old_name}` moved to"):
        old = _moved._old_module(old_name)
    # Every public name of the new modules is reachable from the old path.
    for new_path in _moved.MOVED[old_name]:
        new = importlib.import_module(f"keras_ltpa.{new_path}")
        public = [n for n in vars(new) if not n.startswith("_")]
        assert public and all(hasattr(old, n) for n in public)


def test_old_import_statement_works():
    import sys

    sys.modules.pop("keras_ltpa.training", None)
    with pytest.warns(DeprecationWarning, match="keras_ltpa.train"):
        from keras_ltpa.training import TrainingConfig
    from keras_ltpa.train.config import TrainingConfig as new

    assert TrainingConfig is new
