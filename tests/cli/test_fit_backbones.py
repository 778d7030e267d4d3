"""fit.py with a keras-hub or keras.applications backbone on a single image
folder: two-stage fine-tuning, its resumption, the validation split, class
weights, the saved model and its export, and the one-line errors.

Small randomly initialised backbones (no downloads) at 64x64, 1-2 steps per
epoch; everything runs in this process (a kill is an interrupt raised from a
callback: the run directory is left as a SIGKILL at that point leaves it).
"""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from keras_ltpa import backbones
from keras_ltpa.cli import common as cli
from keras_ltpa.train import callbacks as ltpa_callbacks
from keras_ltpa.train import runs
from tests.backbones.conftest import hub_preset  # noqa: F401  (the fixture)
from tests.conftest import require_package
from tests.conftest import run_fit as fit

# A single folder DIR/<class>/, unbalanced: 8, 5 and 3 images.
CLASS_SIZES = {"ant": 8, "bee": 5, "cat": 3}
SIZE = 64
SPLIT = 0.25
JIT = "auto" if keras.backend.backend() == "jax" else "off"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """DIR/<class>/<i>.png, 64x64 noise whose mean brightness is the class's."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index, (name, count) in enumerate(CLASS_SIZES.items()):
        (root / name).mkdir()
        for i in range(count):
            pixels = np.clip(rng.normal(60 + 70 * index, 30, (SIZE, SIZE, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


def _argv(photos, run_dir, backbone, *extra):
    weights = [] if backbone.startswith("/") else ["--weights", "none"]
    return [
        "--data-dir", str(photos), "--validation-split", str(SPLIT), "--backbone", backbone,
        *weights, "--image-size", str(SIZE), "--batch-size", "4", "--steps-per-epoch", "2",
        "--learning-rate", "0.05", "--precision", "float32", "--jit-compile", JIT,
        "--seed", "0", "--no-tensorboard", "--overlay-images", "0", "--verbose", "0",
        "--output-dir", str(run_dir), *map(str, extra),
    ]


class Recorder(keras.callbacks.Callback):
    """Every variable (by path) and the optimizer's step count at the start
    of each `fit` (after any restore) and at the end of each epoch."""

    def __init__(self, log, stop_at=None):
        super().__init__()
        self.log, self.stop_at = log, stop_at

    def _snapshot(self, event):
        self.log.append(dict(
            event=event,
            iterations=int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
            weights={v.path: keras.ops.convert_to_numpy(v).copy() for v in self.model.variables},
            backbone=set(backbones.finetune.backbone_variable_paths(self.model)),
            model=self.model,
        ))

    def on_train_begin(self, logs=None):
        self._snapshot("begin")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise KeyboardInterrupt  # What a kill at this point leaves on disk.

    def on_epoch_end(self, epoch, logs=None):
        self._snapshot(f"end {epoch + 1}")


@pytest.fixture
def recorded(monkeypatch):
    """Runs `fit.main(argv)` with a `Recorder` in each stage's callbacks;
    returns (exit code, snapshots)."""

    def run(argv, stop_at=None):
        log = []
        make = ltpa_callbacks.make_callbacks

        def with_recorder(*args, **kwargs):
            return make(*args, **kwargs) + [Recorder(log, stop_at)]

        monkeypatch.setattr(ltpa_callbacks, "make_callbacks", with_recorder)
        code = fit.main(argv)
        monkeypatch.setattr(ltpa_callbacks, "make_callbacks", make)
        return code, log

    return run


def _batch_norms(layers):
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        if isinstance(layer, keras.Model):
            yield from _batch_norms(layer.layers)


def _changed(before, after, paths):
    return {path for path in paths if not np.array_equal(before[path], after[path])}


# Held out per class: a quarter, rounded half up, at least one image:
# 8 -> 2, 5 -> 1.25 -> 1, 3 -> 0.75 -> 1.
HELD_OUT = {"ant": 2, "bee": 1, "cat": 1}


@pytest.fixture(params=["keras-hub", "mobilenetv2"])
def backbone(request):
    if request.param == "keras-hub":
        return request.getfixturevalue("hub_preset")
    return request.param


def test_two_stages_train_export_and_reload(photos, tmp_path, backbone, recorded, capsys):
    """--freeze-backbone-epochs 1 --epochs 2: epoch 1 changes the head only,
    epoch 2 the backbone's weights too but never its batch-norm statistics;
    the step count carries over; the saved model reloads in safe mode with
    the same logits; the export answers serve_bytes with the maps. The
    keras-hub run averages the weights (--ema) in both stages."""
    from sklearn.utils.class_weight import compute_class_weight

    run_dir = tmp_path / "run"
    ema = backbone != "mobilenetv2"
    argv = _argv(photos, run_dir, backbone, "--epochs", 2, "--freeze-backbone-epochs", 1,
                 "--class-weight", "balanced", *(["--ema"] if ema else []))
    code, log = recorded(argv)
    assert code == 0, capsys.readouterr().err[-3000:]
    assert [entry["event"] for entry in log] == ["begin", "end 1", "begin", "end 2"]
    start, stage1, stage2_start, stage2 = (entry["weights"] for entry in log)
    model = log[-1]["model"]
    paths = set(start)
    backbone_paths = log[0]["backbone"]
    trainable = {v.path for v in model.trainable_variables}
    statistics = {
        v.path for layer in _batch_norms(backbones.backbone_layers(model))
        for v in (layer.moving_mean, layer.moving_variance)
    }
    optimizer_paths = {v.path for v in model.optimizer.variables}
    model_paths = paths - optimizer_paths
    head = {v.path for v in model.trainable_variables} - backbone_paths
    # Stage 1: the backbone (weights and statistics) exactly as it started.
    assert not _changed(start, stage1, backbone_paths & model_paths)
    assert _changed(start, stage1, head) == head
    # Stage 2 starts where stage 1 ended (with --ema from its averages: the
    # frozen backbone's are its weights), its optimizer 2 steps on.
    assert not _changed(stage1, stage2_start, (backbone_paths & model_paths) if ema else model_paths)
    assert [entry["iterations"] for entry in log] == [0, 2, 2, 4]
    kernels = {p for p in backbone_paths & trainable if p.endswith("kernel")}
    assert kernels and _changed(stage1, stage2, kernels) == kernels
    assert statistics and not _changed(start, stage2, statistics)

    config = json.loads((run_dir / "config.json").read_text())
    assert [(s["name"], s["epochs"], s["backbone_trainable"], s["backbone_lr_multiplier"])
            for s in config["stages"]] == [
        ("frozen_backbone", [1, 1], "none", 1.0), ("fine_tune", [2, 2], "all_but_batch_norm", 0.1)
    ]
    pretrained = backbone != "mobilenetv2"  # the preset's own weights and converter
    assert config["pixel_stats_source"] == ("backbone preprocessing" if pretrained else "train split")
    # The split: per class, and the files it names are the test set.
    split = config["validation_split_files"]
    held = HELD_OUT
    assert {name: counts[1] for name, counts in split["counts"].items()} == held
    assert len(split["validation_files"]) == sum(held.values())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_examples"] == sum(held.values())
    # Balanced class weights of the training part, as scikit-learn computes them.
    labels = np.repeat(np.arange(3), [n - held[name] for name, n in CLASS_SIZES.items()])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(config["class_weights"], expected, rtol=1e-12)

    images = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype("uint8")
    restored = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    logits = keras.ops.convert_to_numpy(model(images.astype("float32")))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(images.astype("float32"))), logits
    )
    assert type(restored.optimizer).__name__ == "LearningRateMultiplier"
    assert restored.optimizer.use_ema == ema
    _check_export(json.loads(capsys.readouterr().out.strip().splitlines()[-1]), images, logits)


def _check_export(summary, images, logits):
    import tensorflow as tf

    from tests.conftest import png_bytes

    loaded = tf.saved_model.load(summary["export"])
    out = loaded.signatures["serve_bytes"](
        image_bytes=tf.constant([png_bytes(image) for image in images])
    )
    # Strides 8, 16 and 32 of a 64-pixel image.
    assert [tuple(out[f"attention_{k}"].shape) for k in (1, 2, 3)] == [(2, 8, 8), (2, 4, 4), (2, 2, 2)]
    for k in (1, 2, 3):
        np.testing.assert_allclose(out[f"attention_{k}"].numpy().sum(axis=(1, 2)), 1.0, rtol=1e-5)
    # The same pixels (PNG is lossless), the model run by TensorFlow with its
    # batch norm folded: float32 roundings through the ~60 layers of sums
    # move the logits by at most ~4 eps each, relative to their scale; a
    # probability moves by at most half the largest logit change.
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    bound = 0.5 * 60 * 4 * np.finfo(np.float32).eps * max(1.0, np.abs(logits).max())
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=bound)


def test_a_kill_in_either_stage_resumes_there(photos, tmp_path, request, recorded):
    """Killed as epoch 2 begins (stage 1 done, stage 2 not backed up): the
    rerun restores stage 1's backup and goes on into stage 2 with its step
    count; killed as epoch 3 begins: the rerun restores stage 2's backup
    (weights and optimizer) and trains epoch 3 alone."""
    run_dir = tmp_path / "run"
    argv = _argv(photos, run_dir, request.getfixturevalue("hub_preset"), "--epochs", 3, "--freeze-backbone-epochs", 1,
                 "--no-export")
    code, first = recorded(argv, stop_at=1)
    assert code == cli.EXIT_INTERRUPTED
    assert runs.backup_epoch(run_dir / "backup" / "frozen_backbone") == 1
    assert runs.backup_epoch(run_dir / "backup") is None
    kept = runs.read_history(run_dir / "history.csv")
    assert len(kept) == 1 and not (run_dir / "metrics.json").exists()

    code, second = recorded(argv, stop_at=2)
    assert code == cli.EXIT_INTERRUPTED
    # Stage 1 restored and finished (nothing trained), then stage 2 from the
    # restored state and optimizer step count.
    assert [entry["event"] for entry in second] == ["begin", "begin", "end 2"]
    assert [entry["iterations"] for entry in second] == [2, 2, 4]
    after_stage1 = first[1]["weights"]
    model_paths = {v.path for v in second[1]["model"].variables} & set(after_stage1)
    assert not _changed(after_stage1, second[1]["weights"], model_paths)
    assert runs.backup_epoch(run_dir / "backup") == 2

    code, third = recorded(argv)
    assert code == 0
    # Straight into stage 2, from its backup: epoch 3 only.
    assert [entry["event"] for entry in third] == ["begin", "end 3"]
    assert [entry["iterations"] for entry in third] == [4, 6]
    assert not _changed(second[-1]["weights"], third[0]["weights"], model_paths)
    rows = runs.read_history(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2] and rows[:1] == kept
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("fit.py: error:")]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--backbone", "resnet5O"], ["'resnet5O'", "'resnet50'", "keras-hub preset"]),
        (["--backbone", "mobilenetv2", "--weights", "none", "--attention-layers", "nope,conv",
          "--global-layer", "conv"], ["'nope'", "Layer names include"]),
        (["--backbone", "mobilenetv2", "--image-size", "16"], ["`image_size` must be >= 32"]),
        (["--backbone", "vgg", "--weights", "imagenet"], ["`weights`", "'none'"]),
        (["--backbone", "mobilenetv2", "--width", "0.5"], ["`width_multiplier`", "VGG"]),
        (["--augment", "mixup", "--class-weight", "balanced"], ["`class_weight`", "mixup"]),
    ],
)
def test_bad_settings_exit_2_in_one_line(photos, tmp_path, capsys, extra, named):
    run_dir = tmp_path / "run"
    argv = ["--data-dir", str(photos), "--validation-split", "0.25", "--epochs", "1",
            "--output-dir", str(run_dir), "--precision", "float32"] + extra
    assert fit.main(argv) == cli.EXIT_BAD_INPUT
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert not run_dir.exists()  # Nothing written.


def test_the_folder_layouts_are_told_apart(photos, tmp_path, capsys):
    """A single folder needs --validation-split; a train/test folder refuses it."""
    run_dir = tmp_path / "run"
    common = ["--output-dir", str(run_dir), "--precision", "float32"]
    assert fit.main(["--data-dir", str(photos)] + common) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "no 'train' folder" in line and "--validation-split" in line
    (photos.parent / "layout" / "train").mkdir(parents=True)
    assert fit.main(["--data-dir", str(photos.parent / "layout"), "--validation-split", "0.2"]
                    + common) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "has a 'train' folder" in line and not run_dir.exists()


def test_a_handle_without_network_fails_fast_naming_weights_none(photos, tmp_path, capsys, monkeypatch):
    """No network (proxies nothing listens on): one line naming --weights
    none, within ~10 s, nothing written."""
    import time

    require_package("keras_hub", "hub")

    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "run"
    started = time.monotonic()
    code = fit.main(["--data-dir", str(photos), "--validation-split", "0.25", "--backbone",
                     "hf://keras/no-such-preset", "--output-dir", str(run_dir), "--precision", "float32"])
    elapsed = time.monotonic() - started
    assert code == cli.EXIT_BAD_INPUT
    (line,) = _error_lines(capsys.readouterr().err)
    assert "hf://keras/no-such-preset" in line and "--weights none" in line
    assert elapsed < 15, elapsed  # the library probes for 4 s
    assert not run_dir.exists()


def test_a_hub_backbone_without_keras_hub_names_the_extra(photos, tmp_path, capsys, monkeypatch):
    from keras_ltpa.backbones import hub

    monkeypatch.setattr(hub, "hub_installed", lambda: False)
    run_dir = tmp_path / "run"
    code = fit.main(["--data-dir", str(photos), "--validation-split", "0.25", "--backbone",
                     "hf://keras/resnet_18_imagenet", "--output-dir", str(run_dir), "--precision", "float32"])
    assert code == cli.EXIT_BAD_INPUT
    (line,) = _error_lines(capsys.readouterr().err)
    assert "'hf://keras/resnet_18_imagenet' is a keras-hub preset, which needs keras-hub" in line
    assert "pip install 'keras-ltpa[hub]'" in line
    assert not run_dir.exists()
