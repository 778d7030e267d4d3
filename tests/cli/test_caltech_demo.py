"""training/caltech_demo.py: both experiments end to end on the fixtures, tiny."""

import json
import pathlib

import pytest

from tests.conftest import load_script
from tests.conftest import require_package

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
demo = load_script(REPO_ROOT / "training" / "caltech_demo.py", "caltech_demo_cli")

RUN_NAMES = ("a_attention", "a_gap", "b_pretrain", "b_finetune", "b_scratch")
ATTENTION_RUNS = ("a_attention", "b_pretrain", "b_finetune", "b_scratch")


def _tiny_flags(data_dir, output):
    return [
        "--data-dir", str(data_dir), "--pretrain-classes", "2", "--image-size", "32",
        "--stage-filters", "64,64,64,64", "--recipe", "paper", "--epochs", "1",
        "--pretrain-epochs", "1", "--finetune-epochs", "2", "--freeze-backbone-epochs", "1",
        "--steps-per-epoch", "1", "--batch-size", "8", "--overlay-images", "2",
        "--monitor-interval", "600", "--output-dir", str(output / "runs"),
        "--report-dir", str(output / "report"),
    ]


@pytest.mark.tf_only
@pytest.mark.slow
def test_tiny_demo_writes_a_consistent_report(tmp_path, small_data_dir, capsys):
    require_package("keras_hub", "hub")
    data_dir = small_data_dir / "caltech101"
    classes = sorted(p.name for p in (data_dir / "train").iterdir())
    assert len(classes) == 5
    assert demo.main(_tiny_flags(data_dir, tmp_path)) == 0

    report_dir = tmp_path / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report) == {"command", "settings", "machine", "runs", "findings", "cost", "overlays"}
    assert list(report["runs"]) == list(RUN_NAMES)
    assert report["settings"]["pretrain_classes"] == classes[:2]
    assert report["settings"]["finetune_classes"] == classes[2:]

    def images(split, names):
        return sum(len(list((data_dir / split / n).iterdir())) for n in names)

    subsets = {"a_attention": classes, "a_gap": classes, "b_pretrain": classes[:2],
               "b_finetune": classes[2:], "b_scratch": classes[2:]}
    epochs = {"a_attention": 1, "a_gap": 1, "b_pretrain": 1, "b_finetune": 2, "b_scratch": 2}
    for name, run in report["runs"].items():
        names = subsets[name]
        assert run["classes"] == run["classes_scored"] == len(names), name
        assert run["train_images"] == images("train", names), name
        assert run["test_images"] == images("test", names), name
        assert run["epochs"] == epochs[name], name
        for key in ("test_accuracy", "mean_class_accuracy", "top5_accuracy", "fit_test_accuracy"):
            assert 0.0 <= run[key] <= 1.0, (name, key)
        # fit.py's own test score, of the same model: equal up to a near-tie.
        assert abs(run["test_accuracy"] - run["fit_test_accuracy"]) <= 1 / run["test_images"] + 1e-6
        assert run["wall_time_s"] > 0 and run["images_per_second"] > 0
        assert len(run["calls"]) == 1 and run["calls"][0]["machine"]["samples"] >= 1
        assert run["command"].startswith("python training/fit.py --data-dir ")
    assert report["runs"]["a_gap"]["variant"] == "noatt"
    assert report["runs"]["a_attention"]["variant"] == "att3-concat-pc"
    assert "--freeze-backbone-epochs 1" in report["runs"]["b_finetune"]["command"]
    assert "resnet_pretrained --weights preset" in report["runs"]["b_finetune"]["command"]

    assert [f["runs"] for f in report["findings"]] == [["a_attention", "a_gap"]] * 2 + [
        ["b_finetune", "b_scratch"]
    ] * 2
    for finding in report["findings"]:
        assert finding["verdict"] in (
            "holds", "does not hold (the reverse holds)", "not resolved at this size"
        )
        assert finding["standard_error"] > 0
    assert report["cost"]["extra_parameters"] > 0
    steps = report["cost"]["train_step_seconds"]
    assert set(steps) == {"a_attention", "a_gap"} and len(steps["a_attention"]) == len(steps["a_gap"])
    assert all(seconds > 0 for turns in steps.values() for seconds in turns)
    low, high = report["cost"]["step_time_ratio_range"]
    assert 0 < low <= report["cost"]["step_time_ratio_median"] <= high

    assert sorted(report["overlays"]) == sorted(ATTENTION_RUNS)
    for overlay in report["overlays"].values():
        assert (report_dir / overlay["file"]).is_file() and len(overlay["images"]) == 2
    text = (report_dir / "report.md").read_text()
    assert all(f"| {name} |" in text for name in RUN_NAMES) and "## What holds" in text
    assert not [p for p in report_dir.iterdir() if p.name.startswith(".tmp-")]

    # The subsets link the class folders; the pretrained backbone is a preset.
    runs = tmp_path / "runs"
    link = runs / "data" / "pretrain_classes" / "train" / classes[0]
    assert link.is_symlink() and link.resolve() == (data_dir / "train" / classes[0]).resolve()
    preset = runs / "backbones" / "resnet_pretrained"
    assert {"config.json", "model.weights.h5", "image_converter.json"} <= {
        p.name for p in preset.iterdir()
    }

    # Run again: every run is finished and skipped, nothing retrains.
    capsys.readouterr()
    assert demo.main(_tiny_flags(data_dir, tmp_path)) == 0
    assert capsys.readouterr().out.count("finished before, skipped") == len(RUN_NAMES)
    again = json.loads((report_dir / "report.json").read_text())
    assert all(len(run["calls"]) == 1 for run in again["runs"].values())


def test_bad_flags_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--stage-filters", "64,64"])
    assert "--stage-filters: expected four positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--finetune-epochs", "2", "--freeze-backbone-epochs", "2"])
    assert "--freeze-backbone-epochs 2 must be below --finetune-epochs 2" in capsys.readouterr().err


def test_without_keras_hub_the_demo_says_what_to_install(tmp_path, small_data_dir, capsys, monkeypatch):
    real_find_spec = demo.importlib.util.find_spec
    monkeypatch.setattr(demo.importlib.util, "find_spec",
                        lambda name, *a: None if name == "keras_hub" else real_find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        demo.main(_tiny_flags(small_data_dir / "caltech101", tmp_path))
    assert exit_info.value.code == 2
    assert "needs keras-hub: pip install 'keras-ltpa[hub]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report").exists()
