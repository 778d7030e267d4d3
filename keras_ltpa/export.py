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

`rest_predict()` answers a TF Serving REST `:predict` request body from a
loaded export, so clients and tests can replay requests without the server.
"""

import base64
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_ltpa import files
from keras_ltpa.model import attention_layer_count
from keras_ltpa.model import attention_model
from keras_ltpa.model import load_model_file

DEFAULT_MODEL_NAME = "ltpa"
SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serve_bytes"
# Files under a version's `assets.extra/` travel with it; TF Serving reads
# only its own warm-up file there.
METADATA_FILE = os.path.join("assets.extra", "keras_ltpa.json")
# Difference allowed between the folded graph and the Keras model
# (probabilities and attention maps, absolute) without further questions.
# Folding reorders float32 products and sums, which moves outputs by float32
# rounding noise: on the paper's model (random weights, randomised BN
# statistics) folded-vs-Keras reached 4e-5, while the float32 Keras model
# itself is 2.4e-5 away from a float64 evaluation and the folded one 1.8e-5.
# Beyond it, the fold must be as close to float64 as Keras is (see
# `_serving_model`).
FOLD_TOLERANCE = 1e-4
_FOLDABLE_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"


# === Batch norm folding ===


def _keras_history_names(value):
    """Names of the layers whose outputs appear in a serialised call."""
    if isinstance(value, dict):
        if "keras_history" in value:
            return [value["keras_history"][0]]
        return [n for item in value.values() for n in _keras_history_names(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _keras_history_names(item)]
    return []


def _conv_batch_norm_pairs(model):
    """(conv, batch_norm) layer pairs of one functional model that can fold.

    A pair folds when the BN layer normalises the channel axis of a plain
    convolution (no activation), and that convolution's output feeds nothing
    else: then `BN(conv(x))` is exactly one convolution.
    """
    config = model.get_config()
    consumers = collections.Counter()
    calls = {}
    for layer_config in config["layers"]:
        calls[layer_config["name"]] = len(layer_config["inbound_nodes"])
        for name in _keras_history_names(layer_config["inbound_nodes"]):
            consumers[name] += 1
    for name in _keras_history_names(config["output_layers"]):
        consumers[name] += 1

    pairs = []
    for layer_config in config["layers"]:
        layer = model.get_layer(layer_config["name"])
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        sources = _keras_history_names(layer_config["inbound_nodes"])
        if calls[layer.name] != 1 or len(sources) != 1:
            continue
        conv = model.get_layer(sources[0])
        if type(conv) not in _FOLDABLE_CONVOLUTIONS:
            continue
        channel_axis = -1 if conv.data_format == "channels_last" else 1
        rank = len(conv.output.shape)
        axis = layer.axis if isinstance(layer.axis, int) else None
        if (
            calls[conv.name] != 1
            or consumers[conv.name] != 1
            or conv.get_config()["activation"] != "linear"
            or axis is None
            or axis % rank != channel_axis % rank
        ):
            continue
        pairs.append((conv, layer))
    return pairs


def _folded_weights(conv, batch_norm):
    """Kernel and bias of the one convolution equal to `batch_norm(conv(x))`.

    With s = gamma / sqrt(var + eps): W' = W * s (per output channel) and
    b' = (b - mean) * s + beta, computed in float64.
    """
    def value(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float64")

    kernel = value(conv.kernel)
    filters = kernel.shape[-1]
    bias = value(conv.bias) if conv.use_bias else np.zeros(filters)
    gamma = value(batch_norm.gamma) if batch_norm.scale else np.ones(filters)
    beta = value(batch_norm.beta) if batch_norm.center else np.zeros(filters)
    mean = value(batch_norm.moving_mean)
    variance = value(batch_norm.moving_variance)
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    dtype = conv.kernel.dtype
    return [(kernel * scale).astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]


def _clone_functional(model, folded, fold=True, dtype=None):
    """Clones functional `model`, folding its foldable BN layers if `fold`.

    The clone has its own weights (copied, or folded); `dtype` optionally
    replaces every layer's dtype policy. `folded` collects the names of the
    convolutions that absorbed a batch norm.
    """
    pairs = _conv_batch_norm_pairs(model) if fold else []
    conv_of = {id(conv): bn for conv, bn in pairs}
    skipped = {id(bn) for _, bn in pairs}
    weights = {}

    def layer_config(layer):
        config = layer.get_config()
        if dtype is not None and "dtype" in config:
            config["dtype"] = dtype
        return config

    def clone_layer(layer):
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth"):
            return _clone_functional(layer, folded, fold, dtype)
        if id(layer) in conv_of:
            config = layer_config(layer)
            config["use_bias"] = True
            clone = layer.__class__.from_config(config)
            weights[id(clone)] = _folded_weights(layer, conv_of[id(layer)])
            return clone
        clone = layer.__class__.from_config(layer_config(layer))
        if id(layer) in skipped:
            skipped.add(id(clone))
        weights[id(clone)] = layer
        return clone

    def call_layer(layer, *args, **kwargs):
        # A folded BN passes its input through: the conv before it already
        # applies the normalisation.
        if id(layer) in skipped:
            return args[0]
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer
    )
    for layer in clone.layers:
        source = weights.get(id(layer))
        if isinstance(source, list):
            layer.set_weights(source)
            folded.append(layer.name)
        elif source is not None:
            layer.set_weights(source.get_weights())
    return clone


def fold_batch_norm(model):
    """A copy of `model` with each Conv -> BatchNormalization pair folded.

    In inference, `BN(conv(x)) = gamma * (conv(x) - mean) / sqrt(var + eps)
    + beta` is one convolution with kernel `W * s` and bias
    `(b - mean) * s + beta`, where `s = gamma / sqrt(var + eps)` per output
    channel. The copy computes the same function (up to float rounding) with
    one layer less per pair; the original model is not modified.

    Args:
        model: a functional `keras.Model` (nested functional models are
            folded too).

    Returns:
        A tuple `(folded_model, folded_layers)`: the new model and the names
        of the convolutions that absorbed a batch norm.

    Example:
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> folded, names = fold_batch_norm(model)
    >>> len(names), any("bn" in layer.name for layer in folded.layers)
    (15, False)
    """
    _check_functional(model)
    folded = []
    clone = _clone_functional(model, folded)
    return clone, folded


def _check_functional(model):
    if not (isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")):
        raise ValueError(
            "`model` must be a functional keras.Model from build_model() or a "
            f"path to its .keras file; received {model!r}."
        )


# === Serving functions ===


def _require(condition, *message):
    """An assertion whose error names the problem (`message` may hold tensors)."""
    return tf.debugging.Assert(condition, list(message), summarize=8)


def _one_after_another(*checks):
    """Builds assertions so each runs only after the previous one passed.

    Without the ordering a tensor of the wrong rank could fail a later
    check (or the model) first, with a less helpful message.
    """
    done = []
    for build in checks:
        with tf.control_dependencies(done):
            done.append(build())
    return done


def _runtime_rank(shape):
    """The rank of the fed tensor, from the values of its runtime shape.

    `tf.rank`/`tf.size(shape)` are folded to the signature's static rank
    when the graph is built or optimised, so they cannot see a tensor of
    another rank fed by TF Serving; counting the dimensions can.
    """
    return tf.reduce_sum(tf.cast(tf.greater_equal(shape, 0), tf.int32))


class _Predictor:
    """The graph shared by both signatures: pixels -> named outputs."""

    def __init__(self, model, class_names, top_k):
        self.model = attention_model(model)
        self.height, self.width = model.input_shape[1:3]
        self.class_names = list(class_names)
        self.top_k = top_k
        self.attention_count = attention_layer_count(model)

    def __call__(self, pixels):
        outputs = self.model(pixels, training=False)
        probabilities = tf.cast(outputs["probabilities"], tf.float32)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        result = {
            "probabilities": probabilities,
            "classes": classes,
            "scores": scores,
            "class_names": tf.gather(tf.constant(self.class_names), classes),
        }
        for index in range(1, self.attention_count + 1):
            attention = tf.cast(outputs[f"attention_{index}"], tf.float32)
            result[f"attention_{index}"] = attention
            result[f"attention_{index}_full"] = tf.image.resize(
                attention[..., None], (self.height, self.width), method="bilinear"
            )[..., 0]
        return result

    def serve_images(self, images):
        """`images` uint8 (N, H, W, 3), checked in the graph before use.

        TF Serving feeds tensors without comparing them to the signature's
        shape, so the checks run inside the graph.
        """
        shape = tf.shape(images)
        rank = _runtime_rank(shape)
        checks = _one_after_another(
            lambda: _require(
                tf.equal(rank, 4),
                "`images` must be a batch of images of shape (N, "
                f"{self.height}, {self.width}, 3); received a tensor of rank",
                rank,
            ),
            lambda: _require(
                tf.equal(shape[-1], 3),
                "`images` must have 3 channels (RGB); received channels:",
                shape[-1],
            ),
            lambda: _require(
                tf.logical_and(
                    tf.equal(shape[1], self.height), tf.equal(shape[2], self.width)
                ),
                f"`images` must be {self.height}x{self.width} pixels (send other "
                f"sizes as encoded files to '{BYTES_SIGNATURE}'); received "
                "height, width:",
                shape[1],
                shape[2],
            ),
            lambda: _require(
                shape[0] > 0, "`images` is an empty batch; send at least one image."
            ),
        )
        with tf.control_dependencies(checks):
            pixels = tf.cast(images, tf.float32)
        return self(pixels)

    def _decode(self, data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        size = tf.shape(image)[:2]
        same_size = tf.reduce_all(tf.equal(size, [self.height, self.width]))
        return tf.cond(
            same_size,
            lambda: tf.cast(image, tf.float32),
            # Antialiasing averages over the source pixels each output pixel
            # covers, so large photos shrink like a photo editor would.
            lambda: tf.image.resize(
                image, (self.height, self.width), method="bilinear", antialias=True
            ),
        )

    def serve_bytes(self, image_bytes):
        """`image_bytes` string (N,): JPEG or PNG files of any size."""
        rank = _runtime_rank(tf.shape(image_bytes))

        def is_image():
            def starts_with(signature):
                prefix = tf.strings.substr(image_bytes, 0, len(signature))
                return tf.equal(prefix, signature)

            return tf.logical_or(starts_with(_PNG_SIGNATURE), starts_with(_JPEG_SIGNATURE))

        checks = _one_after_another(
            lambda: _require(
                tf.equal(rank, 1),
                "`image_bytes` must be a list (N,) of encoded images; received a "
                "tensor of rank",
                rank,
            ),
            lambda: _require(
                tf.size(image_bytes) > 0,
                "`image_bytes` is an empty batch; send at least one image.",
            ),
            lambda: _require(
                tf.reduce_all(is_image()),
                "`image_bytes` must hold JPEG or PNG files; these entries "
                "(0-based) are neither:",
                tf.where(tf.logical_not(is_image()))[:, 0],
            ),
        )
        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)
        pixels = tf.map_fn(
            self._decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec((self.height, self.width, 3), tf.float32),
        )
        return self(pixels)


# === Export ===


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
    _check_functional(model)
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


def _checked_outputs(model, images):
    """Probabilities and attention maps of `model` on `images`, as float64."""
    outputs = attention_model(model)(images, training=False)
    return {
        key: np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")
        for key, value in outputs.items()
        if key == "probabilities" or key.startswith("attention_")
    }


def _max_difference(outputs, other):
    return max(float(np.max(np.abs(outputs[key] - other[key]))) for key in outputs)


def _probe_images(height, width, count=4, seed=1234):
    rng = np.random.default_rng(seed)
    # Smooth random images: closer to photos than white noise, so the check
    # exercises attention maps that are not flat.
    coarse = rng.uniform(0, 255, (count, max(1, height // 4), max(1, width // 4), 3))
    images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :height, :width]
    images = images + rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype("uint8")


def _serving_model(model, fold):
    """The model to export and the metadata of its batch-norm folding.

    The fold is accepted when the folded model's outputs are within
    `FOLD_TOLERANCE` of the Keras model's, or no further from a float64
    evaluation than twice the Keras model's own float32 error (a model with
    huge logits has float32 noise above any fixed tolerance). The check runs
    in float32 whatever the model's policy: folding is a property of the
    weights, and bfloat16 noise would hide a wrong fold.
    """
    info = {"batch_norm_folded": False, "folded_layers": [], "fold_max_difference": None}
    if not fold:
        return model, info
    folded, names = fold_batch_norm(model)
    if not names:
        return model, info
    if model.dtype_policy.compute_dtype == "float32":
        reference, candidate = model, folded
    else:
        reference = _clone_functional(model, [], fold=False, dtype="float32")
        candidate = _clone_functional(model, [], fold=True, dtype="float32")
    exact = _clone_functional(model, [], fold=False, dtype="float64")
    images = _probe_images(*model.input_shape[1:3]).astype("float32")
    outputs = {
        key: _checked_outputs(each, images)
        for key, each in (("keras", reference), ("folded", candidate), ("exact", exact))
    }
    difference = _max_difference(outputs["keras"], outputs["folded"])
    float32_error = _max_difference(outputs["keras"], outputs["exact"])
    folded_error = _max_difference(outputs["folded"], outputs["exact"])
    info.update(
        fold_max_difference=difference,
        keras_float32_error=float32_error,
        folded_float32_error=folded_error,
    )
    if not (difference <= FOLD_TOLERANCE or folded_error <= 2 * float32_error):
        warnings.warn(
            f"Batch norm folding changed the outputs by {difference:.3g} (more than "
            f"{FOLD_TOLERANCE:g}, and {folded_error:.3g} from a float64 evaluation "
            f"where the Keras model is {float32_error:.3g} away); exporting the "
            "unfolded model instead.",
            stacklevel=3,
        )
        return model, info
    info.update(batch_norm_folded=True, folded_layers=names)
    return folded, info


def _write_saved_model(model, path, class_names, top_k):
    predictor = _Predictor(model, class_names, top_k)
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
    from keras_ltpa.export import export_saved_model
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
        )
    if not isinstance(model, keras.Model):
        model = load_model_file(model)
        _check_model(model)
    num_classes = model.output_shape[-1]
    class_names = _check_class_names(class_names, num_classes)
    top_k = min(top_k, num_classes)

    if version is None:
        versions = model_versions(model_dir)
        version = versions[-1] + 1 if versions else 1
    version_dir = _free_version_dir(model_dir, name, version)

    serving_model, fold_info = _serving_model(model, fold_batch_norm)

    def write(path):
        predictor = _write_saved_model(serving_model, path, class_names, top_k)
        metadata = {
            "format": "keras_ltpa SavedModel",
            "model": model.name,
            "input_shape": list(model.input_shape[1:]),
            "num_classes": num_classes,
            "class_names": class_names,
            "top_k": top_k,
            "attention_layers": predictor.attention_count,
            "signatures": {
                SERVING_SIGNATURE: {"images": "uint8 (None, H, W, 3)"},
                BYTES_SIGNATURE: {"image_bytes": "string (None,) JPEG or PNG"},
            },
            **fold_info,
            "versions": {
                "keras_ltpa": _package_version(),
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            },
        }
        os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
        with open(os.path.join(path, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)

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


# === TF Serving REST contract ===


class _RestError(Exception):
    """An error TF Serving reports as `{"error": message}`."""


def _json_value_text(value):
    return json.dumps(value, allow_nan=True)[:200]


def _json_type(value):
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _json_leaf(value, dtype):
    """One JSON value converted to `dtype` as TF Serving's JSON mapping does."""
    def type_error():
        return _RestError(
            f"JSON Value: {_json_value_text(value)} Type: {_json_type(value)} is "
            f"not of expected type: {dtype.name}"
        )

    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise _RestError("Unable to base64 decode") from None
        if isinstance(value, dict):
            raise _RestError(
                f"JSON Value: {_json_value_text(value)} not formatted correctly for "
                "base64 data"
            )
        raise type_error()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error()
    if dtype.is_integer:
        if not isinstance(value, int):
            raise type_error()
        if not dtype.min <= value <= dtype.max:
            raise _RestError(
                f"JSON Value: {value} is out of range for {dtype.name} "
                f"[{dtype.min}, {dtype.max}]"
            )
        return value
    if dtype.is_floating:
        return float(value)
    raise _RestError(f"Conversion of JSON Value: {_json_value_text(value)} to type: {dtype.name}")


def _json_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _json_to_array(value, dtype):
    """A dense tensor from nested JSON lists, checked level by level."""
    shape = _json_shape(value)
    leaves = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _RestError(
                    f"JSON Value: {_json_value_text(item)} found at incorrect level: "
                    f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}"
                )
            leaves.append(_json_leaf(item, dtype))
            return
        if level >= len(shape):
            raise _RestError(
                f"Encountered list at unexpected level: {level} expected < {len(shape)}"
            )
        if len(item) != shape[level]:
            raise _RestError(
                f"Encountered list at unexpected size: {len(item)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    return np.array(leaves, dtype=numpy_dtype).reshape(shape)


def _inputs_from_instances(instances, specs):
    """Row format: one JSON item per example, stacked along a new batch axis."""
    names = sorted(specs)

    def is_object(item):
        return isinstance(item, dict) and not _is_b64(item)

    if not is_object(instances[0]) and len(names) > 1:
        raise _RestError(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    named = is_object(instances[0])
    columns = {name: [] for name in names}
    for index, item in enumerate(instances):
        if named:
            if not is_object(item):
                raise _RestError(f"Expecting object but got list at item {index} of input list")
            if set(item) != set(names):
                raise _RestError(
                    f"Failed to process element: {index} of 'instances' list. JSON "
                    f"object: {_json_value_text(item)} keys must be equal to: "
                    f"{','.join(names)}"
                )
            pairs = [(name, item[name]) for name in names]
        else:
            if is_object(item):
                raise _RestError(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            pairs = [(names[0], item)]
        for name, value in pairs:
            try:
                array = _json_to_array(value, specs[name].dtype)
            except _RestError as error:
                key = f" key: {name}" if named else ""
                raise _RestError(
                    f"Failed to process element: {index}{key} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {error}"
                ) from None
            if columns[name] and array.shape != columns[name][0].shape:
                raise _RestError(
                    f"Failed to process element: {index} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: Expecting shape {list(columns[name][0].shape)} "
                    f"but got: {list(array.shape)}"
                )
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _inputs_from_columns(inputs, specs):
    """Columnar format: the whole tensor per input name."""
    names = sorted(specs)
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise _RestError(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        return {names[0]: _json_to_array(inputs, specs[names[0]].dtype)}
    arrays = {}
    for name in names:
        if name not in inputs:
            raise _RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _json_to_array(inputs[name], specs[name].dtype)
    extra = sorted(set(inputs) - set(names))
    if extra:
        raise _RestError(
            f"input size does not match signature: {len(inputs)}!={len(names)} "
            f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(names)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{}}."
        )
    return arrays


def _float_json(value):
    # Shortest decimal that reads back as the same float32, as TF Serving
    # writes floats (0.2, not 0.20000000298023224).
    return float(str(np.float32(value)))


def _to_json(array, binary):
    """A numpy array as nested JSON lists (bytes as UTF-8 or {"b64": ...})."""
    if array.dtype == object or array.dtype.kind == "S":
        if binary:
            convert = lambda b: {"b64": base64.b64encode(b).decode("ascii")}
        else:
            convert = lambda b: b.decode("utf-8", errors="replace")
    elif array.dtype.kind == "f":
        convert = _float_json
    elif array.dtype.kind == "b":
        convert = bool
    else:
        convert = int

    def walk(item):
        if isinstance(item, np.ndarray):
            return [walk(element) for element in item]
        return convert(item)

    return walk(array)


def _error_text(error):
    """TF's error message without the Python-side execution banner."""
    message = getattr(error, "message", None) or str(error)
    lines = [
        line
        for line in message.splitlines()
        if line.strip()
        and not line.startswith(("Graph execution error", "Detected at node"))
        and line.strip() != "<stack traces unavailable>"
        and not line.lstrip().startswith("[[")
    ]
    text = " ".join(line.strip() for line in lines)
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text)


def load_export(path):
    """`tf.saved_model.load` of an export directory, with a clear error."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"No SavedModel (saved_model.pb) found in {path!r}.")
    return tf.saved_model.load(path)


def rest_predict(loaded, request_body, signature_name=None):
    """The body TF Serving's REST `:predict` would answer to `request_body`.

    Follows TF Serving's documented JSON mapping: the `instances` row format
    (a list with one item per example; objects keyed by input name when a
    signature has several inputs) and the `inputs` columnar format, binary
    strings as `{"b64": "..."}`, an optional `"signature_name"`. The answer
    is `{"predictions": [...]}` for the row format (one object per example,
    keyed by output name, when there are several outputs) or
    `{"outputs": {...}}` for the columnar format; errors are
    `{"error": "..."}`. Output names ending in `_bytes` are sent as
    `{"b64": ...}`; other strings as text. Integer values out of the input
    dtype's range are reported as errors (the server would wrap them).

    Args:
        loaded: the object returned by `tf.saved_model.load`, or the path of
            an export (version) directory.
        request_body: the request, a JSON string/bytes or an already decoded
            dict.
        signature_name: signature used when the body names none; default
            `"serving_default"`.

    Returns:
        The response body as a dict (serialise with `json.dumps`).

    Example:
    >>> body = {"instances": [{"b64": base64.b64encode(png).decode()}],
    ...         "signature_name": "serve_bytes"}  # doctest: +SKIP
    >>> rest_predict(loaded, body)["predictions"][0]["class_names"]  # doctest: +SKIP
    ['cat', 'dog', ...]
    """
    if isinstance(loaded, (str, os.PathLike)):
        loaded = load_export(loaded)
    try:
        return _rest_predict(loaded, request_body, signature_name)
    except _RestError as error:
        return {"error": str(error)}


def _rest_predict(loaded, request_body, signature_name):
    if isinstance(request_body, (bytes, bytearray)):
        request_body = request_body.decode("utf-8", errors="replace")
    if isinstance(request_body, str):
        if not request_body.strip():
            raise _RestError("JSON Parse error: The document is empty")
        try:
            request_body = json.loads(request_body)
        except json.JSONDecodeError as error:
            raise _RestError(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    if not isinstance(request_body, dict):
        raise _RestError(f"JSON Value: {_json_value_text(request_body)} Is not object")
    name = request_body.get("signature_name", signature_name or SERVING_SIGNATURE)
    if not isinstance(name, str):
        raise _RestError(
            f"JSON Value: {_json_value_text(request_body)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    if name not in loaded.signatures:
        raise _RestError(f'Serving signature key "{name}" not found.')
    function = loaded.signatures[name]
    specs = function.structured_input_signature[1]

    has_instances = "instances" in request_body
    has_inputs = "inputs" in request_body
    if has_instances and has_inputs:
        raise _RestError(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' "
            "keys to exist"
        )
    if has_instances:
        instances = request_body["instances"]
        if not isinstance(instances, list):
            raise _RestError("Excepting 'instances' to be an list/array")
        if not instances:
            raise _RestError("No values in 'instances' array")
        arrays = _inputs_from_instances(instances, specs)
    elif has_inputs:
        arrays = _inputs_from_columns(request_body["inputs"], specs)
    else:
        raise _RestError("Missing 'inputs' or 'instances' key")

    try:
        tensors = {
            key: tf.constant(value, dtype=specs[key].dtype) for key, value in arrays.items()
        }
        outputs = function(**tensors)
    except (tf.errors.OpError, TypeError, ValueError) as error:
        raise _RestError(_error_text(error)) from None
    outputs = {key: value.numpy() for key, value in sorted(outputs.items())}

    if has_inputs:
        if len(outputs) == 1:
            ((key, value),) = outputs.items()
            return {"outputs": _to_json(value, key.endswith("_bytes"))}
        return {
            "outputs": {
                key: _to_json(value, key.endswith("_bytes")) for key, value in outputs.items()
            }
        }
    batch_sizes = {key: value.shape[0] if value.ndim else None for key, value in outputs.items()}
    for key, size in batch_sizes.items():
        if size is None:
            raise _RestError(f"Tensor name: {key} has no shape information ")
    first = next(iter(batch_sizes.values()))
    for key, size in batch_sizes.items():
        if size != first:
            raise _RestError(
                f"Tensor name: {key} has inconsistent batch size: {size} expecting: {first}"
            )
    columns = {key: _to_json(value, key.endswith("_bytes")) for key, value in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {
        "predictions": [{key: column[i] for key, column in columns.items()} for i in range(first)]
    }
