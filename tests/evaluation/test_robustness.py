"""FGSM: the perturbation, the scores, bad input, and the same numbers on every backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ltpa.evaluation import robustness
from tests.conftest import REPO_ROOT
from tests.conftest import tiny_model

rng = np.random.default_rng(0)
IMAGES = rng.integers(0, 256, (12, 32, 32, 3)).astype("uint8")


def _linear_model(weights, bias, side=4):
    """logits = flatten(x) @ W + b on raw pixels: its loss gradient is analytic."""
    inputs = keras.Input((side, side, 3))
    outputs = keras.layers.Dense(weights.shape[1])(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([weights, bias])
    return model


def test_perturbation_is_eps_times_the_sign_of_the_analytic_gradient():
    side, classes = 4, 3
    weights = rng.normal(0, 0.002, (side * side * 3, classes)).astype("float32")
    bias = np.zeros(classes, "float32")
    model = _linear_model(weights, bias, side)
    images = rng.integers(20, 200, (5, side, side, 3)).astype("uint8")  # no clipping at eps 8
    labels = np.array([0, 1, 2, 0, 1])
    # d CE / d x = (softmax(z) - onehot(y)) W^T, in float64.
    x = images.reshape(5, -1).astype("float64")
    z = x @ weights + bias
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    residual = p - np.eye(classes)[labels]
    gradient = residual @ weights.T.astype("float64")
    # The model computes in float32: a component's sign is only defined
    # beyond its rounding error, ~ 10 * eps32 * sum_c |p_c - y_c| |W_jc|.
    error = 10 * np.finfo("float32").eps * (np.abs(residual) @ np.abs(weights.T))
    defined = np.abs(gradient) > error
    assert defined.mean() > 0.95
    adversarial = robustness.fgsm_images(model, images, labels, epsilon=8)
    delta = (adversarial.astype("int64") - images.astype("int64")).reshape(5, -1)
    np.testing.assert_array_equal(delta[defined], 8 * np.sign(gradient[defined]).astype("int64"))
    assert np.all(np.abs(delta) == 8)  # no clipping, no zero gradient


def test_adversarial_images_stay_in_range_and_are_whole_pixels():
    model = tiny_model()
    images = IMAGES.copy()
    images[:, :8] = 0
    images[:, -8:] = 255  # pushed past both ends by eps 50
    labels = np.arange(len(images)) % 10
    adversarial = robustness.fgsm_images(model, images, labels, epsilon=50)
    assert adversarial.dtype == np.uint8 and adversarial.shape == images.shape
    # Every pixel moved by exactly eps, or was clipped at 0 or 255.
    moved = adversarial.astype(int) - images.astype(int)
    clipped = (adversarial == 0) | (adversarial == 255)
    assert np.all((np.abs(moved) == 50) | (moved == 0) | clipped)
    assert clipped[:, :8].any() and clipped[:, -8:].any()
    # A non-integer eps is rounded back to whole pixel values.
    half = robustness.fgsm_images(model, images, labels, epsilon=2.5)
    assert half.dtype == np.uint8
    assert np.all(np.isin(np.abs(half.astype(int) - images.astype(int)), [0, 1, 2, 3]))


def test_scores_agree_with_the_adversarial_images_they_come_from():
    model = tiny_model()
    clean = np.asarray(keras.ops.convert_to_numpy(model(IMAGES.astype("float32")))).argmax(-1)
    labels = clean.copy()
    labels[::3] = (labels[::3] + 1) % 10  # a third wrong from the start
    result = robustness.fgsm_robustness(model, IMAGES, labels, [0, 2, 8], batch_size=5)
    correct = clean == labels
    assert result["count"] == 12 and result["clean_accuracy"] == pytest.approx(correct.mean())
    # eps 0 is the clean accuracy.
    assert result["epsilons"] == [0.0, 2.0, 8.0]
    assert result["accuracy"][0] == pytest.approx(result["clean_accuracy"])
    assert result["flipped_fraction"][0] == 0.0
    wrong_at = []
    for eps in (2, 8):
        adversarial = robustness.fgsm_images(model, IMAGES, labels, eps)
        predicted = np.asarray(
            keras.ops.convert_to_numpy(model(adversarial.astype("float32")))
        ).argmax(-1)
        wrong_at.append(predicted != labels)
        index = result["epsilons"].index(eps)
        assert result["accuracy"][index] == pytest.approx((~wrong_at[-1]).mean())
        assert result["flipped_fraction"][index] == pytest.approx(
            (correct & wrong_at[-1]).sum() / correct.sum()
        )
    first = np.where(correct & wrong_at[0], 2.0, np.where(correct & wrong_at[1], 8.0, np.nan))
    assert result["flipped_count"] == int(np.isfinite(first).sum())
    if result["flipped_count"]:
        assert result["mean_flip_epsilon"] == pytest.approx(np.nanmean(first))


@pytest.mark.parametrize("bad", [-1, 256, "x", float("nan")])
def test_bad_epsilon_is_named(bad):
    with pytest.raises(ValueError, match="FGSM epsilon"):
        robustness.check_epsilons([1, bad])


def test_bad_images_and_labels_are_named():
    model = tiny_model()
    with pytest.raises(ValueError, match="labels"):
        robustness.fgsm_robustness(model, IMAGES, [0, 1], [1])
    with pytest.raises(ValueError, match="shape"):
        robustness.fgsm_robustness(model, IMAGES[..., :1], np.zeros(12), [1])


# Both evaluations on a fixed model and fixed data, in a fresh process per
# backend: the printed numbers must agree to 3 decimals.
CROSS_BACKEND_SCRIPT = """
import json, sys
import numpy as np
import keras
from keras_ltpa import evaluation as evaluate
from keras_ltpa import load_model_file
model = load_model_file(sys.argv[1])
data = np.load(sys.argv[2])
fgsm = evaluate.fgsm_robustness(model, data["images"], data["labels"], [0, 1, 4, 16])
moved = evaluate.transfer(
    model, (data["train"], data["train_labels"]), (data["test"], data["test_labels"])
)
print(json.dumps({
    "fgsm": [round(a, 3) for a in fgsm["accuracy"]],
    "flipped": [round(f, 3) for f in fgsm["flipped_fraction"]],
    "transfer": [round(moved["accuracy"], 3), round(moved["mean_class_accuracy"], 3)],
}))
"""


@pytest.mark.slow
@pytest.mark.tf_only  # it runs all three backends itself
def test_same_numbers_under_every_backend(tmp_path):
    for module in ("jax", "torch"):
        pytest.importorskip(module, reason=f"missing optional package {module}: pip install -e '.[{module}]'")
    model = tiny_model(seed=3)
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    clean = np.asarray(keras.ops.convert_to_numpy(model(IMAGES.astype("float32")))).argmax(-1)
    data_rng = np.random.default_rng(1)
    # Two classes told apart by brightness, so the SVM has something to find.
    train_labels = np.arange(40) % 2
    test_labels = np.arange(20) % 2
    def brightness_images(labels):
        base = np.where(labels[:, None, None, None] == 1, 170, 60)
        noise = data_rng.integers(-50, 51, (len(labels), 32, 32, 3))
        return np.clip(base + noise, 0, 255).astype("uint8")
    np.savez(
        tmp_path / "data.npz", images=IMAGES, labels=clean,
        train=brightness_images(train_labels), train_labels=train_labels,
        test=brightness_images(test_labels), test_labels=test_labels,
    )
    script = tmp_path / "evaluate_fixed.py"
    script.write_text(CROSS_BACKEND_SCRIPT)
    answers = {}
    for backend in ("tensorflow", "jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO_ROOT))
        completed = subprocess.run(
            [sys.executable, str(script), str(model_path), str(tmp_path / "data.npz")],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        answers[backend] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answers["tensorflow"]["fgsm"][0] == 1.0  # labels are the clean predictions
    assert answers["jax"] == answers["tensorflow"] == answers["torch"], answers
