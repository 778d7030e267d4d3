"""training/train_seeds.sh: each seed trained as the shipped seed 0 was, then filed.

The script runs in a copy of the training folder with `python` replaced by a
recorder, so nothing is trained and the repository is not written.
"""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

from keras_ltpa.cli import fit as fit_cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PRESETS = REPO_ROOT / "keras_ltpa" / "presets"
# A recorder in place of python: one JSON line of argv per call; a
# compare_presets.py call leaves the report.json its --output-dir would hold.
RECORDER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1].endswith("compare_presets.py"):
    report = sys.argv[sys.argv.index("--output-dir") + 1]
    os.makedirs(report, exist_ok=True)
    with open(os.path.join(report, "report.json"), "w") as file:
        json.dump({{"seed_of": report}}, file)
"""


def _run(tmp_path, *seeds):
    tree = tmp_path / "tree"
    (tree / "training").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "training" / "train_seeds.sh", tree / "training")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(RECORDER)
    (bin_dir / "python").chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "CALLS": str(calls)}
    env.pop("FLAGS", None)
    result = subprocess.run(
        ["bash", str(tree / "training" / "train_seeds.sh"), *seeds],
        env=env, capture_output=True, text=True, timeout=60,
    )
    return result, [json.loads(line) for line in calls.read_text().splitlines()], tree


def _fit_settings(argv):
    return vars(fit_cli.build_parser().parse_args(argv))


@pytest.mark.parametrize("name,variant", [("cifar10-att3-w0125", "att3-concat-pc"),
                                          ("cifar10-vgg-w0125", "noatt")])
def test_each_seed_trains_as_the_shipped_preset(tmp_path, name, variant):
    result, calls, tree = _run(tmp_path, "3", "4")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((PRESETS / name / "metadata.json").read_text())
    shipped = _fit_settings(shlex.split(metadata["training"]["command"])[2:])
    fits = [_fit_settings(argv[1:]) for argv in calls
            if argv[0] == "training/fit.py" and argv[argv.index("--variant") + 1] == variant]
    assert [fit["seed"] for fit in fits] == [3, 4]
    for seed, settings in zip((3, 4), fits):
        differing = {key for key in shipped if settings[key] != shipped[key]}
        # Only the seed, the run directory and the precision are spelled
        # differently; the precision is the one seed 0 trained with.
        assert differing == {"seed", "output_dir", "precision"}
        assert settings["precision"] == metadata["training"]["settings"]["precision_policy"]
        assert settings["output_dir"] == f"runs/seeds/{seed}/{name.split('-')[1]}"


def test_each_seed_is_compared_and_filed_under_the_presets_names(tmp_path):
    result, calls, tree = _run(tmp_path, "3")
    assert result.returncode == 0, result.stderr
    scripts = [argv[0] for argv in calls]
    assert scripts == ["training/fit.py", "training/fit.py", "training/compare_presets.py",
                       "training/compare_seeds.py"]
    assert calls[2][1:3] == ["runs/seeds/3/att3", "runs/seeds/3/vgg"]
    assert calls[2][calls[2].index("--data-root") + 1] == "../shared/data"
    # The report travels with the repository and is the one filed.
    filed = tree / "docs" / "results" / "seeds" / "3" / "report.json"
    assert json.loads(filed.read_text()) == {"seed_of": "runs/seeds/3/report"}
    add = calls[3]
    assert add[add.index("--add-report") + 1] == "docs/results/seeds/3/report.json"
    assert add[add.index("--seed") + 1] == "3"
    assert add[add.index("--model-name") + 1] == "cifar10-att3-w0125"
    assert add[add.index("--baseline-name") + 1] == "cifar10-vgg-w0125"


@pytest.mark.parametrize("seeds,message", [((), "usage: bash training/train_seeds.sh SEED"),
                                           (("3", "x4"), "a seed is a non-negative integer, got 'x4'")])
def test_bad_seeds_are_refused_before_anything_runs(tmp_path, seeds, message):
    result, calls, tree = _run(tmp_path, *seeds)
    assert result.returncode == 2
    assert message in result.stderr
    assert calls == []
    assert not (tree / "runs").exists()
