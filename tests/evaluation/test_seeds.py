"""keras_ltpa.evaluation.seeds: statistics over seeds, seeds.json, the table."""

import json
import math

import pytest

from keras_ltpa.evaluation import seeds

# Student's t quantile t(0.975, 3) from a printed t-table (3.182) and to more
# digits (3.1824463); the code gets it from scipy.
T_975_3 = 3.1824463


def test_paired_difference_matches_a_hand_computation():
    model = [85.0, 86.0, 84.0, 87.0]
    baseline = [83.0, 84.0, 83.0, 84.0]
    # By hand: d = [2, 2, 1, 3]; mean 2; squared deviations 0, 0, 1, 1, so
    # var = 2 / 3 (ddof=1), std = 0.8164966; se = std / sqrt(4) = 0.4082483;
    # half width = 3.1824463 * 0.4082483 = 1.2992283; interval [0.7007717, 3.2992283].
    result = seeds.paired_difference(model, baseline)
    assert result["n"] == 4
    assert result["differences"] == [2.0, 2.0, 1.0, 3.0]
    assert result["mean"] == pytest.approx(2.0, abs=1e-12)
    assert result["std"] == pytest.approx(math.sqrt(2 / 3), abs=1e-12)
    assert result["t"] == pytest.approx(T_975_3, abs=1e-6)
    assert result["t"] == pytest.approx(3.182, abs=5e-4)
    assert result["half_width"] == pytest.approx(1.2992283, abs=1e-6)
    assert result["low"] == pytest.approx(0.7007717, abs=1e-6)
    assert result["high"] == pytest.approx(3.2992283, abs=1e-6)
    assert result["verdict"] == "holds"
    # The other way round: the interval is below 0.
    reverse = seeds.paired_difference(baseline, model)
    assert (reverse["low"], reverse["high"]) == pytest.approx((-3.2992283, -0.7007717), abs=1e-6)
    assert reverse["verdict"] == "does not hold"
    # Lower is better: the difference is taken the other way.
    assert seeds.paired_difference(baseline, model, higher_is_better=False)["verdict"] == "holds"


def test_interval_containing_zero_is_not_resolved():
    # d = [1, -1, 2]: mean 2/3, std = sqrt(((1/3)^2 + (5/3)^2 + (4/3)^2) / 2) = sqrt(7/3);
    # t(0.975, 2) = 4.302653 (table: 4.303): half width 4.302653 * sqrt(7/3) / sqrt(3) = 4.302653 * 0.8819171 = 3.794583.
    result = seeds.paired_difference([3.0, 1.0, 4.0], [2.0, 2.0, 2.0])
    assert result["std"] == pytest.approx(math.sqrt(7 / 3), abs=1e-12)
    assert result["half_width"] == pytest.approx(3.794583, abs=1e-5)
    assert result["low"] < 0 < result["high"]
    assert result["verdict"] == "not resolved at this scale"


def test_verdict_edges():
    assert seeds.verdict(0.1, 0.2) == "holds"
    assert seeds.verdict(-0.2, -0.1) == "does not hold"
    assert seeds.verdict(0.0, 0.3) == "not resolved at this scale"  # touching 0 contains it
    assert seeds.verdict(-0.3, 0.0) == "not resolved at this scale"


def test_errors_name_what_was_wrong():
    with pytest.raises(ValueError, match=r"at least 2 paired seeds.*n=1"):
        seeds.paired_difference([0.8], [0.7])
    with pytest.raises(ValueError, match="3 and 2 values"):
        seeds.paired_difference([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        seeds.paired_difference([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        seeds.summarize([])


def test_summarize():
    assert seeds.summarize([0.80, 0.84]) == pytest.approx(
        {"n": 2, "mean": 0.82, "std": math.sqrt(0.0008)}
    )
    assert seeds.summarize([0.8]) == {"n": 1, "mean": 0.8, "std": None}


def _report(model_accuracy, baseline_accuracy, cam=0.30):
    return {
        "models": {"model": {"source": "preset:att"}, "baseline": {"source": "preset:vgg"}},
        "classification": {
            "model": {"accuracy": model_accuracy, "flip_tta": {"accuracy": model_accuracy + 0.01}},
            "baseline": {"accuracy": baseline_accuracy},
        },
        "robustness": {
            "model": {"epsilons": [0.0, 2.0], "accuracy": [model_accuracy, 0.4]},
            "baseline": {"epsilons": [0.0, 2.0], "accuracy": [baseline_accuracy, 0.3]},
        },
        "transfer": {
            "model": {"accuracy": 0.6, "mean_class_accuracy": 0.45},
            "baseline": {"accuracy": 0.5, "mean_class_accuracy": 0.25},
        },
        "localization": [
            {"threshold": "mean", "jaccard": {"attention_3": 0.40, "gaussian_prior": 0.42,
                                              "baseline_cam": cam}},
            {"threshold": 0.25, "jaccard": {"attention_3": 0.45, "gaussian_prior": 0.41,
                                            "baseline_cam": cam}},
        ],
    }


def test_figures_from_report():
    figures = seeds.figures_from_report(_report(0.83, 0.82))
    name, model = figures["model"]
    assert name == "att"
    assert model == {
        "accuracy": 0.83,
        "accuracy_flip_tta": pytest.approx(0.84),
        "fgsm": {"0": 0.83, "2": 0.4},
        "transfer": {"top1": 0.6, "mean_class": 0.45},
        "jaccard": {"mean": {"attention_3": 0.40, "gaussian_prior": 0.42},
                    "0.25": {"attention_3": 0.45, "gaussian_prior": 0.41}},
    }
    name, baseline = figures["baseline"]
    assert name == "vgg"
    assert baseline["jaccard"] == {"mean": {"cam": 0.30}, "0.25": {"cam": 0.30}}
    assert "accuracy_flip_tta" not in baseline
    with pytest.raises(ValueError, match="missing: baseline"):
        seeds.figures_from_report({"models": {"model": {"source": "a"}}})


def test_seeds_json_round_trip_and_checks(tmp_path):
    document = seeds.seeds_from_report(_report(0.83, 0.82), 0, source="r0.json")
    seeds.seeds_from_report(_report(0.84, 0.82), 1, document=document)
    seeds.seeds_from_report(_report(0.85, 0.83), 1, document=document)  # replaces seed 1
    path = tmp_path / "seeds.json"
    seeds.write_seeds(path, document)
    loaded = seeds.read_seeds(path)
    assert loaded == json.loads(json.dumps(document))
    assert [s["seed"] for s in loaded["models"]["att"]["seeds"]] == [0, 1]
    assert loaded["models"]["att"]["seeds"][1]["figures"]["accuracy"] == 0.85
    with pytest.raises(ValueError, match="already has the role 'model'"):
        seeds.add_seed(document, "other", "model", 0, {})
    with pytest.raises(ValueError, match="seed` must be an int >= 0"):
        seeds.add_seed(document, "att", "model", -1, {})
    (tmp_path / "bad.json").write_text('{"models": {}}')
    with pytest.raises(ValueError, match="format 1"):
        seeds.read_seeds(tmp_path / "bad.json")


def test_comparison_with_one_seed_says_no_interval():
    comparison = seeds.compare_seeds(seeds.seeds_from_report(_report(0.834, 0.830), 0))
    accuracy = comparison["rows"][0]
    assert accuracy["key"] == ["accuracy"] and accuracy["interval"] is None
    assert accuracy["verdict"] == "1 seed: no interval"
    assert accuracy["difference"] == pytest.approx(0.004)
    table = seeds.markdown_table(comparison)
    assert "| test accuracy (%) | 83.4 | 83.0 | +0.4 (1 seed: no interval) | 1 seed: no interval |" in table
    # Flip TTA exists for the model alone here: no row for it.
    assert "flip TTA" not in table
    labels = [line.split(" | ")[0] for line in table.splitlines()[2:]]
    assert labels == [
        "| test accuracy (%)", "| FGSM accuracy (%), eps 0", "| FGSM accuracy (%), eps 2",
        "| transfer top-1 (%)", "| transfer mean-class (%)",
        "| Jaccard, mean rule: attention_3 vs baseline Grad-CAM",
        "| Jaccard, mean rule: attention_3 vs centred prior",
        "| Jaccard, top 25%: attention_3 vs baseline Grad-CAM",
        "| Jaccard, top 25%: attention_3 vs centred prior",
    ]


def test_comparison_over_four_seeds_matches_the_hand_interval():
    document = seeds.empty_seeds()
    for seed, (ours, theirs) in enumerate(zip([85, 86, 84, 87], [83, 84, 83, 84])):
        seeds.add_seed(document, "att", "model", seed, {"accuracy": ours / 100})
        seeds.add_seed(document, "vgg", "baseline", seed, {"accuracy": theirs / 100})
    seeds.add_seed(document, "att", "model", 7, {"accuracy": 0.9})  # no partner
    comparison = seeds.compare_seeds(document)
    assert comparison["seeds"] == [0, 1, 2, 3]
    assert comparison["unpaired"] == {"att": [7]}
    (row,) = comparison["rows"]
    assert row["interval"]["low"] == pytest.approx(0.007007717, abs=1e-8)
    assert row["interval"]["high"] == pytest.approx(0.032992283, abs=1e-8)
    # mean ± std: 85.5 ± 1.29 (std of 85, 86, 84, 87 = sqrt(5/3)); 83.5 ± 0.58 (sqrt(1/3)).
    table = seeds.markdown(comparison)
    assert "| test accuracy (%) | 85.5 ± 1.3 | 83.5 ± 0.6 | +2.0 [+0.7, +3.3] | holds |" in table
    assert "Seeds without a partner (left out): att: 7." in table
