"""TF Serving's warm-up file: written at export, read back and replayed."""

import os

import numpy as np
import pytest

from keras_ltpa.serving import export
from keras_ltpa.serving import warmup
from tests.conftest import require_package

tf_only = pytest.mark.tf_only


@tf_only
def test_warmup_records_replay_against_the_loaded_model(serving_exports):
    import tensorflow as tf

    require_package("tensorflow_serving", "serving")
    path = serving_exports["folded"]
    assert export.read_metadata(path)["warmup"] == {
        "file": warmup.WARMUP_FILE, "requests": ["serving_default", "serve_bytes"],
    }
    requests = warmup.read_warmup_file(path)
    assert [r.model_spec.signature_name for r in requests] == ["serving_default", "serve_bytes"]
    assert {r.model_spec.name for r in requests} == {"ltpa"}
    saved = tf.saved_model.load(path)
    answers = []
    for request in requests:
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        function = saved.signatures[request.model_spec.signature_name]
        answers.append({k: v.numpy() for k, v in function(**inputs).items()})
    # The two records carry the same image (as pixels, and as a PNG).
    assert answers[0]["probabilities"].shape == (1, 10)
    np.testing.assert_allclose(answers[1]["probabilities"], answers[0]["probabilities"], atol=1e-6)


@tf_only
def test_export_without_tensorflow_serving_api_skips_the_file(serving_model, tmp_path, monkeypatch):
    monkeypatch.setattr(warmup, "serving_protos", lambda: None)
    path = export.export_saved_model(serving_model, tmp_path)
    assert not os.path.exists(os.path.join(path, warmup.WARMUP_FILE))
    skipped = export.read_metadata(path)["warmup"]["skipped"]
    assert "tensorflow-serving-api is not installed" in skipped and "[serving]" in skipped
