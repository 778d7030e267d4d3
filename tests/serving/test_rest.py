"""TF Serving's REST contract replayed against exports (TensorFlow backend)."""

import json
import re

import numpy as np
import pytest

from keras_ltpa.serving import rest
from tests.conftest import PROBE_IMAGES
from tests.conftest import SERVING_CLASS_NAMES
from tests.conftest import b64
from tests.conftest import keras_outputs
from tests.conftest import max_abs
from tests.conftest import png_bytes

tf_only = pytest.mark.tf_only


@pytest.fixture(scope="module")
def half_plus_three(tmp_path_factory):
    """The documented toy model of TF Serving's REST guide: y = 0.5 x + 3."""
    import tensorflow as tf

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32, name="x")])
        def predict(self, x):
            return {"y": 0.5 * x + 3.0}

    path = str(tmp_path_factory.mktemp("half_plus_three") / "123")
    module = HalfPlusThree()
    tf.saved_model.save(module, path, signatures={"serving_default": module.predict})
    return tf.saved_model.load(path)


@tf_only
def test_rest_documented_examples(half_plus_three):
    # The request/response pairs of TF Serving's REST API guide.
    assert rest.rest_predict(half_plus_three, '{"instances": [1.0,2.0,5.0]}') == {
        "predictions": [3.5, 4.0, 5.5]
    }
    assert rest.rest_predict(half_plus_three, {"inputs": [1.0, 2.0, 5.0]}) == {
        "outputs": [3.5, 4.0, 5.5]
    }
    assert rest.rest_predict(half_plus_three, {"inputs": {"x": [0.4]}}) == {"outputs": [3.2]}
    assert rest.rest_predict(half_plus_three, {"instances": [{"x": 0.4}]}) == {
        "predictions": [3.2]
    }
    error = rest.rest_predict(half_plus_three, {"instances": ["a"]})["error"]
    assert "Type: String is not of expected type: float" in error


@tf_only
def test_rest_row_and_columnar_formats(serving_model, serving_loaded):
    saved = serving_loaded["unfolded"]
    expected = keras_outputs(serving_model, PROBE_IMAGES[:2])
    pixels = PROBE_IMAGES[:2].tolist()
    output_names = {"probabilities", "classes", "scores", "class_names"} | {
        f"attention_{j}{suffix}" for j in (1, 2, 3) for suffix in ("", "_full")
    }

    row = rest.rest_predict(saved, json.dumps({"instances": pixels}))
    named_row = rest.rest_predict(saved, {"instances": [{"images": p} for p in pixels]})
    assert row == named_row
    assert set(row) == {"predictions"} and len(row["predictions"]) == 2
    for i, prediction in enumerate(row["predictions"]):
        assert set(prediction) == output_names
        assert max_abs(prediction["probabilities"], expected["probabilities"][i]) <= 1e-5
        assert max_abs(prediction["attention_2"], expected["attention_2"][i]) <= 1e-5
        assert np.shape(prediction["attention_1_full"]) == (32, 32)
        assert all(isinstance(name, str) for name in prediction["class_names"])
        assert prediction["class_names"] == [SERVING_CLASS_NAMES[c] for c in prediction["classes"]]

    columnar = rest.rest_predict(saved, {"inputs": {"images": pixels}})
    assert rest.rest_predict(saved, {"inputs": pixels}) == columnar
    assert set(columnar) == {"outputs"} and set(columnar["outputs"]) == output_names
    assert np.shape(columnar["outputs"]["attention_3"]) == (2, 8, 8)
    assert max_abs(columnar["outputs"]["probabilities"], expected["probabilities"]) <= 1e-5
    assert columnar["outputs"]["class_names"] == [p["class_names"] for p in row["predictions"]]
    # The JSON floats are float32 values written shortest-first, like the
    # server ("0.2", not float64's "0.20000000298023224").
    scores = [value for row in columnar["outputs"]["scores"] for value in row]
    assert all(json.dumps(value) == str(np.float32(value)) for value in scores)


@tf_only
def test_rest_b64_images(serving_loaded, serving_exports):
    saved = serving_loaded["folded"]
    files = [b64(png_bytes(image)) for image in PROBE_IMAGES[:2]]
    by_pixels = rest.rest_predict(saved, {"instances": PROBE_IMAGES[:2].tolist()})
    for body in (
        {"signature_name": "serve_bytes", "instances": files},
        {"signature_name": "serve_bytes", "instances": [{"image_bytes": f} for f in files]},
    ):
        response = rest.rest_predict(saved, json.dumps(body))
        for got, want in zip(response["predictions"], by_pixels["predictions"]):
            assert max_abs(got["probabilities"], want["probabilities"]) <= 1e-6
            assert got["class_names"] == want["class_names"]
    # An export path works too; `signature_name` is the default for bodies without one.
    columnar = rest.rest_predict(
        serving_exports["folded"], {"inputs": {"image_bytes": files}}, signature_name="serve_bytes"
    )
    assert columnar["outputs"]["classes"] == [p["classes"] for p in by_pixels["predictions"]]


@tf_only
def test_rest_errors_and_recovery(serving_loaded):
    saved = serving_loaded["folded"]
    png = png_bytes(PROBE_IMAGES[0])
    errors = [
        ("{not json", r"JSON Parse error"),
        ("[1, 2]", r"Is not object"),
        ({"instances": []}, r"No values in 'instances' array"),
        ({"instances": [1], "inputs": [1]}, r"only one of 'inputs' or 'instances'"),
        ({"signature_name": "nope", "instances": [1]}, r'signature key "nope" not found'),
        ({"signature_name": 3, "instances": [1]}, r"'signature_name' key must be a string"),
        ({"foo": 1}, r"Missing 'inputs' or 'instances' key"),
        ({"instances": [[[[0.5] * 3] * 32] * 32]}, r"Number is not of expected type: uint8"),
        ({"instances": [[[[300] * 3] * 32] * 32]}, r"out of range for uint8"),
        ({"instances": [[[[1] * 4] * 32] * 32]}, r"3 channels.*\[4\]"),
        ({"instances": [[[[1, 2, 3]] * 16] * 32]}, r"32x32 pixels.*\[32\] \[16\]"),
        ({"instances": [[[1, 2, 3]] * 32]}, r"rank\] \[3\]"),
        ({"instances": [[[[1] * 3] * 32] * 32, [[[1] * 3] * 32] * 31]}, r"Expecting shape"),
        ({"instances": [{"images": 1, "extra": 2}]}, r"keys must be equal to: images"),
        (
            {"signature_name": "serve_bytes", "instances": [b64(png), b64(b"nope")]},
            r"JPEG or PNG.*\[1\]",
        ),
        ({"signature_name": "serve_bytes", "instances": [{"b64": "%%%"}]}, r"base64"),
    ]
    for body, message in errors:
        response = rest.rest_predict(saved, body)
        assert set(response) == {"error"}, body
        assert re.search(message, response["error"]), (message, response["error"])
        assert "Traceback" not in response["error"]
        ok = rest.rest_predict(saved, {"instances": PROBE_IMAGES[:1].tolist()})
        assert len(ok["predictions"]) == 1
