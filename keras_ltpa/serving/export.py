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

Each version also holds `batching_params.pbtxt`, TF Serving batching
parameters sized to the model's input (`warmup.batching_parameters`), which
the server reads with `--enable_batching --enable_per_model_batching_parameters`.

Batch norm is folded into the convolution before it at export (one conv
instead of conv + BN), and the folded graph is checked against the Keras
model before anything is written.

`keras_ltpa.serving.rest.rest_predict()` answers a TF Serving REST `:predict`
request body from a loaded export, so clients and tests can replay requests
without the server.

The steps live beside this module: `versions` (numbering, staging and the
atomic rename), `metadata` (`assets.extra/keras_ltpa.json`), `warmup` and
`tf_process` (the export of a JAX or PyTorch model by a TensorFlow child).
"""

import os
import re

import keras
import tensorflow as tf

from keras_ltpa.model import describe
from keras_ltpa.model import load_model_file
from keras_ltpa.serving import warmup
from keras_ltpa.serving.folding import serving_model
from keras_ltpa.serving.metadata import METADATA_FILE
from keras_ltpa.serving.metadata import METADATA_VERSION
from keras_ltpa.serving.metadata import read_metadata
from keras_ltpa.serving.metadata import write_metadata
from keras_ltpa.serving.signatures import BYTES_SIGNATURE
from keras_ltpa.serving.signatures import DEFAULT_MAX_BATCH_SIZE
from keras_ltpa.serving.signatures import DEFAULT_MAX_IMAGE_PIXELS
from keras_ltpa.serving.signatures import DEFAULT_MAX_REQUEST_PIXELS
from keras_ltpa.serving.signatures import SERVING_SIGNATURE
from keras_ltpa.serving.signatures import ServingGraph
from keras_ltpa.serving.tf_process import export_in_tensorflow_process
from keras_ltpa.serving.versions import free_version_dir
from keras_ltpa.serving.versions import model_versions
from keras_ltpa.serving.versions import next_version
from keras_ltpa.serving.versions import publish_version
from keras_ltpa.utils.keras_internals import is_functional

DEFAULT_MODEL_NAME = "ltpa"
_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# The public names; the metadata and version helpers live in
# `serving.metadata` and `serving.versions` and are offered here too.
__all__ = [
    "DEFAULT_MODEL_NAME",
    "METADATA_FILE",
    "METADATA_VERSION",
    "export_saved_model",
    "model_versions",
    "read_metadata",
]


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
    max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS,
    warmup_requests=True,
):
    """Exports a model as a TF Serving SavedModel with attention outputs.

    Writes `<export_dir>/<name>/<version>/` (TF Serving's model base path is
    `<export_dir>/<name>`) through a hidden staging folder renamed into place
    when complete (`serving.versions`): TF Serving never sees a partial
    version, a failed export leaves nothing, and an existing version is
    never overwritten. Under JAX or PyTorch a child process running the
    TensorFlow backend exports the model (`serving.tf_process`), with the
    same result.

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
        class_names: K strings, one per class; default: the names the model
            records (from training), else `"0"`..`"K-1"`.
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
        max_request_pixels: the most pixels one request may hold in all
            (height x width summed over its images: for `serve_bytes` as
            the headers declare them, checked before decoding; for
            `serving_default` N x H x W), bounding a request's decoding work
            (default 4 x 4096 x 4096 = 2^26, about a second of decoding on
            two CPU cores); None: no limit. At least `max_image_pixels`.
        warmup_requests: write TF Serving's warm-up file
            (`assets.extra/tf_serving_warmup_requests`, one request per
            signature); skipped, and said so in the metadata, without
            tensorflow-serving-api.

    The version also holds `batching_params.pbtxt`, TF Serving batching
    parameters sized to the model's input (`warmup.batching_parameters`).
    Limits, warm-up and batching are recorded in `assets.extra/keras_ltpa.json`
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
    limits = _check_arguments(
        name, version, top_k,
        dict(max_image_pixels=max_image_pixels, max_batch_size=max_batch_size,
             max_request_pixels=max_request_pixels),
    )
    model_dir = os.path.join(os.fspath(export_dir), name)
    if version is not None:  # Refused before any work (or child process).
        free_version_dir(model_dir, name, version)
    _check_model_argument(model, class_names)
    if keras.backend.backend() != "tensorflow":
        return export_in_tensorflow_process(
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
    model = _resolve_model(model)
    facts = describe(model)
    class_names = _resolve_class_names(class_names, facts)
    top_k = min(top_k, facts["num_classes"])
    version = next_version(model_dir) if version is None else version
    version_dir = free_version_dir(model_dir, name, version)
    exported, fold_info = serving_model(model, fold_batch_norm)

    def write(path):
        predictor = _write_saved_model(exported, path, class_names, top_k, limits)
        warmup_info = _write_warmup(path, name, predictor, warmup_requests)
        batching = warmup.write_batching_file(
            path, predictor.height, predictor.width, limits["max_batch_size"]
        )
        # Recorded at the metadata's top level, beside the folding record.
        write_metadata(path, model, facts, predictor, warmup_info, {**fold_info, "batching": batching})

    publish_version(model_dir, version_dir, write)
    return version_dir


# === Checking the arguments ===


def _check_arguments(name, version, top_k, limits):
    """Checks the plain arguments; returns the limits as keyword arguments."""
    if not (isinstance(name, str) and _MODEL_NAME_PATTERN.match(name)):
        raise ValueError(
            "`name` must be a model name of letters, digits, '_', '.' or '-' "
            f"(not starting with '.' or '-'), e.g. 'ltpa'; received name={name!r}."
        )
    if version is not None and not _is_positive_int(version):
        raise ValueError(
            f"`version` must be a positive integer or None (next free version); "
            f"received version={version!r}."
        )
    if not _is_positive_int(top_k):
        raise ValueError(f"`top_k` must be a positive integer; received top_k={top_k!r}.")
    for argument, value in limits.items():
        if value is not None and not _is_positive_int(value):
            raise ValueError(
                f"`{argument}` must be a positive integer or None (no limit); "
                f"received {argument}={value!r}."
            )
    image, request = limits["max_image_pixels"], limits["max_request_pixels"]
    if None not in (image, request) and image > request:
        raise ValueError(
            f"`max_image_pixels` ({image}) is above `max_request_pixels` ({request}): "
            "a request of one such image would be refused; raise max_request_pixels "
            "or lower max_image_pixels."
        )
    return limits


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_model_argument(model, class_names):
    """A model in memory is checked with its class names; a path must exist."""
    if isinstance(model, keras.Model):
        _check_model(model)
        _check_class_names(class_names, model.output_shape[-1])
        return
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            "`model` must be a keras.Model or the path of a `.keras` file; "
            f"received {model!r}."
        )
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"Model file not found: {path!r}.")


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


# === Resolving the model and its class names ===


def _resolve_model(model):
    """The model to export: `model`, or the model its `.keras` file holds."""
    if isinstance(model, keras.Model):
        return model
    model = load_model_file(model)
    _check_model(model)
    return model


def _resolve_class_names(class_names, facts):
    """The names given, else those the model was trained with, else the ids."""
    if class_names is None and facts["class_names_recorded"]:
        class_names = facts["class_names"]
    return _check_class_names(class_names, facts["num_classes"])


# === Writing a version's files (into the staging folder) ===


def _write_saved_model(model, path, class_names, top_k, limits):
    """Writes the SavedModel with both signatures; returns its `ServingGraph`."""
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


def _write_warmup(path, name, predictor, warmup_requests):
    """Writes the warm-up file if asked; returns its metadata entry."""
    if not warmup_requests:
        return {"skipped": "warmup_requests=False"}
    return warmup.write_warmup_file(path, name, predictor.height, predictor.width)
