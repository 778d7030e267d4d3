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


@pytest.mark.parametrize(
    "size, limit, expected",
    [
        # Batch pixels at most 8 x 224 x 224 = 401,408, in a power of two of
        # images, at most 32 (and the export's limit); queued pixels at most
        # 64 x 32 x 32 x 32 = 2,097,152, at least 2 batches.
        (32, None, (32, 64)),  # 392 images fit: 32; 2,097,152 / 32,768
        (128, None, (16, 8)),  # 24 fit: 16; 2,097,152 / 262,144
        (224, None, (8, 5)),  # 8 fit; 2,097,152 / 401,408 = 5.2
        (224, 4, (4, 10)),  # the export's limit of 4; 2,097,152 / 200,704 = 10.4
        (512, None, (1, 8)),  # 1.5 fit: 1; 2,097,152 / 262,144
        (1024, None, (1, 2)),  # 0.4 fit: 1; 2 / 1,048,576 -> at least 2
    ],
)
def test_batching_values_follow_the_input_size(size, limit, expected):
    values = warmup.batching_parameters(size, size, limit)
    assert (values["max_batch_size"], values["max_enqueued_batches"]) == expected
    sizes = values["allowed_batch_sizes"]
    assert sizes[0] == 1 and sizes[-1] == values["max_batch_size"]
    assert all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert values["batch_timeout_micros"] == 5000 and values["num_batch_threads"] == 1


@tf_only
def test_a_224px_export_warms_up_and_batches_at_its_size(tmp_path):
    """A 224-px export: its warm-up requests carry 224 x 224 images (pixels
    and a PNG of that size) and replay; its batching file merges at most 8."""
    import tensorflow as tf

    from keras_ltpa import build_model
    from tests.serving.test_export import _read_batching_file

    require_package("tensorflow_serving", "serving")
    model = build_model(3, (224, 224, 3), width_multiplier=0.0625)
    path = export.export_saved_model(model, tmp_path)
    requests = warmup.read_warmup_file(path)
    pixels = tf.make_ndarray(requests[0].inputs["images"])
    (png,) = tf.make_ndarray(requests[1].inputs["image_bytes"])
    assert pixels.shape == (1, 224, 224, 3)
    assert tf.io.decode_png(png).shape == (224, 224, 3)
    saved = tf.saved_model.load(path)
    default = saved.signatures["serving_default"](images=pixels)["probabilities"].numpy()
    from_bytes = saved.signatures["serve_bytes"](image_bytes=[png])["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, default, atol=1e-6)
    assert _read_batching_file(path) == {
        "max_batch_size": 8, "batch_timeout_micros": 5000, "max_enqueued_batches": 5,
        "num_batch_threads": 1, "allowed_batch_sizes": [1, 2, 4, 8],
    }
