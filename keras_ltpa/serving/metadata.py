"""The export's own metadata: `assets.extra/keras_ltpa.json` in each version.

TF Serving ignores it; clients, the evaluation tools and later exports read
it with `read_metadata` to learn the model's variant, input size, class
names, top-k, attention maps, limits, warm-up file and batch-norm folding,
and the versions of the libraries that wrote it.
"""

import json
import os

import keras
import tensorflow as tf

from keras_ltpa.serving.signatures import BYTES_SIGNATURE
from keras_ltpa.serving.signatures import SERVING_SIGNATURE
from keras_ltpa.utils import files

# Files under a version's `assets.extra/` travel with it; TF Serving reads
# only its own warm-up file there.
METADATA_FILE = os.path.join("assets.extra", "keras_ltpa.json")
# Version of the metadata file's layout (absent: the 0.1.0 layout).
METADATA_VERSION = 2


def read_metadata(version_dir):
    """The `assets.extra/keras_ltpa.json` of an export, in the current layout.

    Exports written by version 0.1.0 (no `metadata_version`) are read too:
    their missing entries are filled in (`limits` None: those exports
    check no size or batch limit; `warmup` skipped). Exports written before
    `max_request_pixels` existed read it as None: their graphs check no
    total.

    Args:
        version_dir: an export's version folder (`<name>/<version>`).

    Returns:
        The metadata as a dict, `metadata_version` equal to
        `METADATA_VERSION`.

    Example:
    >>> import tempfile
    >>> from keras_ltpa.utils import files
    >>> folder = tempfile.mkdtemp()
    >>> _ = files.write_json(os.path.join(folder, METADATA_FILE), {"top_k": 5})
    >>> read_metadata(folder)["limits"]
    {'max_image_pixels': None, 'max_batch_size': None, 'max_request_pixels': None}
    """
    path = os.path.join(os.fspath(version_dir), METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the export's metadata {path!r}: {error}") from None
    version = metadata.get("metadata_version", 1)
    if version > METADATA_VERSION:
        raise ValueError(
            f"{path!r} has metadata version {version}, newer than this keras-ltpa "
            f"reads ({METADATA_VERSION}); upgrade keras-ltpa."
        )
    if version == 1:
        metadata = dict(metadata)
        metadata.setdefault("limits", {"max_image_pixels": None, "max_batch_size": None})
        metadata.setdefault("warmup", {"skipped": "exported by keras-ltpa 0.1.0"})
        if "fold_max_difference" in metadata:  # 0.1.0: absolute, not relative.
            metadata.setdefault("fold_max_relative_difference", None)
        metadata["metadata_version"] = METADATA_VERSION
    return _with_request_limit(metadata)


def _with_request_limit(metadata):
    """`limits.max_request_pixels` None where an export predates it.

    The entry was added to layout 2 without a new version (older readers
    ignore it); an export without it checks no request total.
    """
    limits = metadata.get("limits")
    if not isinstance(limits, dict) or "max_request_pixels" in limits:
        return metadata
    return {**metadata, "limits": {**limits, "max_request_pixels": None}}


def write_metadata(version_dir, model, facts, predictor, warmup_info, fold_info):
    """Writes `METADATA_FILE` into a version folder being written.

    Args:
        version_dir: the (staging) version folder.
        model: the Keras model exported (before folding).
        facts: `keras_ltpa.describe(model)`.
        predictor: the `ServingGraph` the SavedModel was written from.
        warmup_info: what `warmup.write_warmup_file` returned (or why not).
        fold_info: the folding record of `folding.serving_model`.

    Returns:
        The path of the metadata file.
    """
    metadata = {
        "format": "keras_ltpa SavedModel",
        "metadata_version": METADATA_VERSION,
        "model": model.name,
        "variant": facts["variant"],
        "width_multiplier": facts["width_multiplier"],
        "pixel_mean": facts["pixel_mean"],
        "pixel_std": facts["pixel_std"],
        "input_shape": list(model.input_shape[1:]),
        "num_classes": facts["num_classes"],
        "class_names": predictor.class_names,
        "top_k": predictor.top_k,
        "attention_layers": predictor.attention_count,
        "signatures": {
            SERVING_SIGNATURE: {"images": "uint8 (None, H, W, 3)"},
            BYTES_SIGNATURE: {"image_bytes": "string (None,) JPEG or PNG"},
        },
        "limits": predictor.limits(),
        "warmup": warmup_info,
        **fold_info,
        "versions": {
            "keras_ltpa": _package_version(),
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
    }
    return files.write_json(os.path.join(version_dir, METADATA_FILE), metadata)


def _package_version():
    from keras_ltpa import __version__

    return __version__
