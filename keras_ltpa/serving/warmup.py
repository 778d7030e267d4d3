"""TF Serving's warm-up file: requests replayed when a model version loads.

TF Serving reads `assets.extra/tf_serving_warmup_requests` of a version, a
TFRecord file of `tensorflow.serving.PredictionLog` records, and runs each
request before it marks the version available, so the first real request
does not pay for graph initialisation. `write_warmup_file` writes one
`PredictRequest` per signature (a batch of one image each); the protos come
from `tensorflow-serving-api` (the `[serving]` extra). Without it the export
still works and its metadata says the file was skipped.
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
