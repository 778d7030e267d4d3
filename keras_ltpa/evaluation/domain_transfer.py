"""Cross-domain transfer: the trained model's features, a linear classifier.

The paper (Jetley et al., ICLR 2018, Sec. 5.2) shows that the attention
model's features generalise better to unseen datasets: the CIFAR-trained
network is frozen, each image of the target set gives one feature vector,
and a linear SVM is trained on the target's training split. The features:

- attention models: the attention-pooled vectors [g_a^1, ..., g_a^S],
  concatenated (what the "concat" classifier sees);
- the plain VGG baseline: the global feature g (what its classifier sees).

Here the features are standardised (zero mean, unit variance per dimension,
fitted on the target's training split) and scikit-learn's `LinearSVC`
(one-vs-rest, squared hinge, C=1) is fitted; the scores are top-1 accuracy
and the mean of the per-class accuracies on the target's test split.
Images are resized to the model's input size (bilinear, not aspect
preserving), so at 32x32 much detail of a large photo is lost.
"""

import keras
import numpy as np

from keras_ltpa.data import images as image_files
from keras_ltpa.evaluation.overlays import check_image_batch
from keras_ltpa.model import describe
from keras_ltpa.utils.batches import map_batches
from keras_ltpa.utils.checks import check_choice

FEATURE_KINDS = ("auto", "attention", "global")


def feature_model(model, kind="auto"):
    """A model from raw pixels to the transfer features.

    Args:
        model: a `build_model()` model (or a file of one, loaded).
        kind: `"attention"` (the concatenated attention-pooled vectors),
            `"global"` (g, the input of the baseline's classifier) or
            `"auto"` (attention when the model has attention, else global).

    Returns:
        A `keras.Model` with the model's input and one (N, D) output.

    Example:
    >>> from keras_ltpa import build_model
    >>> feature_model(build_model(10, variant="noatt", width_multiplier=0.0625)).output.shape
    (None, 32)
    """
    check_choice("kind", kind, FEATURE_KINDS)
    count = describe(model)["attention_count"]
    if kind == "auto":
        kind = "attention" if count else "global"
    names = [layer.name for layer in model.layers]
    if kind == "attention":
        if not count:
            raise ValueError(
                f"Model {model.name!r} has no attention estimators, so it has no "
                "attention features: use kind='global' (--features global) for g."
            )
        vectors = [model.get_layer(f"attention_pool_{k}").output[0] for k in range(1, count + 1)]
        features = vectors[0] if len(vectors) == 1 else keras.layers.Concatenate(
            name="transfer_features"
        )(vectors)
    else:
        if count:
            raise ValueError(
                f"Model {model.name!r} has attention; its classifier does not see "
                "g alone. Use kind='attention' (the pooled vectors) or 'auto'."
            )
        if "classifier" not in names:
            raise ValueError(f"Model {model.name!r} has no layer 'classifier' to take g from.")
        features = model.get_layer("classifier").input
    return keras.Model(model.inputs[0], features, name=f"{model.name}_features")


def transfer_features(model, images, kind="auto", batch_size=64):
    """The transfer features of raw images, float32 (N, D).

    Args:
        model: a `build_model()` model.
        images: uint8 (N, H, W, 3); resized to the model's input when needed.
        kind: see `feature_model`.
        batch_size: images per model call.

    Returns:
        float32 (N, D): D is the sum of the attention-pooled widths, or g's.

    Example:
    >>> from keras_ltpa import build_model
    >>> model = build_model(10, width_multiplier=0.0625)
    >>> transfer_features(model, np.zeros((2, 32, 32, 3), "uint8")).shape
    (2, 96)
    """
    images = check_image_batch(images)
    extractor = feature_model(model, kind)
    images = image_files.fit_to_model_input(images, model)
    features = map_batches(
        lambda batch: extractor(batch.astype("float32"), training=False), images, batch_size=batch_size
    )
    return features.reshape(len(images), -1)


def linear_classifier_scores(
    train_features, train_labels, test_features, test_labels, class_names=None, C=1.0
):
    """Standardise, fit a linear SVM on the train split, score the test split.

    Args:
        train_features, test_features: float (N, D) arrays.
        train_labels, test_labels: int (N,) arrays.
        class_names: optional names for the per-class entries.
        C: the SVM's regularisation (scikit-learn's `C`).

    Returns:
        A dict: `train_count`, `test_count`, `feature_dim`, `num_classes`,
        `accuracy` (top-1), `mean_class_accuracy`, `per_class` ({name:
        accuracy}) and `classifier` (what was fitted).
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    train_features = np.asarray(train_features, "float64")
    test_features = np.asarray(test_features, "float64")
    train_labels = np.asarray(train_labels).reshape(-1)
    test_labels = np.asarray(test_labels).reshape(-1)
    if not len(train_features) or not len(test_features):
        raise ValueError(
            f"Transfer needs images in both splits; received {len(train_features)} "
            f"train and {len(test_features)} test feature vectors."
        )
    if len(np.unique(train_labels)) < 2:
        raise ValueError("The transfer training split has fewer than 2 classes.")
    classifier = make_pipeline(
        StandardScaler(), LinearSVC(C=C, max_iter=10000, random_state=0)
    )
    classifier.fit(train_features, train_labels)
    predicted = classifier.predict(test_features)
    hits = predicted == test_labels
    classes = np.unique(test_labels)
    per_class = {int(c): float(hits[test_labels == c].mean()) for c in classes}

    def name(label):
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(label)

    return {
        "train_count": len(train_features),
        "test_count": len(test_features),
        "feature_dim": int(train_features.shape[1]),
        "num_classes": int(len(np.unique(train_labels))),
        "accuracy": float(hits.mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class": {name(c): a for c, a in per_class.items()},
        "classifier": f"StandardScaler + LinearSVC(C={C:g}, squared hinge, one-vs-rest)",
    }


def transfer(model, train, test, kind="auto", class_names=None, batch_size=64, C=1.0):
    """Cross-domain transfer score of `model` on a target dataset.

    Args:
        model: a trained `build_model()` model (frozen).
        train, test: `(images, labels)` of the target's two splits: uint8
            (N, H, W, 3) and int (N,).
        kind: which features (see `feature_model`).
        class_names: the target's class names, for the per-class entries.
        batch_size: images per model call.
        C: the SVM's regularisation.

    Returns:
        `linear_classifier_scores`'s dict, plus `features` (the kind used).

    Example:
    >>> result = transfer(model, (x_train, y_train), (x_test, y_test))  # doctest: +SKIP
    >>> result["accuracy"], result["mean_class_accuracy"]  # doctest: +SKIP
    """
    kind_used = kind if kind != "auto" else (
        "attention" if describe(model)["attention_count"] else "global"
    )
    train_features = transfer_features(model, train[0], kind, batch_size)
    test_features = transfer_features(model, test[0], kind, batch_size)
    result = linear_classifier_scores(
        train_features, train[1], test_features, test[1], class_names=class_names, C=C
    )
    result["features"] = kind_used
    return result


def format_transfer(results):
    """A plain-text table of `transfer` results, one row per model.

    Args:
        results: {model name: result}.
    """
    first = next(iter(results.values()))
    lines = [
        f"linear transfer: {first['num_classes']} classes, {first['train_count']} train / "
        f"{first['test_count']} test images",
        f"{'model':<14} {'features':<10} {'dim':>5} {'top-1':>7} {'mean class':>11}",
    ]
    for name, result in results.items():
        lines.append(
            f"{name:<14} {result['features']:<10} {result['feature_dim']:>5} "
            f"{result['accuracy']:>7.4f} {result['mean_class_accuracy']:>11.4f}"
        )
    return "\n".join(lines)
