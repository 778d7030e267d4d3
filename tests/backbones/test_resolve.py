"""What `backbone` and `weights` may be, and the one line each mistake gets:
a bad name, a download without network (simulated: no socket connects), bad
weights. The network check goes through the proxies the environment sets."""

import os
import pathlib
import re
import socket
import threading

import pytest

import keras_ltpa
from keras_ltpa.backbones import downloads
from tests.backbones.conftest import IMAGE_SHAPE

HANDLES = ["hf://keras/resnet_18_imagenet", "kaggle://keras/resnetv1/keras/resnet_18_imagenet/3"]


def one_line_error(**kwargs):
    with pytest.raises(ValueError) as error:
        keras_ltpa.build_model(3, IMAGE_SHAPE, **kwargs)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_a_bad_backbone_name_lists_what_is_allowed():
    message = one_line_error(backbone="resnet5O")
    assert message.startswith("`backbone` must be 'vgg' (the paper's CIFAR VGG), a keras.applications name")
    assert "'resnet50'" in message and "a keras-hub preset (a local preset folder" in message
    assert "hf:// or kaggle:// handle" in message and message.endswith("received backbone='resnet5O'.")


@pytest.mark.parametrize("handle", HANDLES + ["resnet_18_imagenet"])
def test_a_keras_hub_handle_without_network_fails_in_one_line(no_network, handle):
    pytest.importorskip("keras_hub")
    message = one_line_error(backbone=handle)
    assert message.startswith(f"Cannot download keras-hub preset {handle!r} (")
    assert "Network is unreachable (simulated)" in message
    assert "weights='none' (--weights none" in message and "a local keras-hub preset folder" in message


def test_imagenet_weights_without_network_fail_in_one_line(no_network):
    cache = pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "models"
    if cache.is_dir() and any(path.name.startswith("resnet50_") for path in cache.iterdir()):
        pytest.skip(f"ResNet50's ImageNet weights are cached in {cache}: they load offline")
    message = one_line_error(backbone="resnet50")  # weights="imagenet", the default
    assert message.startswith("Cannot download the ImageNet weights of backbone 'resnet50' (")
    assert "weights='none' (--weights none: random initialisation), weights=PATH" in message


def test_the_network_check_goes_through_the_proxy(monkeypatch):
    """A proxy on localhost that refuses every tunnel: the check asks it,
    and reports the server unreachable."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen = []

    def answer():
        connection, _ = server.accept()
        with connection:
            seen.append(connection.recv(4096).decode("latin-1").split("\r\n")[0])
            connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{server.getsockname()[1]}"
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    ok, reason = downloads.reachable("https://storage.googleapis.com/tensorflow/keras-applications/")
    thread.join(timeout=10)
    server.close()
    assert len(seen) == 1 and seen[0].startswith("CONNECT storage.googleapis.com:443 HTTP/")
    assert not ok and "403" in reason


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"backbone": "vgg", "weights": "imagenet"}, r"`weights` applies to keras.applications and keras-hub backbones; the paper's VGG .* takes weights=None or 'none'; received weights='imagenet'"),
        ({"backbone": "mobilenetv3small", "weights": "preset"}, r"`weights` of a keras.applications backbone must be 'imagenet', 'none' or .*weights='preset'"),
        ({"backbone": "mobilenetv3small", "weights": "missing.h5"}, r"weights='missing.h5' \(no such file\)"),
    ],
)
def test_bad_weights_are_named(kwargs, pattern):
    message = one_line_error(**kwargs)
    assert re.search(pattern, message), message


def test_keras_hub_weights_must_be_its_own_none_or_a_file(hub_preset):
    message = one_line_error(backbone=hub_preset, weights="imagenet")
    assert "`weights` of a keras-hub backbone must be 'preset' (its own), 'none' (random)" in message


def test_a_folder_without_a_preset_is_named(tmp_path):
    pytest.importorskip("keras_hub")
    message = one_line_error(backbone=str(tmp_path))
    assert message == (
        f"`backbone` folder {str(tmp_path)!r} is not a keras-hub preset: it has no config.json "
        "(write one with `backbone.save_to_preset(folder)`)."
    )


def test_vgg_cifar_is_the_paper_vgg():
    model = keras_ltpa.build_model(3, backbone="vgg-cifar", width_multiplier=0.0625)
    facts = keras_ltpa.describe(model)
    assert (facts["backbone"], facts["backbone_weights"], facts["preprocessing"]) == ("vgg", None, "pixel_stats")
    assert model.get_config()["backbone"] == "vgg"
