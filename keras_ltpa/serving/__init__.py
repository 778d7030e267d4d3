"""From a trained model to TF Serving: batch-norm folding (`folding`), the
serving graph with its input checks and limits (`signatures`), the warm-up
file (`warmup`), the SavedModel export (`export`) and a replay of TF
Serving's REST contract (`rest`). Never imports `keras_ltpa.train`."""

from keras_ltpa.serving.export import DEFAULT_MODEL_NAME
from keras_ltpa.serving.export import METADATA_FILE
from keras_ltpa.serving.export import METADATA_VERSION
from keras_ltpa.serving.export import export_saved_model
from keras_ltpa.serving.export import model_versions
from keras_ltpa.serving.export import read_metadata
from keras_ltpa.serving.rest import SERVING_SIGNATURE
from keras_ltpa.serving.rest import load_export
from keras_ltpa.serving.rest import rest_predict

__all__ = [
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
