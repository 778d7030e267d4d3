"""training/evaluate.py end to end: accuracy and localisation, errors."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_ltpa import build_model

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / "training" / "evaluate.py"


evaluate_cli = importlib.import_module("keras_ltpa.cli.evaluate")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    build_model(10, width_multiplier=0.0625).save(folder / "att.keras")
    build_model(10, variant="noatt", width_multiplier=0.0625).save(folder / "noatt.keras")
    return folder


def test_cli_accuracy_and_localization(saved_models, small_data_dir, tmp_path, capsys):
    output = tmp_path / "results.json"
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"),
        "--data-dir", str(small_data_dir / "cifar10"), "--limit", "40",
        "--batch-size", "20",
        "--localization", str(small_data_dir / "weizmann_horse"), "--mask-limit", "3",
        "--baseline", str(saved_models / "noatt.keras"),
        "--threshold", "mean", "0.25", "--cam-class", "horse",
        "--output", str(output),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "images: 40" in printed and "mean Jaccard index over 3 images" in printed
    results = json.loads(output.read_text())
    assert set(results["classification"]) == {"model", "baseline"}
    for scores in results["classification"].values():
        assert scores["count"] == 40
        assert sum(scores["per_class_count"].values()) == 40
    assert results["models"]["model"]["variant"] == "att3-concat-pc"
    assert results["models"]["baseline"]["variant"] == "noatt"
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


def _caltech_like_folder(root, small_data_dir, classes=3, per_split=(6, 3)):
    """DIR/{train,test}/<class>/ of real Caltech-101 JPEGs (mixed sizes)."""
    import shutil

    source = small_data_dir / "caltech101"
    names = sorted(p.name for p in (source / "train").iterdir())[:classes]
    for split, count in zip(("train", "test"), per_split):
        for name in names:
            target = root / split / name
            target.mkdir(parents=True)
            for file in sorted((source / split / name).iterdir())[:count]:
                shutil.copy(file, target / file.name)
    return root


@pytest.mark.slow
def test_one_command_writes_the_whole_report(saved_models, small_data_dir, tmp_path, capsys):
    report_dir = tmp_path / "report"
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"),
        "--baseline", str(saved_models / "noatt.keras"),
        "--data-dir", str(small_data_dir / "cifar10"), "--limit", "20",
        "--fgsm", "0,2,8", "--fgsm-limit", "12",
        "--localization", str(small_data_dir / "weizmann_horse"), "--mask-limit", "2",
        "--transfer", str(_caltech_like_folder(tmp_path / "caltech", small_data_dir)),
        "--report-dir", str(report_dir),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "FGSM accuracy over 12 images" in printed and "linear transfer: 3 classes" in printed
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == ["fgsm_accuracy.png", "localization_jaccard.png", "report.json", "report.md"]
    report = json.loads((report_dir / "report.json").read_text())
    for part in ("classification", "robustness", "transfer"):
        assert set(report[part]) == {"model", "baseline"}, part
    robustness = report["robustness"]["model"]
    assert robustness["count"] == 12 and robustness["epsilons"] == [0.0, 2.0, 8.0]
    assert robustness["accuracy"][0] == robustness["clean_accuracy"]
    transfer = report["transfer"]
    assert transfer["model"]["features"] == "attention" and transfer["baseline"]["features"] == "global"
    assert transfer["model"]["train_count"] == 18 and transfer["model"]["test_count"] == 9
    markdown = (report_dir / "report.md").read_text()
    # Every number in the tables comes from the JSON.
    assert f"{100 * report['classification']['model']['accuracy']:.1f}" in markdown
    assert f"{100 * transfer['baseline']['mean_class_accuracy']:.1f}" in markdown
    assert f"{report['localization'][0]['jaccard']['baseline_cam']:.3f}" in markdown
    assert "![FGSM accuracy](fgsm_accuracy.png)" in markdown
    from PIL import Image

    for plot in ("fgsm_accuracy.png", "localization_jaccard.png"):
        with Image.open(report_dir / plot) as image:
            assert image.format == "PNG" and image.size[0] > 200


def test_flip_tta_is_reported_apart_from_plain_accuracy(saved_models, small_data_dir, tmp_path, capsys):
    from keras_ltpa import evaluation
    from keras_ltpa.data import pipelines as data
    from keras_ltpa.train import runs

    report_dir = tmp_path / "report"
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"), "--baseline", str(saved_models / "noatt.keras"),
        "--data-dir", str(small_data_dir / "cifar10"), "--limit", "20", "--tta", "flip",
        "--report-dir", str(report_dir),
    ])
    assert code == 0
    assert "accuracy, flip TTA:" in capsys.readouterr().out
    report = json.loads((report_dir / "report.json").read_text())
    # The library call with tta="flip" on the same images gives the same figures.
    dataset, names = data.load_dataset(
        "test", data_dir=str(small_data_dir / "cifar10"), image_size=(32, 32), batch_size=256,
        limit=20,
    )
    for name, file in (("model", "att.keras"), ("baseline", "noatt.keras")):
        scores = report["classification"][name]
        expected = evaluation.evaluate_classification(
            runs.load_model(str(saved_models / file)), dataset, names, tta="flip"
        )
        assert scores["accuracy"] == expected["accuracy"]
        assert scores["flip_tta"] == expected["flip_tta"]
    markdown = (report_dir / "report.md").read_text()
    tta = report["classification"]["model"]["flip_tta"]["accuracy"]
    assert f"| top-1 accuracy, flip TTA (%) | {100 * tta:.1f} |" in markdown
    # Off by default: no flip_tta entry.
    code = evaluate_cli.main([
        "--model", str(saved_models / "att.keras"), "--data-dir", str(small_data_dir / "cifar10"),
        "--limit", "8", "--output", str(tmp_path / "plain.json"),
    ])
    assert code == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert "flip_tta" not in plain["classification"]["model"]


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--fgsm", "1,300", "--data-dir", "x"], "300"),
        (["--fgsm", "-1", "--data-dir", "x"], "-1"),
        (["--fgsm", "1"], "--dataset or --data-dir"),
        (["--transfer", "x", "--features", "pooled"], "pooled"),
        (["--data-dir", "x", "--tta", "rotate"], "rotate"),
    ],
)
def test_bad_evaluation_flags_exit_2_naming_them(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli.main(["--model", "m.keras"] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]


def test_transfer_refuses_an_empty_folder_an_unknown_set_and_a_wrong_kind(
    saved_models, small_data_dir, tmp_path, capsys
):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    cases = [
        (["--model", str(saved_models / "att.keras"), "--transfer", str(tmp_path / "empty")],
         "empty"),
        (["--model", str(saved_models / "att.keras"), "--transfer", "no_such_dataset_xyz"],
         "no_such_dataset_xyz"),
    ]
    caltech = _caltech_like_folder(tmp_path / "caltech", small_data_dir, classes=2, per_split=(2, 1))
    cases.append((
        ["--model", str(saved_models / "noatt.keras"), "--transfer", str(caltech),
         "--features", "attention"],
        "no attention estimators",
    ))
    for argv, named in cases:
        assert evaluate_cli.main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and named in err[0] and "Traceback" not in err[0]


@pytest.mark.slow
def test_cli_process_exits_2_on_a_bad_mask_folder(saved_models, tmp_path):
    result = subprocess.run(
        [sys.executable, str(CLI), "--model", str(saved_models / "att.keras"),
         "--localization", str(tmp_path)],
        capture_output=True, text=True,
        # Exit codes do not depend on the backend; TensorFlow loads fastest.
        env=dict(os.environ, KERAS_BACKEND="tensorflow"), timeout=300,
    )
    assert result.returncode == 2
    assert str(tmp_path / "rgb") in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_tfds_split_and_svm_c_reach_the_evaluations(
    saved_models, small_data_dir, tmp_path, capsys, recorded_tfds_loads
):
    import tensorflow_datasets as tfds

    asked = recorded_tfds_loads
    report_dir = tmp_path / "report"
    with tfds.testing.mock_data(num_examples=10):
        code = evaluate_cli.main([
            "--model", str(saved_models / "att.keras"),
            "--baseline", str(saved_models / "noatt.keras"),
            "--dataset", "cifar10", "--split", "train", "--limit", "6",
            "--transfer", str(_caltech_like_folder(tmp_path / "caltech", small_data_dir)),
            "--svm-c", "0.25", "--report-dir", str(report_dir),
        ])
    assert code == 0, capsys.readouterr().err
    assert ("train", "cifar10") in asked and ("test", "cifar10") not in asked
    report = json.loads((report_dir / "report.json").read_text())
    assert report["classification"]["model"]["count"] == 6
    for name in ("model", "baseline"):
        assert "LinearSVC(C=0.25," in report["transfer"][name]["classifier"]


def test_class_names_flag_names_the_grad_cam_class(saved_models, small_data_dir, tmp_path, capsys):
    names = ",".join(f"c{i}" for i in range(10))
    common = [
        "--model", str(saved_models / "att.keras"), "--baseline", str(saved_models / "noatt.keras"),
        "--localization", str(small_data_dir / "weizmann_horse"), "--mask-limit", "1",
        "--cam-class", "c7", "--output", str(tmp_path / "results.json"),
    ]
    assert evaluate_cli.main(common + ["--class-names", names]) == 0, capsys.readouterr().err
    # Without the flag, "c7" names no class of the model (it records none).
    capsys.readouterr()
    assert evaluate_cli.main(common) == 2
    assert "--cam-class 'c7'" in capsys.readouterr().err
