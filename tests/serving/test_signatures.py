"""The serving graph under hostile requests: limits read from file headers
before decoding, every kind of bad input refused with its reason, and the
same loaded model answering the next good request (TensorFlow backend)."""

import functools
import io
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_ltpa.data import images
from keras_ltpa.serving import export
from keras_ltpa.serving import signatures
from tests.conftest import PROBE_IMAGES
from tests.conftest import png_bytes

tf_only = pytest.mark.tf_only


def _chunk(kind, data):
    body = kind + data
    return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def _ihdr(width, height):
    return _chunk(b"IHDR", width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0]))


@functools.lru_cache(maxsize=None)
def png_declaring(width, height):
    """A valid all-black RGB PNG of width x height pixels, compressed while
    written (a 10000 x 10000 image is ~300 KB of file, 300 MB of pixels)."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # Filter byte 0, then black pixels.
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return signatures.PNG_SIGNATURE + _ihdr(width, height) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def png_header_declaring(width, height):
    """A PNG of header and end only (no pixel data) declaring width x height,
    sides up to 2^32 - 1: the checks before decoding must refuse it."""
    return signatures.PNG_SIGNATURE + _ihdr(width, height) + _chunk(b"IEND", b"")


def jpeg_declaring(width, height):
    """A small real JPEG whose frame header claims width x height."""
    buffer = io.BytesIO()
    Image.fromarray(PROBE_IMAGES[0]).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")  # Baseline frame: length(2) precision(1) height(2) width(2).
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def encoded(image, kind, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, kind, **options)
    return buffer.getvalue()


def hostile_requests():
    """(signature, input, expected message) for every kind of bad request."""
    good_png = png_bytes(PROBE_IMAGES[0])
    jpeg = encoded(PROBE_IMAGES[1], "JPEG")
    gif = encoded(PROBE_IMAGES[0], "GIF")
    return [
        ("serve_bytes", [png_declaring(10000, 10000)], r"above the limit of 16777216 pixels.*\[0\] \[\[10000 10000\]\]"),
        ("serve_bytes", [good_png, jpeg_declaring(20000, 30000)], r"above the limit of 16777216 pixels.*\[1\] \[\[30000 20000\]\]"),
        # (2^32 - 1)^2 pixels: an int64 product would wrap below the limit.
        ("serve_bytes", [png_header_declaring(2**32 - 1, 2**32 - 1)], r"above the limit of 16777216 pixels.*\[0\] \[\[4294967295 4294967295\]\]"),
        # Each at the per-image limit, 64 images: 64 x 4096 x 4096 = 2^30 = 1073741824 pixels.
        ("serve_bytes", [png_declaring(4096, 4096)] * 64, r"more pixels in all than the limit of 67108864 .*max_request_pixels.*\[1073741824\]"),
        ("serve_bytes", [good_png] * 65, r"more than 64 images.*\[65\]"),
        ("serve_bytes", [b"this is not an image"], r"JPEG or PNG.*\[0\]"),
        ("serve_bytes", [good_png, gif], r"JPEG or PNG.*\[1\]"),
        ("serve_bytes", [good_png, b""], r"empty string.*\[1\]"),
        ("serve_bytes", [good_png[:-20]], r"truncated PNG.*\[0\]"),
        ("serve_bytes", [good_png[:20]], r"truncated PNG.*\[0\]"),
        ("serve_bytes", [jpeg[: len(jpeg) // 2]], r"Invalid JPEG data"),
        ("serve_bytes", [], r"empty batch"),
        ("serving_default", np.zeros((65, 32, 32, 3), np.uint8), r"more than 64 images.*\[65\]"),
        ("serving_default", np.zeros((1, 16, 32, 3), np.uint8), r"32x32 pixels.*\[16\] \[32\]"),
        ("serving_default", np.zeros((1, 32, 32, 4), np.uint8), r"3 channels.*\[4\]"),
    ]


@pytest.fixture(scope="module")
def limited(serving_loaded):
    return serving_loaded["folded"]


def call(saved, signature, value):
    import tensorflow as tf

    name = "image_bytes" if signature == "serve_bytes" else "images"
    dtype = tf.string if signature == "serve_bytes" else tf.uint8
    outputs = saved.signatures[signature](**{name: tf.constant(value, dtype)})
    return {key: tensor.numpy() for key, tensor in outputs.items()}


@tf_only
def test_each_hostile_request_is_refused_and_the_model_recovers(limited):
    import tensorflow as tf

    good = call(limited, "serving_default", PROBE_IMAGES[:1])
    for signature, value, message in hostile_requests():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call(limited, signature, value)
        again = call(limited, "serving_default", PROBE_IMAGES[:1])
        np.testing.assert_array_equal(again["probabilities"], good["probabilities"])


@tf_only
def test_accepted_formats_give_the_training_pixels(limited):
    """16-bit PNGs, CMYK JPEGs and animated PNGs are answered as
    keras_ltpa.data.images decodes them (the first frame of an APNG)."""
    import tensorflow as tf

    wide = (PROBE_IMAGES[0].astype(np.uint16) * 257)[..., 0]  # 16-bit greyscale
    frames = [Image.fromarray(PROBE_IMAGES[0]), Image.fromarray(PROBE_IMAGES[2])]
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    files = [
        encoded(wide, "PNG"),
        _cmyk_jpeg(PROBE_IMAGES[1]),
        apng.getvalue(),
    ]
    out = call(limited, "serve_bytes", files)
    pixels = np.stack([
        images.resize_image(images.decode_image(tf.constant(data)), (32, 32)).numpy()
        for data in files
    ])
    np.testing.assert_array_equal(pixels[2], PROBE_IMAGES[0])  # The first frame.
    expected = call(limited, "serving_default", pixels)
    # The same uint8 pixels through the same graph: equal up to the order
    # of float32 operations in a batch of another size.
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-6)


def _cmyk_jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).convert("CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@tf_only
def test_limits_are_set_at_export_and_recorded(serving_model, tmp_path):
    import tensorflow as tf

    path = export.export_saved_model(
        serving_model, tmp_path, max_image_pixels=64 * 64, max_batch_size=2,
        warmup_requests=False,
    )
    metadata = export.read_metadata(path)
    assert metadata["limits"] == {
        "max_image_pixels": 4096, "max_batch_size": 2, "max_request_pixels": 4 * 4096 * 4096,
    }
    saved = tf.saved_model.load(path)
    call(saved, "serve_bytes", [png_declaring(64, 64)])  # At the limit: answered.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"limit of 4096 pixels.*\[\[64 65\]\]"):
        call(saved, "serve_bytes", [png_declaring(65, 64)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"more than 2 images.*\[3\]"):
        call(saved, "serving_default", PROBE_IMAGES)
    unlimited = export.export_saved_model(
        serving_model, tmp_path, max_image_pixels=None, max_batch_size=None,
        max_request_pixels=None, warmup_requests=False,
    )
    assert export.read_metadata(unlimited)["limits"] == {
        "max_image_pixels": None, "max_batch_size": None, "max_request_pixels": None,
    }
    out = call(tf.saved_model.load(unlimited), "serve_bytes", [png_declaring(300, 200)] * 70)
    assert out["probabilities"].shape == (70, 10)
    for bad in (dict(max_image_pixels=0), dict(max_batch_size=1.5), dict(max_request_pixels=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            export.export_saved_model(serving_model, tmp_path, **bad)
    with pytest.raises(ValueError, match=r"`max_image_pixels` \(2000\) is above `max_request_pixels` \(1000\)"):
        export.export_saved_model(serving_model, tmp_path, max_image_pixels=2000, max_request_pixels=1000)


@tf_only
def test_request_pixel_limit_refuses_the_declared_total_before_decoding(serving_model, tmp_path):
    """Each image within max_image_pixels, each batch within max_batch_size:
    the sum of the declared pixels decides. Totals by hand from the sides."""
    import tensorflow as tf

    path = export.export_saved_model(
        serving_model, tmp_path, max_image_pixels=1024, max_batch_size=4,
        max_request_pixels=3000, warmup_requests=False,
    )
    assert export.read_metadata(path)["limits"] == {
        "max_image_pixels": 1024, "max_batch_size": 4, "max_request_pixels": 3000,
    }
    saved = tf.saved_model.load(path)
    # 32 x 32 + 32 x 32 + 34 x 28 = 1024 + 1024 + 952 = 3000: at the limit, answered.
    at_limit = [png_declaring(32, 32), png_declaring(32, 32), png_declaring(34, 28)]
    out = call(saved, "serve_bytes", at_limit)
    black = call(saved, "serving_default", np.zeros((1, 32, 32, 3), np.uint8))["probabilities"]
    np.testing.assert_allclose(out["probabilities"], np.repeat(black, 3, axis=0), atol=1e-6)
    over = r"`image_bytes` declares more pixels in all than the limit of 3000 .*max_request_pixels.*"
    with pytest.raises(tf.errors.InvalidArgumentError, match=over + r"\[3001\]"):
        call(saved, "serve_bytes", at_limit + [png_declaring(1, 1)])  # 3000 + 1
    # A JPEG cut 40 bytes into its scan: its header reads, its pixels do not
    # decode; sent with the others, the total's refusal comes first.
    jpeg = encoded(PROBE_IMAGES[1], "JPEG")
    cut = jpeg[: jpeg.index(b"\xff\xda") + 40]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data or crop window"):
        call(saved, "serve_bytes", [cut])
    with pytest.raises(tf.errors.InvalidArgumentError, match=over + r"\[4024\]"):
        call(saved, "serve_bytes", at_limit + [cut])  # 3000 + 32 x 32
    # serving_default: N x 32 x 32 from the shape; 2 x 1024 answered, 3 x 1024 refused.
    assert call(saved, "serving_default", PROBE_IMAGES[:2])["probabilities"].shape == (2, 10)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`images` declares more pixels in all than the limit of 3000 .*\[3072\]",
    ):
        call(saved, "serving_default", PROBE_IMAGES)


@tf_only
def test_default_request_limit_answers_64_photos_of_640x480(limited):
    """64 x 640 x 480 = 19,660,800 pixels, under the default 2^26; the
    refusal of 64 x 4096 x 4096 is among `hostile_requests`."""
    photo = encoded(np.asarray(Image.fromarray(PROBE_IMAGES[0]).resize((640, 480))), "JPEG")
    out = call(limited, "serve_bytes", [photo] * 64)
    one = call(limited, "serve_bytes", [photo])
    np.testing.assert_allclose(out["probabilities"], np.repeat(one["probabilities"], 64, axis=0), atol=1e-6)


@tf_only
def test_request_total_cannot_wrap_without_a_per_image_limit(serving_model):
    """Three PNGs declaring (2^31 - 1)^2 pixels each: an int64 total would
    wrap negative; the request is refused, the total shown saturated at 2^62."""
    import tensorflow as tf

    graph = signatures.ServingGraph(
        serving_model, [str(i) for i in range(10)], 3, max_image_pixels=None,
        max_batch_size=None, max_request_pixels=2**26,
    )
    serve = tf.function(graph.serve_bytes, input_signature=[tf.TensorSpec((None,), tf.string)])
    files = tf.constant([png_header_declaring(2**31 - 1, 2**31 - 1)] * 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"limit of 67108864 .*\[4611686018427387904\]"
    ):
        serve(files)


@tf_only
def test_exports_of_version_0_1_0_still_load_and_answer():
    """An export written before limits and warm-up (metadata without a
    version) loads, answers both signatures, and its metadata reads in the
    current layout."""
    import pathlib

    import tensorflow as tf

    path = pathlib.Path(__file__).parents[1] / "fixtures" / "legacy_export" / "1"
    metadata = export.read_metadata(path)
    assert metadata["metadata_version"] == export.METADATA_VERSION
    assert metadata["limits"] == {
        "max_image_pixels": None, "max_batch_size": None, "max_request_pixels": None,
    }
    assert metadata["class_names"] == ["a", "b", "c"]
    saved = tf.saved_model.load(str(path))
    by_pixels = call(saved, "serving_default", PROBE_IMAGES[:2])
    by_bytes = call(saved, "serve_bytes", [png_bytes(image) for image in PROBE_IMAGES[:2]])
    np.testing.assert_allclose(by_bytes["probabilities"], by_pixels["probabilities"], atol=1e-6)
    assert by_pixels["class_names"].shape == (2, 3)


# A child process loads the export, serves a storm of requests from 8
# threads and reports its own memory (/proc/self/status: VmRSS now, VmHWM
# its peak, in KiB) with what each request got. Its peak is the storm's and
# the load's alone, not what the test worker used before. A watchdog thread
# ends it as soon as its RSS grows past the bound (a broken limit would
# otherwise decode gigabytes for minutes); that fails the test.
STORM_CHILD = r"""
import concurrent.futures, json, os, pickle, re, sys, threading, time

import numpy as np
import tensorflow as tf


def memory_kib(field):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status")


export_path, work_path, bound_mib = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(work_path, "rb") as file:
    good_requests, hostile, work = pickle.load(file)
saved = tf.saved_model.load(export_path)


def call(signature, value):
    name = "image_bytes" if signature == "serve_bytes" else "images"
    dtype = tf.string if signature == "serve_bytes" else tf.uint8
    return saved.signatures[signature](**{name: tf.constant(value, dtype)})["probabilities"].numpy()


# Each signature traced and run once, one thread: the answers to compare with.
expected = [call(signature, value) for signature, value in good_requests]
rss_before, peak_before = memory_kib("VmRSS"), memory_kib("VmHWM")


def watchdog():
    while True:
        if memory_kib("VmRSS") - rss_before > bound_mib * 1024:
            print(json.dumps({"stopped": memory_kib("VmHWM") - rss_before}), flush=True)
            os._exit(3)
        time.sleep(0.005)


threading.Thread(target=watchdog, daemon=True).start()


def run(item):
    kind, which = item
    if kind == "good":
        answer = call(*good_requests[which])
        return float(np.max(np.abs(answer - expected[which])))
    signature, value, message = hostile[which]
    try:
        call(signature, value)
    except tf.errors.InvalidArgumentError as error:
        return re.search(message, str(error)) is not None
    return False


with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    results = list(pool.map(run, work))
peak_after = memory_kib("VmHWM")
after = float(np.max(np.abs(call(*good_requests[0]) - expected[0])))
print(json.dumps({
    "rss_before": rss_before, "peak_before": peak_before, "peak_after": peak_after,
    "results": results, "after": after,
}), flush=True)
"""


@tf_only
def test_concurrent_good_and_hostile_requests(serving_exports, tmp_path):
    """TF Serving's way: one loaded model, many threads. 8 threads x 50
    requests, good ones mixed with every hostile kind, in a fresh process:
    each good answer equals the single-threaded one, each bad one gets its
    error, and the process' peak memory stays within decoding one hostile
    image's worth above its size before the storm (10000 x 10000 x 3 bytes =
    300 MB: the limits refuse it, and the 64 x 4096 x 4096 request, from
    their headers)."""
    import itertools
    import json
    import os
    import pickle
    import subprocess
    import sys

    good_requests = [
        ("serving_default", PROBE_IMAGES[:2]),
        ("serve_bytes", [png_bytes(image) for image in PROBE_IMAGES]),
    ]
    hostile = hostile_requests()
    bad = itertools.count()
    work = [
        ("good", index % 2) if index % 3 == 0 else ("bad", next(bad) % len(hostile))
        for index in range(8 * 50)
    ]
    assert {which for kind, which in work if kind == "bad"} == set(range(len(hostile)))
    work_path = tmp_path / "work.pickle"
    with open(work_path, "wb") as file:
        pickle.dump((good_requests, hostile, work), file)
    bound_mib = 300
    result = subprocess.run(
        [sys.executable, "-c", STORM_CHILD, str(serving_exports["folded"]), str(work_path), str(bound_mib)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2"),
    )
    lines = result.stdout.strip().splitlines()
    assert lines, f"the serving process printed nothing (exit {result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert "stopped" not in report, (
        f"the serving process grew by more than {bound_mib} MiB during the storm "
        f"(+{report.get('stopped', 0) / 1024:.0f} MiB) and was stopped"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The peak, which the watchdog's polls may miss, over the size before
    # the storm (a higher peak while loading counts against the storm: the
    # check errs toward failing).
    growth_mib = (report["peak_after"] - report["rss_before"]) / 1024
    assert growth_mib < bound_mib, report
    for (kind, which), outcome in zip(work, report["results"]):
        if kind == "good":
            # Same inputs, same graph; another thread's batch may run with
            # other op scheduling: float32 rounding of probabilities <= 1.
            assert outcome <= 1e-6, (good_requests[which][0], outcome)
        else:
            assert outcome is True, hostile[which][2]
    assert report["after"] <= 1e-6  # Still serving after the storm.


@tf_only
def test_saved_model_cli_runs_both_signatures(serving_exports, tmp_path):
    """TensorFlow's own `saved_model_cli run` on the export, not our replay."""
    import os
    import subprocess
    import sys

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    path = serving_exports["folded"]
    np.save(tmp_path / "images.npy", PROBE_IMAGES[:2])
    np.save(tmp_path / "files.npy", np.array([png_bytes(image) for image in PROBE_IMAGES[:2]]))
    outputs = {}
    for signature, argument in (
        ("serving_default", f"images={tmp_path / 'images.npy'}"),
        ("serve_bytes", f"image_bytes={tmp_path / 'files.npy'}"),
    ):
        out_dir = tmp_path / signature
        result = subprocess.run(
            [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", signature,
             "--inputs", argument, "--outdir", str(out_dir)],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[signature] = np.load(out_dir / "probabilities.npy")
    assert outputs["serving_default"].shape == (2, 10)
    np.testing.assert_allclose(outputs["serve_bytes"], outputs["serving_default"], atol=1e-6)
