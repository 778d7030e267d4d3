"""Presets on a model hub: `hf://OWNER/NAME` and `kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]`.

The preset's files are fetched one by one with the hub's own client
(`huggingface_hub.hf_hub_download`, `kagglehub.model_download`), imported
only when a handle is given, into that client's cache. The server is asked
first with a short timeout (through the proxies the environment sets), so
a machine without network gets one line within seconds, naming the local
options. The files are then read as a local preset's, in safe mode.
"""

import importlib
import os

from keras_ltpa.backbones import downloads

HF_SCHEME = "hf://"
KAGGLE_SCHEME = "kaggle://"
HANDLE_SCHEMES = (HF_SCHEME, KAGGLE_SCHEME)
_CLIENTS = {HF_SCHEME: "huggingface_hub", KAGGLE_SCHEME: "kagglehub"}


def is_handle(preset):
    return isinstance(preset, str) and preset.startswith(HANDLE_SCHEMES)


def server(handle):
    """The server a handle's files come from."""
    if handle.startswith(HF_SCHEME):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return os.environ.get("KAGGLE_API_ENDPOINT", "https://www.kaggle.com")


def _client(handle):
    scheme = HF_SCHEME if handle.startswith(HF_SCHEME) else KAGGLE_SCHEME
    module = _CLIENTS[scheme]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"Preset {handle!r} is on a model hub, which needs {module}: pip install {module}."
        ) from None


def _check_handle(handle):
    if handle.startswith(HF_SCHEME):
        parts = handle[len(HF_SCHEME):].split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"A Hugging Face preset handle is 'hf://OWNER/NAME'; received {handle!r}."
            )
    else:
        parts = handle[len(KAGGLE_SCHEME):].split("/")
        if len(parts) not in (4, 5) or not all(parts):
            raise ValueError(
                "A Kaggle preset handle is 'kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]'; "
                f"received {handle!r}."
            )


def offline_line(handle, reason, local_options):
    return f"Cannot download preset {handle!r} ({reason}); without network use {local_options}."


def fetch_files(handle, files, local_options):
    """Local paths of `files` of the preset at `handle`, downloaded into the
    hub client's cache (or found there).

    Args:
        handle: an `hf://` or `kaggle://` handle.
        files: the file names to fetch.
        local_options: what the offline message offers instead.

    Returns:
        A dict from each file name to its local path.

    Raises:
        ValueError: one line naming the handle and the file when the server
            cannot be reached, the client is missing, or a file cannot be had.
    """
    _check_handle(handle)
    client = _client(handle)
    address = server(handle)
    ok, reason = downloads.reachable(address)
    if not ok:
        cached = _from_hf_cache(client, handle, files)
        if cached is not None:
            return cached
        raise ValueError(offline_line(handle, f"{address} unreachable: {reason}", local_options))
    paths = {}
    for name in files:
        try:
            if handle.startswith(HF_SCHEME):
                path = client.hf_hub_download(repo_id=handle[len(HF_SCHEME):], filename=name)
            else:
                path = client.model_download(handle[len(KAGGLE_SCHEME):], path=name)
        except Exception as error:  # each client has its own errors: not found, gated, offline
            message = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(f"Cannot download {name} of preset {handle!r}: {message}") from None
        paths[name] = os.fspath(path)
    return paths


def _from_hf_cache(client, handle, files):
    """Without network: the files of an `hf://` preset from huggingface_hub's
    cache when every one of them is there (an earlier download), else None."""
    if not handle.startswith(HF_SCHEME):
        return None
    paths = {}
    for name in files:
        try:
            path = client.hf_hub_download(
                repo_id=handle[len(HF_SCHEME):], filename=name, local_files_only=True
            )
        except Exception:  # not cached (huggingface_hub raises its own errors)
            return None
        paths[name] = os.fspath(path)
    return paths
