"""Image + figure-ground mask sets for the localisation test.

Two layouts, told apart by `mask_dataset_layout`:

- Weizmann horses: `DIR/rgb/<name>` with a mask of the same name under
  `DIR/figure_ground/`;
- Object Discovery (Rubinstein et al., CVPR 2013; the paper's Airplane100 /
  Car100 / Horse100 subsets): `<Class>/NNNN.jpg` with
  `<Class>/GroundTruth/NNNN.png`.

`load_mask_dataset` reads either as `(name, image, mask)` triples, each mask
resized (bilinear) to its image and thresholded at `MASK_THRESHOLD`.
"""

import os

import numpy as np
from PIL import Image

from keras_ltpa.data import images as image_files

MASK_THRESHOLD = 128
OBJECT_DISCOVERY_MASKS = "GroundTruth"


def _read_mask(mask_path, image):
    """A mask file as bool (H, W) at its image's size (bilinear, >= 128)."""
    try:
        with Image.open(mask_path) as mask_file:
            mask = mask_file.convert("L")
            if mask.size != (image.shape[1], image.shape[0]):
                mask = mask.resize((image.shape[1], image.shape[0]), Image.BILINEAR)
            return np.asarray(mask) >= MASK_THRESHOLD
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read mask {mask_path!r}: {error}") from None


def _object_discovery_pairs(directory):
    """(name, image path, mask path) of an Object Discovery folder."""
    if os.path.isdir(os.path.join(directory, OBJECT_DISCOVERY_MASKS)):
        class_dirs = [directory]  # one class folder, e.g. Horse100/
    else:
        class_dirs = sorted(
            os.path.join(directory, entry)
            for entry in os.listdir(directory)
            if os.path.isdir(os.path.join(directory, entry, OBJECT_DISCOVERY_MASKS))
        )
    pairs = []
    for class_dir in class_dirs:
        masks_root = os.path.join(class_dir, OBJECT_DISCOVERY_MASKS)
        for path in image_files.list_images(class_dir):
            if os.path.dirname(path) != class_dir:
                continue  # the masks themselves, and any other sub-folder
            stem = os.path.splitext(os.path.basename(path))[0]
            candidates = [
                os.path.join(masks_root, stem + extension)
                for extension in (".png", ".bmp", ".jpg")
            ]
            mask_path = next((c for c in candidates if os.path.isfile(c)), None)
            if mask_path is None:
                raise ValueError(
                    f"Image {path!r} has no mask: {candidates[0]!r} is missing."
                )
            name = os.path.relpath(path, directory)
            pairs.append((name, path, mask_path))
    return pairs


def _weizmann_pairs(directory, image_dir, mask_dir):
    """(name, image path, mask path) of a Weizmann-style folder."""
    images_root = os.path.join(directory, image_dir)
    masks_root = os.path.join(directory, mask_dir)
    for folder, argument in ((images_root, "image_dir"), (masks_root, "mask_dir")):
        if not os.path.isdir(folder):
            raise ValueError(
                f"{folder!r} is not a folder: `{argument}` must name a sub-folder of "
                f"{directory!r}."
            )
    pairs = []
    for path in image_files.list_images(images_root):
        name = os.path.relpath(path, images_root)
        mask_path = os.path.join(masks_root, name)
        if not os.path.isfile(mask_path):
            raise ValueError(f"Image {path!r} has no mask: {mask_path!r} is missing.")
        pairs.append((name, path, mask_path))
    return pairs


def mask_dataset_layout(directory):
    """`"weizmann"` (DIR/rgb + DIR/figure_ground), `"object_discovery"`
    (DIR/<Class>/NNNN.jpg + DIR/<Class>/GroundTruth/NNNN.png, or one such
    class folder), or a ValueError naming what was looked for."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"Mask dataset {directory!r} is not a folder.")
    if os.path.isdir(os.path.join(directory, "rgb")) and os.path.isdir(
        os.path.join(directory, "figure_ground")
    ):
        return "weizmann"
    if os.path.isdir(os.path.join(directory, OBJECT_DISCOVERY_MASKS)) or any(
        os.path.isdir(os.path.join(directory, entry, OBJECT_DISCOVERY_MASKS))
        for entry in os.listdir(directory)
    ):
        return "object_discovery"
    raise ValueError(
        f"{directory!r} is neither a Weizmann-style set ({os.path.join(directory, 'rgb')!r} "
        f"and {os.path.join(directory, 'figure_ground')!r}) nor an Object Discovery set "
        "(<Class>/NNNN.jpg with <Class>/GroundTruth/NNNN.png)."
    )


def load_mask_dataset(directory, image_dir="rgb", mask_dir="figure_ground", limit=None):
    """Reads an image + figure-ground mask set.

    Two layouts, told apart by `mask_dataset_layout`:
    - Weizmann horses: every image `<directory>/<image_dir>/<name>` has a
      mask of the same file name under `<directory>/<mask_dir>/`;
    - Object Discovery (Rubinstein et al., CVPR 2013; the paper's
      Airplane100 / Car100 / Horse100 subsets): `<Class>/NNNN.jpg` with
      `<Class>/GroundTruth/NNNN.png`, for the root holding the class folders
      or for one class folder; names are `<Class>/NNNN.jpg`.

    A mask is resized (bilinear) to its image and thresholded at 128.

    Args:
        directory: the set's root folder.
        image_dir, mask_dir: sub-folder names (Weizmann layout).
        limit: read only the first `limit` images (sorted by name).

    Returns:
        A list of `(name, image, mask)`: uint8 (H, W, 3) and bool (H, W).

    Example:
    >>> samples = load_mask_dataset("../shared/data/weizmann_horse", limit=2)  # doctest: +SKIP
    >>> [name for name, _, _ in samples]  # doctest: +SKIP
    ['horse001.jpg', 'horse002.jpg']
    """
    directory = os.fspath(directory)
    explicit = (image_dir, mask_dir) != ("rgb", "figure_ground")
    if not explicit and os.path.isdir(directory) and mask_dataset_layout(directory) == "object_discovery":
        pairs = _object_discovery_pairs(directory)
    else:
        pairs = _weizmann_pairs(directory, image_dir, mask_dir)
    if not pairs:
        raise ValueError(f"Mask dataset {directory!r} holds no images.")
    if limit is not None:
        pairs = pairs[:limit]
    samples = []
    for name, path, mask_path in pairs:
        image = image_files.read_image(path)
        samples.append((name, image, _read_mask(mask_path, image)))
    return samples
