"""SavedModel export for TF Serving, with the attention maps in every response.

`export_saved_model(model, "saved_models")` writes
`saved_models/<name>/<version>/`, TF Serving's model base path layout, with
two signatures:

- `serving_default`: `images` uint8 (N, H, W, 3) at the model's input size.
- `serve_bytes`: `image_bytes` string (N,), JPEG or PNG files of any size,
  decoded and resized to the model's input size inside the graph. REST
  clients send them as `{"b64": "..."}`.

Both return `probabilities` (N, K), the top-k `classes`, `scores` and
`class_names`, and for each attention estimator j the normalised map
`attention_<j>` (N, H_j, W_j) and `attention_<j>_full` (N, H, W), the map
bilinearly upsampled to the input size. The SavedModel runs with TensorFlow
alone: no Keras and no keras_ltpa at serving time.

Batch norm is folded into the convolution before it at export (one conv
instead of conv + BN), and the folded graph is checked against the Keras
model before anything is written.

`keras_ltpa.serving.rest.rest_predict()` answers a TF Serving REST `:predict`
request body from a loaded export, so clients and tests can replay requests
without the server.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import keras
import tensorflow as tf

from keras_ltpa.model import describe
from keras_ltpa.model import load_model_file
from keras_ltpa.serving import warmup
from keras_ltpa.serving.folding import serving_model
from keras_ltpa.serving.signatures import BYTES_SIGNATURE
from keras_ltpa.serving.signatures import DEFAULT_MAX_BATCH_SIZE
from keras_ltpa.serving.signatures import DEFAULT_MAX_IMAGE_PIXELS
from keras_ltpa.serving.signatures import SERVING_SIGNATURE
from keras_ltpa.serving.signatures import ServingGraph
from keras_ltpa.utils import files
from keras_ltpa.utils.keras_internals import is_functional

DEFAULT_MODEL_NAME = "ltpa"
# Files under a version's `assets.extra/` travel with it; TF Serving reads
# only its own warm-up file there.
METADATA_FILE = os.path.join("assets.extra", "keras_ltpa.json")
# Version of the metadata file's layout (absent: the 0.1.0 layout).
METADATA_VERSION = 2
_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def model_versions(model_dir):
    """The version numbers (sorted) of the TF Serving model folder `model_dir`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_dir)
        if entry.isdigit() and os.path.isdir(os.path.join(model_dir, entry))
    )


def _check_export_arguments(name, version, top_k):
    if not (isinstance(name, str) and _MODEL_NAME_PATTERN.match(name)):
        raise ValueError(
            "`name` must be a model name of letters, digits, '_', '.' or '-' "
            f"(not starting with '.' or '-'), e.g. 'ltpa'; received name={name!r}."
        )
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise ValueError(
            f"`version` must be a positive integer or None (next free version); "
            f"received version={version!r}."
        )
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer; received top_k={top_k!r}.")


def _check_limits(max_image_pixels, max_batch_size):
    for argument, value in (
        ("max_image_pixels", max_image_pixels),
        ("max_batch_size", max_batch_size),
    ):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(
                f"`{argument}` must be a positive integer or None (no limit); "
                f"received {argument}={value!r}."
            )
    return {"max_image_pixels": max_image_pixels, "max_batch_size": max_batch_size}


def read_metadata(version_dir):
    """The `assets.extra/keras_ltpa.json` of an export, in the current layout.

    Exports written by version 0.1.0 (no `metadata_version`) are read too:
    their missing entries are filled in (`limits` None: those exports
    check no size or batch limit; `warmup` skipped).
    """
    path = os.path.join(os.fspath(version_dir), METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the export's metadata {path!r}: {error}") from None
    version = metadata.get("metadata_version", 1)
    if version > METADATA_VERSION:
        raise ValueError(
            f"{path!r} has metadata version {version}, newer than this keras-ltpa "
            f"reads ({METADATA_VERSION}); upgrade keras-ltpa."
        )
    if version == 1:
        metadata = dict(metadata)
        metadata.setdefault("limits", {"max_image_pixels": None, "max_batch_size": None})
        metadata.setdefault("warmup", {"skipped": "exported by keras-ltpa 0.1.0"})
        if "fold_max_difference" in metadata:  # 0.1.0: absolute, not relative.
            metadata.setdefault("fold_max_relative_difference", None)
        metadata["metadata_version"] = METADATA_VERSION
    return metadata


def _check_class_names(class_names, num_classes):
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    if isinstance(class_names, str):
        raise ValueError(
            "`class_names` must be a list of strings, one per class; received "
            f"the string {class_names!r}."
        )
    names = list(class_names)
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`class_names` must be {num_classes} strings (one per class of the "
            f"model); received {len(names)} entries: {names[:12]!r}."
        )
    return names


def _check_model(model):
    if not is_functional(model):
        raise ValueError(
            "`model` must be a functional keras.Model from build_model() or a "
            f"path to its .keras file; received {model!r}."
        )
    shape = model.input_shape
    if (
        not isinstance(shape, tuple)
        or len(shape) != 4
        or not all(isinstance(d, int) for d in shape[1:])
        or shape[-1] != 3
    ):
        raise ValueError(
            "Export needs a model taking RGB images of a fixed size, input "
            f"shape (None, H, W, 3); this model's input shape is {shape}."
        )


def _write_saved_model(model, path, class_names, top_k, limits):
    predictor = ServingGraph(model, class_names, top_k, **limits)
    height, width = predictor.height, predictor.width
    archive = keras.export.ExportArchive()
    archive.track(predictor.model)
    archive.add_endpoint(
        SERVING_SIGNATURE,
        predictor.serve_images,
        input_signature=[tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        predictor.serve_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
    )
    archive.write_out(path, verbose=False)
    return predictor


def _export_in_tensorflow_process(model, export_dir, **options):
    """Runs the export in a child process whose Keras backend is TensorFlow."""
    with tempfile.TemporaryDirectory(prefix="keras_ltpa_export_") as scratch:
        if isinstance(model, keras.Model):
            path = os.path.join(scratch, "model.keras")
            model.save(path)
        else:
            path = os.fspath(model)
        request = json.dumps({"model": path, "export_dir": os.fspath(export_dir), **options})
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(
            [sys.executable, "-c", _CHILD_SCRIPT, request],
            env=env,
            capture_output=True,
            text=True,
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    reply = json.loads(lines[-1]) if lines else {}
    if result.returncode == 0 and "path" in reply:
        return reply["path"]
    if reply.get("error_type") == "ValueError":
        raise ValueError(reply["message"])
    detail = reply.get("message") or result.stderr.strip()[-2000:]
    raise RuntimeError(f"SavedModel export under the TensorFlow backend failed: {detail}")


_CHILD_SCRIPT = """
import json, sys
request = json.loads(sys.argv[1])
try:
    from keras_ltpa.serving.export import export_saved_model
    path = export_saved_model(request.pop("model"), request.pop("export_dir"), **request)
    print(json.dumps({"path": path}))
except Exception as error:
    print(json.dumps({"error_type": type(error).__name__, "message": str(error)}))
    sys.exit(1)
"""


def export_saved_model(
    model,
    export_dir,
    *,
    name=None,
    version=None,
    class_names=None,
    top_k=5,
    fold_batch_norm=True,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    warmup_requests=True,
):
    """Exports a model as a TF Serving SavedModel with attention outputs.

    Writes `<export_dir>/<name>/<version>/` (TF Serving's model base path is
    `<export_dir>/<name>`). The files are written into a hidden staging
    directory beside the versions and renamed into place when complete, so
    TF Serving, which watches numeric directory names only, never sees a
    partial version; on failure the staging directory is removed. An
    existing version is never overwritten.

    Exporting needs the TensorFlow backend. Under JAX or PyTorch the model
    (or its `.keras` file) is exported by a child process running the
    TensorFlow backend, with the same result.

    Signatures (both give the same outputs):
        `serving_default`: `images` uint8 (None, H, W, 3).
        `serve_bytes`: `image_bytes` string (None,), JPEG/PNG of any size.
    Outputs: `probabilities` (N, K) float32, `classes` (N, k) int32,
    `scores` (N, k) float32, `class_names` (N, k) string, and per attention
    estimator j: `attention_<j>` (N, H_j, W_j) and `attention_<j>_full`
    (N, H, W) float32.

    Args:
        model: a `build_model()` model, or the path of its `.keras` file.
        export_dir: TF Serving model root, e.g. `"saved_models"`.
        name: model name (directory under `export_dir`); default `"ltpa"`.
        version: positive int; default: one more than the highest existing
            version (1 for a new model).
        class_names: K strings, one per class; default `"0"`..`"K-1"`.
        top_k: number of classes in `classes`/`scores`/`class_names`
            (capped at K).
        fold_batch_norm: fold each Conv -> BatchNormalization pair into one
            convolution (checked against the unfolded model first; falls back
            to the unfolded graph with a warning if outputs differ).
        max_image_pixels: the most pixels (height x width) a `serve_bytes`
            file may declare in its header, checked before decoding
            (default 4096 x 4096); None: no limit.
        max_batch_size: the most images in one request, both signatures
            (default 64); None: no limit.
        warmup_requests: write TF Serving's warm-up file
            (`assets.extra/tf_serving_warmup_requests`, one request per
            signature); skipped, and said so in the metadata, without
            tensorflow-serving-api.

    Limits and warm-up are recorded in `assets.extra/keras_ltpa.json`
    (`read_metadata`). See `keras_ltpa.serving.signatures` for every check.

    Returns:
        The path of the written version directory, as a string.

    Example:
    >>> import tempfile
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> path = export_saved_model(model, tempfile.mkdtemp(), name="demo")
    >>> path.endswith(os.path.join("demo", "1"))
    True
    """
    name = DEFAULT_MODEL_NAME if name is None else name
    _check_export_arguments(name, version, top_k)
    limits = _check_limits(max_image_pixels, max_batch_size)
    model_dir = os.path.join(os.fspath(export_dir), name)
    if version is not None:
        _free_version_dir(model_dir, name, version)
    if isinstance(model, keras.Model):
        _check_model(model)
        _check_class_names(class_names, model.output_shape[-1])
    else:
        _check_path_argument(model)
    if keras.backend.backend() != "tensorflow":
        return _export_in_tensorflow_process(
            model,
            export_dir,
            name=name,
            version=version,
            class_names=None if class_names is None else list(class_names),
            top_k=top_k,
            fold_batch_norm=fold_batch_norm,
            warmup_requests=warmup_requests,
            **limits,
        )
    if not isinstance(model, keras.Model):
        model = load_model_file(model)
        _check_model(model)
    facts = describe(model)
    num_classes = facts["num_classes"]
    if class_names is None and facts["class_names_recorded"]:
        class_names = facts["class_names"]  # The names the model was trained with.
    class_names = _check_class_names(class_names, num_classes)
    top_k = min(top_k, num_classes)

    if version is None:
        versions = model_versions(model_dir)
        version = versions[-1] + 1 if versions else 1
    version_dir = _free_version_dir(model_dir, name, version)

    exported, fold_info = serving_model(model, fold_batch_norm)

    def write(path):
        predictor = _write_saved_model(exported, path, class_names, top_k, limits)
        warmup_info = (
            warmup.write_warmup_file(path, name, predictor.height, predictor.width)
            if warmup_requests
            else {"skipped": "warmup_requests=False"}
        )
        metadata = {
            "format": "keras_ltpa SavedModel",
            "metadata_version": METADATA_VERSION,
            "model": model.name,
            "variant": facts["variant"],
            "width_multiplier": facts["width_multiplier"],
            "pixel_mean": facts["pixel_mean"],
            "pixel_std": facts["pixel_std"],
            "input_shape": list(model.input_shape[1:]),
            "num_classes": num_classes,
            "class_names": class_names,
            "top_k": top_k,
            "attention_layers": predictor.attention_count,
            "signatures": {
                SERVING_SIGNATURE: {"images": "uint8 (None, H, W, 3)"},
                BYTES_SIGNATURE: {"image_bytes": "string (None,) JPEG or PNG"},
            },
            "limits": predictor.limits(),
            "warmup": warmup_info,
            **fold_info,
            "versions": {
                "keras_ltpa": _package_version(),
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            },
        }
        files.write_json(os.path.join(path, METADATA_FILE), metadata)

    _write_version(model_dir, version_dir, write)
    return version_dir


def _write_version(model_dir, version_dir, write):
    """Calls `write(staging_dir)`, then renames the staging dir to `version_dir`.

    The staging directory is hidden and not a number, so TF Serving ignores
    it while it is incomplete; it is removed if anything fails.
    """
    os.makedirs(model_dir, exist_ok=True)
    version = os.path.basename(version_dir)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir)
    try:
        write(staging)
        files.set_usual_mode(staging)
        try:
            os.rename(staging, version_dir)
        except OSError:
            raise ValueError(
                f"{version_dir!r} appeared while exporting (another export?); "
                "it was left untouched."
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _free_version_dir(model_dir, name, version):
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir):
        raise ValueError(
            f"Version {version} of model {name!r} already exists at "
            f"{version_dir!r}; versions are never overwritten. Pass another "
            "`version` or leave it None for the next free one."
        )
    return version_dir


def _check_path_argument(model):
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            "`model` must be a keras.Model or the path of a `.keras` file; "
            f"received {model!r}."
        )
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"Model file not found: {path!r}.")


def _package_version():
    from keras_ltpa import __version__

    return __version__


