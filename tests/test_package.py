"""The package as a user gets it, and the fixtures the tests carry.

The sdist and the wheel hold the code and the presets but not the test
fixtures; the wheel, installed into a fresh virtual environment, lists and
loads its presets and runs its four console commands. The committed
fixtures are the copies tests/fixtures/SOURCES.txt lists, and stay small.
"""

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import keras
import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import presets
from tests.conftest import FIXTURES_ROOT
from tests.conftest import REPO_ROOT
from tests.conftest import load_script

COMMANDS = {
    "ltpa-fit": ("keras_ltpa.cli.fit:main", "--data-dir"),
    "ltpa-evaluate": ("keras_ltpa.cli.evaluate:main", "--localization"),
    "ltpa-visualize": ("keras_ltpa.cli.visualize:main", "--images"),
    "ltpa-export": ("keras_ltpa.cli.export:main", "--export-dir"),
}
PRESET = "cifar10-att3-w0125"
# Seconds: building (~10 s), a new environment with pip (~10 s), a command
# that imports TensorFlow and Keras (~10 s); generous for a loaded machine.
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 300

pick = load_script(FIXTURES_ROOT / "pick.py", "pick_fixtures")


def test_fixtures_are_the_listed_copies_and_stay_small():
    assert pick.check(source=None) == []
    fixtures = [pathlib.Path(fixture) for fixture, _, _ in pick.read_manifest()]
    assert {f.parts[1] for f in fixtures if f.parts[0] == "data"} == {
        "cifar10", "weizmann_horse", "caltech101"
    }
    assert len([f for f in fixtures if f.suffix == ".npz"]) == 4
    total = sum(path.stat().st_size for path in FIXTURES_ROOT.rglob("*") if path.is_file())
    assert total < 10 * 2**20, total


def test_fixtures_match_the_full_sets(shared_data_dir):
    assert pick.check(source=shared_data_dir.parent) == []


def _run(command, timeout, **kwargs):
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert completed.returncode == 0, (command, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed


def _run_together(commands, timeout, **kwargs):
    """Runs `commands` at the same time (each imports TensorFlow: ~10 s of
    mostly waiting); all must succeed within `timeout` seconds."""
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        for c in commands
    ]
    outputs = []
    try:
        for command, process in zip(commands, processes):
            stdout, stderr = process.communicate(timeout=timeout)
            assert process.returncode == 0, (command, stdout[-3000:], stderr[-3000:])
            outputs.append(stdout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def _build(tmp_path):
    """The sdist of a copy of the source tree, then the wheel built from
    that sdist (as pip builds one for a user), both without the network."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "venv", "*.egg-info", "__pycache__", ".*_cache", "build", "dist", "runs", "saved_models",
    ))
    out = tmp_path / "dist"
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"],
         BUILD_TIMEOUT_S, cwd=source)
    (sdist,) = out.glob("keras_ltpa-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", str(out), str(sdist)], BUILD_TIMEOUT_S, cwd=tmp_path)
    (wheel,) = out.glob("keras_ltpa-*.whl")
    return sdist, wheel


def _check_contents(sdist, wheel):
    with tarfile.open(sdist) as archive:
        in_sdist = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = archive.namelist()
        (entry_points,) = [n for n in in_wheel if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
        for name in presets.list_presets():
            for file in (presets.MODEL_FILE, presets.METADATA_FILE):
                shipped = archive.read(f"keras_ltpa/presets/{name}/{file}")
                assert shipped == (pathlib.Path(presets.preset_dir(name)) / file).read_bytes(), name
    for name in presets.list_presets():
        assert f"keras_ltpa/presets/{name}/{presets.MODEL_FILE}" in in_sdist
    assert "keras_ltpa/cli/fit.py" in in_sdist and "keras_ltpa/cli/fit.py" in in_wheel
    for names in (in_sdist, in_wheel):
        assert not [n for n in names if n.startswith("tests/") or n.endswith((".jpg", ".npz"))]
    for command, (target, _) in COMMANDS.items():
        assert f"{command} = {target}" in scripts


def _environment(tmp_path):
    """A fresh virtual environment that reuses the installed dependencies:
    the system's (--system-site-packages) and, when the tests run in a
    virtual environment themselves, that one's: the folders of this
    interpreter's sys.path, listed in a .pth file (their packages, but not
    their own .pth files, so not an editable keras_ltpa), less the standard
    library, this clone's own folders and any folder holding keras_ltpa."""
    import sysconfig

    folder = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)], BUILD_TIMEOUT_S)
    python = folder / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], RUN_TIMEOUT_S
    ).stdout.strip()
    standard = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    inherited = [
        path for path in dict.fromkeys(os.path.abspath(p) for p in sys.path if p)
        if os.path.isdir(path) and path not in standard and not path.endswith("lib-dynload")
        and not os.path.exists(os.path.join(path, "keras_ltpa"))
        and not (pathlib.Path(path).is_relative_to(REPO_ROOT) and "site-packages" not in path)
    ]
    (pathlib.Path(purelib) / "dependencies.pth").write_text("\n".join(inherited) + "\n")
    return folder, python


PRESET_SCRIPT = """
import json, sys
import numpy as np
import keras_ltpa
model = keras_ltpa.load_preset(sys.argv[1])
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0)))
print(json.dumps({"file": keras_ltpa.__file__, "presets": keras_ltpa.list_presets(),
                  "class_names": keras_ltpa.describe(model)["class_names"]}))
"""


@pytest.mark.slow
@pytest.mark.tf_only  # the wheel is the same under every backend: one run checks it
def test_the_wheel_installs_and_its_presets_and_commands_work(tmp_path, small_data_dir):
    sdist, wheel = _build(tmp_path)
    _check_contents(sdist, wheel)
    venv, python = _environment(tmp_path)
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], BUILD_TIMEOUT_S)
    # Outside the clone (the working directory and no PYTHONPATH), under
    # TensorFlow, so only the installed wheel can be imported.
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KERAS_BACKEND"] = "tensorflow"
    from PIL import Image

    files = sorted((small_data_dir / "cifar10" / "test").glob("*/0000.jpg"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype("float32")
    np.save(work / "images.npy", images)
    (work / "preset.py").write_text(PRESET_SCRIPT)
    preset_output, *help_outputs = _run_together(
        [[str(python), "preset.py", PRESET, "images.npy", "logits.npy"]]
        + [[str(venv / "bin" / command), "--help"] for command in COMMANDS],
        RUN_TIMEOUT_S, cwd=work, env=env,
    )
    loaded = json.loads(preset_output.strip().splitlines()[-1])
    assert pathlib.Path(loaded["file"]).is_relative_to(venv), loaded["file"]
    assert loaded["presets"] == keras_ltpa.list_presets() and PRESET in loaded["presets"]
    model = keras_ltpa.load_preset(PRESET)
    assert loaded["class_names"] == keras_ltpa.describe(model)["class_names"]
    expected = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
    np.testing.assert_allclose(np.load(work / "logits.npy"), expected, rtol=0, atol=1e-5)
    for (command, (_, flag)), output in zip(COMMANDS.items(), help_outputs):
        assert output.startswith("usage: ") and flag in output, (command, output[:500])
