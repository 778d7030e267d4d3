"""The one way to list, decode and resize image files.

Training (`data.load_dataset`), the visualiser, the evaluator and the
exported `serve_bytes` signature all read images through these functions,
so the same file gives the model the same pixels everywhere:

- files: `IMAGE_EXTENSIONS` (JPEG, PNG, BMP, GIF: what TensorFlow decodes),
  hidden files skipped;
- decoding: `decode_image`, to uint8 RGB (grey and RGBA become RGB, the
  first frame of a GIF or animated PNG); JPEGs with the accurate integer
  IDCT, which gives the pixels Pillow and libjpeg give by default;
- resizing: `resize_image`, bilinear with antialiasing (each output pixel
  averages the source pixels it covers, as a photo editor shrinks),
  rounded back to uint8; images already at the size are left untouched.

`decode_image` and `resize_image` are TensorFlow graph functions (tf.data,
SavedModel); `read_image` and `resize_images` run them eagerly on NumPy
arrays for everything else, under any Keras backend.
"""

import contextlib
import os

import numpy as np
import tensorflow as tf

from keras_ltpa.utils.checks import check_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def is_image_file(name):
    """Whether a file name is an image this package reads (by extension).

    Example:
    >>> is_image_file("cat/0001.JPG"), is_image_file(".hidden.png"), is_image_file("notes.txt")
    (True, False, False)
    """
    name = os.path.basename(os.fspath(name))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory):
    """Image files under `directory` (recursive, sorted); hidden files skipped.

    Raises:
        ValueError: `directory` is missing, holds a file that is not an image
            (by extension; the message names it and the allowed extensions),
            or holds no image.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"Image folder {directory!r} does not exist or is not a folder.")
    paths = []
    for root, folders, names in os.walk(directory):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if not is_image_file(name):
                raise ValueError(
                    f"{path!r} is not an image file (allowed extensions: "
                    f"{', '.join(IMAGE_EXTENSIONS)}); remove it or point at a folder of "
                    "images only."
                )
            paths.append(path)
    if not paths:
        raise ValueError(f"No image files found in {directory!r}.")
    return paths


def to_rgb(image):
    """A uint8 (H, W, 1|3|4) tensor as uint8 RGB (grey repeated, alpha dropped).

    Example:
    >>> to_rgb(np.zeros((2, 2, 4), "uint8")).shape.as_list()
    [2, 2, 3]
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
    if image.shape.rank == 3 and image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    if image.shape.rank == 3 and image.shape[-1] == 4:
        return image[..., :3]
    return image


def decode_image(encoded, image_size=None):
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 RGB (H, W, 3).

    Args:
        encoded: scalar string tensor of encoded image bytes.
        image_size: optional (height, width) to resize to (`resize_image`).

    Returns:
        uint8 tensor (H, W, 3).
    """
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    if image_size is None:
        return image
    return resize_image(image, image_size)


def resize_image(image, image_size):
    """Resizes a uint8 (H, W, 3) image to `image_size` if it differs."""
    height, width = check_size(image_size, "image_size")
    image.set_shape([None, None, 3])

    def resized():
        pixels = tf.image.resize(image, (height, width), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), tf.uint8)

    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    image = tf.cond(same, lambda: image, resized)
    image.set_shape([height, width, 3])
    return image


def read_image(path):
    """Reads an image file as a uint8 RGB NumPy array (H, W, 3).

    Raises:
        ValueError: naming the file when it is missing, not an image by
            extension, or does not decode.
    """
    path = os.fspath(path)
    if not is_image_file(path):
        raise ValueError(
            f"{path!r} is not an image file (allowed extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)})."
        )
    try:
        with quiet_stderr():  # libjpeg prints its own complaint first.
            return decode_image(tf.io.read_file(path)).numpy()
    except (tf.errors.OpError, ValueError) as error:
        reason = (getattr(error, "message", None) or str(error)).splitlines()[0]
        raise ValueError(f"Cannot read {path!r} as an image: {reason}") from None


def resize_images(images, size):
    """Resizes uint8 images to `size` (height, width) with `resize_image`.

    Args:
        images: a uint8 array (N, H, W, 3), or a list of uint8 (H_i, W_i, 3)
            arrays of any sizes.
        size: (height, width).

    Returns:
        A uint8 array (N, height, width, 3); a batch already at that size is
        returned as it is.

    Example:
    >>> grey = np.full((8, 8, 3), 128, "uint8")
    >>> resized = resize_images([grey, grey[:4]], (2, 2))
    >>> resized.shape, int(resized.min()), int(resized.max())
    ((2, 2, 2, 3), 128, 128)
    """
    size = check_size(size)
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == size:
        return images
    return np.stack(
        [resize_image(tf.convert_to_tensor(image), size).numpy() for image in images]
    )


def model_input_size(model):
    """The (height, width) a model takes, `(None, None)` when not fixed.

    Example:
    >>> import keras
    >>> model_input_size(keras.Sequential([keras.Input((8, 6, 3)), keras.layers.Flatten()]))
    (8, 6)
    """
    return tuple(model.input_shape[1:3])


def fit_to_model_input(images, model):
    """Images resized to `model`'s input size, the one way every evaluation,
    overlay and transfer feature fits images to a model.

    Args:
        images: a uint8 array (N, H, W, 3), or a list of uint8 (H_i, W_i, 3)
            arrays of any sizes.
        model: a Keras model; a model whose input size is not fixed
            (`(None, None, None, 3)`) takes the images as they are.

    Returns:
        A uint8 array (N, height, width, 3) (resized by `resize_images`, so
        with the pixels training and serving see); a batch already at the
        model's size is returned as it is.

    Example:
    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    >>> fit_to_model_input(np.zeros((2, 16, 12, 3), "uint8"), model).shape
    (2, 8, 8, 3)
    """
    size = model_input_size(model)
    if None in size:
        return images if isinstance(images, np.ndarray) else np.stack(images)
    return resize_images(images, size)


def find_unreadable_images(paths):
    """The files among `paths` that do not decode as images.

    One parallel `tf.data` pass; each failing file is found by its index.

    Args:
        paths: list of file paths.

    Returns:
        A list of the paths that failed to read or decode, in input order.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return []

    def decoded_shape(index, path):
        return index, tf.shape(decode_image(tf.io.read_file(path)))

    readable = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
        .map(decoded_shape, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .map(lambda index, _: index)
        .batch(8192)
    )
    ok = np.zeros(len(paths), dtype=bool)
    with quiet_stderr():  # libjpeg prints its own complaint per bad file.
        for indices in readable:
            ok[indices.numpy()] = True
    return [path for path, good in zip(paths, ok) if not good]


@contextlib.contextmanager
def quiet_stderr():
    """Silences the process' file descriptor 2 (C libraries print there)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
