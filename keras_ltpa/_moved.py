"""The module paths of version 0.1, importable for one more release.

Version 0.2.0 put the modules into subpackages by concern (see
`docs/ARCHITECTURE.md` and `CHANGELOG.md`). `import keras_ltpa.training`
and `from keras_ltpa import export` still work: a finder on `sys.meta_path`
answers the old names with a module holding the names of the new ones, and
warns once per name with a `DeprecationWarning` that says where it went.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# Old module -> the modules its names now live in (the first that has a
# name wins), and renames of names that changed.
MOVED = {
    "callbacks": ("train.callbacks",),
    "checks": ("utils.checks",),
    "cpu_defaults": ("devices.cpu_kernels",),
    "distribution": ("train.distribution",),
    "evaluate": (
        "evaluation.accuracy",
        "evaluation.localisation",
        "evaluation.gradcam",
        "evaluation.robustness",
        "evaluation.domain_transfer",
    ),
    "export": ("serving.export",),
    "files": ("utils.files",),
    "folding": ("serving.folding",),
    "gradients": ("evaluation.gradients",),
    "images": ("data.images",),
    "keras_internals": ("utils.keras_internals",),
    "losses": ("train.losses",),
    "optimizers": ("train.optimizers",),
    "report": ("evaluation.report",),
    "rest": ("serving.rest",),
    "robustness": ("evaluation.robustness",),
    "runs": ("train.runs",),
    "signatures": ("serving.signatures",),
    "training": ("train.config", "train.loop", "train.losses"),
    "transfer": ("evaluation.domain_transfer",),
    "visualize": ("evaluation.overlays",),
    "warmup": ("serving.warmup",),
}


def _old_module(old_name):
    """A module named `keras_ltpa.<old_name>` with the new modules' names."""
    new_names = [f"keras_ltpa.{path}" for path in MOVED[old_name]]
    warnings.warn(
        f"`keras_ltpa.{old_name}` moved to `{'`, `'.join(new_names)}` in "
        "keras-ltpa 0.2.0; the old path goes in the next release.",
        DeprecationWarning,
        stacklevel=3,
    )
    module = types.ModuleType(f"keras_ltpa.{old_name}")
    module.__doc__ = f"Moved: see {', '.join(new_names)}."
    for new_name in reversed(new_names):  # the first listed wins
        new = importlib.import_module(new_name)
        module.__dict__.update(
            {k: v for k, v in vars(new).items() if not k.startswith("__")}
        )
    return module


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return _old_module(spec.name.rsplit(".", 1)[1])

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == "keras_ltpa" and name in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install():
    """Puts the finder on `sys.meta_path` (once)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
