"""training/compare_seeds.py: seeds.json from reports, the table, the README block."""

import json
import pathlib
import runpy

import pytest

from keras_ltpa.cli import compare_seeds
from keras_ltpa.evaluation import seeds

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _report(directory, model_accuracy, baseline_accuracy):
    directory.mkdir(parents=True)
    report = {
        "models": {"model": {"source": "preset:att"}, "baseline": {"source": "preset:vgg"}},
        "classification": {"model": {"accuracy": model_accuracy},
                           "baseline": {"accuracy": baseline_accuracy}},
        "localization": [{"threshold": "mean",
                          "jaccard": {"attention_1": 0.1, "attention_3": 0.4, "gaussian_prior": 0.42,
                                      "baseline_cam": 0.3}}],
    }
    (directory / "report.json").write_text(json.dumps(report))
    return directory


def _readme(path):
    path.write_text("# Title\n\ntext before\n<!-- seeds:start -->\nOLD BLOCK\n<!-- seeds:end -->\nafter\n")
    return path


def test_seeds_from_reports_to_table_and_readme(tmp_path, capsys):
    seeds_path, table, readme = tmp_path / "seeds.json", tmp_path / "seeds.md", _readme(tmp_path / "R.md")
    files = ["--seeds", str(seeds_path), "--output", str(table), "--readme", str(readme)]
    # Seed 0 alone: the single difference, no interval.
    assert compare_seeds.main(
        [*files, "--add-report", str(_report(tmp_path / "r0", 0.85, 0.83) / "report.json"),
         "--seed", "0"]
    ) == 0
    assert "| test accuracy (%) | 85.0 | 83.0 | +2.0 (1 seed: no interval) | 1 seed: no interval |" \
        in table.read_text()
    # Seeds 1..3 (the report folder works as well as its report.json).
    for seed, (ours, theirs) in enumerate([(0.86, 0.84), (0.84, 0.83), (0.87, 0.84)], start=1):
        assert compare_seeds.main(
            [*files, "--add-report", str(_report(tmp_path / f"r{seed}", ours, theirs)),
             "--seed", str(seed)]
        ) == 0
    document = seeds.read_seeds(seeds_path)
    assert [s["seed"] for s in document["models"]["att"]["seeds"]] == [0, 1, 2, 3]
    # The hand case of tests/evaluation/test_seeds.py: d = [2, 2, 1, 3] points,
    # interval [+0.70, +3.30]: holds.
    text = table.read_text()
    assert "| test accuracy (%) | 85.5 ± 1.3 | 83.5 ± 0.6 | +2.0 [+0.7, +3.3] | holds |" in text
    # The Jaccard rows: identical every seed, so std 0 and a zero-width interval.
    assert "| Jaccard, mean rule: attention_3 vs baseline Grad-CAM | 0.400 ± 0.000 | 0.300 ± 0.000 |" \
        " +0.100 [+0.100, +0.100] | holds |" in text
    assert "| Jaccard, mean rule: attention_3 vs centred prior |" in text
    written = readme.read_text()
    assert written.startswith("# Title\n\ntext before\n<!-- seeds:start -->\n<!-- Written by")
    assert written.endswith("<!-- seeds:end -->\nafter\n") and "OLD BLOCK" not in written
    assert "+2.0 [+0.7, +3.3] | holds |" in written
    # The README keeps the headline rows only and links the full table.
    assert "| Jaccard, mean rule: attention_3 vs baseline Grad-CAM |" in written
    assert "attention_1" in text and "attention_1" not in written
    assert f"]({table})" in written
    # Rerunning without --add-report rewrites the same text.
    assert compare_seeds.main(files) == 0
    assert readme.read_text() == written
    capsys.readouterr()


def test_a_seed_of_run_directories_is_filed_under_the_preset_names(tmp_path, capsys):
    seeds_path = tmp_path / "seeds.json"
    files = ["--seeds", str(seeds_path), "--output", str(tmp_path / "seeds.md"), "--no-readme"]
    assert compare_seeds.main([*files, "--add-report", str(_report(tmp_path / "r0", 0.85, 0.83)),
                               "--seed", "0"]) == 0
    runs = _report(tmp_path / "r1", 0.86, 0.84)
    report = json.loads((runs / "report.json").read_text())
    report["models"] = {"model": {"source": "runs/seeds/1/att3"},
                        "baseline": {"source": "runs/seeds/1/vgg"}}
    (runs / "report.json").write_text(json.dumps(report))
    # Without names the run directories would be a second model of each role.
    assert compare_seeds.main([*files, "--add-report", str(runs), "--seed", "1"]) == 2
    assert "'att' already has the role 'model'" in capsys.readouterr().err
    assert compare_seeds.main([*files, "--add-report", str(runs), "--seed", "1",
                               "--model-name", "att", "--baseline-name", "vgg"]) == 0
    document = seeds.read_seeds(seeds_path)
    assert sorted(document["models"]) == ["att", "vgg"]
    assert [s["figures"]["accuracy"] for s in document["models"]["att"]["seeds"]] == [0.85, 0.86]
    assert [s["figures"]["accuracy"] for s in document["models"]["vgg"]["seeds"]] == [0.83, 0.84]
    with pytest.raises(SystemExit):
        compare_seeds.main([*files, "--model-name", "att"])
    assert "--model-name and --baseline-name name the models of --add-report" in capsys.readouterr().err


def test_errors_exit_2_in_one_line(tmp_path, capsys):
    readme = tmp_path / "R.md"
    readme.write_text("no markers\n")
    report = _report(tmp_path / "r0", 0.85, 0.83)
    code = compare_seeds.main([
        "--seeds", str(tmp_path / "s.json"), "--output", str(tmp_path / "s.md"),
        "--readme", str(readme), "--add-report", str(report), "--seed", "0",
    ])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "<!-- seeds:start -->" in err[0]
    assert readme.read_text() == "no markers\n"
    code = compare_seeds.main(["--seeds", str(tmp_path / "missing.json"), "--no-readme",
                               "--output", str(tmp_path / "s.md")])
    assert code == 2 and "missing.json" in capsys.readouterr().err
    for argv, named in ((["--seed", "0"], "--add-report and --seed"),
                        (["--add-report", "r", "--seed", "-1"], "-1")):
        with pytest.raises(SystemExit) as exit_info:
            compare_seeds.main(argv)
        assert exit_info.value.code == 2 and named in capsys.readouterr().err


def test_shipped_seeds_file_holds_seed_0_of_both_presets():
    document = seeds.read_seeds(REPO_ROOT / "docs" / "results" / "seeds.json")
    report = json.loads((REPO_ROOT / "docs" / "results" / "report.json").read_text())
    figures = seeds.figures_from_report(report)
    for role in ("model", "baseline"):
        name, expected = figures[role]
        entry = document["models"][name]
        assert entry["role"] == role
        assert entry["seeds"][0]["seed"] == 0 and entry["seeds"][0]["figures"] == expected


def test_the_training_wrapper_runs_main(monkeypatch, tmp_path):
    called = []
    monkeypatch.setattr(compare_seeds, "main", lambda argv=None: called.append(argv) or 0)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "training" / "compare_seeds.py"), run_name="__main__")
    assert exit_info.value.code == 0 and called == [None]
