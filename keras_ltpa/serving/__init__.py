"""From a trained model to TF Serving: batch-norm folding (`folding`), the
serving graph with its input checks and limits (`signatures`), the warm-up
file (`warmup`), the SavedModel export (`export`) in its steps (version
folders and their atomic publishing in `versions`, the metadata file in
`metadata`, the TensorFlow child process for JAX and PyTorch models in
`tf_process`) and a replay of TF Serving's REST contract (`rest`). Never
imports `keras_ltpa.train`."""

from keras_ltpa.serving.export import DEFAULT_MODEL_NAME
from keras_ltpa.serving.export import export_saved_model
from keras_ltpa.serving.metadata import METADATA_FILE
from keras_ltpa.serving.metadata import METADATA_VERSION
from keras_ltpa.serving.metadata import read_metadata
from keras_ltpa.serving.rest import load_export
from keras_ltpa.serving.rest import rest_predict
from keras_ltpa.serving.signatures import BYTES_SIGNATURE
from keras_ltpa.serving.signatures import SERVING_SIGNATURE
from keras_ltpa.serving.versions import model_versions

__all__ = [
    "BYTES_SIGNATURE",
    "DEFAULT_MODEL_NAME",
    "METADATA_FILE",
    "METADATA_VERSION",
    "SERVING_SIGNATURE",
    "export_saved_model",
    "load_export",
    "model_versions",
    "read_metadata",
    "rest_predict",
]
