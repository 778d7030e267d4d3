"""The benchmark scripts: their flags, a tiny real run of each, and the
numbers they derive (FLOPs, percentiles, ratios, tables).

Each script runs once with `--smoke` (a width-0.0625 model, a step or two)
and must write a complete result file. Timings are never asserted; what a
script computes from them is recomputed here from the unrounded times the
result records.
"""

import json
import os
import pathlib
import statistics
import sys

import keras
import numpy as np
import pytest

from keras_ltpa.devices import cpu_kernels
from keras_ltpa.devices import probe
from tests.conftest import require_package

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
SCRIPTS = ("versus_torch", "serving", "profile_steps", "recipes", "gpu", "run_all")
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module", autouse=True)
def _benchmarks_importable(tmp_path_factory):
    """The scripts importable as modules; the precision probe's verdict cached
    in a folder of this module's (its workers and subprocesses inherit it)."""
    sys.path.insert(0, str(BENCHMARKS_DIR))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(probe.CACHE_DIR_VARIABLE, str(tmp_path_factory.mktemp("probe_cache")))
        patch.delenv(probe.REPROBE_VARIABLE, raising=False)
        yield
    sys.path.remove(str(BENCHMARKS_DIR))


def _ratio(times, numerator, denominators):
    """Median over rounds of the best denominator's time over the numerator's."""
    return float(np.median([
        min(times[d][i] for d in denominators) / times[numerator][i]
        for i in range(len(times[numerator]))
    ]))


def _check_environment(result):
    environment = result["environment"]
    assert environment["backend"] == BACKEND
    assert environment["versions"]["keras"] == keras.__version__
    assert environment["cpu_kernels"]["TF_ENABLE_ONEDNN_OPTS"] == os.environ.get(
        "TF_ENABLE_ONEDNN_OPTS")
    choice = environment["precision"]
    assert {choice["training"], choice["inference"]} <= {
        "float32", "mixed_bfloat16", "mixed_float16"}
    if "precision_probe" in choice:  # how `auto` chose, where the library records it
        assert choice["precision_probe"]["policy"] == choice["training"]
    assert len(result["load_average"]["end"]) == 3


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_commands(name, capsys):
    module = __import__(name)
    with pytest.raises(SystemExit) as raised:
        module.parse_args(["--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert f"python benchmarks/{name}.py" in out and "--smoke" in out and "--output-dir" in out


@pytest.mark.parametrize("name, argv, message", [
    ("versus_torch", ["--precision", "float64"], "--precision takes a comma-separated list of "
     "auto, float32, mixed_bfloat16, mixed_float16; received 'float64'"),
    ("versus_torch", ["--torch-precisions", "float16"], "--torch-precisions"),
    ("versus_torch", ["--image-size", "16"], "--image-size must be at least 32; received 16"),
    ("versus_torch", ["--batch-size", "0"], "--batch-size: must be greater than 0, received 0"),
    ("serving", ["--width", "-1"], "--width: must be greater than 0, received -1"),
    ("recipes", ["--candidates", "paper,sgdr"], "--candidates takes a comma-separated list"),
    ("run_all", ["--only", "speed"], "--only takes a comma-separated list of versus_torch, "
     "serving, profile; received 'speed'"),
])
def test_bad_arguments_are_named(name, argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        __import__(name).parse_args(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


# The paper's VGG at 32x32: (side, input channels, output channels) of each
# 3x3 convolution (block 6 runs at 4x4 then 2x2).
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
    per_layer = counted["per_layer"]
    conv_names = [name for name in per_layer if name.startswith("block") and "_conv" in name]
    assert len(conv_names) == len(PAPER_CONVOLUTIONS)
    conv_flops = sum(2 * side * side * 9 * cin * cout for side, cin, cout in PAPER_CONVOLUTIONS)
    biases = sum(side * side * cout for side, _, cout in PAPER_CONVOLUTIONS)  # one add per output
    assert sum(per_layer[name] for name in conv_names) == conv_flops + biases
    assert per_layer["global_dense"] == 2 * 512 * 512 + 512
    assert per_layer["projector_1"] == 2 * 32 * 32 * 256 * 512
    assert per_layer["classifier"] == 2 * 3 * 512 * 10
    # pc scores: l + g then a dot with u, at every position of each map.
    assert per_layer["compatibility_1"] == 3 * 32 * 32 * 512
    assert counted["uncounted"] == []
    assert counted["total"] == pytest.approx(7.8517e9, rel=1e-4)
    assert measure.forward_flops(keras_ltpa.build_model(10), batch_size=2)["total"] == (
        2 * counted["total"])


@pytest.mark.tf_only
def test_forward_flops_agree_with_the_tensorflow_profiler():
    import measure
    import tensorflow as tf

    import keras_ltpa

    model = keras_ltpa.build_model(10, width_multiplier=0.0625)
    spec = tf.TensorSpec((1, 32, 32, 3), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profiled = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    assert measure.forward_flops(model)["total"] == pytest.approx(profiled, rel=0.02)


def test_latency_summary_matches_numpy():
    import measure

    seconds = list(np.random.default_rng(0).exponential(size=37))
    summary = measure.latency_summary(seconds)
    milliseconds = np.array(seconds) * 1e3
    for key, q in (("p50_ms", 50), ("p99_ms", 99)):
        assert summary[key] == pytest.approx(np.percentile(milliseconds, q), rel=1e-12)
    assert summary["min_ms"] == pytest.approx(milliseconds.min(), rel=1e-12)
    assert summary["iterations"] == 37


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


def test_reference_network_is_the_keras_model_in_pytorch():
    require_package("torch", "torch")
    import versus_torch

    import keras_ltpa

    def parameters(**kwargs):
        return sum(p.numel() for p in versus_torch.build_reference(**kwargs).parameters())

    # At full width, the public implementation's count; at any width and
    # input size, the Keras model's trainable weights.
    assert parameters() == 19_855_434
    model = keras_ltpa.build_model(10, (64, 64, 3), width_multiplier=0.0625)
    assert parameters(width=0.0625, image_size=64) == sum(
        int(np.prod(w.shape)) for w in model.trainable_weights)


def test_versus_torch_smoke(tmp_path):
    require_package("torch", "torch")
    import measure
    import versus_torch

    import keras_ltpa

    result = versus_torch.main([
        "--smoke", "--precision", "float32,mixed_bfloat16", "--torch-precisions", "float32",
        "--image-size", "64", "--output-dir", str(tmp_path)])
    (path,) = tmp_path.glob(f"versus_torch_{BACKEND}_w0.0625_b4_s64_*_smoke.json")
    assert path.name.endswith(f"_{measure.cpu_tag()}_smoke.json")  # the machine kind in the name
    _check_environment(result)
    keras_labels = [f"keras {BACKEND} float32", f"keras {BACKEND} mixed_bfloat16"]
    assert list(result["workers"]) == keras_labels + ["torch float32"]
    kernels = result["workers"][keras_labels[0]]["cpu_kernels"]
    if BACKEND == "tensorflow" and cpu_kernels.is_x86():
        assert kernels["tensorflow_onednn"] is True
    for mode in ("train", "inference"):
        entry = result[mode]
        times = entry["step_seconds"]
        assert all(len(t) == 2 for t in times.values())
        for label in keras_labels:
            assert entry["ratios_to_torch_best"][label] == pytest.approx(
                _ratio(times, label, ["torch float32"]), rel=1e-12)
            assert entry["images_per_second"][label] == pytest.approx(
                4 / statistics.median(times[label]), rel=1e-12)
        assert entry["ratio_to_torch_best"] == entry["ratios_to_torch_best"][keras_labels[0]]
    # 64x64 has 4x the pixels of 32x32, and about 4x the FLOPs per image.
    small = measure.forward_flops(keras_ltpa.build_model(10, width_multiplier=0.0625))
    assert result["settings"]["forward_gflops_per_image"] == pytest.approx(
        4 * small["total"] / 1e9, rel=0.02)
    assert all(worker["peak_rss_mib"] > 0 for worker in result["workers"].values())


@pytest.mark.tf_only
def test_serving_smoke(tmp_path):
    import serving

    result = serving.main(["--smoke", "--output-dir", str(tmp_path)])
    assert (tmp_path / "serving_smoke.json").is_file()
    _check_environment(result)
    latency = result["latency"]
    for batch in (1, 32):
        for signature in ("serving_default", "serve_bytes"):
            on, off = (np.percentile(latency[f"{signature}_b{batch}_{label}"]["times_ms"], 50)
                       for label in ("limits_on", "limits_off"))
            assert result["limits_overhead_percent"][f"{signature}_b{batch}"] == pytest.approx(
                (on - off) / off * 100, rel=1e-9, abs=1e-9)
        assert f"serving_default_b{batch}_unfolded" in latency
        assert latency[f"keras_predict_b{batch}"]["iterations"] == (3 if batch == 1 else 2)
    floor = result["floor"]
    assert floor["savedmodel_b1_p50_over_float32_floor"] == pytest.approx(
        latency["serving_default_b1_limits_on"]["p50_ms"] / floor["floor_ms"]["float32"], rel=1e-12)
    assert floor["floor_ms"]["float32"] == pytest.approx(
        floor["forward_gflops"] / floor["matmul_gflops_per_second"]["float32"] * 1e3, rel=1e-12)
    assert result["threaded_load"]["requests"] == 4
    require_package("torch", "torch")
    for batch in (1, 32):
        times = {"savedmodel": latency[f"serving_default_b{batch}_limits_on"]["times_ms"],
                 "torch_eager": latency[f"torch_eager_b{batch}"]["times_ms"]}
        assert result["torch_over_savedmodel"][f"b{batch}"] == pytest.approx(
            _ratio(times, "savedmodel", ["torch_eager"]), rel=1e-12)


def test_profile_steps_smoke(tmp_path):
    if BACKEND == "torch":
        pytest.skip("profile_steps.py profiles the TensorFlow and JAX backends")
    import measure
    import profile_steps

    result = profile_steps.main(["--smoke", "--output-dir", str(tmp_path)])
    _check_environment(result)
    if BACKEND == "tensorflow":
        assert (tmp_path / f"profile_float32_b2_{measure.cpu_tag()}_smoke.json").is_file()
        for mode in ("train", "inference"):
            rows = result[mode]["by_op_type"]["rows"]
            assert sum(row["share"] for row in rows) == pytest.approx(1.0, abs=1e-9)
            assert not any("::" in row["name"] for row in rows)
            # The convolutions show up under their layer names.
            assert "block3_conv2" in {row["name"] for row in result[mode]["by_layer"]["rows"]}
        assert any("Backprop" in row["name"] for row in result["train"]["by_op_type"]["rows"])
        return
    assert (tmp_path / f"profile_jax_b2_{measure.cpu_tag()}_smoke.json").is_file()
    times = result["step_seconds"]
    assert set(times) >= {"keras_train_step", "jax_train_step", "jax_forward",
                          "jax_forward_backward", "conv_jax"}
    assert result["keras_over_pure_jax"] == pytest.approx(
        _ratio(times, "jax_train_step", ["keras_train_step"]), rel=1e-12)
    if "conv_tensorflow" in times:
        assert result["conv_jax_over_tensorflow"] == pytest.approx(
            _ratio(times, "conv_tensorflow", ["conv_jax"]), rel=1e-12)


def test_report_tables(tmp_path, monkeypatch):
    import measure
    import run_all

    results = tmp_path / "results"
    results.mkdir()
    machine = {"cpu": "Test CPU", "cores": 2, "cpu_flags": ["avx2"], "gpus": []}
    load = {"start": [0.1, 0.2, 0.3], "end": [0.4, 0.5, 0.6]}

    def versus(name, smoke=False, **mode_entry):
        (results / f"{name}.json").write_text(json.dumps({
            "benchmark": "versus_torch", "smoke": smoke, "load_average": load,
            "environment": {"machine": machine, "precision": {"training": "float32",
                                                              "inference": "float32"}},
            "settings": {"width_multiplier": 0.25, "batch_size": 128},
            "workers": {"keras tensorflow float32": {"cpu_kernels": {"tensorflow_onednn": True}}},
            "targets": {"train": 1.1, "inference": 1.2},
            "train": {"images_per_second": {"keras tensorflow float32": 90.1234,
                                            "torch float32": 60.0},
                      "torch_best": "torch float32", **mode_entry}}))

    versus("current", ratios_to_torch_best={"keras tensorflow float32": 1.50049})
    versus("earlier", ratio_to_torch_best=1.283)  # a file from before `ratios_to_torch_best`
    versus("smoke", smoke=True, ratio_to_torch_best=9.0)
    (results / "serving.json").write_text(json.dumps({
        "benchmark": "serving", "smoke": False, "load_average": load,
        "environment": {"machine": machine},
        "settings": {"width_multiplier": 0.0625, "precision": "float32"},
        "latency": {"serving_default_b1_limits_on": {"p50_ms": 3.0, "p99_ms": 4.25},
                    "serving_default_b32_limits_on": {"p50_ms": 14.0, "p99_ms": 15.0},
                    "keras_predict_b1": {"p50_ms": 5.0, "p99_ms": 6.0}},
        "limits_overhead_percent": {"serving_default_b1": 1.234},
        "threaded_load": {"threads": 8, "images_per_second": 500.5, "request_p50_ms": 12.5}}))
    report = tmp_path / "benchmarks.md"
    report.write_text(f"# Intro kept\n\n{measure.BEGIN}\nold\n{measure.END}\n\nOutro kept\n")
    monkeypatch.setattr(measure, "REPORT", report)
    assert run_all.main(["--report-only", "--output-dir", str(results)])
    text = report.read_text()
    assert text.startswith("# Intro kept") and text.rstrip().endswith("Outro kept")
    assert "old" not in text and "9.000" not in text  # smoke runs are left out
    row = ("| Test CPU, 2 cores (avx2) | 0.25 | 128 | 32 | train | 90.12 (tensorflow float32, "
           "auto, oneDNN on) | 60 (float32) | {} (target 1.1) | 0.10 / 0.40 |")
    assert row.format("1.500") in text and row.format("1.283") in text
    for row in ("serving_default_limits_on | 3 / 4.25 | 14 / 15", "keras_predict | 5 / 6 | -",
                "serving_default: the limits' cost | +1.23% | -",
                "serve_bytes, 8 threads: img/s (p50 ms) | 500.5 (12.5) | -"):
        assert f"| 0.0625 | float32 | {row} | 0.10 / 0.40 |" in text
    # Parts without results get no table.
    assert "Profile" not in text and "GPU" not in text


@pytest.mark.slow
@pytest.mark.tf_only  # runs gpu.py under JAX itself, whatever the backend: one run checks it
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
        for mode in ("train", "inference"):
            timing = entry[mode]
            assert timing["images_per_second"] == pytest.approx(
                4 / statistics.median(timing["step_seconds"]), rel=1e-12)


NEW_RECIPES = {"budget-ema", "budget-b64", "budget-long"}


@pytest.mark.slow
@pytest.mark.tf_only  # trains four small models; one backend is enough
def test_recipes_smoke(tmp_path, small_data_dir):
    import recipes

    # budget and one of each kind of change to it, each trained 3 (budget-long
    # 5) one-step epochs; all seven ran in twice the time. The other
    # candidates' settings are checked without training below.
    result = recipes.main(["--smoke", "--data-dir", str(small_data_dir / "cifar10"),
                           "--output-dir", str(tmp_path),
                           "--candidates", "budget,budget-ema,budget-b64,budget-long"])
    candidates = result["candidates"]
    assert set(candidates) == {"budget"} | NEW_RECIPES
    budget = candidates["budget"]["settings"]
    assert (budget["lr_schedule"], budget["label_smoothing"]) == ("cosine", 0.1)
    assert (budget["batch_size"], budget["epochs"], budget["ema"]) == (32, 3, False)
    # What each new candidate changes, and nothing else of budget's settings.
    changed = {"budget-ema": {"ema": True}, "budget-b64": {"batch_size": 64},
               "budget-long": {"epochs": 5}}  # smoke's 3 epochs x 1.5, rounded half up
    for name, change in changed.items():
        assert candidates[name]["settings"] == {**budget, **change}, name
    for name, entry in candidates.items():
        epochs = entry["settings"]["epochs"]
        assert len(entry["test_accuracy_per_epoch"]) == epochs == (5 if name == "budget-long" else 3)
        assert entry["test_accuracy"] == pytest.approx(entry["test_accuracy_per_epoch"][-1])
        assert 0.0 <= entry["test_accuracy_flip_tta"] <= 1.0
        assert entry["flip_tta_images"] == result["settings"]["test_images"] == 32
        assert entry["wall_seconds"] > 0
    # Picked by the plain accuracy, not the flip-TTA one.
    assert result["best"] == max(candidates, key=lambda n: candidates[n]["test_accuracy"])


def test_recipes_candidate_configs_at_full_size(tmp_path):
    import recipes

    # The full run's settings, checked without training.
    args = recipes.parse_args(["--data-dir", str(tmp_path)])
    configs = {name: recipes.candidate_config(name, args, tmp_path) for name in recipes.CANDIDATES}
    assert NEW_RECIPES <= set(configs)
    assert {name: (c.batch_size, c.epochs, c.ema) for name, c in configs.items()} == {
        "paper": (128, 8, False), "paper-fast-decay": (128, 8, False), "cosine": (128, 8, False),
        "budget": (128, 8, False), "budget-ema": (128, 8, True), "budget-b64": (64, 8, False),
        "budget-long": (128, 12, False)}
    assert configs["paper-fast-decay"].lr_decay_epochs == 2
    assert configs["budget-ema"].ema_momentum == 0.99  # the default, kept on purpose
    for name in NEW_RECIPES:  # budget's schedule, smoothing and (unscaled) learning rate
        config = configs[name]
        assert (config.lr_schedule, config.warmup_epochs, config.label_smoothing,
                config.learning_rate) == ("cosine", 2, 0.1, 0.1), name
        assert config.steps_per_epoch is None and config.output_dir == f"{tmp_path}/{name}"
    assert [recipes.scaled_epochs(e, 1.5) for e in (1, 3, 8, 9)] == [2, 5, 12, 14]
    # Under --smoke: 3 one-step epochs at batch 32 (budget-long 5, budget-b64 64).
    smoke = recipes.parse_args(["--smoke", "--data-dir", str(tmp_path)])
    configs = {name: recipes.candidate_config(name, smoke, tmp_path) for name in recipes.CANDIDATES}
    assert {name: (c.batch_size, c.epochs) for name, c in configs.items()} == {
        **{name: (32, 3) for name in configs}, "budget-b64": (64, 3), "budget-long": (32, 5)}
    assert all(config.steps_per_epoch == 1 for config in configs.values())
    assert configs["paper-fast-decay"].lr_decay_epochs == 1


def test_recipes_flip_tta_scores_the_mirrored_test_images(tmp_path):
    import recipes
    from PIL import Image

    # Test images whose left half is darker than the right (value 10 | 30),
    # the same from top to bottom: only a left-right mirror changes them.
    image = np.full((32, 32, 3), 30, np.uint8)
    image[:, :16] = 10
    for split, labels in (("train", "ab"), ("test", "aaab")):
        for index, label in enumerate(labels):
            target = tmp_path / "data" / split / label / f"{index}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target)
    # A model whose logits are [2 x mean of the left half, mean of the right
    # half]: plain [20, 30] says b; the mirror gives [60, 10], so the
    # flip-averaged [40, 20] says a (a vertical flip would change nothing).
    inputs = keras.Input((32, 32, 3))
    halves = [keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(crop)(inputs))
              for crop in (((0, 0), (0, 16)), ((0, 0), (16, 0)))]
    dense = keras.layers.Dense(2, use_bias=False, dtype="float32")
    model = keras.Model(inputs, dense(keras.layers.Concatenate(dtype="float32")(halves)))
    dense.set_weights([np.array([[2 / 3, 0]] * 3 + [[0, 1 / 3]] * 3, np.float32)])
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.keras")

    scores = recipes.flip_tta_scores(tmp_path / "run", str(tmp_path / "data"), None, 2)
    assert scores["count"] == 4
    assert scores["accuracy"] == pytest.approx(1 / 4)  # plain: b for every image
    assert scores["flip_tta"]["accuracy"] == pytest.approx(3 / 4)  # averaged: a
    # The test limit is the run's: the first N test images only.
    assert recipes.flip_tta_scores(tmp_path / "run", str(tmp_path / "data"), 2, 2)["count"] == 2


def test_cpu_tag_names_the_model_and_the_isa_class():
    import measure

    assert measure.cpu_tag("Intel(R) Xeon(R) Processor", {"avx512f", "amx_bf16"}) == "intel-xeon-amx"
    assert measure.cpu_tag("AMD EPYC 9B45 128-Core Processor", {"avx2"}) == "amd-epyc-9b45-avx2"
    assert measure.cpu_tag("", set()) == "base"
