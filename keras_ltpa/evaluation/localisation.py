"""Attention localisation (`localization`): the weakly supervised segmentation
test of the paper (Sec. 5.4, there on Object Discovery; here on the Weizmann horse
set, whose figure-ground masks are real and available offline):

1. each image is resized (bilinear) to the model input and run through the
   model;
2. each attention map is upsampled (bilinear) to the image and its mask;
   `attention_mean` is the average of the min-max scaled maps;
3. a map becomes a region by a `threshold` rule: `"mean"`, the pixels above
   the map's own mean value, or a fraction `f` in (0, 1), the top `f` of the
   pixels (ties broken by position), so every method gets the same area
   (both rules are ours: the paper's binarisation rule is not stated in the
   authors' public code, which writes the raw maps out and stops there;
   docs/evaluation.md says what was found);
4. the score is the Jaccard index (intersection over union) of region and
   mask, averaged over the images.

Two references are scored the same way:
- `gaussian_prior`: a centred blob, the top pixels of a Gaussian centred on
  the image with a standard deviation proportional to each side (so its
  regions are centred ellipses of the image's aspect ratio), with the same
  area as the model's region on that image (with a top-`f` rule: `f`). It
  says how much of a score comes from objects being big and central.
- `baseline_cam`: a class-activation map of the plain VGG baseline
  (`build_model(..., attention=False)`). That model has no global average
  pooling (its g is a dense layer over a 1x1 map at 32x32 input, after two
  more conv blocks), so the original CAM (classifier weights times the last
  conv maps) is undefined; we use Grad-CAM (Selvaraju et al., ICCV 2017) on
  `block5_relu3`, the output of block 5 (8x8 at 32x32 input, the same grid
  as attention map 3 and the layer the paper's att3 taps last):
  `cam = relu(sum_c alpha_c * A_c)` with `alpha_c` the spatial mean of
  d logit / d A_c, for the predicted class (or a fixed `class_index`).

The image + mask sets are read by `keras_ltpa.evaluation.masks`; its names
are importable from here too.
"""

import numpy as np

from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation import overlays as visualize
from keras_ltpa.evaluation.gradcam import grad_cam
from keras_ltpa.evaluation.masks import MASK_THRESHOLD
from keras_ltpa.evaluation.masks import OBJECT_DISCOVERY_MASKS
from keras_ltpa.evaluation.masks import load_mask_dataset
from keras_ltpa.evaluation.masks import mask_dataset_layout
from keras_ltpa.utils.checks import check_size

__all__ = [
    "MASK_THRESHOLD",
    "OBJECT_DISCOVERY_MASKS",
    "check_threshold",
    "format_localization",
    "gaussian_map",
    "gaussian_prior",
    "jaccard",
    "load_mask_dataset",
    "localization",
    "mask_dataset_layout",
    "threshold_map",
]


# --- Regions and scores ---------------------------------------------------


def jaccard(region, mask):
    """Jaccard index |A & B| / |A | B| of two boolean masks of one shape.

    Two empty masks agree perfectly and score 1.
    """
    region = np.asarray(region, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if region.shape != mask.shape:
        raise ValueError(
            f"`region` {region.shape} and `mask` {mask.shape} must have the same shape; "
            "resize one to the other first (see `upsample_map`)."
        )
    union = np.logical_or(region, mask).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(region, mask).sum() / union)


def check_threshold(threshold):
    """Validates a threshold rule: `"mean"` or a fraction in (0, 1)."""
    if threshold == "mean":
        return threshold
    if isinstance(threshold, (int, float, np.floating)) and not isinstance(threshold, bool):
        if 0.0 < float(threshold) < 1.0:
            return float(threshold)
    raise ValueError(
        "`threshold` must be 'mean' (pixels above the map's mean) or a fraction in "
        f"(0, 1) (that top fraction of the pixels); received threshold={threshold!r}."
    )


def _top_pixels(attention, count):
    flat = attention.reshape(-1)
    count = int(min(max(count, 0), flat.size))
    region = np.zeros(flat.size, dtype=bool)
    if count:
        # Stable sort: among equal values the earlier pixel wins, so exactly
        # `count` pixels are chosen.
        region[np.argsort(-flat, kind="stable")[:count]] = True
    return region.reshape(attention.shape)


def threshold_map(attention, threshold="mean"):
    """Turns one map (H, W) into a boolean region by a threshold rule.

    Args:
        attention: array (H, W).
        threshold: `"mean"`: pixels strictly above the map's mean (a constant
            map gives an empty region); a fraction `f` in (0, 1): the
            `round(f * H * W)` highest pixels (at least one).

    Returns:
        bool array (H, W).
    """
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim != 2:
        raise ValueError(f"`attention` must be one map (H, W); received shape {attention.shape}.")
    threshold = check_threshold(threshold)
    if threshold == "mean":
        return attention > attention.mean()
    return _top_pixels(attention, max(1, round(threshold * attention.size)))


def gaussian_map(shape, sigma=0.25):
    """A centred Gaussian (H, W), standard deviation `sigma` times each side."""
    height, width = shape
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def gaussian_prior(shape, area):
    """The centred Gaussian prior region covering `area` of an image.

    Args:
        shape: (height, width).
        area: fraction of the pixels, in [0, 1].

    Returns:
        bool array (H, W) with exactly `round(area * H * W)` pixels set: the
        highest pixels of `gaussian_map(shape)`, a centred ellipse of the
        image's aspect ratio.
    """
    height, width = check_size(tuple(shape), "shape")
    if isinstance(area, bool) or not (
        isinstance(area, (int, float, np.floating)) and 0.0 <= area <= 1.0
    ):
        raise ValueError(f"`area` must be a fraction in [0, 1]; received area={area!r}.")
    return _top_pixels(gaussian_map((height, width)), round(float(area) * height * width))


# --- Localisation -----------------------------------------------------------


def _threshold_rules(threshold):
    """(whether one rule was given, the list of checked rules)."""
    single = not isinstance(threshold, (list, tuple))
    rules = [check_threshold(t) for t in ([threshold] if single else threshold)]
    if not rules:
        raise ValueError("`threshold` is an empty list; give at least one rule.")
    return single, rules


def _check_samples(samples):
    if not samples:
        raise ValueError("`samples` is empty: no images to score.")
    for name, image, mask in samples:
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"Mask of {name!r} is {mask.shape} but its image is {image.shape[:2]}; "
                "resize masks to their images (load_mask_dataset does)."
            )


def _raw_maps(model, baseline, inputs, cam_layer, class_index, batch_size):
    """The model's probabilities, and {method: (N, h, w) maps}: its attention
    maps (or its Grad-CAM without attention), then the baseline's Grad-CAM."""
    probabilities, maps = visualize.attention_maps(model, inputs, batch_size=batch_size)
    sources = {f"attention_{k}": m for k, m in enumerate(maps, start=1)}
    if not maps:
        sources["cam"] = grad_cam(model, inputs, cam_layer, class_index, batch_size)
    if baseline is not None:
        sources["baseline_cam"] = grad_cam(baseline, inputs, cam_layer, class_index, batch_size)
    return probabilities, sources


def _methods(sources):
    """Every scored method in report order, and the model's own last one
    (the map whose region area the centred prior copies)."""
    model_methods = [m for m in sources if m != "baseline_cam"]
    if sum(m.startswith("attention_") for m in sources) > 1:
        model_methods.append("attention_mean")
    baseline = ["baseline_cam"] if "baseline_cam" in sources else []
    return model_methods + ["gaussian_prior"] + baseline, model_methods[-1]


def _upsampled_maps(sources, index, shape):
    """Image `index`'s maps at `shape`, with the mean of the scaled attention maps."""
    upsampled = {method: visualize.upsample_map(m[index], shape) for method, m in sources.items()}
    attention = [m for method, m in upsampled.items() if method.startswith("attention_")]
    if len(attention) > 1:
        upsampled["attention_mean"] = np.mean([visualize.normalize_map(m) for m in attention], axis=0)
    return upsampled


def _image_scores(upsampled, mask, rule, area_method):
    """{method: Jaccard index} of one image under one threshold rule."""
    regions = {method: threshold_map(m, rule) for method, m in upsampled.items()}
    # The prior gets the area of the model's own region (its mean map).
    area = regions[area_method].mean() if rule == "mean" else rule
    regions["gaussian_prior"] = gaussian_prior(mask.shape, float(area))
    return {method: jaccard(region, mask) for method, region in regions.items()}


def localization(
    model, samples, baseline=None, threshold="mean", cam_layer=None, class_index=None, batch_size=64
):
    """Mean Jaccard index of attention regions against figure-ground masks.

    Args:
        model: the model to score: with attention, its maps
            (`attention_<k>` and their mean `attention_mean`); without
            (the plain baseline), its Grad-CAM (`cam`).
        samples: `(name, image, mask)` triples from `load_mask_dataset`.
        baseline: optional plain VGG baseline, scored as `baseline_cam`.
        threshold: `"mean"` or a top fraction in (0, 1) (see
            `threshold_map`), or a list of such rules (the maps are computed
            once and scored under each).
        cam_layer: layer for Grad-CAM (default: each model's own, see
            `grad_cam`).
        class_index: class explained by Grad-CAM (None: the predicted one).
        batch_size: images per model call.

    Returns:
        A dict (a list of dicts, one per rule, for a list of rules):
        `threshold`, `count`, `jaccard` ({method: mean Jaccard}),
        `per_image` ({method: list of Jaccard indices}), `names`, and
        `predicted` (the model's predicted class per image). Methods are
        the model's maps, then `gaussian_prior`, then `baseline_cam`.

    Example:
    >>> from keras_ltpa import build_model
    >>> mask = np.zeros((40, 40), bool)
    >>> mask[10:30, 10:30] = True
    >>> samples = [("square", np.zeros((40, 40, 3), "uint8"), mask)]
    >>> result = localization(build_model(10, width_multiplier=0.0625), samples, threshold=0.25)
    >>> list(result["jaccard"]), round(result["jaccard"]["gaussian_prior"], 3)
    (['attention_1', 'attention_2', 'attention_3', 'attention_mean', 'gaussian_prior'], 0.852)
    """
    single, rules = _threshold_rules(threshold)
    _check_samples(samples)
    inputs = image_files.fit_to_model_input([image for _, image, _ in samples], model)
    probabilities, sources = _raw_maps(model, baseline, inputs, cam_layer, class_index, batch_size)
    methods, area_method = _methods(sources)
    per_image = [{method: [] for method in methods} for _ in rules]
    for index, (_, _, mask) in enumerate(samples):
        upsampled = _upsampled_maps(sources, index, mask.shape)
        for rule, scores in zip(rules, per_image):
            image_scores = _image_scores(upsampled, mask, rule, area_method)
            for method in methods:
                scores[method].append(image_scores[method])
    results = [
        {
            "threshold": rule,
            "count": len(samples),
            "jaccard": {method: float(np.mean(scores[method])) for method in methods},
            "per_image": scores,
            "names": [name for name, _, _ in samples],
            "predicted": probabilities.argmax(axis=-1).tolist(),
        }
        for rule, scores in zip(rules, per_image)
    ]
    return results[0] if single else results


def format_localization(results):
    """A plain-text table of `localization` results (one column per rule)."""
    if isinstance(results, dict):
        results = [results]
    methods = list(results[0]["jaccard"])
    headers = [
        "mean rule" if r["threshold"] == "mean" else f"top {r['threshold']:.0%}"
        for r in results
    ]
    width = max(len(m) for m in methods + ["method"])
    lines = [
        f"mean Jaccard index over {results[0]['count']} images",
        f"{'method':<{width}}  " + "  ".join(f"{h:>9}" for h in headers),
    ]
    for method in methods:
        lines.append(
            f"{method:<{width}}  "
            + "  ".join(f"{r['jaccard'][method]:>9.4f}" for r in results)
        )
    return "\n".join(lines)
