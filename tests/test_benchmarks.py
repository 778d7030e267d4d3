"""Smoke tests of the benchmark scripts, and checks of what they compute.

Each script runs once with `--smoke` (a width-0.0625 model, one or two
steps) and must write a complete result file. Timings are never asserted:
only that the scripts run, and that the numbers they derive (FLOPs,
percentiles, tables) are right.
"""

import json
import os
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_ltpa import cpu_defaults
from tests.conftest import require_package

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def _benchmarks_importable():
    sys.path.insert(0, str(BENCHMARKS_DIR))
    yield
    sys.path.remove(str(BENCHMARKS_DIR))


def _read(path):
    return json.loads(path.read_text())


def _check_environment(result):
    environment = result["environment"]
    assert environment["backend"] == keras.backend.backend()
    assert environment["machine"]["cores"] >= 1
    assert environment["machine"]["cpu"]
    assert environment["versions"]["keras"] == keras.__version__
    assert len(result["load_average"]["start"]) == 3
    assert result["smoke"] is True


# The paper's VGG at 32x32: (side, input channels, output channels) of each
# 3x3 convolution (block 6 runs at 4x4 then 2x2), then the 1x1 "dense" layer.
PAPER_CONVOLUTIONS = (
    [(32, 3, 64), (32, 64, 64), (32, 64, 128), (32, 128, 128)]
    + [(32, 128, 256), (32, 256, 256), (32, 256, 256)]
    + [(16, 256, 512), (16, 512, 512), (16, 512, 512)]
    + [(8, 512, 512)] * 3
    + [(4, 512, 512), (2, 512, 512)]
)


def test_forward_flops_match_the_paper_model_by_hand():
    import measure

    import keras_ltpa

    counted = measure.forward_flops(keras_ltpa.build_model(10))
    conv_flops = sum(2 * side * side * 9 * cin * cout for side, cin, cout in PAPER_CONVOLUTIONS)
    per_layer = counted["per_layer"]
    conv_names = [
        name for name in per_layer if "_conv" in name and name.startswith("block")
    ]
    assert len(conv_names) == len(PAPER_CONVOLUTIONS)
    # Conv layers also count one add per output for their bias.
    biases = sum(side * side * cout for side, _, cout in PAPER_CONVOLUTIONS)
    assert sum(per_layer[name] for name in conv_names) == conv_flops + biases
    assert per_layer["global_dense"] == 2 * 512 * 512 + 512
    assert per_layer["projector_1"] == 2 * 32 * 32 * 256 * 512
    assert per_layer["classifier"] == 2 * 3 * 512 * 10
    assert counted["uncounted"] == []
    # Convolutions are almost all of it: 7.85 GFLOPs per image.
    assert counted["total"] == pytest.approx(7.8517e9, rel=1e-4)
    twice = measure.forward_flops(keras_ltpa.build_model(10), batch_size=2)
    assert twice["total"] == 2 * counted["total"]


def test_percentile_matches_numpy():
    import measure

    values = list(np.random.default_rng(0).exponential(size=37))
    for q in (0, 50, 90, 99, 100):
        assert measure.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_write_result_is_atomic_and_readable(tmp_path):
    import measure

    path = measure.write_result("demo", {"a": 1, "b": [1.5, None]}, tmp_path)
    assert _read(path) == {"a": 1, "b": [1.5, None]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]
    with pytest.raises(TypeError):
        measure.write_result("broken", {"x": object()}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]


def test_throughput_smoke(tmp_path):
    import throughput

    result = throughput.main(
        ["--smoke", "--precision", "mixed_bfloat16", "--output-dir", str(tmp_path)]
    )
    (path,) = tmp_path.glob("throughput_*_smoke.json")
    assert _read(path) == json.loads(json.dumps(result))
    _check_environment(result)
    assert result["settings"]["precision"] == "mixed_bfloat16"
    assert result["settings"]["width_multiplier"] == 0.0625
    for mode in ("train", "inference"):
        timing = result[mode]
        assert len(timing["step_seconds"]) == 1
        assert timing["images_per_second"] == pytest.approx(
            result["settings"]["batch_size"] / timing["median_seconds"], rel=1e-3
        )
    assert result["memory"]["peak_rss_mib"] >= result["memory"]["peak_rss_mib_after_import"] > 0
    # Width 1/16 of every layer: about 1/256 of the full model's FLOPs.
    assert 0.02 < result["forward_gflops_per_image"] < 0.05


def test_flops_smoke(tmp_path):
    import flops

    result = flops.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    entry = result["forward_flops"]["32"]
    assert entry["gflops"] == pytest.approx(entry["matmul_gflops"] + entry["elementwise_gflops"], abs=2e-4)
    if keras.backend.backend() == "tensorflow":
        # The TF profiler's own count of the traced graph agrees.
        assert entry["tf_profiler_gflops"] == pytest.approx(entry["gflops"], rel=0.02)
    for dtype in ("float32", "bfloat16", "float16"):
        assert result["matmul_rate"][dtype]["best"] > 0
    assert (tmp_path / "flops_{}_smoke.json".format(keras.backend.backend())).is_file()


def test_data_pipeline_smoke(tmp_path, shared_data_dir):
    import data_pipeline

    results_dir = tmp_path / "results"
    results_dir.mkdir()
    # A training rate to compare against, as throughput.py writes it.
    (results_dir / "throughput_x.json").write_text(json.dumps({
        "smoke": False, "train": {"images_per_second": 10.0},
        "settings": {"width_multiplier": 1.0, "input_size": 32, "batch_size": 32},
    }))
    result = data_pipeline.main([
        "--smoke", "--data-dir", str(shared_data_dir / "cifar10"),
        "--results-dir", str(results_dir), "--output-dir", str(tmp_path),
    ])
    _check_environment(result)
    assert result["uncached"]["timed_images"] == 2 * 8
    assert result["cached"]["images_per_second"] > 0
    assert result["settings"]["classes"] == 10
    assert result["training_rate"]["images_per_second"] == 10.0
    assert result["pipeline_over_training"] == pytest.approx(
        result["uncached"]["images_per_second"] / 10.0, rel=0.01
    )


@pytest.mark.tf_only
def test_latency_smoke(tmp_path):
    import latency

    result = latency.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    expected = {
        "keras_predict_logits", "keras_predict_attention",
        "keras_predict_attention_folded", "savedmodel_folded_serving_default",
        "savedmodel_folded_serve_bytes",
    }
    assert set(result["latency"]) == expected
    for entry in result["latency"].values():
        # The summary is of the recorded calls (rounded to 1 microsecond).
        times = entry["times_ms"]
        assert len(times) == entry["iterations"] and min(times) > 0
        assert entry["p50_ms"] == pytest.approx(np.percentile(times, 50), abs=2e-3)
        assert entry["p99_ms"] == pytest.approx(np.percentile(times, 99), abs=2e-3)
        assert entry["min_ms"] == pytest.approx(min(times), abs=1e-3)
    ideal = result["ideal_latency_ms"]["bfloat16"]
    assert ideal == pytest.approx(
        result["forward_gflops"] / result["matmul_gflops_per_second"]["bfloat16"] * 1e3,
        rel=0.01,
    )
    floor = result["ideal_latency_ms"]["float32"]
    assert result["savedmodel_p50_over_float32_floor"] == pytest.approx(
        result["latency"]["savedmodel_folded_serving_default"]["p50_ms"] / floor, rel=0.01
    )
    require_package("torch", "torch")
    versus = result["savedmodel_versus_torch_eager"]
    assert set(versus) == {"b1", "b32"}
    for entry in versus.values():
        assert entry["savedmodel"]["p50_ms"] > 0 and entry["torch_eager"]["p50_ms"] > 0
        assert entry["torch_over_savedmodel"] > 0


@pytest.mark.tf_only
def test_profile_smoke(tmp_path):
    import profile_steps

    result = profile_steps.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    for mode in ("train", "inference"):
        rows = result[mode]["by_op_type"]["rows"]
        assert sum(row["share"] for row in rows) == pytest.approx(1.0, abs=0.01)
        names = {row["name"] for row in rows}
        assert not any("::" in name or name == "Process" for name in names)
        layers = {row["name"] for row in result[mode]["by_layer"]["rows"]}
        # The convolutions show up under their layer names.
        assert "block3_conv2" in layers
    assert any("Backprop" in row["name"] for row in result["train"]["by_op_type"]["rows"])


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
    import measure
    import scaling

    import keras_ltpa

    # One point (64x64) in a child process: the plumbing of the sweeps.
    result = scaling.main(["--smoke", "--sweep", "size", "--output-dir", str(tmp_path)])
    _check_environment(result)
    assert "by_batch_size" not in result
    (point,) = result["by_input_size"]
    assert "error" not in point, point
    for mode, passes in (("train", 3), ("inference", 1)):
        entry = point[mode]
        assert entry["ms_per_image"] == pytest.approx(
            1e3 / entry["images_per_second"], rel=0.01
        )
        assert entry["achieved_gflops_per_second"] == pytest.approx(
            entry["images_per_second"] * point["forward_gflops_per_image"] * passes,
            rel=0.05, abs=0.1,
        )
    # 64x64 has 4x the pixels of 32x32: 4x the FLOPs per image.
    assert point["input_size"] == 64
    small = measure.forward_flops(keras_ltpa.build_model(10, width_multiplier=0.0625))
    assert point["forward_gflops_per_image"] == pytest.approx(
        4 * small["total"] / 1e9, rel=0.02
    )


def test_run_all_report_builds_tables(tmp_path, monkeypatch):
    import report
    import run_all

    results = tmp_path / "results"
    results.mkdir()
    environment = {"backend": "jax"}
    load = {"start": [0.1, 0.2, 0.3], "end": [0.4, 0.5, 0.6]}
    (results / "throughput_a.json").write_text(json.dumps({
        "benchmark": "throughput", "smoke": False, "environment": environment,
        "load_average": load,
        "settings": {"width_multiplier": 1.0, "input_size": 32, "precision": "float32",
                     "jit_compile_resolved": True, "batch_size": 32},
        "train": {"images_per_second": 12.5, "images_per_second_best": 13.0},
        "inference": {"images_per_second": 40.0},
        "memory": {"peak_rss_mib": 2048.4},
    }))
    (results / "throughput_smoke.json").write_text(json.dumps({
        "benchmark": "throughput", "smoke": True,
    }))
    machine = {"cpu": "Test CPU", "cores": 2, "cpu_flags": ["avx2"]}
    (results / "versus_torch_a.json").write_text(json.dumps({
        "benchmark": "versus_torch", "smoke": False, "load_average": load,
        "environment": {"backend": "tensorflow", "machine": machine},
        "settings": {"width_multiplier": 0.25, "batch_size": 128},
        "workers": {"keras tensorflow float32": {"cpu_kernels": {"tensorflow_onednn": True}}},
        "targets": {"train": 1.1, "inference": 1.2},
        **{mode: {"images_per_second": {"keras tensorflow float32": 90.0, "torch float32": 60.0},
                  "torch_best": "torch float32", "ratio_to_torch_best": 1.5}
           for mode in ("train", "inference")},
    }))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Intro kept\n\n{report.BEGIN}\nold\n{report.END}\n\nOutro kept\n")
    monkeypatch.setattr(report, "README", readme)
    assert run_all.main(["--report-only", "--results-dir", str(results)])
    text = readme.read_text()
    assert text.startswith("# Intro kept") and text.rstrip().endswith("Outro kept")
    assert "old" not in text
    assert "| jax | float32 | XLA on | 32 | 12.50 / 13.00 | 40.00 | 2048 | 0.10 / 0.40 |" in text
    assert (
        "| Test CPU, 2 cores (avx2) | 0.25 | 128 | train | 90.0 (tensorflow float32, oneDNN on) "
        "| 60.0 (float32) | 1.5 (target 1.1) | 0.10 / 0.40 |"
    ) in text
    # Parts without results get no empty table.
    assert "latency" not in text.lower()


def test_run_all_rejects_unknown_part():
    import run_all

    with pytest.raises(SystemExit) as raised:
        run_all.parse_args(["--only", "speed"])
    assert raised.value.code == 2


def test_torch_reference_smoke(tmp_path):
    require_package("torch", "torch")
    import torch_reference

    result = torch_reference.main(
        ["--smoke", "--precision", "bfloat16_autocast", "--output-dir", str(tmp_path)]
    )
    assert result["environment"]["backend"] == "torch (plain PyTorch)"
    assert result["smoke"] is True
    for mode in ("train", "inference"):
        assert result[mode]["images_per_second"] > 0
    # At full width it is the public implementation's parameter count.
    model = torch_reference.build_reference()
    assert sum(p.numel() for p in model.parameters()) == 19_855_434


def test_compare_smoke(tmp_path):
    import compare

    result = compare.main([
        "--smoke", "--precisions", "float32,mixed_bfloat16", "--mode", "inference",
        "--output-dir", str(tmp_path),
    ])
    _check_environment(result)
    first, second = result["variants"]
    assert (first["precision"], second["precision"]) == ("float32", "mixed_bfloat16")
    # The speed-up is the median of the per-round time ratios. Step times
    # are kept to 0.1 ms (+-5e-5 s each), which bounds the recomputed ratio's
    # relative error by 5e-5/a + 5e-5/b; the speed-up itself is rounded to 1e-3.
    pairs = list(zip(first["step_seconds"], second["step_seconds"]))
    ratios = [a / b for a, b in pairs]
    bound = max(5e-5 / a + 5e-5 / b for a, b in pairs) * max(ratios) + 5e-4
    assert abs(second["speedup_over_first"] - np.median(ratios)) <= bound
    for variant in (first, second):
        assert len(variant["step_seconds"]) == 2
        assert variant["images_per_second_best"] >= variant["images_per_second"] > 0
    assert (tmp_path / f"compare_{keras.backend.backend()}_inference_b2_smoke.json").is_file()


@pytest.mark.tf_only
def test_serving_smoke(tmp_path):
    import serving

    result = serving.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    keys = {
        f"{signature}_b{batch}_{label}"
        for signature in ("serving_default", "serve_bytes")
        for batch in (1, 32)
        for label in ("limits_on", "limits_off")
    }
    assert set(result["latency"]) == keys
    for name, percent in result["limits_overhead_percent"].items():
        on, off = (result["latency"][f"{name}_{label}"]["p50_ms"] for label in ("limits_on", "limits_off"))
        assert percent == pytest.approx((on - off) / off * 100, abs=0.01)
    load = result["threaded_load"]
    assert load["requests"] == 4 and load["images_per_second"] > 0
    assert (tmp_path / "serving_smoke.json").is_file()


def test_interleaved_rounds_rotate_and_ratios_use_the_best_denominator():
    import measure

    calls = []
    steps = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    times = measure.interleaved_rounds(steps, rounds=3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t) == 3 for t in times.values())
    fixed = {"k": [1.0, 2.0, 1.0], "t1": [2.0, 2.0, 3.0], "t2": [3.0, 1.0, 1.5]}
    # Per round: min(t1, t2) / k = 2, 0.5, 1.5 -> median 1.5.
    assert measure.round_ratios(fixed, "k", ["t1", "t2"]) == pytest.approx(1.5)


def test_versus_torch_smoke(tmp_path):
    require_package("torch", "torch")
    import versus_torch

    result = versus_torch.main(["--smoke", "--output-dir", str(tmp_path)])
    (path,) = tmp_path.glob("versus_torch_*_smoke.json")
    assert _read(path) == json.loads(json.dumps(result))
    _check_environment(result)
    keras_label = next(label for label in result["workers"] if label.startswith("keras"))
    kernels = result["workers"][keras_label]["cpu_kernels"]
    assert set(kernels) == {"TF_ENABLE_ONEDNN_OPTS", "set_by", "tensorflow_onednn"}
    if keras.backend.backend() == "tensorflow" and cpu_defaults.is_x86():
        assert kernels["tensorflow_onednn"] is True
    for mode in ("train", "inference"):
        entry = result[mode]
        labels = list(entry["step_seconds"])
        assert labels[0].startswith("keras ") and {"torch float32", "torch bfloat16_autocast"} <= set(labels)
        # The ratio is recomputed from the recorded step times.
        torch_labels = [label for label in labels if label.startswith("torch")]
        per_round = [
            min(entry["step_seconds"][t][i] for t in torch_labels) / entry["step_seconds"][labels[0]][i]
            for i in range(result["settings"]["rounds"])
        ]
        assert entry["ratio_to_torch_best"] == pytest.approx(np.median(per_round), rel=0.01)


@pytest.mark.slow
def test_gpu_script_runs_without_tensorflow(tmp_path):
    require_package("jax", "jax")
    require_package("torch", "torch")
    import measure

    # A `tensorflow` package that cannot be imported, ahead on the path: the
    # script must not need TensorFlow (the GPU machine has none).
    hidden = tmp_path / "no_tensorflow" / "tensorflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("no TensorFlow here")')
    result = measure.run_script(
        "gpu.py", ["--smoke", "--output-dir", tmp_path], "jax", timeout=600,
        env={"PYTHONPATH": f"{hidden.parent}{os.pathsep}{REPO_ROOT}"},
    )
    assert "error" not in result, result
    assert set(result["keras"]) == {"float32", "mixed_bfloat16"}
    assert set(result["torch"]) == {"float32", "bfloat16_autocast"}
    for entry in list(result["keras"].values()) + list(result["torch"].values()):
        assert entry["train"]["images_per_second"] > 0
        assert entry["inference"]["images_per_second"] > 0


@pytest.mark.slow
@pytest.mark.tf_only  # trains four small models; one backend is enough
def test_recipes_smoke(tmp_path):
    import recipes

    result = recipes.main(["--smoke", "--output-dir", str(tmp_path)])
    assert set(result["candidates"]) == {"paper", "paper-fast-decay", "cosine", "budget"}
    budget = result["candidates"]["budget"]["settings"]
    assert (budget["lr_schedule"], budget["label_smoothing"]) == ("cosine", 0.1)
    assert result["candidates"]["paper-fast-decay"]["settings"]["lr_decay_epochs"] == 1
    for entry in result["candidates"].values():
        assert len(entry["test_accuracy_per_epoch"]) == 3
        assert entry["test_accuracy"] == pytest.approx(entry["test_accuracy_per_epoch"][-1])
    assert result["best"] == max(
        result["candidates"], key=lambda n: result["candidates"][n]["test_accuracy"]
    )


def test_profile_jax_smoke(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("profile_jax.py profiles the JAX backend (run under KERAS_BACKEND=jax)")
    import profile_jax

    result = profile_jax.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    assert set(result["median_ms"]) >= {
        "keras_train_step", "jax_train_step", "jax_forward", "jax_forward_backward", "conv_jax",
    }
    times = result["step_seconds"]
    assert result["keras_over_pure_jax"] == pytest.approx(
        np.median([k / j for k, j in zip(times["keras_train_step"], times["jax_train_step"])]),
        rel=0.01,
    )
