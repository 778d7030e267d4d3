"""The serving graph of an export: both signatures, their input checks and
the limits on how much work one request may cause.

- `serving_default`: `images` uint8 (N, H, W, 3) at the model's input size.
- `serve_bytes`: `image_bytes` string (N,), JPEG or PNG files of any size,
  decoded and resized with `keras_ltpa.data.images` (the pixels training saw).

TF Serving feeds tensors without comparing them to the signature, and runs
requests concurrently, so every check runs inside the graph, before the
work it guards:

- a batch holds 1 .. `max_batch_size` images (both signatures);
- each `image_bytes` entry is non-empty and a JPEG or PNG by its signature
  bytes; a PNG is long enough for its header and ends with its IEND chunk
  (a truncated PNG); BMP, GIF and other formats are refused;
- each file's declared size, read from its header (JPEG: the frame header,
  `tf.image.extract_jpeg_shape`; PNG: the IHDR width and height) before any
  pixel is decoded, is at most `max_image_pixels` pixels;
- the request's declared pixels in all (height x width summed over its
  files, from the same headers, before any decode; `serving_default`:
  N x H x W from the shape) are at most `max_request_pixels`, which bounds
  the decoding work of one request as a whole. Under TF Serving's
  server-side batching these checks see the merged, padded batch
  (docs/serving.md, Batching).

Accepted and converted: greyscale and RGBA (to RGB), 16-bit PNGs (to 8
bits), CMYK JPEGs (to RGB); an animated PNG gives its first frame (the image
viewers without APNG support show). A truncated JPEG is refused by the
decoder ("Invalid JPEG data"), as its header alone cannot tell.
"""

import tensorflow as tf

from keras_ltpa.data import images
from keras_ltpa.model import attention_model
from keras_ltpa.model import describe

SERVING_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
BYTES_SIGNATURE = "serve_bytes"
# Defaults set at export (`export_saved_model(max_image_pixels=...,
# max_batch_size=..., max_request_pixels=...)`): a 4096 x 4096 photo decodes
# to 48 MB of uint8 and ~200 MB of float32 while resized; 64 images of the
# paper's 32x32 input are one large batch.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_REQUEST_PIXELS = 4 * 4096 * 4096  # 2^26: about 1 s of decoding on 2 CPU cores (docs/serving.md)
# PNG widths and heights are at most 2^31 - 1 (its "four-byte unsigned
# integer"); larger declarations are clipped so products never overflow int64.
_MAX_SIDE = 2**31
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Signature (8) + IHDR length, type, width, height, depth, colour type,
# compression, filter, interlace, CRC (25): the bytes a PNG's size needs.
PNG_HEADER_BYTES = 33
PNG_END = b"IEND\xaeB`\x82"  # The IEND chunk's type and CRC: a PNG's last 8 bytes.


def _require(condition, *message):
    """An assertion whose error names the problem (`message` may hold tensors)."""
    return tf.debugging.Assert(condition, list(message), summarize=8)


def _one_after_another(*checks):
    """Builds assertions so each runs only after the previous one passed.

    Without the ordering a tensor of the wrong rank could fail a later
    check (or the model) first, with a less helpful message.
    """
    done = []
    for build in checks:
        with tf.control_dependencies(done):
            done.append(build())
    return done


def _runtime_rank(shape):
    """The rank of the fed tensor, from the values of its runtime shape.

    `tf.rank`/`tf.size(shape)` are folded to the signature's static rank
    when the graph is built or optimised, so they cannot see a tensor of
    another rank fed by TF Serving; counting the dimensions can.
    """
    return tf.reduce_sum(tf.cast(tf.greater_equal(shape, 0), tf.int32))


def _first(mask):
    """The first index (0-based) where the bool vector `mask` holds."""
    return tf.where(mask)[:1, 0]


def _starts_with(strings, prefix):
    return tf.equal(tf.strings.substr(strings, 0, len(prefix)), prefix)


def _ends_with(strings, suffix):
    lengths = tf.strings.length(strings)
    start = tf.maximum(lengths - len(suffix), 0)
    # Vector positions need vector lengths (one per string).
    size = tf.fill(tf.shape(lengths), len(suffix))
    return tf.equal(tf.strings.substr(strings, start, size), suffix)


def _png_size(strings):
    """(height, width) int64 (N, 2) from the IHDR chunk of PNG files."""
    fields = tf.io.decode_raw(
        tf.strings.substr(strings, 16, 8), tf.uint8, fixed_length=8
    )
    fields = tf.cast(fields, tf.int64)
    powers = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
    width = tf.reduce_sum(fields[:, :4] * powers, axis=1)
    height = tf.reduce_sum(fields[:, 4:] * powers, axis=1)
    return tf.stack([height, width], axis=1)


def _declared_size(data):
    """(height, width) int64 a JPEG's frame header or a PNG's IHDR declares."""
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
        lambda: _png_size(data[None])[0],
    )


def _truncated_png_check(image_bytes, is_png):
    """Each PNG is long enough for its header and ends with its IEND chunk."""
    whole = tf.logical_and(
        tf.strings.length(image_bytes) >= PNG_HEADER_BYTES,
        _ends_with(image_bytes, PNG_END),
    )
    bad = tf.logical_and(is_png, tf.logical_not(whole))
    return _require(
        tf.logical_not(tf.reduce_any(bad)),
        "`image_bytes` holds a truncated PNG (no complete header, or no IEND "
        "chunk at its end); entry (0-based):",
        _first(bad),
    )


class ServingGraph:
    """The graph shared by both signatures: checked input -> pixels -> outputs.

    Args:
        model: a `build_model()` model (a functional Keras model).
        class_names: K strings, returned for the top-k classes.
        top_k: classes per image in `classes`/`scores`/`class_names`.
        max_image_pixels: the most pixels (height x width) a `serve_bytes`
            file may declare; None: no limit.
        max_batch_size: the most images in one request; None: no limit.
        max_request_pixels: the most pixels (height x width, summed over the
            request's images) one request may declare; None: no limit.
    """

    def __init__(
        self,
        model,
        class_names,
        top_k,
        max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
        max_batch_size=DEFAULT_MAX_BATCH_SIZE,
        max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS,
    ):
        self.model = attention_model(model)
        self.height, self.width = model.input_shape[1:3]
        self.class_names = list(class_names)
        self.top_k = top_k
        self.attention_count = describe(model)["attention_count"]
        self.max_image_pixels = max_image_pixels
        self.max_batch_size = max_batch_size
        self.max_request_pixels = max_request_pixels

    def __call__(self, pixels):
        outputs = self.model(pixels, training=False)
        probabilities = tf.cast(outputs["probabilities"], tf.float32)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        result = {
            "probabilities": probabilities,
            "classes": classes,
            "scores": scores,
            "class_names": tf.gather(tf.constant(self.class_names), classes),
        }
        for index in range(1, self.attention_count + 1):
            attention = tf.cast(outputs[f"attention_{index}"], tf.float32)
            result[f"attention_{index}"] = attention
            result[f"attention_{index}_full"] = tf.image.resize(
                attention[..., None], (self.height, self.width), method="bilinear"
            )[..., 0]
        return result

    def _batch_checks(self, argument, count):
        """The batch's checks: not empty, then at most `max_batch_size`."""
        checks = [
            lambda: _require(count > 0, f"`{argument}` is an empty batch; send at least one image.")
        ]
        if self.max_batch_size is not None:
            checks.append(
                lambda: _require(
                    count <= self.max_batch_size,
                    f"`{argument}` holds more than {self.max_batch_size} images (the "
                    "max_batch_size set at export; split the request); received",
                    count,
                )
            )
        return checks

    def serve_images(self, images):
        """`images` uint8 (N, H, W, 3), checked in the graph before use."""
        shape = tf.shape(images)
        rank = _runtime_rank(shape)
        checks = _one_after_another(
            lambda: _require(
                tf.equal(rank, 4),
                "`images` must be a batch of images of shape (N, "
                f"{self.height}, {self.width}, 3); received a tensor of rank",
                rank,
            ),
            lambda: _require(
                tf.equal(shape[-1], 3),
                "`images` must have 3 channels (RGB); received channels:",
                shape[-1],
            ),
            lambda: _require(
                tf.logical_and(
                    tf.equal(shape[1], self.height), tf.equal(shape[2], self.width)
                ),
                f"`images` must be {self.height}x{self.width} pixels (send other "
                f"sizes as encoded files to '{BYTES_SIGNATURE}'); received "
                "height, width:",
                shape[1],
                shape[2],
            ),
            *self._batch_checks("images", shape[0]),
            *self._shape_pixels_check(shape),
        )
        with tf.control_dependencies(checks):
            pixels = tf.cast(images, tf.float32)
        return self(pixels)

    def _shape_pixels_check(self, shape):
        """`serving_default`'s request pixels, N x H x W from the shape, once
        the checks before it fixed H and W (a builder; none without a limit)."""
        if self.max_request_pixels is None:
            return []
        each = tf.constant(self.height * self.width, tf.int64)
        return [lambda: self._request_pixels_check("images", tf.fill(shape[:1], each))]

    def _decode(self, data):
        # The package's one decoder and resizer: the pixels training saw.
        return tf.cast(images.decode_image(data, (self.height, self.width)), tf.float32)

    def serve_bytes(self, image_bytes):
        """`image_bytes` string (N,): JPEG or PNG files, checked and limited
        from their headers before any pixel is decoded."""
        checks = _one_after_another(*self._bytes_checks(image_bytes))
        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)
        pixels = tf.map_fn(
            self._decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec((self.height, self.width, 3), tf.float32),
        )
        return self(pixels)

    def _bytes_checks(self, image_bytes):
        """The checks of `serve_bytes`, in order: rank, batch, empty entries,
        format, truncated PNGs, declared sizes, declared total (builders, for
        `_one_after_another`)."""
        rank = _runtime_rank(tf.shape(image_bytes))
        # Signature-byte comparisons cannot fail: built once, read by the checks.
        is_png = _starts_with(image_bytes, PNG_SIGNATURE)
        is_image = tf.logical_or(is_png, _starts_with(image_bytes, JPEG_SIGNATURE))
        return [
            lambda: _require(
                tf.equal(rank, 1),
                "`image_bytes` must be a list (N,) of encoded images; received a "
                "tensor of rank",
                rank,
            ),
            *self._batch_checks("image_bytes", tf.size(image_bytes)),
            lambda: _require(
                tf.reduce_all(tf.strings.length(image_bytes) > 0),
                "`image_bytes` holds an empty string (0 bytes); entry (0-based):",
                _first(tf.equal(tf.strings.length(image_bytes), 0)),
            ),
            lambda: _require(
                tf.reduce_all(is_image),
                "`image_bytes` must hold JPEG or PNG files; these entries "
                "(0-based) are neither:",
                tf.where(tf.logical_not(is_image))[:, 0],
            ),
            lambda: _truncated_png_check(image_bytes, is_png),
            lambda: self._size_checks(image_bytes),
        ]

    def _size_checks(self, image_bytes):
        """Each file's declared height x width is at most `max_image_pixels`,
        then their sum at most `max_request_pixels` (one op, in that order)."""
        sizes = tf.map_fn(
            _declared_size, image_bytes, fn_output_signature=tf.TensorSpec((2,), tf.int64)
        )
        clipped = tf.minimum(sizes, _MAX_SIDE)
        pixels = clipped[:, 0] * clipped[:, 1]
        checks = [tf.no_op()]
        if self.max_image_pixels is not None:
            over = pixels > self.max_image_pixels
            checks.append(_require(
                tf.logical_not(tf.reduce_any(over)),
                f"`image_bytes` holds an image above the limit of {self.max_image_pixels} "
                "pixels (height x width, the max_image_pixels set at export); entry "
                "(0-based), declared height, width:",
                _first(over),
                tf.boolean_mask(sizes, over)[:1],
            ))
        if self.max_request_pixels is not None:
            with tf.control_dependencies(checks[-1:]):
                checks.append(self._request_pixels_check("image_bytes", pixels))
        return checks[-1]

    def _request_pixels_check(self, argument, pixels):
        """The pixels of the request's images (int64 (N,)) sum to at most
        `max_request_pixels`."""
        # Summed in float64: exact below 2^53 pixels, where an int64 sum of
        # absurd declarations (sides up to 2^31) could wrap; shown saturated.
        total = tf.reduce_sum(tf.cast(pixels, tf.float64))
        return _require(
            total <= float(self.max_request_pixels),
            f"`{argument}` declares more pixels in all than the limit of "
            f"{self.max_request_pixels} (height x width summed over the request's "
            "images, the max_request_pixels set at export; split the request); "
            "declared in all:",
            tf.cast(tf.minimum(total, 2.0**62), tf.int64),
        )

    def limits(self):
        """The limits, as recorded in the export's metadata."""
        return {
            "max_image_pixels": self.max_image_pixels,
            "max_batch_size": self.max_batch_size,
            "max_request_pixels": self.max_request_pixels,
        }
