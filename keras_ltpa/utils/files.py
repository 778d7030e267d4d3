"""Writing files so that nothing half-written is ever left at their path.

Run directories, PNGs, JSON results and `.keras` checkpoints are all written
by the one helper here: into a temporary file beside the target, renamed
over it only once complete.
"""

import json
import os
import tempfile

# Temporary files start with this, so a resumed run can find and delete the
# ones a killed process left behind.
TEMPORARY_PREFIX = ".tmp-"


def set_usual_mode(path):
    """Gives `path` the mode `open()` or `os.mkdir()` would have given it.

    `tempfile.mkstemp`/`mkdtemp` make their file or folder private to the
    owner; renamed into place, it must be readable as any other output (e.g.
    by a TF Serving server running as another user).
    """
    umask = os.umask(0)  # Reading the umask means setting it; put it back.
    os.umask(umask)
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~umask)


def write_atomically(path, write):
    """Calls `write(temporary_path)`, then renames the result to `path`.

    The temporary file sits in `path`'s folder (so the rename is atomic) and
    keeps `path`'s extension (so writers that check it, such as
    `keras.Model.save`, accept it). Missing parent folders are created. If
    `write` fails, the temporary file is removed and `path` is untouched.

    Args:
        path: the file to write.
        write: a callable taking the temporary path and writing the content.

    Returns:
        `path`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder,
        prefix=TEMPORARY_PREFIX,
        suffix=os.path.splitext(path)[1],
    )
    os.close(handle)
    try:
        write(temporary)
        set_usual_mode(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def write_json(path, value, sort_keys=True):
    """Writes `value` as indented JSON (ending in a newline), atomically."""

    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(value, file, indent=2, sort_keys=sort_keys)
            file.write("\n")

    return write_atomically(path, write)
