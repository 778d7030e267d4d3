"""Version folders of a TF Serving model: numbering and atomic publishing.

TF Serving watches a model's base path (`<export_dir>/<name>`) and loads
the folders whose names are numbers. A new version is written into a hidden
staging folder beside them and renamed into place only when complete, so
the server never sees a partial version; an existing version is never
overwritten.
"""

import os
import shutil
import tempfile

from keras_ltpa.utils import files


def model_versions(model_dir):
    """The version numbers (sorted) of the TF Serving model folder `model_dir`.

    Args:
        model_dir: a model's base path, `<export_dir>/<name>`.

    Returns:
        The sorted ints naming its version folders (other entries ignored);
        `[]` when `model_dir` does not exist.

    Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for entry in ("2", "10", "notes", ".staging-3-x"):
    ...     os.mkdir(os.path.join(root, entry))
    >>> model_versions(root)
    [2, 10]
    """
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_dir)
        if entry.isdigit() and os.path.isdir(os.path.join(model_dir, entry))
    )


def next_version(model_dir):
    """One more than the highest version in `model_dir` (1 for a new model)."""
    versions = model_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def free_version_dir(model_dir, name, version):
    """The folder of `version` of model `name`, refused if it exists.

    Raises:
        ValueError: the version exists (versions are never overwritten).
    """
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir):
        raise ValueError(
            f"Version {version} of model {name!r} already exists at "
            f"{version_dir!r}; versions are never overwritten. Pass another "
            "`version` or leave it None for the next free one."
        )
    return version_dir


def publish_version(model_dir, version_dir, write):
    """Calls `write(staging_dir)`, then renames the staging dir to `version_dir`.

    The staging directory is hidden and not a number, so TF Serving ignores
    it while it is incomplete; it is removed if anything fails.

    Args:
        model_dir: the model's base path (created if missing).
        version_dir: the version folder to publish, inside `model_dir`.
        write: a callable writing the version's files into the folder it
            is given.

    Raises:
        ValueError: `version_dir` appeared meanwhile (it is left untouched).
    """
    os.makedirs(model_dir, exist_ok=True)
    version = os.path.basename(version_dir)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir)
    try:
        write(staging)
        files.set_usual_mode(staging)
        try:
            os.rename(staging, version_dir)
        except OSError:
            raise ValueError(
                f"{version_dir!r} appeared while exporting (another export?); "
                "it was left untouched."
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
