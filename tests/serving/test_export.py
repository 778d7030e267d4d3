"""SavedModel export: signatures against Keras, TF-only loading, bad input,
versions, other backends."""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_ltpa import build_model
from keras_ltpa.data import images
from keras_ltpa.serving import export
from tests.conftest import FOLD_BOUND
from tests.conftest import PROBE_IMAGES
from tests.conftest import SERVING_CLASS_NAMES
from tests.conftest import SERVING_WIDTH
from tests.conftest import float64_outputs
from tests.conftest import keras_outputs
from tests.conftest import max_abs
from tests.conftest import png_bytes
from tests.conftest import relative_to_peak
from tests.conftest import require_backend_package
from tests.conftest import tiny_model

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
tf_only = pytest.mark.tf_only


# === Signatures against Keras ===


@tf_only
def test_serving_default_matches_keras(serving_model, serving_loaded):
    import tensorflow as tf

    float32 = keras_outputs(serving_model, PROBE_IMAGES)
    top3 = np.argsort(-float32["probabilities"], axis=1)[:, :3]
    # Unfolded: the same float32 graph as Keras, a few eps of values <= 1.
    # Folded: within FOLD_BOUND (depth x float32 eps, see conftest) of each
    # output's peak in a float64 evaluation.
    exact = float64_outputs(serving_model, PROBE_IMAGES)
    for key, tolerance in (("unfolded", 1e-5), ("folded", FOLD_BOUND)):
        out = serving_loaded[key].signatures["serving_default"](images=tf.constant(PROBE_IMAGES))
        out = {name: value.numpy() for name, value in out.items()}
        compare = max_abs if key == "unfolded" else relative_to_peak
        expected = float32 if key == "unfolded" else exact
        assert out["probabilities"].dtype == np.float32
        assert compare(out["probabilities"], expected["probabilities"]) <= tolerance
        for j, size in ((1, 32), (2, 16), (3, 8)):
            attention = out[f"attention_{j}"]
            assert attention.shape == (3, size, size)
            assert compare(attention, expected[f"attention_{j}"]) <= tolerance
            np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=1e-5)
            full = tf.image.resize(expected[f"attention_{j}"][..., None], (32, 32))[..., 0]
            assert out[f"attention_{j}_full"].shape == (3, 32, 32)
            assert compare(out[f"attention_{j}_full"], full) <= tolerance
        np.testing.assert_array_equal(out["classes"], top3)
        assert compare(out["scores"], np.take_along_axis(expected["probabilities"], top3, 1)) <= tolerance
        names = np.array(SERVING_CLASS_NAMES, dtype=object)[top3]
        assert [[n.decode() for n in row] for row in out["class_names"]] == names.tolist()


@tf_only
def test_folded_export_is_as_accurate_as_keras(serving_model, serving_loaded, serving_exports):
    """Against a float64 evaluation, folding adds no more than float32 noise."""
    import tensorflow as tf

    keras.config.set_dtype_policy("float64")
    exact = build_model(10, width_multiplier=SERVING_WIDTH)
    keras.config.set_dtype_policy("float32")
    exact.set_weights([w.astype("float64") for w in serving_model.get_weights()])
    truth = keras_outputs(exact, PROBE_IMAGES)
    keras_error = max_abs(keras_outputs(serving_model, PROBE_IMAGES)["attention_1"], truth["attention_1"])
    out = serving_loaded["folded"].signatures["serving_default"](images=tf.constant(PROBE_IMAGES))
    folded_error = max_abs(out["attention_1"].numpy(), truth["attention_1"])
    assert folded_error <= 4 * keras_error + 1e-6
    with open(os.path.join(serving_exports["folded"], export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["batch_norm_folded"] is True
    assert len(metadata["folded_layers"]) == 15
    assert metadata["class_names"] == SERVING_CLASS_NAMES and metadata["top_k"] == 3


@tf_only
def test_folded_graph_has_no_batch_norm_ops(serving_loaded):
    def op_types(saved):
        graph = saved.signatures["serving_default"].graph.as_graph_def()
        types = [node.op for node in graph.node]
        for function in graph.library.function:
            types += [node.op for node in function.node_def]
        return types

    # The backbone's batch norm runs as FusedBatchNormV3 on TensorFlow
    # (keras_ltpa.backbones.batch_norm); Keras' own inference BN would be
    # rsqrt(var + eps) * gamma ...: nothing else in the model takes a
    # reciprocal square root.
    unfolded, folded = op_types(serving_loaded["unfolded"]), op_types(serving_loaded["folded"])
    assert "FusedBatchNormV3" in unfolded
    assert not {"FusedBatchNormV3", "Rsqrt"} & set(folded)


@tf_only
def test_serve_bytes_decodes_png_and_jpeg(serving_model, serving_loaded, small_data_dir):
    import tensorflow as tf

    serve_bytes = serving_loaded["unfolded"].signatures["serve_bytes"]
    serving = serving_loaded["unfolded"].signatures["serving_default"]
    # A PNG at the input size: lossless, so exactly the uint8 path.
    from_png = serve_bytes(image_bytes=tf.constant([png_bytes(PROBE_IMAGES[0]), png_bytes(PROBE_IMAGES[1])]))
    from_pixels = serving(images=tf.constant(PROBE_IMAGES[:2]))
    for key in from_pixels:
        if from_pixels[key].dtype == tf.float32:
            assert max_abs(from_png[key].numpy(), from_pixels[key].numpy()) <= 1e-6, key
    # A real photo of another size (and a grayscale PNG) is resized in the graph.
    horse_path = sorted((small_data_dir / "weizmann_horse" / "rgb").glob("*.jpg"))[0]
    horse = horse_path.read_bytes()
    gray = png_bytes(PROBE_IMAGES[2].mean(axis=-1, keepdims=True).astype("uint8"))
    out = serve_bytes(image_bytes=tf.constant([horse, gray]))
    # The package's one decoder and resizer (keras_ltpa.data.images), as training.
    decoded = [images.decode_image(tf.constant(data)) for data in (horse, gray)]
    assert decoded[0].shape[0] != 32
    pixels = np.stack([images.resize_image(image, (32, 32)).numpy() for image in decoded])
    expected = keras_outputs(serving_model, pixels)
    assert max_abs(out["probabilities"].numpy(), expected["probabilities"]) <= 1e-5
    assert max_abs(out["attention_2"].numpy(), expected["attention_2"]) <= 1e-5
    assert out["attention_1_full"].shape == (2, 32, 32)


@tf_only
def test_baseline_without_attention_exports(tmp_path):
    import tensorflow as tf

    model = tiny_model(variant="noatt")
    path = export.export_saved_model(model, tmp_path, top_k=20)
    out = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(PROBE_IMAGES))
    assert set(out) == {"probabilities", "classes", "scores", "class_names"}
    assert out["classes"].shape == (3, 10)  # top_k capped at the class count
    expected = keras_outputs(model, PROBE_IMAGES)
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
    out = tf.saved_model.load(unfolded).signatures["serving_default"](images=tf.constant(PROBE_IMAGES))
    assert {key: value.dtype for key, value in out.items()} == {
        **{key: tf.float32 for key in ("probabilities", "scores")},
        **{f"attention_{j}{s}": tf.float32 for j in (1, 2) for s in ("", "_full")},
        "classes": tf.int32,
        "class_names": tf.string,
    }
    expected = keras_outputs(model, PROBE_IMAGES)
    assert max_abs(out["probabilities"].numpy(), expected["probabilities"]) <= 1e-5
    assert max_abs(out["attention_2"].numpy(), expected["attention_2"]) <= 1e-5
    folded = export.export_saved_model(model, tmp_path)
    with open(os.path.join(folded, export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["batch_norm_folded"] is True and len(metadata["folded_layers"]) == 15
    # bfloat16 outputs of this tiny model are too noisy to tell a wrong fold
    # (its maps are near one-hot): check the exported bfloat16 graph's
    # weights against the batch-norm algebra, computed here in float64.
    exported = {v.name: v.numpy() for v in tf.saved_model.load(folded).variables}
    for name in metadata["folded_layers"]:
        conv, bn = model.get_layer(name), model.get_layer(name.replace("conv", "bn"))
        weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), "float64") for w in bn.weights}
        scale = weights["gamma"] / np.sqrt(weights["moving_variance"] + bn.epsilon)
        kernel = np.asarray(conv.kernel.numpy(), "float64") * scale
        bias = (np.asarray(conv.bias.numpy(), "float64") - weights["moving_mean"]) * scale
        bias += weights["beta"]
        # Folded in float64 and stored as float32 variables: one rounding.
        eps = np.finfo("float32").eps
        np.testing.assert_allclose(exported[f"{name}/kernel:0"], kernel, rtol=eps, atol=eps * np.abs(kernel).max())
        np.testing.assert_allclose(exported[f"{name}/bias:0"], bias, rtol=eps, atol=eps * np.abs(bias).max())


# === TF Serving's view ===


@tf_only
def test_saved_model_cli_lists_both_signatures(serving_exports):
    result = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--all", "--dir", serving_exports["folded"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
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
def test_export_runs_with_tensorflow_alone(serving_model, serving_exports):
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
        [sys.executable, "-c", script, serving_exports["unfolded"], json.dumps(PROBE_IMAGES.tolist())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    expected = keras_outputs(serving_model, PROBE_IMAGES)
    for signature in ("pixels", "bytes"):
        got = outputs[signature]
        assert max_abs(got["probabilities"], expected["probabilities"]) <= 1e-5
        for j in (1, 2, 3):
            assert max_abs(got[f"attention_{j}"], expected[f"attention_{j}"]) <= 1e-5


# === Bad input ===


@tf_only
def test_bad_images_name_the_problem_and_the_model_recovers(serving_loaded):
    import tensorflow as tf

    serving = serving_loaded["folded"].signatures["serving_default"]
    good = serving(images=tf.constant(PROBE_IMAGES[:1]))["probabilities"].numpy()
    cases = [
        (tf.constant(PROBE_IMAGES[:1], tf.float32), r"uint8"),
        (tf.constant(PROBE_IMAGES[0]), r"rank.*\] \[3\]"),
        (tf.zeros((1, 32, 32, 4), tf.uint8), r"3 channels.*\] \[4\]"),
        (tf.zeros((1, 64, 48, 3), tf.uint8), r"32x32 pixels.*\[64\] \[48\]"),
        (tf.zeros((0, 32, 32, 3), tf.uint8), r"empty batch"),
    ]
    for bad, message in cases:
        with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
            serving(images=bad)
        again = serving(images=tf.constant(PROBE_IMAGES[:1]))["probabilities"].numpy()
        np.testing.assert_array_equal(again, good)


@tf_only
def test_bad_bytes_name_the_problem_and_the_model_recovers(serving_loaded):
    import tensorflow as tf

    serve_bytes = serving_loaded["folded"].signatures["serve_bytes"]
    png = png_bytes(PROBE_IMAGES[0])
    cases = [
        ([png, b"not an image", png, b"GIF89a..."], r"JPEG or PNG.*\] \[1 3\]"),
        ([png[:60]], r"truncated PNG.*\[0\]"),
        ([], r"empty batch"),
    ]
    for files, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve_bytes(image_bytes=tf.constant(files, tf.string))
        out = serve_bytes(image_bytes=tf.constant([png]))
        assert out["probabilities"].shape == (1, 10)


@tf_only
def test_checks_hold_in_a_tf_serving_style_session(serving_exports):
    """TF Serving runs the SignatureDef's tensors in a Session (no tf.function
    wrapper): the in-graph checks must hold there too. (Python's Session.run
    refuses shapes that contradict the placeholder before the graph sees
    them; the server does not, and the loaded signatures above show the
    graph's own answer to those.)"""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], serving_exports["folded"])
        signature = meta.signature_def["serving_default"]
        feed = graph.get_tensor_by_name(signature.inputs["images"].name)
        fetch = graph.get_tensor_by_name(signature.outputs["probabilities"].name)
        assert session.run(fetch, {feed: PROBE_IMAGES[:2]}).shape == (2, 10)
        with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
            session.run(fetch, {feed: np.zeros((0, 32, 32, 3), "uint8")})
        assert session.run(fetch, {feed: PROBE_IMAGES[:1]}).shape == (1, 10)


# === Versions and atomic writes ===


@tf_only
def test_versions_are_numbered_and_never_overwritten(serving_model, serving_exports, tmp_path):
    root = serving_exports["root"]
    assert serving_exports["unfolded"] == str(root / "ltpa" / "1")
    assert serving_exports["folded"] == str(root / "ltpa" / "2")
    before = sorted(os.listdir(serving_exports["folded"]))
    with pytest.raises(ValueError, match=re.escape(str(root / "ltpa" / "2"))):
        export.export_saved_model(serving_model, root, version=2)
    assert sorted(os.listdir(serving_exports["folded"])) == before
    # The next free version follows the highest number, ignoring non-versions.
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    (tmp_path / "m" / ".staging-3-abc").mkdir()
    path = export.export_saved_model(serving_model, tmp_path, name="m", fold_batch_norm=False)
    assert path == str(tmp_path / "m" / "8")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))


@tf_only
def test_crash_while_writing_leaves_no_version(serving_model, tmp_path, monkeypatch):
    import tensorflow as tf

    seen = {}
    real_save = tf.saved_model.save

    def crashing_save(obj, path, **kwargs):
        # Write part of the serving_model, then fail like a full disk would.
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        seen["entries"] = os.listdir(tmp_path / "ltpa")
        raise OSError("No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", crashing_save)
    with pytest.raises(OSError, match="No space left"):
        export.export_saved_model(serving_model, tmp_path, fold_batch_norm=False)
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    # While writing, the only entry was hidden and not a number.
    assert len(seen["entries"]) == 1
    assert seen["entries"][0].startswith(".") and not seen["entries"][0].isdigit()
    assert os.listdir(tmp_path / "ltpa") == []


def test_export_arguments_are_checked(serving_model, tmp_path):
    bad = [
        (dict(name="../up"), "`name`"),
        (dict(version=0), "`version`"),
        (dict(version="3"), "`version`"),
        (dict(top_k=0), "`top_k`"),
        (dict(class_names=["a", "b"]), "10 strings"),
        (dict(class_names="a,b"), "list of strings"),
        (dict(max_request_pixels=0), "`max_request_pixels`"),
        (dict(max_image_pixels=70_000_000), "`max_image_pixels` (70000000) is above `max_request_pixels` (67108864)"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            export.export_saved_model(serving_model, tmp_path, **kwargs)
    with pytest.raises(ValueError, match="not found"):
        export.export_saved_model(str(tmp_path / "missing.keras"), tmp_path)
    assert not any(p.name.isdigit() for p in tmp_path.rglob("*"))


# === Other backends ===


SAVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from conftest import PROBE_IMAGES, keras_outputs, tiny_model
    model = tiny_model()
    model.save(sys.argv[1])
    expected = keras_outputs(model, PROBE_IMAGES)
    np.savez(sys.argv[2], **expected)
    """
)


def exported_outputs(path):
    """Both signatures' outputs on PROBE_IMAGES (as lossless PNGs for
    serve_bytes, so both see the same pixels)."""
    import tensorflow as tf

    saved = tf.saved_model.load(path)
    by_pixels = saved.signatures["serving_default"](images=tf.constant(PROBE_IMAGES))
    files = tf.constant([png_bytes(image) for image in PROBE_IMAGES])
    by_bytes = saved.signatures["serve_bytes"](image_bytes=files)
    return [
        {key: value.numpy() for key, value in out.items()} for out in (by_pixels, by_bytes)
    ]


@pytest.mark.parametrize("trained_under", ["jax", "torch"])
def test_model_from_another_backend_exports(trained_under, serving_model, tmp_path):
    """A serving_model trained under JAX or torch exports through the TF backend.

    Under JAX or torch the in-memory serving_model is exported (by a TF child
    process); under TensorFlow a torch child saves the `.keras` file that
    is exported here (the JAX case runs in the JAX run: building under JAX
    costs a minute on a small CPU).
    """
    current = keras.backend.backend()
    if current == "tensorflow" and trained_under == "jax":
        pytest.skip("covered by this test under KERAS_BACKEND=jax")
    if current not in ("tensorflow", trained_under):
        pytest.skip(f"covered by this test under KERAS_BACKEND={trained_under}")
    keras_file, reference = tmp_path / "serving_model.keras", tmp_path / "expected.npz"
    if current == trained_under:
        np.savez(reference, **keras_outputs(serving_model, PROBE_IMAGES))
        path = export.export_saved_model(serving_model, tmp_path / "saved", class_names=SERVING_CLASS_NAMES)
    else:
        require_backend_package(trained_under)
        env = dict(os.environ, KERAS_BACKEND=trained_under)
        tests_dir = os.path.dirname(os.path.dirname(__file__))  # conftest.py
        subprocess.run(
            [sys.executable, "-c", SAVE_SCRIPT, str(keras_file), str(reference), tests_dir],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        path = export.export_saved_model(
            str(keras_file), tmp_path / "saved", class_names=SERVING_CLASS_NAMES
        )
    assert path == str(tmp_path / "saved" / "ltpa" / "1")
    expected = dict(np.load(reference))
    import tensorflow as tf

    saved = tf.saved_model.load(path)
    for name, key in (("serving_default", "images"), ("serve_bytes", "image_bytes")):
        spec = saved.signatures[name].structured_input_signature[1][key]
        assert spec.shape[0] is None  # A dynamic batch, whatever backend trained it.
    for out in exported_outputs(path):  # serving_default, then serve_bytes
        # Another backend's float32 Keras outputs and the folded export are
        # each within FOLD_BOUND (see conftest) of the exact values: within
        # twice that of each other, relative to each output's peak.
        assert relative_to_peak(out["probabilities"], expected["probabilities"]) <= 2 * FOLD_BOUND
        for j in (1, 2, 3):
            assert relative_to_peak(out[f"attention_{j}"], expected[f"attention_{j}"]) <= 2 * FOLD_BOUND
        names = [[n.decode() for n in row] for row in out["class_names"]]
        assert names[0][0] == SERVING_CLASS_NAMES[int(np.argmax(expected["probabilities"][0]))]


def test_other_backend_errors_come_back_as_value_errors(tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("the TF child process is used under JAX and torch only")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Cannot load the Keras model"):
        export.export_saved_model(str(corrupt), tmp_path)


def _batching_parameters_class():
    """TF Serving's BatchingParameters message (session_bundle_config.proto),
    defined here from its fields: tensorflow-serving-api does not ship it."""
    from google.protobuf import descriptor_pb2
    from google.protobuf import descriptor_pool
    from google.protobuf import message_factory
    from google.protobuf import wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="batching.proto", package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate([
        ("max_batch_size", ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", ".google.protobuf.Int64Value"),
        ("num_batch_threads", ".google.protobuf.Int64Value"),
        ("thread_pool_name", ".google.protobuf.StringValue"),
    ], start=1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=kind, label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.GetMessageClass(descriptor)


def test_batching_parameters_file_parses_and_fits_the_export_limits():
    from google.protobuf import text_format

    from keras_ltpa.serving.signatures import DEFAULT_MAX_BATCH_SIZE

    path = os.path.join(os.path.dirname(__file__), "..", "..", "saved_models", "batching_parameters.txt")
    with open(path) as file:
        parameters = text_format.Parse(file.read(), _batching_parameters_class()())
    assert 1 <= parameters.max_batch_size.value <= DEFAULT_MAX_BATCH_SIZE
    # TF Serving requires the last allowed size to be max_batch_size, ascending.
    sizes = list(parameters.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == parameters.max_batch_size.value
    assert parameters.batch_timeout_micros.value > 0
    assert parameters.num_batch_threads.value >= 1


def _read_batching_file(version_dir):
    from google.protobuf import text_format

    with open(os.path.join(version_dir, "batching_params.pbtxt")) as file:
        parameters = text_format.Parse(file.read(), _batching_parameters_class()())
    return {
        "max_batch_size": parameters.max_batch_size.value,
        "batch_timeout_micros": parameters.batch_timeout_micros.value,
        "max_enqueued_batches": parameters.max_enqueued_batches.value,
        "num_batch_threads": parameters.num_batch_threads.value,
        "allowed_batch_sizes": list(parameters.allowed_batch_sizes),
    }


def test_a_32px_export_carries_the_tracked_batching_values(serving_exports):
    """Each version's batching_params.pbtxt (TF Serving's per-model file)
    parses; for the paper's 32-px model its values are those of the tracked
    saved_models/batching_parameters.txt, and the metadata records them."""
    from google.protobuf import text_format

    path = os.path.join(os.path.dirname(__file__), "..", "..", "saved_models", "batching_parameters.txt")
    with open(path) as file:
        tracked = text_format.Parse(file.read(), _batching_parameters_class()())
    written = _read_batching_file(serving_exports["folded"])
    sizes = written.pop("allowed_batch_sizes")
    assert written == {
        "max_batch_size": tracked.max_batch_size.value,
        "batch_timeout_micros": tracked.batch_timeout_micros.value,
        "max_enqueued_batches": tracked.max_enqueued_batches.value,
        "num_batch_threads": tracked.num_batch_threads.value,
    }
    # Every power of two up to the largest: the tracked file's sizes and 2
    # (a padded batch wastes up to half its work, which counts for large images).
    assert sizes == sorted(set(tracked.allowed_batch_sizes) | {2})
    written["allowed_batch_sizes"] = sizes
    recorded = export.read_metadata(serving_exports["folded"])["batching"]
    assert recorded == {"file": "batching_params.pbtxt", **written}
