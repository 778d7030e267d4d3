"""training/export.py end to end: exports, versions, clear errors."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = str(REPO_ROOT / "training" / "export.py")
CLASS_NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The CLI always runs the TensorFlow backend; the model file is written under
# TensorFlow too, so this file costs the same under every backend.
SAVE_MODEL = textwrap.dedent(
    """
    import sys
    import keras
    from keras_ltpa import build_model
    keras.utils.set_random_seed(0)
    build_model(10, width_multiplier=0.0625).save(sys.argv[1])
    """
)


# Another backend than TensorFlow where one is installed: the command must
# export under TensorFlow whatever the caller's backend.
OTHER_BACKEND = next(
    (name for name in ("jax", "torch") if importlib.util.find_spec(name)), "tensorflow"
)


def run_cli(*args, cwd=None):
    env = dict(os.environ, KERAS_BACKEND=OTHER_BACKEND)
    return subprocess.run(
        [sys.executable, CLI, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=600,
    )


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    subprocess.run(
        [sys.executable, "-c", SAVE_MODEL, str(path)],
        check=True,
        capture_output=True,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        timeout=600,
    )
    return path


@pytest.mark.slow
def test_cli_exports_a_version_and_refuses_to_overwrite_it(keras_file, tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(CLASS_NAMES) + "\n")
    result = run_cli(
        keras_file, "--export-dir", tmp_path / "out", "--name", "cifar",
        "--version", 5, "--top-k", 3, "--class-names", names,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = tmp_path / "out" / "cifar" / "5"
    assert result.stdout.strip().splitlines()[-1] == str(version_dir)
    assert (version_dir / "saved_model.pb").is_file()
    metadata = json.loads((version_dir / "assets.extra" / "keras_ltpa.json").read_text())
    assert metadata["class_names"] == CLASS_NAMES
    assert metadata["top_k"] == 3
    assert metadata["batch_norm_folded"] is True
    assert sorted(os.listdir(tmp_path / "out" / "cifar")) == ["5"]

    again = run_cli(keras_file, "--export-dir", tmp_path / "out", "--name", "cifar",
                    "--version", 5)
    assert_clean_error(again, "already exists", str(version_dir))
    assert sorted(os.listdir(tmp_path / "out" / "cifar")) == ["5"]


@pytest.mark.slow
def test_cli_next_version_unfolded_with_comma_names(keras_file, tmp_path):
    (tmp_path / "saved_models" / "ltpa" / "2").mkdir(parents=True)
    result = run_cli(
        keras_file, "--no-fold-batch-norm", "--class-names", ",".join(CLASS_NAMES),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = tmp_path / "saved_models" / "ltpa" / "3"
    assert result.stdout.strip().splitlines()[-1] == os.path.join("saved_models", "ltpa", "3")
    metadata = json.loads((version_dir / "assets.extra" / "keras_ltpa.json").read_text())
    assert metadata["batch_norm_folded"] is False
    assert metadata["class_names"] == CLASS_NAMES and metadata["top_k"] == 5


def test_cli_argument_errors(tmp_path):
    missing = tmp_path / "missing.keras"
    assert_clean_error(run_cli(missing), "does not exist", str(missing))
    text_file = tmp_path / "model.h5"
    text_file.write_text("x")
    assert_clean_error(run_cli(text_file), "is not a `.keras` file", str(text_file))
    model = tmp_path / "m.keras"
    model.write_text("x")
    assert_clean_error(run_cli(model, "--top-k", "0"), "--top-k", "positive integer")
    assert_clean_error(run_cli(model, "--version", "abc"), "--version", "positive integer")
    assert_clean_error(run_cli(model, "--max-request-pixels", "0"), "--max-request-pixels", "positive integer")
    assert_clean_error(
        run_cli(model, "--class-names", tmp_path / "names.txt"), "--class-names file not found"
    )
    bad_json = tmp_path / "names.json"
    bad_json.write_text('{"a": 1}')
    assert_clean_error(run_cli(model, "--class-names", bad_json), "JSON list of strings")


@pytest.mark.slow
def test_cli_corrupt_model_and_wrong_class_count(keras_file, tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a whole zip file")
    assert_clean_error(run_cli(corrupt, "--export-dir", tmp_path), "Cannot load the Keras model",
                       str(corrupt))
    result = run_cli(keras_file, "--export-dir", tmp_path, "--class-names", "a,b,c")
    assert_clean_error(result, "`class_names` must be 10 strings")
    assert not any(p.name.isdigit() for p in tmp_path.rglob("*"))


@pytest.mark.slow
def test_cli_exports_a_run_directory_with_the_run_s_class_names(keras_file, tmp_path):
    """A run directory is found as training wrote it (checkpoints/best.keras of
    an unfinished run) and its config.json names the classes; a model that
    records its own class names exports them with no flag at all."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.keras").write_bytes(keras_file.read_bytes())
    (run_dir / "config.json").write_text(json.dumps({"class_names": CLASS_NAMES}))
    result = run_cli(run_dir, "--export-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads(
        (tmp_path / "out" / "ltpa" / "1" / "assets.extra" / "keras_ltpa.json").read_text()
    )
    assert metadata["class_names"] == CLASS_NAMES
    assert metadata["variant"] == "att3-concat-pc" and metadata["width_multiplier"] == 0.0625

    named = tmp_path / "named.keras"
    subprocess.run(
        [sys.executable, "-c", SAVE_NAMED_MODEL, str(named)],
        check=True, capture_output=True, env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        timeout=600,
    )
    result = run_cli(named, "--export-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads(
        (tmp_path / "out" / "ltpa" / "2" / "assets.extra" / "keras_ltpa.json").read_text()
    )
    assert metadata["class_names"] == ["left", "right"]
    # The defaults: 4096 x 4096, 64 images, 4 x 4096 x 4096 pixels per request.
    assert metadata["limits"] == {
        "max_image_pixels": 16777216, "max_batch_size": 64, "max_request_pixels": 67108864,
    }

    result = run_cli(named, "--export-dir", tmp_path / "out", "--max-image-pixels", 1024,
                     "--max-batch-size", 8, "--max-request-pixels", 5000, "--no-warmup")
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads(
        (tmp_path / "out" / "ltpa" / "3" / "assets.extra" / "keras_ltpa.json").read_text()
    )
    assert metadata["limits"] == {"max_image_pixels": 1024, "max_batch_size": 8, "max_request_pixels": 5000}
    assert metadata["warmup"] == {"skipped": "warmup_requests=False"}


SAVE_NAMED_MODEL = textwrap.dedent(
    """
    import sys
    from keras_ltpa import build_model
    build_model(2, width_multiplier=0.0625, class_names=["left", "right"]).save(sys.argv[1])
    """
)
