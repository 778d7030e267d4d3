"""training/evaluate.py end to end: accuracy and localisation, errors."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_ltpa import build_model
from tests.conftest import load_script

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CLI = REPO_ROOT / "training" / "evaluate.py"


evaluate_cli = load_script(CLI, "evaluate_cli")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    build_model(10, width_multiplier=0.0625).save(folder / "att.keras")
    build_model(10, variant="noatt", width_multiplier=0.0625).save(folder / "noatt.keras")
    return folder


def test_cli_accuracy_and_localization(saved_models, shared_data_dir, tmp_path, capsys):
    output = tmp_path / "results.json"
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"),
        "--data-dir", str(shared_data_dir / "cifar10"), "--limit", "40",
        "--batch-size", "20",
        "--localization", str(shared_data_dir / "weizmann_horse"), "--mask-limit", "3",
        "--baseline", str(saved_models / "noatt.keras"),
        "--threshold", "mean", "0.25", "--cam-class", "horse",
        "--output", str(output),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "images: 40" in printed and "mean Jaccard index over 3 images" in printed
    results = json.loads(output.read_text())
    assert results["classification"]["count"] == 40
    assert sum(results["classification"]["per_class_count"].values()) == 40
    rules = [r["threshold"] for r in results["localization"]]
    assert rules == ["mean", 0.25]
    for entry in results["localization"]:
        assert set(entry["jaccard"]) == {
            "attention_1", "attention_2", "attention_3", "attention_mean",
            "gaussian_prior", "baseline_cam",
        }
        assert all(0.0 <= v <= 1.0 for v in entry["jaccard"].values())
        assert len(entry["per_image"]["attention_1"]) == 3
        assert f"{entry['jaccard']['attention_mean']:.4f}" in printed


def test_cli_errors(saved_models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli.main(["--model", str(saved_models / "att.keras")])
    assert exit_info.value.code == 2
    assert "nothing to do" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_cli.main([
            "--model", "m.keras", "--localization", "x", "--threshold", "median",
        ])
    assert "median" in capsys.readouterr().err
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"), "--localization", str(tmp_path),
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "rgb") in err and "Traceback" not in err
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"), "--localization", str(tmp_path),
        "--cam-class", "zebra",
    ])
    assert code == 2
    assert "zebra" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_process_exits_2_on_a_bad_mask_folder(saved_models, tmp_path):
    result = subprocess.run(
        [sys.executable, str(CLI), "--model", str(saved_models / "att.keras"),
         "--localization", str(tmp_path)],
        capture_output=True, text=True,
        # Exit codes do not depend on the backend; TensorFlow loads fastest.
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
    )
    assert result.returncode == 2
    assert str(tmp_path / "rgb") in result.stderr and "Traceback" not in result.stderr
