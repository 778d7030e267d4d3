"""SavedModel export: signatures against Keras, TF-only loading, REST replay."""

import base64
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_ltpa import attention_model
from keras_ltpa import build_model
from keras_ltpa import export
from tests.conftest import require_backend_package

WIDTH = 0.0625
CLASS_NAMES = [f"class {i}" for i in range(10)]
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
tf_only = pytest.mark.tf_only


def randomize_batch_norm(model, seed=0):
    """Trained-like BN statistics, so that folding has something to fold."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.5, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, channels).astype("float32"))


def tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = build_model(10, width_multiplier=WIDTH, **kwargs)
    randomize_batch_norm(model, seed)
    return model


def keras_outputs(model, images):
    images = np.asarray(images, "float32")
    if keras.backend.backend() == "jax":
        # One compiled step; JAX's op-by-op eager calls are far slower here.
        return attention_model(model).predict_on_batch(images)
    outputs = attention_model(model)(images, training=False)
    return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


IMAGES = export._probe_images(32, 32, count=3, seed=7)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """The same model exported unfolded (version 1) and folded (version 2)."""
    root = tmp_path_factory.mktemp("saved_models")
    unfolded = export.export_saved_model(
        model, root, class_names=CLASS_NAMES, top_k=3, fold_batch_norm=False
    )
    folded = export.export_saved_model(model, root, class_names=CLASS_NAMES, top_k=3)
    return {"root": root, "unfolded": unfolded, "folded": folded}


@pytest.fixture(scope="module")
def loaded(exports):
    import tensorflow as tf

    return {key: tf.saved_model.load(exports[key]) for key in ("unfolded", "folded")}


def png_bytes(image):
    import tensorflow as tf

    return tf.io.encode_png(image).numpy()


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


# === Batch norm folding (every backend) ===


def test_fold_batch_norm_removes_bn_and_keeps_outputs(model):
    folded, names = export.fold_batch_norm(model)
    # 13 VGG convolutions + 2 in block 6, each followed by its own BN.
    assert len(names) == 15 and "block3_conv3" in names
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    assert all(folded.get_layer(name).use_bias for name in names)
    expected, actual = keras_outputs(model, IMAGES), keras_outputs(folded, IMAGES)
    for key in ("probabilities", "attention_1", "attention_2", "attention_3"):
        assert max_abs(expected[key], actual[key]) <= export.FOLD_TOLERANCE, key
    # The original is untouched and still usable.
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    np.testing.assert_allclose(keras_outputs(model, IMAGES)["logits"], expected["logits"])


def test_folded_weights_equal_batch_norm_algebra(model):
    conv, bn = model.get_layer("block4_conv2"), model.get_layer("block4_bn2")
    kernel, bias = export._folded_weights(conv, bn)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, conv.kernel.shape[2])).astype("float32")
    expected = keras.ops.convert_to_numpy(bn(conv(x), training=False))
    fresh = keras.layers.Conv2D(conv.filters, 3, padding="same")
    fresh.build(x.shape)
    fresh.set_weights([kernel, bias])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(x)), expected, atol=1e-5)


def test_fold_leaves_shared_or_activated_convolutions_alone():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="shared_conv")(inputs)
    b = keras.layers.BatchNormalization(name="bn_a")(a)
    c = keras.layers.Add()([a, b])  # the conv output feeds BN and Add
    d = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(c)
    e = keras.layers.BatchNormalization(name="bn_b")(d)
    f = keras.layers.Conv2D(4, 3, padding="same", name="plain_conv")(e)
    g = keras.layers.BatchNormalization(name="bn_c")(f)
    model = keras.Model(inputs, g)
    folded, names = export.fold_batch_norm(model)
    assert names == ["plain_conv"]
    assert {"bn_a", "bn_b"} <= {layer.name for layer in folded.layers}
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_fold_batch_norm_rejects_non_functional():
    with pytest.raises(ValueError, match="functional keras.Model"):
        export.fold_batch_norm(keras.layers.Dense(2))


# === Signatures against Keras ===


@tf_only
def test_serving_default_matches_keras(model, loaded):
    import tensorflow as tf

    expected = keras_outputs(model, IMAGES)
    top3 = np.argsort(-expected["probabilities"], axis=1)[:, :3]
    for key, tolerance in (("unfolded", 1e-5), ("folded", export.FOLD_TOLERANCE)):
        out = loaded[key].signatures["serving_default"](images=tf.constant(IMAGES))
        out = {name: value.numpy() for name, value in out.items()}
        assert out["probabilities"].dtype == np.float32
        assert max_abs(out["probabilities"], expected["probabilities"]) <= tolerance
        for j, size in ((1, 32), (2, 16), (3, 8)):
            attention = out[f"attention_{j}"]
            assert attention.shape == (3, size, size)
            assert max_abs(attention, expected[f"attention_{j}"]) <= tolerance
            np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=1e-5)
            full = tf.image.resize(expected[f"attention_{j}"][..., None], (32, 32))[..., 0]
            assert out[f"attention_{j}_full"].shape == (3, 32, 32)
            assert max_abs(out[f"attention_{j}_full"], full) <= tolerance
        np.testing.assert_array_equal(out["classes"], top3)
        np.testing.assert_allclose(
            out["scores"], np.take_along_axis(expected["probabilities"], top3, 1), atol=tolerance
        )
        names = np.array(CLASS_NAMES, dtype=object)[top3]
        assert [[n.decode() for n in row] for row in out["class_names"]] == names.tolist()


@tf_only
def test_folded_export_is_as_accurate_as_keras(model, loaded, exports):
    """Against a float64 evaluation, folding adds no more than float32 noise."""
    import tensorflow as tf

    keras.config.set_dtype_policy("float64")
    exact = build_model(10, width_multiplier=WIDTH)
    keras.config.set_dtype_policy("float32")
    exact.set_weights([w.astype("float64") for w in model.get_weights()])
    truth = keras_outputs(exact, IMAGES)
    keras_error = max_abs(keras_outputs(model, IMAGES)["attention_1"], truth["attention_1"])
    out = loaded["folded"].signatures["serving_default"](images=tf.constant(IMAGES))
    folded_error = max_abs(out["attention_1"].numpy(), truth["attention_1"])
    assert folded_error <= 4 * keras_error + 1e-6
    with open(os.path.join(exports["folded"], export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["batch_norm_folded"] is True
    assert len(metadata["folded_layers"]) == 15
    assert metadata["fold_max_difference"] <= export.FOLD_TOLERANCE
    assert metadata["class_names"] == CLASS_NAMES and metadata["top_k"] == 3


@tf_only
def test_folded_graph_has_no_batch_norm_ops(loaded):
    def op_types(saved):
        graph = saved.signatures["serving_default"].graph.as_graph_def()
        types = [node.op for node in graph.node]
        for function in graph.library.function:
            types += [node.op for node in function.node_def]
        return types

    # Keras inference BN is rsqrt(var + eps) * gamma ...; nothing else in the
    # model takes a reciprocal square root.
    assert "Rsqrt" in op_types(loaded["unfolded"])
    assert "Rsqrt" not in op_types(loaded["folded"])


@tf_only
def test_serve_bytes_decodes_png_and_jpeg(model, loaded, shared_data_dir):
    import tensorflow as tf

    serve_bytes = loaded["unfolded"].signatures["serve_bytes"]
    serving = loaded["unfolded"].signatures["serving_default"]
    # A PNG at the input size: lossless, so exactly the uint8 path.
    from_png = serve_bytes(image_bytes=tf.constant([png_bytes(IMAGES[0]), png_bytes(IMAGES[1])]))
    from_pixels = serving(images=tf.constant(IMAGES[:2]))
    for key in from_pixels:
        if from_pixels[key].dtype == tf.float32:
            assert max_abs(from_png[key].numpy(), from_pixels[key].numpy()) <= 1e-6, key
    # A real photo of another size (and a grayscale PNG) is resized in the graph.
    horse_path = sorted((shared_data_dir / "weizmann_horse" / "rgb").glob("*.jpg"))[0]
    horse = horse_path.read_bytes()
    gray = png_bytes(IMAGES[2].mean(axis=-1, keepdims=True).astype("uint8"))
    out = serve_bytes(image_bytes=tf.constant([horse, gray]))
    decoded = [
        tf.io.decode_image(data, channels=3, expand_animations=False) for data in (horse, gray)
    ]
    assert decoded[0].shape[0] != 32
    pixels = np.stack(
        [tf.image.resize(decoded[0], (32, 32), antialias=True).numpy(), np.asarray(decoded[1], "float32")]
    )
    expected = keras_outputs(model, pixels)
    assert max_abs(out["probabilities"].numpy(), expected["probabilities"]) <= 1e-5
    assert max_abs(out["attention_2"].numpy(), expected["attention_2"]) <= 1e-5
    assert out["attention_1_full"].shape == (2, 32, 32)


@tf_only
def test_baseline_without_attention_exports(tmp_path):
    import tensorflow as tf

    model = tiny_model(variant="noatt")
    path = export.export_saved_model(model, tmp_path, top_k=20)
    out = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(IMAGES))
    assert set(out) == {"probabilities", "classes", "scores", "class_names"}
    assert out["classes"].shape == (3, 10)  # top_k capped at the class count
    expected = keras_outputs(model, IMAGES)
    assert max_abs(out["probabilities"].numpy(), expected["probabilities"]) <= 1e-4


@tf_only
def test_mixed_precision_model_exports(tmp_path):
    """A bfloat16 model exports in bfloat16 with float32 outputs; its fold is
    checked on float32 copies (bfloat16 noise would hide a wrong fold)."""
    import tensorflow as tf

    keras.config.set_dtype_policy("mixed_bfloat16")
    model = tiny_model(variant="att2-indep-dp-after")
    keras.config.set_dtype_policy("float32")
    unfolded = export.export_saved_model(model, tmp_path, fold_batch_norm=False)
    out = tf.saved_model.load(unfolded).signatures["serving_default"](images=tf.constant(IMAGES))
    assert {key: value.dtype for key, value in out.items()} == {
        **{key: tf.float32 for key in ("probabilities", "scores")},
        **{f"attention_{j}{s}": tf.float32 for j in (1, 2) for s in ("", "_full")},
        "classes": tf.int32,
        "class_names": tf.string,
    }
    expected = keras_outputs(model, IMAGES)
    assert max_abs(out["probabilities"].numpy(), expected["probabilities"]) <= 1e-5
    assert max_abs(out["attention_2"].numpy(), expected["attention_2"]) <= 1e-5
    folded = export.export_saved_model(model, tmp_path)
    with open(os.path.join(folded, export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["batch_norm_folded"] is True
    assert (
        metadata["fold_max_difference"] <= export.FOLD_TOLERANCE
        or metadata["folded_float32_error"] <= 2 * metadata["keras_float32_error"]
    )


# === TF Serving's view ===


@tf_only
def test_saved_model_cli_lists_both_signatures(exports):
    result = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--all", "--dir", exports["folded"]],
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout
    blocks = re.split(r"signature_def\['", text)
    signatures = {block.split("'")[0]: block for block in blocks[1:]}
    assert {"serving_default", "serve_bytes"} <= set(signatures)

    def tensor(block, kind, name):
        section = block.split(f"The given SavedModel SignatureDef contains the following {kind}")[1]
        match = re.search(
            rf"\['{name}'\] tensor_info:\s+dtype: (\w+)\s+shape: \(([^)]*)\)", section
        )
        assert match, (name, block)
        return match.group(1), match.group(2).replace(" ", "").rstrip(",")

    outputs = {
        "probabilities": ("DT_FLOAT", "-1,10"),
        "classes": ("DT_INT32", "-1,3"),
        "scores": ("DT_FLOAT", "-1,3"),
        "class_names": ("DT_STRING", "-1,3"),
        "attention_1": ("DT_FLOAT", "-1,32,32"),
        "attention_2": ("DT_FLOAT", "-1,16,16"),
        "attention_3": ("DT_FLOAT", "-1,8,8"),
        "attention_3_full": ("DT_FLOAT", "-1,32,32"),
    }
    inputs = {
        "serving_default": ("images", ("DT_UINT8", "-1,32,32,3")),
        "serve_bytes": ("image_bytes", ("DT_STRING", "-1")),
    }
    for signature, (input_name, expected) in inputs.items():
        block = signatures[signature]
        assert tensor(block, "input(s)", input_name) == expected
        for name, expected_output in outputs.items():
            assert tensor(block, "output(s)", name) == expected_output, (signature, name)


@tf_only
def test_export_runs_with_tensorflow_alone(model, exports):
    """TF Serving has neither Keras nor keras_ltpa: load and run without them."""
    script = textwrap.dedent(
        """
        import base64, json, sys
        for blocked in ("keras", "keras_ltpa", "tf_keras"):
            sys.modules[blocked] = None  # any import of them now fails
        import numpy as np
        import tensorflow as tf

        path, images = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype="uint8")
        loaded = tf.saved_model.load(path)
        pixels = loaded.signatures["serving_default"](images=tf.constant(images))
        files = tf.constant([tf.io.encode_png(image).numpy() for image in images])
        encoded = loaded.signatures["serve_bytes"](image_bytes=files)
        assert "keras" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        print(json.dumps({
            "pixels": {k: v.numpy().tolist() for k, v in pixels.items() if v.dtype == tf.float32},
            "bytes": {k: v.numpy().tolist() for k, v in encoded.items() if v.dtype == tf.float32},
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, exports["unfolded"], json.dumps(IMAGES.tolist())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    expected = keras_outputs(model, IMAGES)
    for signature in ("pixels", "bytes"):
        got = outputs[signature]
        assert max_abs(got["probabilities"], expected["probabilities"]) <= 1e-5
        for j in (1, 2, 3):
            assert max_abs(got[f"attention_{j}"], expected[f"attention_{j}"]) <= 1e-5


# === Bad input ===


@tf_only
def test_bad_images_name_the_problem_and_the_model_recovers(loaded):
    import tensorflow as tf

    serving = loaded["folded"].signatures["serving_default"]
    good = serving(images=tf.constant(IMAGES[:1]))["probabilities"].numpy()
    cases = [
        (tf.constant(IMAGES[:1], tf.float32), r"uint8"),
        (tf.constant(IMAGES[0]), r"rank.*\] \[3\]"),
        (tf.zeros((1, 32, 32, 4), tf.uint8), r"3 channels.*\] \[4\]"),
        (tf.zeros((1, 64, 48, 3), tf.uint8), r"32x32 pixels.*\[64\] \[48\]"),
        (tf.zeros((0, 32, 32, 3), tf.uint8), r"empty batch"),
    ]
    for bad, message in cases:
        with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
            serving(images=bad)
        again = serving(images=tf.constant(IMAGES[:1]))["probabilities"].numpy()
        np.testing.assert_array_equal(again, good)


@tf_only
def test_bad_bytes_name_the_problem_and_the_model_recovers(loaded):
    import tensorflow as tf

    serve_bytes = loaded["folded"].signatures["serve_bytes"]
    png = png_bytes(IMAGES[0])
    cases = [
        ([png, b"not an image", png, b"GIF89a..."], r"JPEG or PNG.*\] \[1 3\]"),
        ([png[:60]], r"(?i)png"),  # a truncated file
        ([], r"empty batch"),
    ]
    for files, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve_bytes(image_bytes=tf.constant(files, tf.string))
        out = serve_bytes(image_bytes=tf.constant([png]))
        assert out["probabilities"].shape == (1, 10)


@tf_only
def test_checks_hold_in_a_tf_serving_style_session(exports):
    """TF Serving runs the SignatureDef's tensors in a Session (no tf.function
    wrapper): the in-graph checks must hold there too. (Python's Session.run
    refuses shapes that contradict the placeholder before the graph sees
    them; the server does not, and the loaded signatures above show the
    graph's own answer to those.)"""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], exports["folded"])
        signature = meta.signature_def["serving_default"]
        feed = graph.get_tensor_by_name(signature.inputs["images"].name)
        fetch = graph.get_tensor_by_name(signature.outputs["probabilities"].name)
        assert session.run(fetch, {feed: IMAGES[:2]}).shape == (2, 10)
        with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
            session.run(fetch, {feed: np.zeros((0, 32, 32, 3), "uint8")})
        assert session.run(fetch, {feed: IMAGES[:1]}).shape == (1, 10)


# === Versions and atomic writes ===


@tf_only
def test_versions_are_numbered_and_never_overwritten(model, exports, tmp_path):
    root = exports["root"]
    assert exports["unfolded"] == str(root / "ltpa" / "1")
    assert exports["folded"] == str(root / "ltpa" / "2")
    before = sorted(os.listdir(exports["folded"]))
    with pytest.raises(ValueError, match=re.escape(str(root / "ltpa" / "2"))):
        export.export_saved_model(model, root, version=2)
    assert sorted(os.listdir(exports["folded"])) == before
    # The next free version follows the highest number, ignoring non-versions.
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    (tmp_path / "m" / ".staging-3-abc").mkdir()
    path = export.export_saved_model(model, tmp_path, name="m", fold_batch_norm=False)
    assert path == str(tmp_path / "m" / "8")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))


@tf_only
def test_crash_while_writing_leaves_no_version(model, tmp_path, monkeypatch):
    import tensorflow as tf

    seen = {}
    real_save = tf.saved_model.save

    def crashing_save(obj, path, **kwargs):
        # Write part of the model, then fail like a full disk would.
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        seen["entries"] = os.listdir(tmp_path / "ltpa")
        raise OSError("No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", crashing_save)
    with pytest.raises(OSError, match="No space left"):
        export.export_saved_model(model, tmp_path, fold_batch_norm=False)
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    # While writing, the only entry was hidden and not a number.
    assert len(seen["entries"]) == 1
    assert seen["entries"][0].startswith(".") and not seen["entries"][0].isdigit()
    assert os.listdir(tmp_path / "ltpa") == []


def test_export_arguments_are_checked(model, tmp_path):
    bad = [
        (dict(name="../up"), "`name`"),
        (dict(version=0), "`version`"),
        (dict(version="3"), "`version`"),
        (dict(top_k=0), "`top_k`"),
        (dict(class_names=["a", "b"]), "10 strings"),
        (dict(class_names="a,b"), "list of strings"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            export.export_saved_model(model, tmp_path, **kwargs)
    with pytest.raises(ValueError, match="not found"):
        export.export_saved_model(str(tmp_path / "missing.keras"), tmp_path)
    assert not any(p.name.isdigit() for p in tmp_path.rglob("*"))


# === REST contract ===


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
    assert export.rest_predict(half_plus_three, '{"instances": [1.0,2.0,5.0]}') == {
        "predictions": [3.5, 4.0, 5.5]
    }
    assert export.rest_predict(half_plus_three, {"inputs": [1.0, 2.0, 5.0]}) == {
        "outputs": [3.5, 4.0, 5.5]
    }
    assert export.rest_predict(half_plus_three, {"inputs": {"x": [0.4]}}) == {"outputs": [3.2]}
    assert export.rest_predict(half_plus_three, {"instances": [{"x": 0.4}]}) == {
        "predictions": [3.2]
    }
    error = export.rest_predict(half_plus_three, {"instances": ["a"]})["error"]
    assert "Type: String is not of expected type: float" in error


@tf_only
def test_rest_row_and_columnar_formats(model, loaded):
    saved = loaded["unfolded"]
    expected = keras_outputs(model, IMAGES[:2])
    pixels = IMAGES[:2].tolist()
    output_names = {"probabilities", "classes", "scores", "class_names"} | {
        f"attention_{j}{suffix}" for j in (1, 2, 3) for suffix in ("", "_full")
    }

    row = export.rest_predict(saved, json.dumps({"instances": pixels}))
    named_row = export.rest_predict(saved, {"instances": [{"images": p} for p in pixels]})
    assert row == named_row
    assert set(row) == {"predictions"} and len(row["predictions"]) == 2
    for i, prediction in enumerate(row["predictions"]):
        assert set(prediction) == output_names
        assert max_abs(prediction["probabilities"], expected["probabilities"][i]) <= 1e-5
        assert max_abs(prediction["attention_2"], expected["attention_2"][i]) <= 1e-5
        assert np.shape(prediction["attention_1_full"]) == (32, 32)
        assert all(isinstance(name, str) for name in prediction["class_names"])
        assert prediction["class_names"] == [CLASS_NAMES[c] for c in prediction["classes"]]

    columnar = export.rest_predict(saved, {"inputs": {"images": pixels}})
    assert export.rest_predict(saved, {"inputs": pixels}) == columnar
    assert set(columnar) == {"outputs"} and set(columnar["outputs"]) == output_names
    assert np.shape(columnar["outputs"]["attention_3"]) == (2, 8, 8)
    assert max_abs(columnar["outputs"]["probabilities"], expected["probabilities"]) <= 1e-5
    assert columnar["outputs"]["class_names"] == [p["class_names"] for p in row["predictions"]]
    # The JSON floats are float32 values written shortest-first, like the server.
    assert json.loads(json.dumps(columnar))["outputs"]["scores"] == columnar["outputs"]["scores"]


@tf_only
def test_rest_b64_images(loaded, exports):
    saved = loaded["folded"]
    files = [b64(png_bytes(image)) for image in IMAGES[:2]]
    by_pixels = export.rest_predict(saved, {"instances": IMAGES[:2].tolist()})
    for body in (
        {"signature_name": "serve_bytes", "instances": files},
        {"signature_name": "serve_bytes", "instances": [{"image_bytes": f} for f in files]},
    ):
        response = export.rest_predict(saved, json.dumps(body))
        for got, want in zip(response["predictions"], by_pixels["predictions"]):
            assert max_abs(got["probabilities"], want["probabilities"]) <= 1e-6
            assert got["class_names"] == want["class_names"]
    # An export path works too; `signature_name` is the default for bodies without one.
    columnar = export.rest_predict(
        exports["folded"], {"inputs": {"image_bytes": files}}, signature_name="serve_bytes"
    )
    assert columnar["outputs"]["classes"] == [p["classes"] for p in by_pixels["predictions"]]


@tf_only
def test_rest_errors_and_recovery(loaded):
    saved = loaded["folded"]
    png = png_bytes(IMAGES[0])
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
        response = export.rest_predict(saved, body)
        assert set(response) == {"error"}, body
        assert re.search(message, response["error"]), (message, response["error"])
        assert "Traceback" not in response["error"]
        ok = export.rest_predict(saved, {"instances": IMAGES[:1].tolist()})
        assert len(ok["predictions"]) == 1


# === Other backends ===


SAVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from test_export import IMAGES, keras_outputs, tiny_model
    model = tiny_model()
    model.save(sys.argv[1])
    expected = keras_outputs(model, IMAGES)
    np.savez(sys.argv[2], **expected)
    """
)


def exported_outputs(path):
    import tensorflow as tf

    saved = tf.saved_model.load(path)
    out = saved.signatures["serving_default"](images=tf.constant(IMAGES))
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("trained_under", ["jax", "torch"])
def test_model_from_another_backend_exports(trained_under, model, tmp_path):
    """A model trained under JAX or torch exports through the TF backend.

    Under JAX or torch the in-memory model is exported (by a TF child
    process); under TensorFlow a torch child saves the `.keras` file that
    is exported here (the JAX case runs in the JAX run: building under JAX
    costs a minute on a small CPU).
    """
    current = keras.backend.backend()
    if current == "tensorflow" and trained_under == "jax":
        pytest.skip("covered by this test under KERAS_BACKEND=jax")
    if current not in ("tensorflow", trained_under):
        pytest.skip(f"covered by this test under KERAS_BACKEND={trained_under}")
    keras_file, reference = tmp_path / "model.keras", tmp_path / "expected.npz"
    if current == trained_under:
        np.savez(reference, **keras_outputs(model, IMAGES))
        path = export.export_saved_model(model, tmp_path / "saved", class_names=CLASS_NAMES)
    else:
        require_backend_package(trained_under)
        env = dict(os.environ, KERAS_BACKEND=trained_under)
        tests_dir = os.path.dirname(__file__)
        subprocess.run(
            [sys.executable, "-c", SAVE_SCRIPT, str(keras_file), str(reference), tests_dir],
            env=env,
            check=True,
            capture_output=True,
        )
        path = export.export_saved_model(
            str(keras_file), tmp_path / "saved", class_names=CLASS_NAMES
        )
    assert path == str(tmp_path / "saved" / "ltpa" / "1")
    expected = dict(np.load(reference))
    out = exported_outputs(path)
    # Another backend's float32 kernels plus folding: float32 noise only.
    assert max_abs(out["probabilities"], expected["probabilities"]) <= export.FOLD_TOLERANCE
    for j in (1, 2, 3):
        assert max_abs(out[f"attention_{j}"], expected[f"attention_{j}"]) <= export.FOLD_TOLERANCE
    names = [[n.decode() for n in row] for row in out["class_names"]]
    assert names[0][0] == CLASS_NAMES[int(np.argmax(expected["probabilities"][0]))]


def test_other_backend_errors_come_back_as_value_errors(tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("the TF child process is used under JAX and torch only")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Cannot load the Keras model"):
        export.export_saved_model(str(corrupt), tmp_path)
