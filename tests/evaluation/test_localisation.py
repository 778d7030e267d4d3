"""Tests of keras_ltpa.evaluation (the CLI: tests/cli/test_evaluate.py)."""

import keras
import numpy as np
import pytest
from PIL import Image

from keras_ltpa import build_model
from keras_ltpa import evaluation as evaluate
from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import overlays as visualize
from tests.conftest import tiny_model

# --- Jaccard, thresholds, prior ---------------------------------------------


def test_jaccard_values():
    mask = np.zeros((6, 6), bool)
    mask[1:4, 1:4] = True
    assert evaluate.jaccard(mask, mask) == 1.0
    assert evaluate.jaccard(mask, ~mask) == 0.0
    shifted = np.roll(mask, 1, axis=1)  # 6 of 9 pixels shared, union 12
    assert evaluate.jaccard(mask, shifted) == pytest.approx(6 / 12)
    empty = np.zeros((6, 6), bool)
    assert evaluate.jaccard(empty, empty) == 1.0
    assert evaluate.jaccard(empty, mask) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        evaluate.jaccard(mask, mask[:5])


def test_threshold_rules():
    attention = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(
        evaluate.threshold_map(attention, "mean"), attention > 5.5
    )
    top = evaluate.threshold_map(attention, 0.25)
    assert top.sum() == 3 and top[2, 1:].all()
    # Ties: exactly round(f * H * W) pixels even on a constant map.
    assert evaluate.threshold_map(np.ones((10, 10)), 0.3).sum() == 30
    assert not evaluate.threshold_map(np.ones((10, 10)), "mean").any()
    for bad in ("median", 0.0, 1.0, 1.5, True):
        with pytest.raises(ValueError, match="threshold"):
            evaluate.threshold_map(attention, bad)


@pytest.mark.parametrize("shape,area", [((40, 60), 0.25), ((33, 17), 0.1), ((20, 20), 0.5)])
def test_gaussian_prior_has_the_stated_area(shape, area):
    prior = evaluate.gaussian_prior(shape, area)
    assert prior.shape == shape and prior.dtype == bool
    assert prior.sum() == round(area * shape[0] * shape[1])
    # Centred: the region's centroid is the image centre (within a pixel).
    rows, columns = np.nonzero(prior)
    assert abs(rows.mean() + 0.5 - shape[0] / 2) < 1.0
    assert abs(columns.mean() + 0.5 - shape[1] / 2) < 1.0
    # A level set of the Gaussian: every chosen pixel beats every other one.
    values = evaluate.gaussian_map(shape)
    assert values[prior].min() >= values[~prior].max()


def test_gaussian_prior_extremes_and_errors():
    assert not evaluate.gaussian_prior((5, 5), 0.0).any()
    assert evaluate.gaussian_prior((5, 5), 1.0).all()
    with pytest.raises(ValueError, match="area"):
        evaluate.gaussian_prior((5, 5), 1.5)


# --- Mask data -------------------------------------------------------------------


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_mask_resized_to_its_image(tmp_path):
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 255  # right half foreground, at half the image's size
    _write(tmp_path / "rgb" / "a.png", image)
    _write(tmp_path / "figure_ground" / "a.png", mask)
    ((name, loaded_image, loaded_mask),) = evaluate.load_mask_dataset(tmp_path)
    assert name == "a.png" and loaded_image.shape == (40, 60, 3)
    assert loaded_mask.shape == (40, 60) and loaded_mask.dtype == bool
    assert loaded_mask[:, 31:].all() and not loaded_mask[:, :29].any()


def test_mask_dataset_errors(tmp_path):
    _write(tmp_path / "rgb" / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "figure_ground").mkdir()
    with pytest.raises(ValueError, match="a.png"):
        evaluate.load_mask_dataset(tmp_path)
    (tmp_path / "rgb" / "list.csv").write_text("a,b")
    with pytest.raises(ValueError, match="list.csv"):
        evaluate.load_mask_dataset(tmp_path)
    with pytest.raises(ValueError, match="mask_dir"):
        evaluate.load_mask_dataset(tmp_path, mask_dir="masks")


def test_real_horse_masks(small_data_dir):
    samples = evaluate.load_mask_dataset(small_data_dir / "weizmann_horse", limit=4)
    assert [name for name, _, _ in samples] == [f"horse00{i}.jpg" for i in range(1, 5)]
    for _, image, mask in samples:
        assert mask.shape == image.shape[:2]
        assert 0.05 < mask.mean() < 0.6


# --- Grad-CAM and localisation -------------------------------------------------------


def test_grad_cam_matches_the_cam_of_a_linear_head():
    # With global average pooling and a linear classifier, Grad-CAM's weights
    # are the classifier weights / (h * w): cam = relu(A @ W[:, c]) / (h * w).
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(3, name="classifier")(pooled)
    model = keras.Model(inputs, logits)
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    activations = keras.ops.convert_to_numpy(
        keras.Model(inputs, features)(images.astype("float32"))
    )
    kernel = keras.ops.convert_to_numpy(model.get_layer("classifier").kernel)
    cam = evaluate.grad_cam(model, images, layer="features", class_index=1)
    expected = np.maximum(activations @ kernel[:, 1], 0.0) / 64.0
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-5)
    # Default class: each image's prediction.
    predicted = keras.ops.convert_to_numpy(model(images.astype("float32"))).argmax(-1)
    cam = evaluate.grad_cam(model, images, layer="features")
    for index, label in enumerate(predicted):
        expected = np.maximum(activations[index] @ kernel[:, label], 0.0) / 64.0
        np.testing.assert_allclose(cam[index], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no_layer"):
        evaluate.grad_cam(model, images, layer="no_layer")


@pytest.fixture(scope="module")
def tiny_models():
    return (
        build_model(10, width_multiplier=0.0625),
        build_model(10, variant="noatt", width_multiplier=0.0625),
    )


def _synthetic_samples():
    rng = np.random.default_rng(3)
    samples = []
    for index, (height, width) in enumerate([(48, 64), (30, 30)]):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), bool)
        mask[height // 4 : 3 * height // 4, width // 3 :] = True
        samples.append((f"s{index}", image, mask))
    return samples


def test_localization_scores_each_map_under_its_own_name(tiny_models):
    """The wiring: which map, upsampled how, is scored under which name, and
    the mean over images. The Jaccard and threshold values themselves are
    checked against hand computations in the synthetic-map tests."""
    model, baseline = tiny_models
    samples = _synthetic_samples()
    result = evaluate.localization(model, samples, baseline, threshold=0.25)
    assert list(result["jaccard"]) == [
        "attention_1", "attention_2", "attention_3", "attention_mean",
        "gaussian_prior", "baseline_cam",
    ]
    assert result["count"] == 2 and result["names"] == ["s0", "s1"]
    inputs = image_files.resize_images([image for _, image, _ in samples], (32, 32))
    _, maps = visualize.attention_maps(model, inputs)
    cams = evaluate.grad_cam(baseline, inputs)
    for index, (_, _, mask) in enumerate(samples):
        up = [visualize.upsample_map(m[index], mask.shape) for m in maps]
        mean = np.mean([visualize.normalize_map(u) for u in up], axis=0)
        cam = visualize.upsample_map(cams[index], mask.shape)
        expected = {
            "attention_2": evaluate.jaccard(evaluate.threshold_map(up[1], 0.25), mask),
            "attention_mean": evaluate.jaccard(evaluate.threshold_map(mean, 0.25), mask),
            "gaussian_prior": evaluate.jaccard(evaluate.gaussian_prior(mask.shape, 0.25), mask),
            "baseline_cam": evaluate.jaccard(evaluate.threshold_map(cam, 0.25), mask),
        }
        for method, value in expected.items():
            assert result["per_image"][method][index] == pytest.approx(value)
    for method, values in result["per_image"].items():
        assert result["jaccard"][method] == pytest.approx(np.mean(values))


def _ranked_map(region):
    """An 8x8 map whose 16 largest values (distinct, >= 10) lie on `region`,
    the other 48 below 0.05: its top quarter and its above-mean pixels
    (mean > 10 * 16 / 64 = 2.5) are exactly `region`."""
    values = np.arange(64, dtype=np.float32).reshape(8, 8) * 1e-3
    values[region] += 10.0
    return values


def test_localization_scores_a_synthetic_map_by_hand(tiny_models, monkeypatch):
    model, _ = tiny_models
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True  # 16 pixels
    shifted, exact, away = (np.zeros((8, 8), bool) for _ in range(3))
    shifted[2:6, 3:7] = True  # 12 shared with the mask, union 16 + 16 - 12 = 20
    exact[2:6, 2:6] = True
    away[0:2, :] = True  # none shared
    maps = [_ranked_map(region)[None] for region in (shifted, exact, away)]
    monkeypatch.setattr(
        visualize, "attention_maps", lambda model, inputs, batch_size=None: (np.eye(10)[:1], maps)
    )
    samples = [("square", np.zeros((8, 8, 3), np.uint8), mask)]
    for result in evaluate.localization(model, samples, threshold=[0.25, "mean"]):
        assert result["per_image"]["attention_1"] == [pytest.approx(12 / 20)]
        assert result["per_image"]["attention_2"] == [1.0]
        assert result["per_image"]["attention_3"] == [0.0]
        assert result["jaccard"]["attention_1"] == pytest.approx(0.6)
        assert result["predicted"] == [0]


def test_localization_mean_rule_prior_takes_the_model_area(tiny_models):
    model, _ = tiny_models
    samples = _synthetic_samples()[:1]
    result, top = evaluate.localization(model, samples, threshold=["mean", 0.5])
    assert result["threshold"] == "mean" and top["threshold"] == 0.5
    assert top["per_image"]["gaussian_prior"] == [
        evaluate.jaccard(evaluate.gaussian_prior(samples[0][2].shape, 0.5), samples[0][2])
    ]
    _, image, mask = samples[0]
    inputs = image_files.resize_images(image[None], (32, 32))
    _, maps = visualize.attention_maps(model, inputs)
    mean = np.mean(
        [visualize.normalize_map(visualize.upsample_map(m[0], mask.shape)) for m in maps],
        axis=0,
    )
    region = evaluate.threshold_map(mean, "mean")
    prior = evaluate.gaussian_prior(mask.shape, float(region.mean()))
    assert prior.sum() == region.sum()
    assert result["jaccard"]["gaussian_prior"] == pytest.approx(evaluate.jaccard(prior, mask))
    assert "baseline_cam" not in result["jaccard"]


def test_localization_of_the_baseline_uses_its_cam(tiny_models):
    _, baseline = tiny_models
    result = evaluate.localization(baseline, _synthetic_samples(), threshold=0.5)
    assert list(result["jaccard"]) == ["cam", "gaussian_prior"]


def test_localization_rejects_unmatched_masks(tiny_models):
    model, _ = tiny_models
    name, image, mask = _synthetic_samples()[0]
    with pytest.raises(ValueError, match="s0"):
        evaluate.localization(model, [(name, image, mask[:10])])


# --- Classification -------------------------------------------------------------------


def test_evaluate_classification_values():
    # Identity logits: the "images" are the logits themselves.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")(inputs))
    logits = np.array(
        [[3, 2, 1], [3, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2]], dtype=np.float32
    )
    labels = np.array([0, 1, 1, 0, 2])
    # The second batch has one-hot labels (as with mixup/cutmix pipelines).
    batches = [(logits[:3], labels[:3]), (logits[3:], np.eye(3)[labels[3:]])]
    result = evaluate.evaluate_classification(model, batches, ["a", "b", "c"], top_k=2)
    assert result["count"] == 5
    assert result["accuracy"] == pytest.approx(2 / 5)
    assert result["top_k"] == 2 and result["top_k_accuracy"] == pytest.approx(4 / 5)
    assert result["per_class"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert result["per_class_count"] == {"a": 2, "b": 2, "c": 1}
    text = evaluate.format_classification(result)
    assert "accuracy: 0.4000" in text and "top-2 accuracy: 0.8000" in text
    with pytest.raises(ValueError, match="no images"):
        evaluate.evaluate_classification(model, [])


def _object_discovery_folder(root):
    """Airplane100/ and Car100/ in the Object Discovery layout, 2 images each."""
    for class_name in ("Airplane100", "Car100"):
        for index in (1, 2):
            image = np.full((30, 40, 3), 40 * index, np.uint8)
            mask = np.zeros((15, 20), np.uint8)  # half size, as some masks are
            mask[:, 10:] = 255
            _write(root / class_name / f"000{index}.jpg", image)
            _write(root / class_name / "GroundTruth" / f"000{index}.png", mask)
    return root


def test_object_discovery_layout(tmp_path):
    root = _object_discovery_folder(tmp_path / "od")
    assert evaluate.mask_dataset_layout(root) == "object_discovery"
    samples = evaluate.load_mask_dataset(root)
    assert [name for name, _, _ in samples] == [
        "Airplane100/0001.jpg", "Airplane100/0002.jpg", "Car100/0001.jpg", "Car100/0002.jpg"
    ]
    for _, image, mask in samples:
        assert image.shape == (30, 40, 3) and mask.shape == (30, 40)
        assert mask[:, 21:].all() and not mask[:, :19].any()
    # One class folder on its own, and a limit.
    assert [n for n, _, _ in evaluate.load_mask_dataset(root / "Car100", limit=1)] == ["0001.jpg"]
    result = evaluate.localization(tiny_model(), samples, threshold="mean")
    assert result["count"] == 4 and result["names"][0] == "Airplane100/0001.jpg"
    # A missing mask is named.
    (root / "Car100" / "GroundTruth" / "0002.png").unlink()
    with pytest.raises(ValueError, match="0002"):
        evaluate.load_mask_dataset(root)
