"""TF Serving's warm-up file and the version's own batching parameters.

TF Serving reads `assets.extra/tf_serving_warmup_requests` of a version, a
TFRecord file of `tensorflow.serving.PredictionLog` records, and runs each
request before it marks the version available, so the first real request
does not pay for graph initialisation. `write_warmup_file` writes one
`PredictRequest` per signature (a batch of one image each, at the model's
input size): the first call of a signature pays its setup (on a 2-core CPU
at 224 px: 0.35-0.47 s for ResNet50 against 68 ms steady, 1.5-3.8 s for
MobileNetV3Small against 45 ms), and once one
batch size has run, the first call at another costs no more than the steady
ones (docs/serving.md, "Exporting a 224-px model"), so larger warm-up
batches would only lengthen loading. The protos come from
`tensorflow-serving-api` (the `[serving]` extra). Without it the export
still works and its metadata says the file was skipped.

`write_batching_file` writes `batching_params.pbtxt` into the version: the
BatchingParameters TF Serving reads per model with `--enable_batching
--enable_per_model_batching_parameters`, sized to the model's input
(`batching_parameters`).
"""

import os

import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SERVING_EXTRA = "pip install 'keras-ltpa[serving]' (tensorflow-serving-api)"


def serving_protos():
    """`(predict_pb2, prediction_log_pb2)`, or None without tensorflow-serving-api."""
    try:
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        return None
    return predict_pb2, prediction_log_pb2


# === Batching parameters, by the model's input size ===

BATCHING_FILE = "batching_params.pbtxt"

# The 32-px values (saved_models/batching_parameters.txt, where the reasons
# are): 32 images a batch, 5 ms timeout, 64 batches queued, one batch thread.
MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_MICROS = 5000
NUM_BATCH_THREADS = 1
# One merged batch holds at most 8 images of 224 x 224 pixels. On a 2-core
# CPU (benchmarks/results/serving_*_224px*.json) batching a 224-px model pays
# where the matrix units want larger work (bfloat16: ResNet50 68 -> 25 ms per
# image from batch 1 to 8, MobileNetV3Small 44 -> 11-14 ms), not in float32
# (ResNet50 105 -> 113 ms), and a full batch of 8 already takes 0.1-0.9 s,
# the latency every request in it sees. 32-px batches stay at 32 images.
BATCH_PIXELS = 8 * 224 * 224
# Requests waiting are bounded by their pixels, which the decoding and the
# network's work grow with: the 32-px file's 64 batches of 32 images.
QUEUED_PIXELS = 64 * 32 * 32 * 32


def batching_parameters(height, width, max_batch_size=None):
    """TF Serving batching values for a model of `height` x `width` input.

    The largest power of two of images (at most 32) whose pixels fit
    `BATCH_PIXELS`, at least 1 and at most the export's `max_batch_size`
    limit; batches padded to powers of two up to it; as many batches queued
    as fit `QUEUED_PIXELS` (at least 2). A 32-px model gets the values of
    saved_models/batching_parameters.txt.

    Example:
    >>> batching_parameters(32, 32)["allowed_batch_sizes"]
    [1, 2, 4, 8, 16, 32]
    >>> values = batching_parameters(224, 224)
    >>> values["max_batch_size"], values["max_enqueued_batches"]
    (8, 5)
    """
    largest = max(1, min(MAX_BATCH_SIZE, BATCH_PIXELS // (height * width)))
    if max_batch_size is not None:
        largest = min(largest, max_batch_size)
    largest = 1 << (largest.bit_length() - 1)  # a power of two
    return {
        "max_batch_size": largest,
        "batch_timeout_micros": BATCH_TIMEOUT_MICROS,
        "max_enqueued_batches": max(2, QUEUED_PIXELS // (largest * height * width)),
        "num_batch_threads": NUM_BATCH_THREADS,
        "allowed_batch_sizes": [1 << i for i in range(largest.bit_length())],
    }


def batching_text(values):
    """`values` (from `batching_parameters`) as a text BatchingParameters."""
    lines = [
        "# TF Serving batching parameters of this version (text BatchingParameters), read",
        "# with --enable_batching --enable_per_model_batching_parameters; written by",
        "# keras_ltpa.serving.warmup.batching_parameters (its docstring gives the reasons).",
    ]
    for key in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        lines.append(f"{key} {{ value: {values[key]} }}")
    lines += [f"allowed_batch_sizes: {size}" for size in values["allowed_batch_sizes"]]
    lines.append("pad_variable_length_inputs: false")
    return "\n".join(lines) + "\n"


def write_batching_file(version_dir, height, width, max_batch_size=None):
    """Writes `batching_params.pbtxt` into an export's folder; returns the
    values (for the metadata), with `file`."""
    values = batching_parameters(height, width, max_batch_size)
    with open(os.path.join(version_dir, BATCHING_FILE), "w", encoding="utf-8") as file:
        file.write(batching_text(values))
    return {"file": BATCHING_FILE, **values}


# === The warm-up file ===


def warmup_inputs(height, width):
    """One request's inputs per signature: a smooth test image, as pixels and
    as a PNG file."""
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    cols = np.linspace(255, 0, width, dtype=np.float32)[None, :, None]
    image = np.broadcast_to((rows + cols) / 2, (height, width, 3)).astype(np.uint8)
    return {
        "serving_default": {"images": image[None]},
        "serve_bytes": {"image_bytes": np.array([tf.io.encode_png(image).numpy()], dtype=object)},
    }


def write_warmup_file(version_dir, model_name, height, width):
    """Writes the warm-up file into an export's folder.

    Returns:
        A dict for the export's metadata: `file` (the path inside the
        version) and `requests` (signature names), or `skipped` (why).
    """
    protos = serving_protos()
    if protos is None:
        return {"skipped": f"tensorflow-serving-api is not installed: {SERVING_EXTRA}"}
    predict_pb2, prediction_log_pb2 = protos
    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    signatures = []
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in warmup_inputs(height, width).items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
            signatures.append(signature)
    return {"file": WARMUP_FILE, "requests": signatures}


def read_warmup_file(version_dir):
    """The `PredictRequest`s of an export's warm-up file, in order."""
    protos = serving_protos()
    if protos is None:
        raise ValueError(f"Reading a warm-up file needs tensorflow-serving-api: {SERVING_EXTRA}.")
    _, prediction_log_pb2 = protos
    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(version_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests
