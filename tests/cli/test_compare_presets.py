"""training/compare_presets.py: the README block, its verdicts, a quick run."""

import json
import os
import pathlib

import pytest

from keras_ltpa import build_model
from tests.conftest import load_script

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
compare = load_script(REPO_ROOT / "training" / "compare_presets.py", "compare_presets_cli")


def _report(attention_accuracy, baseline_accuracy, fgsm_model, fgsm_baseline):
    return {
        "models": {
            "model": {"source": "preset:a", "variant": "att3-concat-pc", "width_multiplier": 0.125,
                      "input_shape": [32, 32, 3]},
            "baseline": {"source": "preset:b", "variant": "noatt", "width_multiplier": 0.125,
                         "input_shape": [32, 32, 3]},
        },
        "classification": {
            "model": {"count": 10, "accuracy": attention_accuracy, "top_k": 5, "top_k_accuracy": 0.9},
            "baseline": {"count": 10, "accuracy": baseline_accuracy, "top_k": 5, "top_k_accuracy": 0.8},
        },
        "localization": [{
            "threshold": "mean", "count": 3,
            "jaccard": {"attention_1": 0.2, "attention_3": 0.45, "gaussian_prior": 0.42,
                        "baseline_cam": 0.3},
        }],
        "robustness": {
            name: {"count": 5, "epsilons": [0.0, 1.0, 2.0], "accuracy": accuracy,
                   "mean_flip_epsilon": 1.5}
            for name, accuracy in (("model", fgsm_model), ("baseline", fgsm_baseline))
        },
        "transfer_dataset": "caltech101",
        "transfer": {
            name: {"num_classes": 3, "train_count": 6, "test_count": 3, "features": kind,
                   "feature_dim": 4, "accuracy": accuracy, "mean_class_accuracy": accuracy}
            for name, kind, accuracy in (("model", "attention", 0.5), ("baseline", "global", 0.6))
        },
    }


def test_verdicts_follow_the_numbers():
    lines = compare.verdicts(_report(0.7, 0.6, [0.7, 0.5, 0.4], [0.6, 0.3, 0.5]))
    assert lines[0].startswith("- Accuracy") and "holds here (70.0% vs 60.0%)" in lines[0]
    assert "attention_3 0.450" in lines[1] and "the claim holds here" in lines[1]
    assert "more accurate at 1 of 2 epsilons" in lines[2] and "holds in part" in lines[2]
    assert "does not hold here (50.0% vs 60.0% top-1)" in lines[3]
    worse = compare.verdicts(_report(0.5, 0.6, [0.5, 0.1, 0.1], [0.6, 0.3, 0.5]))
    assert "does not hold here (50.0% vs 60.0%)" in worse[0]
    assert "the claim does not hold here" in worse[2]


def _with_flip_tta(report, attention_accuracy, baseline_accuracy):
    for name, accuracy in (("model", attention_accuracy), ("baseline", baseline_accuracy)):
        report["classification"][name]["flip_tta"] = {"accuracy": accuracy, "top_k_accuracy": 0.95}
    return report


def test_flip_tta_is_reported_beside_the_plain_accuracy(tmp_path):
    # The verdict follows the plain accuracy even where flip TTA says otherwise.
    report = _with_flip_tta(_report(0.5, 0.6, [0.5, 0.1, 0.1], [0.6, 0.3, 0.5]), 0.901, 0.6)
    line = compare.verdicts(report)[0]
    assert line.endswith("does not hold here (50.0% vs 60.0%; with flip TTA 90.1% vs 60.0%).")
    readme = tmp_path / "README.md"
    start, end = compare.markers("comparison-w025")
    readme.write_text(f"{start}\n{end}\n")
    block = compare.readme_block(report, tmp_path / "w025", readme, tmp_path / "o.png",
                                 "comparison-w025")
    assert "--readme-block comparison-w025 --tta flip`" in block
    assert "| top-1 accuracy, flip TTA (%) | 90.1 | 60.0 |" in block
    plain = compare.readme_block(_report(0.5, 0.6, [0.5, 0.1, 0.1], [0.6, 0.3, 0.5]),
                                 tmp_path / "w025", readme, tmp_path / "o.png", "comparison-w025")
    assert "--tta" not in plain and "flip TTA" not in plain


def test_readme_block_replaces_only_its_part(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{compare.START_MARKER}\nold\n{compare.END_MARKER}\nafter\n")
    report = _report(0.7, 0.6, [0.7, 0.5, 0.4], [0.6, 0.3, 0.5])
    block = compare.readme_block(report, tmp_path / "docs", readme, tmp_path / "docs" / "o.png")
    compare.rewrite_readme(readme, block)
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "\nold\n" not in text
    assert "| top-1 accuracy (%) | 70.0 | 60.0 |" in text
    assert "](docs/fgsm_accuracy.png)" in text and "](docs/o.png)" in text
    assert "compare_presets.py a b" in text
    # A second pair's block: its own markers; the first block is left alone.
    start, end = compare.markers("comparison-w025")
    readme.write_text(readme.read_text() + f"{start}\nold pair\n{end}\n")
    second = compare.readme_block(report, tmp_path / "docs" / "w025", readme, tmp_path / "o.png",
                                  "comparison-w025")
    compare.rewrite_readme(readme, second, "comparison-w025")
    both = readme.read_text()
    assert both.startswith(text) and "old pair" not in both
    written_by = f"--output-dir {os.path.relpath(tmp_path / 'docs' / 'w025')} --readme {os.path.relpath(readme)}"
    assert f"{written_by} --readme-block comparison-w025`" in both
    assert both.rstrip().endswith(end)
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers")
    with pytest.raises(ValueError, match="BARE.md"):
        compare.rewrite_readme(bare, block)


@pytest.mark.slow
def test_quick_run_on_two_model_files(tmp_path, small_data_dir, capsys):
    build_model(10, width_multiplier=0.0625).save(tmp_path / "att.keras")
    build_model(10, variant="noatt", width_multiplier=0.0625).save(tmp_path / "vgg.keras")
    readme = tmp_path / "README.md"
    readme.write_text(f"{compare.START_MARKER}\n{compare.END_MARKER}\n")
    code = compare.main([
        str(tmp_path / "att.keras"), str(tmp_path / "vgg.keras"), "--quick",
        "--data-root", str(small_data_dir), "--output-dir", str(tmp_path / "out"),
        "--readme", str(readme), "--tta", "flip",
    ])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "attention_horses_000.png", "attention_overlays_000.png", "fgsm_accuracy.png",
        "localization_jaccard.png",
        "report.json", "report.md",
    ]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["classification"]["model"]["count"] == 200
    # --tta flip reaches the evaluation: both models scored on the mirrors too.
    assert all(0 <= report["classification"][n]["flip_tta"]["accuracy"] <= 1
               for n in ("model", "baseline"))
    assert readme.read_text() == f"{compare.START_MARKER}\n{compare.END_MARKER}\n"  # --quick
    assert "- Accuracy" in capsys.readouterr().out


def test_model_reference_reads_bare_names_as_presets(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"")
    assert compare.model_reference("cifar10-att3-w0125") == "preset:cifar10-att3-w0125"
    assert compare.model_reference("preset:cifar10-vgg-w0125") == "preset:cifar10-vgg-w0125"
    assert compare.model_reference(str(path)) == str(path)  # An existing path stays one.
    assert compare.model_reference(str(tmp_path)) == str(tmp_path)


@pytest.mark.slow
def test_bare_preset_names_rewrite_the_readme_block(tmp_path, small_data_dir, capsys):
    attention, baseline = "cifar10-att3-w0125", "cifar10-vgg-w0125"
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{compare.START_MARKER}\nold table\n{compare.END_MARKER}\n\nEnd.\n")
    out = tmp_path / "docs" / "results"
    code = compare.main([
        attention, baseline, "--data-root", str(small_data_dir), "--output-dir", str(out),
        "--readme", str(readme), "--fgsm-limit", "8",
    ])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["model"]["source"] == f"preset:{attention}"
    assert report["models"]["baseline"]["source"] == f"preset:{baseline}"
    test_images = sum(1 for p in (small_data_dir / "cifar10" / "test").rglob("*") if p.is_file())
    assert report["classification"]["model"]["count"] == test_images  # Not --quick.

    text = readme.read_text()
    assert text.startswith(f"# Title\n\n{compare.START_MARKER}\n")
    assert text.endswith(f"{compare.END_MARKER}\n\nEnd.\n") and "old table" not in text
    assert text.count(compare.START_MARKER) == 1 == text.count(compare.END_MARKER)
    assert f"compare_presets.py {attention} {baseline}`" in text
    accuracy = [100 * report["classification"][n]["accuracy"] for n in ("model", "baseline")]
    assert f"| top-1 accuracy (%) | {accuracy[0]:.1f} | {accuracy[1]:.1f} |" in text
    # Every image the block shows is where its relative link points.
    links = [line.split("](", 1)[1].split(")", 1)[0] for line in text.splitlines() if "](" in line]
    assert "docs/results/attention_overlays_000.png" in links
    assert links and all((tmp_path / link).is_file() for link in links), links
    assert capsys.readouterr().out.splitlines()[-4:] == compare.verdicts(report)
