"""training/evaluate.py end to end: accuracy and localisation, errors."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_ltpa import build_model
from tests.conftest import modules_loaded_by

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


# === A run trained on a single folder DIR/<class>/ (fit.py --validation-split) ===

# Per class, the files held out at a split of 0.25: a quarter of each class
# rounded half up, at least one (fit.py's rule, counted here by hand).
SINGLE_FOLDER_CLASSES = {"ant": 4, "bee": 5, "cat": 6}
HELD_OUT_AT_QUARTER = {"ant": 1, "bee": 1, "cat": 2}


def file_shades(root):
    """{relative path: grey level} of a folder written by `single_folder_run`."""
    return {
        path.relative_to(root).as_posix(): int(path.stem.split("_")[1])
        for path in root.glob("*/*.png")
    }


def single_folder_run(root):
    """`root/photos/<class>/i_<grey>.png`, 32x32 flat images each of its own
    grey level (named in the file name, so a drawn or scored image tells
    which file it was), and a one-step run trained on them by fit.py with
    --validation-split 0.25 in `root/run`. Returns (photos, run)."""
    from tests.conftest import run_fit
    from tests.conftest import write_image

    photos, run = root / "photos", root / "run"
    shade = 20
    for name, count in SINGLE_FOLDER_CLASSES.items():
        for i in range(count):
            write_image(photos / name / f"{i}_{shade}.png", value=shade, size=(32, 32))
            shade += 12
    code = run_fit.main([
        "--data-dir", str(photos), "--validation-split", "0.25", "--epochs", "1",
        "--steps-per-epoch", "1", "--batch-size", "4", "--no-export", "--image-size", "32",
        "--width", "0.0625", "--precision", "float32", "--no-tensorboard",
        "--overlay-images", "0", "--verbose", "0", "--seed", "0", "--output-dir", str(run),
    ])
    assert code == 0
    return photos, run


@pytest.fixture(scope="module")
def single_folder(tmp_path_factory):
    return single_folder_run(tmp_path_factory.mktemp("single"))


def _scored_shades(monkeypatch):
    """Records the grey level of every image `evaluate_classification` scores."""
    from keras_ltpa import evaluation

    seen, original = [], evaluation.evaluate_classification

    def spy(model, dataset, *args, **kwargs):
        for images, _ in dataset.as_numpy_iterator():
            seen.extend(int(round(float(image.mean()))) for image in images)
        return original(model, dataset, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_classification", spy)
    return seen


def test_a_single_folder_run_is_scored_on_its_held_out_files(single_folder, tmp_path, monkeypatch, capsys):
    photos, run = single_folder
    recorded = json.loads((run / "config.json").read_text())["validation_split_files"]
    shades = file_shades(photos)
    assert len(recorded["validation_files"]) == sum(HELD_OUT_AT_QUARTER.values())
    for model in (run, run / "model.keras", run / "checkpoints" / "best.keras"):
        scored = _scored_shades(monkeypatch)
        output = tmp_path / "results.json"
        code = evaluate_cli.main(["--model", str(model), "--data-dir", str(photos),
                                  "--output", str(output)])
        assert code == 0, capsys.readouterr().err
        assert "4 files held out (validation split 0.25, recorded by the run)" in capsys.readouterr().out
        # The files scored are the run's held-out files, each once.
        assert sorted(scored) == sorted(shades[f] for f in recorded["validation_files"])
        results = json.loads(output.read_text())
        scores = results["classification"]["model"]
        assert scores["count"] == 4
        assert scores["per_class_count"] == HELD_OUT_AT_QUARTER
        assert results["data"]["validation_split"] == 0.25
        assert results["data"]["validation_split_from"] == "run"
    # --split train scores the rest.
    scored = _scored_shades(monkeypatch)
    assert evaluate_cli.main(["--model", str(run), "--data-dir", str(photos), "--split", "train"]) == 0
    assert sorted(scored) == sorted(
        shade for path, shade in shades.items() if path not in recorded["validation_files"])


def test_a_single_folder_needs_a_validation_split(single_folder, small_data_dir, tmp_path, monkeypatch, capsys):
    """A model outside its run: the flag gives the split; without it, one
    line naming --validation-split; a train/test folder refuses the flag."""
    import shutil

    photos, run = single_folder
    alone = tmp_path / "alone.keras"
    shutil.copy(run / "model.keras", alone)
    capsys.readouterr()
    assert evaluate_cli.main(["--model", str(alone), "--data-dir", str(photos)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--validation-split" in lines[0] and "no 'train' folder" in lines[0]
    scored = _scored_shades(monkeypatch)
    assert evaluate_cli.main(["--model", str(alone), "--data-dir", str(photos),
                              "--validation-split", "0.25"]) == 0
    recorded = json.loads((run / "config.json").read_text())["validation_split_files"]
    shades = file_shades(photos)
    assert sorted(scored) == sorted(shades[f] for f in recorded["validation_files"])
    assert evaluate_cli.main(["--model", str(alone), "--data-dir", str(small_data_dir / "cifar10"),
                              "--validation-split", "0.25"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--validation-split" in lines[0] and "has a 'train' folder" in lines[0]
    # A share outside (0, 1), or the flag without --data-dir: a flag error.
    for argv, named in ((["--data-dir", str(photos), "--validation-split", "1"], "(0, 1)"),
                        (["--dataset", "cifar10", "--validation-split", "0.2"], "--data-dir")):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_cli.main(["--model", str(alone), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--validation-split" in err and named in err


def test_a_changed_folder_is_warned_of(single_folder, tmp_path, capsys):
    """Files added since training change the held-out part: a warning."""
    import shutil

    from tests.conftest import write_image

    photos, run = single_folder
    changed = tmp_path / "changed"
    shutil.copytree(photos, changed)
    write_image(changed / "cat" / "6_250.png", value=250, size=(32, 32))
    assert evaluate_cli.main(["--model", str(run), "--data-dir", str(changed)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "not the one it trained on" in err


def test_the_parser_loads_neither_tensorflow_nor_the_evaluation_code():
    """`evaluate.py --help` and flag errors cost importing Keras and nothing
    more: the parser (its --tta choices included) loads neither the data
    pipeline (TensorFlow) nor keras_ltpa.evaluation."""
    loaded = modules_loaded_by(
        "from keras_ltpa.cli import evaluate; "
        "evaluate.build_parser().parse_args(['--model', 'm.keras', '--tta', 'flip'])",
        ("tensorflow", "keras_ltpa.data.pipelines", "keras_ltpa.evaluation"),
    )
    assert loaded == "[]"
