"""Downloads that fail fast: a pretrained backbone without network is one
clear line within seconds, not a long hang.

Before a download, `reachable(url)` asks the server for headers with a short
timeout, through the proxies the environment sets (`https_proxy`,
`no_proxy`, ... as `urllib` reads them). When it cannot reach the server,
`download_guard` still lets files already cached load (the download step is
given a short socket timeout) and turns a failed download into
`ValueError(offline_message(...))`, which names the local options.
"""

import contextlib
import os
import socket
import urllib.error
import urllib.request

# Seconds allowed to reach a server, and to a download step once the server
# is known to be unreachable (a cached file needs no network at all).
PROBE_SECONDS = 4.0
OFFLINE_SECONDS = 4.0

LOCAL_OPTIONS = (
    "without network use weights='none' (--weights none: random initialisation), "
    "weights=PATH (a local weights file), a local keras-hub preset folder "
    "(saved with `save_to_preset`), or backbone='vgg'"
)


def reachable(url, timeout=PROBE_SECONDS):
    """(True, None) when `url`'s server answers within `timeout` seconds (any
    HTTP status counts), else (False, the reason)."""
    request = urllib.request.Request(url, method="HEAD")
    # A new opener reads the proxy settings as they are now.
    opener = urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout):
            return True, None
    except urllib.error.HTTPError:
        return True, None  # The server answered.
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return False, " ".join(str(reason).split()) or type(error).__name__


def offline_message(what, reason):
    """The one line a download that cannot happen raises."""
    return f"Cannot download {what} ({reason}); {LOCAL_OPTIONS}."


def check_reachable(what, url):
    """Raises `ValueError(offline_message(...))` unless `url` is reachable."""
    ok, reason = reachable(url)
    if not ok:
        raise ValueError(offline_message(what, f"{url} unreachable: {reason}"))


@contextlib.contextmanager
def download_guard(what, url):
    """Runs a step that may download `what` from `url`'s server.

    Reachable: the step runs as it is. Unreachable: the step runs with a
    short socket timeout (a cached file still loads) and a failed download
    becomes one `ValueError` naming the local options.
    """
    ok, reason = reachable(url)
    if ok:
        yield
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(OFFLINE_SECONDS)
    try:
        yield
    except Exception as error:
        # keras.utils.get_file reports a failed fetch as a plain Exception.
        if type(error) is not Exception and not isinstance(error, OSError):
            raise
        raise ValueError(offline_message(what, f"{url} unreachable: {reason}")) from None
    finally:
        socket.setdefaulttimeout(previous)


def check_weights(weights, named, family, meanings):
    """`weights` of a backbone family: None (the first of `named`), one of
    `named`, or the path of an existing weights file.

    Args:
        weights: the argument as given.
        named: the names the family accepts, its default first.
        family: the family, for the message (e.g. "keras.applications").
        meanings: how the message describes the names
            (e.g. "'imagenet', 'none'").

    Returns:
        The name, or the path as a string.
    """
    if weights is None:
        return named[0]
    if weights in named:
        return weights
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return os.fspath(weights)
    raise ValueError(
        f"`weights` of a {family} backbone must be {meanings} or the path of a "
        f"weights file; received weights={weights!r} (no such file)."
    )
