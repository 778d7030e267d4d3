"""Attention on real photos: Caltech-101 with a small keras-hub ResNet, offline.

Regenerates docs/results/caltech101/ (report.md, report.json and attention
overlays at the model's resolution) with one command, in about an hour of a
quiet 2-core CPU:

    python training/caltech_demo.py --output-dir runs/caltech_demo \\
        --report-dir docs/results/caltech101

Every model is trained by a `training/fit.py` command (each one is printed
and kept in the report), on the same image size, from a small keras-hub
`ResNetBackbone` with basic blocks saved to a local preset folder:

(a) Does the attention head help? The attention model (att3-concat-pc,
    one estimator at each of the strides 8, 16 and 32, g average-pooled from
    the last stage) against the same backbone's plain classifier: one dense
    layer on the global average pool of the last stage (`--variant noatt`,
    which for a keras-hub backbone is `build_model(attention=False)`: the
    classifier on g alone). All 101 classes, equal epochs, random weights.

(b) Does a backbone pretrained on other classes help? The backbone is
    trained here on the first 50 classes (sorted names), taken out of that
    run's model.keras and saved as a keras-hub preset folder (its image
    converter holds the pixel statistics it was trained with), then
    fine-tuned on the other 51 classes in two stages (`--freeze-backbone-epochs`,
    `--backbone-lr-multiplier`), against the same model trained on the 51
    classes from random weights for as many epochs.

Caltech-101 is unbalanced (800 airplanes, classes of ~40 images) and its
test split keeps the same proportions, so the report gives the mean
per-class accuracy beside the plain test accuracy, and the runs weigh their
loss with `--class-weight balanced` by default. What holds is decided from
the numbers: a difference counts when it exceeds two standard errors of the
difference of two accuracies measured on the same test images.

The class subsets are folders of symlinks under --output-dir (train/ and
test/, one link per class folder); no image is copied. Run the same command
again after an interruption: a finished run is skipped, an unfinished one
resumes where it stopped (fit.py's own resume).

The defaults (96x96 pixels; four stages of one basic block with 64, 64,
128 and 128 filters; 16 epochs a run, 3 of them frozen when fine-tuning;
batch 64) took about an hour of 2 CPU cores shared with other jobs, in
mixed bfloat16 (fit.py's choice on a CPU with AMX): 50-75 training images a
second at a 1-minute load of 6-9, 140-360 at a load of 2-3.5 (the report
gives each run's wall time, rate and load). A smoke run on the
repository's fixtures (the budget recipe needs more epochs than its two of
warm-up, the paper recipe does not):

    python training/caltech_demo.py --data-dir tests/fixtures/data/caltech101 \\
        --pretrain-classes 2 --image-size 32 --stage-filters 64,64,64,64 \\
        --recipe paper --epochs 1 --pretrain-epochs 1 --finetune-epochs 2 \\
        --freeze-backbone-epochs 1 --steps-per-epoch 1 --batch-size 8 \\
        --output-dir /tmp/demo --report-dir /tmp/demo/report
"""

import argparse
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import shlex
import sys
import threading
import time

from keras_ltpa.cli import common as cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIT_SCRIPT = "training/fit.py"
TIMING_FILE = "timing.json"
# The runs, in the order they train: (name, experiment, what it is).
RUNS = (
    ("a_attention", "a", "attention head (att3-concat-pc), all classes"),
    ("a_gap", "a", "plain global-average-pool classifier, all classes"),
    ("b_pretrain", "b", "attention model on the pretraining classes"),
    ("b_finetune", "b", "pretrained backbone fine-tuned in two stages on the other classes"),
    ("b_scratch", "b", "the same model from random weights on the other classes"),
)
# A difference of accuracies counts when it exceeds this many standard errors.
STANDARD_ERRORS = 2.0
METRIC_NAMES = {"test_accuracy": "test accuracy", "mean_class_accuracy": "mean per-class accuracy"}
# CPU features that decide how fast a CPU trains (reported when present).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


# ## Flags
#
# Grouped as fit.py groups them: data, model, optimisation, output. The
# defaults are the sizes of the published report (docs/results/caltech101).


def parse_args(argv=None):
    parser = cli.make_parser("caltech_demo.py", __doc__)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=os.path.relpath(REPO_ROOT.parent / "shared" / "data" / "caltech101"),
        help="Caltech-101 as an image folder DIR/{train,test}/<class>/*.jpg",
    )
    data.add_argument(
        "--pretrain-classes", type=cli.positive_int, default=50,
        help="experiment (b): the first N classes (sorted names) pretrain the backbone, "
        "the others are the fine-tuning task",
    )
    data.add_argument(
        "--class-weight", choices=("balanced", "none"), default="balanced",
        help="fit.py's --class-weight for every run (none: every image weighs the same)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--image-size", type=cli.positive_int, default=96,
                       help="side of the square images every model takes")
    model.add_argument(
        "--stage-filters", type=_stage_list, default="64,64,128,128",
        help="filters of the ResNet's four stages (keras-hub requires 64 first)",
    )
    model.add_argument("--stage-blocks", type=_stage_list, default="1,1,1,1",
                       help="basic blocks in each of the four stages")
    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument("--epochs", type=cli.positive_int, default=16,
                              help="experiment (a): epochs of each of its two runs")
    optimisation.add_argument("--pretrain-epochs", type=cli.positive_int, default=16,
                              help="experiment (b): epochs of the pretraining run")
    optimisation.add_argument(
        "--finetune-epochs", type=cli.positive_int, default=16,
        help="experiment (b): epochs of the fine-tuning run and of the run from scratch",
    )
    optimisation.add_argument(
        "--freeze-backbone-epochs", type=cli.positive_int, default=3,
        help="experiment (b): fine-tuning epochs with the backbone frozen (stage 1)",
    )
    optimisation.add_argument(
        "--backbone-lr-multiplier", type=cli.positive_float, default=0.1,
        help="experiment (b): the backbone's rate as a fraction of the head's in stage 2",
    )
    optimisation.add_argument("--batch-size", type=cli.positive_int, default=64)
    optimisation.add_argument("--learning-rate", type=cli.positive_float, default=0.05,
                              help="initial SGD learning rate of every run")
    optimisation.add_argument("--recipe", choices=("paper", "budget"), default="budget",
                              help="fit.py's --recipe of every run")
    optimisation.add_argument(
        "--precision", choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
        default="auto", help="fit.py's --precision of every run",
    )
    optimisation.add_argument(
        "--steps-per-epoch", type=cli.positive_int, default=None,
        help="optimizer steps per epoch (default: one pass over the training split); "
        "for smoke runs",
    )
    optimisation.add_argument("--seed", type=int, default=1, help="fit.py's --seed of every run")
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", default="runs/caltech_demo",
                        help="the run directories, the backbone presets and the class subsets")
    output.add_argument("--report-dir",
                        default=os.path.relpath(REPO_ROOT / "docs" / "results" / "caltech101"),
                        help="report.md, report.json and the overlay PNGs")
    output.add_argument("--overlay-images", type=cli.positive_int, default=8,
                        help="test images in each attention overlay (one per class)")
    output.add_argument("--monitor-interval", type=cli.positive_float, default=60.0,
                        help="seconds between looks at what else the machine runs")
    args = parser.parse_args(argv)
    if args.freeze_backbone_epochs >= args.finetune_epochs:
        parser.error(
            f"--freeze-backbone-epochs {args.freeze_backbone_epochs} must be below "
            f"--finetune-epochs {args.finetune_epochs} (stage 2 needs an epoch)"
        )
    # The ResNet backbone of both experiments is keras-hub's.
    if importlib.util.find_spec("keras_hub") is None:
        parser.error("the demo's ResNet backbone needs keras-hub: pip install 'keras-ltpa[hub]'")
    return args


def _stage_list(text):
    """argparse type: four positive integers joined by commas, one per stage."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected four positive integers joined by commas (one per ResNet stage), got {text!r}"
        )
    return values


# ## The backbone
#
# A keras-hub ResNet with basic blocks and random weights, saved once as a
# local preset folder: every run loads it by path (`--backbone DIR`). Its
# stem and four stages reduce by 4, 1, 2, 2, 2, so the attention taps at the
# strides 8, 16 and 32 are the ends of keras-hub's stack1, stack2 and stack3,
# and g is stack3's output average-pooled.


def backbone_config(args):
    return dict(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(args.stage_filters),
        stackwise_num_blocks=list(args.stage_blocks),
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=[None, None, 3],
    )


def save_random_backbone(args, folder):
    """The architecture's preset folder: written once, then checked."""
    import keras_hub

    wanted = backbone_config(args)
    config_file = folder / "config.json"
    if config_file.exists():
        saved = json.loads(config_file.read_text())["config"]
        different = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        if different:
            raise ValueError(
                f"{folder} holds another backbone (saved, wanted: {different}); give another "
                "--output-dir or delete that run folder."
            )
        return folder
    backbone = keras_hub.models.ResNetBackbone(**wanted, dtype="float32")
    _save_preset_folder(folder, [backbone])
    return folder


def _save_preset_folder(folder, parts):
    """`part.save_to_preset` for each part, into a temporary folder renamed
    to `folder` once complete."""
    import shutil
    import tempfile

    from keras_ltpa.utils.files import TEMPORARY_PREFIX

    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=folder.parent, prefix=TEMPORARY_PREFIX)
    try:
        for part in parts:
            part.save_to_preset(temporary)
        os.chmod(temporary, 0o755)
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


def save_pretrained_backbone(model_file, architecture, folder):
    """Takes the backbone out of a trained attention model and saves it as a
    keras-hub preset folder, with an image converter holding the pixel map
    the model trained with.

    The model keeps its backbone as one nested model (the backbone's layers
    up to its taps); a fresh backbone of the architecture gets those layers'
    weights by name, and must then give the model's global feature g.
    """
    import keras
    import keras_hub
    import numpy as np

    from keras_ltpa.backbones.finetune import backbone_layers
    from keras_ltpa.model import load_model_file

    if (folder / "config.json").exists():
        return folder
    model = load_model_file(model_file)
    (tapped,) = backbone_layers(model)
    trained = {layer.name: layer for layer in tapped.layers}
    backbone = keras_hub.models.Backbone.from_preset(str(architecture), load_weights=False)
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in trained:
            raise ValueError(
                f"{model_file}'s backbone has no layer {layer.name!r} of the architecture "
                f"in {architecture}; was it trained with another --backbone?"
            )
        layer.set_weights(trained[layer.name].get_weights())
    size = model.image_shape[0]
    pixels = np.random.default_rng(0).uniform(-2, 2, (2, size, size, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(tapped(pixels)[-1]).astype("float32")
    pooled = keras.ops.convert_to_numpy(keras.ops.mean(backbone(pixels), axis=(1, 2)))
    # Within bfloat16 rounding when the model computes in mixed precision.
    error = float(np.max(np.abs(pooled.astype("float32") - expected)))
    if error > 0.05 * float(np.max(np.abs(expected))):
        raise ValueError(
            f"The backbone taken out of {model_file} does not reproduce its features "
            f"(largest difference {error:.3g} of g)."
        )
    if model.preprocessing != "pixel_stats":
        raise ValueError(
            f"{model_file} maps pixels with {model.preprocessing!r}; expected 'pixel_stats' "
            "(a backbone trained from random weights)."
        )
    # (x / 255 - mean) / std  ==  x * scale + offset
    scale = [1.0 / (255.0 * s) for s in model.pixel_std]
    offset = [-m / s for m, s in zip(model.pixel_mean, model.pixel_std)]
    converter = keras_hub.layers.ResNetImageConverter(scale=scale, offset=offset)
    return _save_preset_folder(folder, [backbone, converter])


# ## The class subsets
#
# Experiment (b) splits the classes into two disjoint sets. Each is an image
# folder of symlinks (train/<class> and test/<class> point at the full set's
# class folders), which fit.py reads like any other.


def class_names(data_dir):
    from keras_ltpa.data.sources import class_folders

    return class_folders(os.path.join(data_dir, "train"))


def link_subset(data_dir, folder, names):
    """`folder/{train,test}/<class>` as symlinks to `data_dir`'s class folders."""
    source_root = pathlib.Path(data_dir).resolve()
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True, exist_ok=True)
        present = {p.name for p in (folder / split).iterdir()}
        extra = present - set(names)
        if extra:
            raise ValueError(
                f"{folder / split} holds class folders of another subset ({sorted(extra)[:3]}); "
                "give another --output-dir or delete it."
            )
        for name in names:
            target = source_root / split / name
            if not target.is_dir():
                raise ValueError(f"Class folder {target} not found (class {name!r}, split {split!r}).")
            link = folder / split / name
            if link.is_symlink():
                if link.resolve() != target.resolve():
                    raise ValueError(f"{link} points at {os.readlink(link)}, not at {target}.")
                continue
            os.symlink(target, link)
    return folder


def count_images(data_dir, split):
    from keras_ltpa.data.sources import list_image_folder

    paths, _, _ = list_image_folder(os.path.join(data_dir, split))
    return len(paths)


# ## What else runs
#
# The machine may be shared: while a run trains, a thread looks every
# --monitor-interval seconds at the 1-minute load average and at the other
# processes busy over a 2-second window (their program names only).


def _cpu_times():
    """{pid: user + system clock ticks} of every readable process."""
    times = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    return times


def _program(pid):
    """A process' program: its executable's name, and for an interpreter the
    script or module it runs (`python fit.py`, `python -m pytest`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            argv = [a.decode(errors="replace") for a in file.read().split(b"\0") if a]
    except OSError:
        return None
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if name.startswith("python"):
        for flag, value in zip(argv[1:], argv[2:] + [""]):
            if flag == "-c":
                return "python -c"
            if flag == "-m":
                return f"python -m {value}"
            if not flag.startswith("-"):
                return f"python {os.path.basename(flag)}"
    return name


def program_label(program):
    """A recorded program name as the report shows it: after an interpreter,
    anything but `SCRIPT` or `-m MODULE` (code given with `-c`) reads
    `python -c`."""
    words = program.split()
    if len(words) < 2 or not words[0].startswith("python"):
        return program
    if words[1] == "-m" and len(words) == 3:
        return program
    if len(words) == 2 and re.fullmatch(r"[\w.+-]+", words[1]):
        return program
    return f"{words[0]} -c"


def busy_processes(window=2.0, threshold=0.25):
    """{program: CPUs used} of the other processes using at least
    `threshold` of one CPU over `window` seconds (Linux /proc; {} elsewhere)."""
    if not os.path.isdir("/proc"):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    before = _cpu_times()
    time.sleep(window)
    after = _cpu_times()
    busy = {}
    for pid, ticks in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        share = (ticks - before[pid]) / tick / window
        if share >= threshold:
            program = _program(pid)
            if program is not None:
                busy[program] = round(busy.get(program, 0.0) + share, 2)
    return busy


class MachineMonitor(threading.Thread):
    """Looks at the load and at the other busy processes until `stop()`."""

    def __init__(self, interval):
        super().__init__(daemon=True)
        self.interval = interval
        self.loads = []
        self.seen = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self):
        from keras_ltpa.devices import machine

        while True:
            load = machine.load_average()
            if load is not None:
                self.loads.append(load)
            for program, cpus in busy_processes().items():
                count, total = self.seen.get(program, (0, 0.0))
                self.seen[program] = (count + 1, total + cpus)
            self.samples += 1
            if self._stop_event.wait(self.interval):
                return

    def stop(self):
        self._stop_event.set()
        self.join(timeout=10)
        return self.summary()

    def summary(self):
        others = sorted(self.seen.items(), key=lambda item: -item[1][0])
        return {
            "samples": self.samples,
            "load_1min_mean": round(sum(self.loads) / len(self.loads), 2) if self.loads else None,
            "load_1min_max": round(max(self.loads), 2) if self.loads else None,
            "others": [
                {"program": program, "share_of_samples": round(count / max(self.samples, 1), 2),
                 "mean_cpus_when_seen": round(total / count, 2)}
                for program, (count, total) in others
            ],
        }


# ## The runs
#
# One fit.py command each. A run whose metrics.json records the epochs asked
# for is finished and skipped; any other is started or resumed by the same
# command, and the wall time of each call is added to its timing.json.


def fit_arguments(args, data_dir, backbone, run_dir, *, epochs, weights="none", extra=()):
    argv = [
        "--data-dir", str(data_dir), "--backbone", str(backbone), "--weights", weights,
        "--image-size", str(args.image_size), "--epochs", str(epochs),
        "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
        "--recipe", args.recipe, "--precision", args.precision, "--seed", str(args.seed),
        "--cache", "--no-export", "--verbose", "0", "--output-dir", str(run_dir),
    ]
    if args.class_weight == "balanced":
        argv += ["--class-weight", "balanced"]
    if args.steps_per_epoch is not None:
        argv += ["--steps-per-epoch", str(args.steps_per_epoch)]
    return argv + list(extra)


def finished(run_dir, epochs):
    metrics_file = run_dir / "metrics.json"
    if not (metrics_file.exists() and (run_dir / "model.keras").exists()):
        return False
    return json.loads(metrics_file.read_text()).get("epochs") == epochs


def train(name, argv, run_dir, epochs, interval):
    """Runs fit.py (`argv`) unless the run is finished; records the call."""
    import keras

    from keras_ltpa.cli import fit
    from keras_ltpa.utils.files import write_json

    print(f"caltech_demo.py: {name}: python {FIT_SCRIPT} {shlex.join(argv)}", flush=True)
    if finished(run_dir, epochs):
        print(f"caltech_demo.py: {name}: finished before, skipped.", flush=True)
        return 0
    timing_file = run_dir / TIMING_FILE
    calls = json.loads(timing_file.read_text())["calls"] if timing_file.exists() else []
    monitor = MachineMonitor(interval)
    monitor.start()
    started = time.time()
    policy = keras.config.dtype_policy()
    try:
        code = fit.main(argv)
    finally:
        wall = time.time() - started
        keras.config.set_dtype_policy(policy)
        keras.backend.clear_session()
        call = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "wall_time_s": round(wall, 1), "machine": monitor.stop()}
        if run_dir.exists():
            write_json(timing_file, {"calls": calls + [call]})
    if code != 0:
        print(f"caltech_demo.py: error: fit.py exited with code {code} in run {name} ({run_dir}); "
              "run the same command again to resume.", file=sys.stderr)
    return code


# ## Scores
#
# The final model of each run on its test split: top-1 and top-5 accuracy,
# and each class' accuracy, whose mean weighs every class the same.


def binomial_variance(accuracy, count):
    """The variance of an accuracy measured on `count` images, the rate
    taken as (correct + 1) / (count + 2) so that 0% or 100% on a small class
    is not read as certain."""
    rate = (accuracy * count + 1) / (count + 2)
    return rate * (1 - rate) / count


def score(run_dir, data_dir, image_size, batch_size):
    from keras_ltpa.data.pipelines import load_dataset
    from keras_ltpa.evaluation.accuracy import evaluate_classification
    from keras_ltpa.model import load_model_file

    model = load_model_file(run_dir / "model.keras")
    dataset, names = load_dataset(
        "test", data_dir=str(data_dir), image_size=image_size, batch_size=batch_size
    )
    result = evaluate_classification(model, dataset, names)
    per_class = result["per_class"]
    counts = result["per_class_count"]
    mean_class = sum(per_class.values()) / len(per_class)
    # Standard errors: binomial for the accuracy, per class for their mean.
    accuracy = result["accuracy"]
    error = math.sqrt(binomial_variance(accuracy, result["count"]))
    class_error = math.sqrt(
        sum(binomial_variance(a, counts[c]) for c, a in per_class.items())
    ) / len(per_class)
    return model, {
        "test_images": result["count"],
        "test_accuracy": accuracy,
        "test_accuracy_se": error,
        "top5_accuracy": result["top_k_accuracy"],
        "mean_class_accuracy": mean_class,
        "mean_class_accuracy_se": class_error,
        "classes_scored": len(per_class),
        "per_class_accuracy": per_class,
    }


def run_record(args, what, argv, run_dir, data_dir, model, scores):
    timing_file = run_dir / TIMING_FILE
    timing = json.loads(timing_file.read_text())["calls"] if timing_file.exists() else []
    for call in timing:
        for other in call["machine"]["others"]:
            other["program"] = program_label(other["program"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    wall = sum(call["wall_time_s"] for call in timing)
    train_images = count_images(data_dir, "train")
    steps = args.steps_per_epoch
    seen_per_epoch = train_images if steps is None else steps * args.batch_size
    loads = [c["machine"]["load_1min_mean"] for c in timing if c["machine"]["load_1min_mean"] is not None]
    return {
        "what": what,
        "command": f"python {FIT_SCRIPT} {shlex.join(argv)}",
        "run_dir": str(run_dir),
        "classes": len(model.class_names or []),
        "train_images": train_images,
        "epochs": metrics["epochs"],
        "parameters": int(model.count_params()),
        "variant": model.variant,
        "precision": metrics.get("precision"),
        "fit_test_accuracy": metrics.get("accuracy"),
        "wall_time_s": round(wall, 1),
        "images_per_second": round(seen_per_epoch * metrics["epochs"] / wall, 1) if wall else None,
        "load_1min_mean": round(sum(loads) / len(loads), 2) if loads else None,
        "calls": timing,
        **scores,
    }


# ## What holds
#
# Each claim compares two runs on the same test images. The difference of
# their accuracies counts when it exceeds STANDARD_ERRORS standard errors
# (the two runs' binomial errors combined); otherwise the runs are not told
# apart at this size.


def compare(claim, runs, better, other, key):
    a, b = runs[better][key], runs[other][key]
    error = math.hypot(runs[better][f"{key}_se"], runs[other][f"{key}_se"])
    difference = a - b
    if difference > STANDARD_ERRORS * error:
        verdict = "holds"
    elif difference < -STANDARD_ERRORS * error:
        verdict = "does not hold (the reverse holds)"
    else:
        verdict = "not resolved at this size"
    return {
        "claim": claim, "metric": key, "runs": [better, other], "values": [a, b],
        "difference": difference, "standard_error": error, "verdict": verdict,
    }


def findings(runs):
    results = []
    for key in ("test_accuracy", "mean_class_accuracy"):
        results.append(compare(
            "(a) the attention head is more accurate than the plain global-average-pool classifier",
            runs, "a_attention", "a_gap", key,
        ))
    for key in ("test_accuracy", "mean_class_accuracy"):
        results.append(compare(
            "(b) a backbone pretrained on other classes beats random weights after fine-tuning",
            runs, "b_finetune", "b_scratch", key,
        ))
    return results


def train_step_seconds(model_files, batch_size, rounds=10):
    """Seconds of one training step of each model, `rounds` times: the
    models take turns on the same batch, so that each turn's pair meets the
    same load.

    Each model is loaded from its file and compiled as fit.py compiles it
    (SGD, integer labels); the first turn (tracing) is not timed.

    Returns:
        {name: [seconds of each turn]}.
    """
    import keras
    import numpy as np

    from keras_ltpa.model import load_model_file

    models = {}
    for name, path in model_files.items():
        model = load_model_file(path)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        models[name] = model
    rng = np.random.default_rng(0)
    size = next(iter(models.values())).image_shape[0]
    classes = min(model.num_classes for model in models.values())
    times = {name: [] for name in models}
    for turn in range(rounds + 1):
        images = rng.integers(0, 256, (batch_size, size, size, 3)).astype("float32")
        labels = rng.integers(0, classes, batch_size)
        for name, model in models.items():
            started = time.perf_counter()
            model.train_on_batch(images, labels)
            if turn:
                times[name].append(time.perf_counter() - started)
    return times


def cost(runs, step_seconds):
    """What the attention head costs: parameters, and its time per training
    step over the plain classifier's, turn by turn (median and range)."""
    attention, plain = runs["a_attention"], runs["a_gap"]
    ratios = sorted(a / b for a, b in zip(step_seconds["a_attention"], step_seconds["a_gap"]))
    middle = len(ratios) // 2
    median = ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    if ratios[0] > 1:
        verdict = "slower in every turn"
    elif ratios[-1] < 1:
        verdict = "faster in every turn"
    else:
        verdict = "not told apart at this load (faster in some turns, slower in others)"
    return {
        "extra_parameters": attention["parameters"] - plain["parameters"],
        "train_step_seconds": step_seconds,
        "step_time_ratio_median": median,
        "step_time_ratio_range": [ratios[0], ratios[-1]],
        "step_time_verdict": verdict,
    }


# ## The machine


def describe_machine():
    import keras

    from keras_ltpa.devices import machine

    flags = machine.cpu_flags()
    try:
        with open("/proc/meminfo") as file:
            memory = next(int(line.split()[1]) for line in file if line.startswith("MemTotal"))
        memory_gib = round(memory / 2**20, 1)
    except (OSError, StopIteration):
        memory_gib = None
    backend = keras.backend.backend()
    return {
        "cpu_model": machine.cpu_model(),
        "cpus": machine.cpu_count(),
        "speed_flags": [flag for flag in SPEED_FLAGS if flag in flags],
        "cpu_flags_digest": machine.flags_digest(flags),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "backend": backend,
        "versions": machine.framework_versions(backend),
    }


# ## Overlays
#
# Each attention model on a few test images of its own classes (the first
# image of evenly spaced classes), drawn at the model's input size.


def overlay_images(data_dir, names, count):
    step = max(len(names) / count, 1)
    chosen = [names[int(i * step)] for i in range(min(count, len(names)))]
    paths = []
    for name in chosen:
        folder = pathlib.Path(data_dir) / "test" / name
        files = sorted(p for p in folder.iterdir() if p.is_file())
        paths.append(str(folder / files[0].name))
    return paths


def draw_overlays(name, model, data_dir, report_dir, count):
    from keras_ltpa.evaluation import overlays

    names = list(model.class_names)
    paths = overlay_images(data_dir, names, count)
    images, labels, _ = overlays.read_images(paths, class_names=names, model=model)
    (path,) = overlays.save_attention_grids(
        model, images, str(report_dir), labels, names, rows_per_grid=len(images),
        prefix=f"attention_{name}", tile_size=model.image_shape[0],
    )
    return os.path.basename(path), [os.path.relpath(p, data_dir) for p in paths]


# ## The report


def _percent(value):
    return f"{100 * value:.1f}"


def markdown(report):
    settings, runs = report["settings"], report["runs"]
    machine = report["machine"]
    lines = [
        "# Attention on Caltech-101: a small keras-hub ResNet, offline",
        "",
        f"Written by `{report['command']}`; edit that, not this.",
        "",
        f"Caltech-101 ({settings['data_dir']}: {settings['classes']} classes, "
        f"{settings['train_images']} train / {settings['test_images']} test images, the fixed 2:1 "
        f"split), every image resized to {settings['image_size']}x{settings['image_size']}. "
        f"Backbone: keras-hub `ResNetBackbone`, basic blocks, stage filters "
        f"{settings['stage_filters']}, blocks {settings['stage_blocks']}, random weights. "
        f"SGD, recipe `{settings['recipe']}`, learning rate {settings['learning_rate']}, batch "
        f"{settings['batch_size']}, class weights {settings['class_weight']}, seed {settings['seed']}.",
        "",
        "| run | what | classes | train images | epochs | test accuracy (%) | mean per-class (%) "
        "| top-5 (%) | wall time (min) | img/s | load (mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['what']} | {run['classes']} | {run['train_images']} | {run['epochs']} "
            f"| {_percent(run['test_accuracy'])} ± {_percent(run['test_accuracy_se'])} "
            f"| {_percent(run['mean_class_accuracy'])} ± {_percent(run['mean_class_accuracy_se'])} "
            f"| {_percent(run['top5_accuracy'])} | {run['wall_time_s'] / 60:.1f} "
            f"| {run['images_per_second']} | {run['load_1min_mean']} |"
        )
    total = sum(run["wall_time_s"] for run in runs.values())
    lines += [
        "",
        "± one standard error. img/s: training images x epochs / the run's wall time "
        "(data loading, validation each epoch and the final test included). "
        f"All runs: {total / 60:.0f} minutes of wall time; load: the mean 1-minute load "
        f"average over the run, on {machine['cpus']} CPUs.",
        "",
        "## What holds",
        "",
    ]
    for finding in report["findings"]:
        a, b = finding["runs"]
        lines.append(
            f"- {finding['claim']} ({METRIC_NAMES[finding['metric']]}): **{finding['verdict']}** "
            f"({_percent(finding['values'][0])}% {a} vs {_percent(finding['values'][1])}% {b}, "
            f"difference {100 * finding['difference']:+.1f} points, standard error "
            f"{100 * finding['standard_error']:.1f}; a difference counts beyond "
            f"{STANDARD_ERRORS:g} standard errors)."
        )
    extra = report["cost"]
    low, high = extra["step_time_ratio_range"]
    turns = len(extra["train_step_seconds"]["a_attention"])
    lines += [
        f"- The attention head adds {extra['extra_parameters']:,} parameters; its training step "
        f"takes {extra['step_time_ratio_median']:.2f}x the plain classifier's (median of {turns} "
        f"turns on the same batch of {settings['batch_size']}, range {low:.2f}-{high:.2f}): "
        f"{extra['step_time_verdict']}. The img/s above also carry each run's load.",
        "",
        "## Attention overlays",
        "",
        "Each row: the test image at the model's input size, then each attention map "
        "upsampled over it (map sizes in the header); predicted class and probability above, "
        "green when right.",
        "",
    ]
    for name, overlay in report["overlays"].items():
        lines += [f"**{name}** ({runs[name]['what']}):", "", f"![{name}]({overlay['file']})", ""]
    lines += [
        "## Machine",
        "",
        f"{machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB; "
        f"flags {', '.join(machine['speed_flags']) or 'none of ' + ', '.join(SPEED_FLAGS)}; "
        f"{machine['platform']}; Keras backend {machine['backend']} "
        f"({', '.join(f'{k} {v}' for k, v in machine['versions'].items())}); precision "
        f"{', '.join(sorted({str(run['precision']) for run in runs.values()}))}.",
        "",
        "What ran beside each run (1-minute load average on "
        f"{machine['cpus']} CPUs, and the other programs seen using a quarter of a CPU or more, "
        "with the share of the looks that found them busy):",
        "",
    ]
    for name, run in runs.items():
        seen = {}
        for call in run["calls"]:
            for other in call["machine"]["others"]:
                program = other["program"]
                seen[program] = max(seen.get(program, 0), other["share_of_samples"])
        others = ", ".join(f"{p} ({share:.0%})" for p, share in sorted(seen.items(), key=lambda i: -i[1]))
        lines.append(
            f"- {name}: {len(run['calls'])} call(s), load mean {run['load_1min_mean']}; "
            f"{others or 'no other busy program seen'}."
        )
    lines += ["", "## Commands", ""]
    for name, run in runs.items():
        lines += [f"{name}:", "", "```", run["command"], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report, report_dir):
    from keras_ltpa.utils.files import write_atomically
    from keras_ltpa.utils.files import write_json

    write_json(report_dir / "report.json", report, sort_keys=False)
    text = markdown(report)
    write_atomically(report_dir / "report.md", lambda temporary: pathlib.Path(temporary).write_text(text))


# ## Putting it together


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = "python training/caltech_demo.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    def work():
        output = pathlib.Path(args.output_dir)
        report_dir = pathlib.Path(args.report_dir)
        names = class_names(args.data_dir)
        if not 2 <= args.pretrain_classes <= len(names) - 2:
            raise ValueError(
                f"--pretrain-classes {args.pretrain_classes} must leave two classes or more on "
                f"each side of the split of {len(names)} classes in {args.data_dir}."
            )
        architecture = save_random_backbone(args, output / "backbones" / "resnet_random")
        first = link_subset(args.data_dir, output / "data" / "pretrain_classes",
                            names[:args.pretrain_classes])
        rest = link_subset(args.data_dir, output / "data" / "finetune_classes",
                           names[args.pretrain_classes:])
        pretrained = output / "backbones" / "resnet_pretrained"
        plan = {
            "a_attention": (args.data_dir, architecture, args.epochs, "none", ()),
            "a_gap": (args.data_dir, architecture, args.epochs, "none", ("--variant", "noatt")),
            "b_pretrain": (first, architecture, args.pretrain_epochs, "none", ()),
            "b_finetune": (rest, pretrained, args.finetune_epochs, "preset", (
                "--freeze-backbone-epochs", str(args.freeze_backbone_epochs),
                "--backbone-lr-multiplier", str(args.backbone_lr_multiplier),
            )),
            "b_scratch": (rest, architecture, args.finetune_epochs, "none", ()),
        }
        runs, overlays = {}, {}
        for name, experiment, what in RUNS:
            data_dir, backbone, epochs, weights, extra = plan[name]
            run_dir = output / name
            if name == "b_finetune":
                save_pretrained_backbone(output / "b_pretrain" / "model.keras", architecture, pretrained)
            argv_fit = fit_arguments(args, data_dir, backbone, run_dir, epochs=epochs,
                                     weights=weights, extra=extra)
            code = train(name, argv_fit, run_dir, epochs, args.monitor_interval)
            if code:
                return code
            model, scores = score(run_dir, data_dir, args.image_size, args.batch_size)
            runs[name] = run_record(args, what, argv_fit, run_dir, data_dir, model, scores)
            runs[name]["experiment"] = experiment
            if model.attention_layers:
                file, images = draw_overlays(name, model, data_dir, report_dir, args.overlay_images)
                overlays[name] = {"file": file, "images": images}
            print(f"caltech_demo.py: {name}: test accuracy {runs[name]['test_accuracy']:.4f}, "
                  f"mean per-class {runs[name]['mean_class_accuracy']:.4f}", flush=True)
        report = {
            "command": command,
            "settings": {
                "data_dir": args.data_dir, "classes": len(names),
                "pretrain_classes": names[:args.pretrain_classes],
                "finetune_classes": names[args.pretrain_classes:],
                "train_images": count_images(args.data_dir, "train"),
                "test_images": count_images(args.data_dir, "test"),
                "image_size": args.image_size, "stage_filters": args.stage_filters,
                "stage_blocks": args.stage_blocks, "backbone": backbone_config(args),
                "recipe": args.recipe, "learning_rate": args.learning_rate,
                "batch_size": args.batch_size, "class_weight": args.class_weight,
                "precision": args.precision, "seed": args.seed,
                "steps_per_epoch": args.steps_per_epoch,
                "freeze_backbone_epochs": args.freeze_backbone_epochs,
                "backbone_lr_multiplier": args.backbone_lr_multiplier,
                "standard_errors": STANDARD_ERRORS,
            },
            "machine": describe_machine(),
            "runs": runs,
            "findings": findings(runs),
            "cost": cost(runs, train_step_seconds(
                {name: output / name / "model.keras" for name in ("a_attention", "a_gap")},
                args.batch_size,
            )),
            "overlays": overlays,
        }
        write_report(report, report_dir)
        for finding in report["findings"]:
            print(f"caltech_demo.py: {finding['claim']} ({finding['metric']}): {finding['verdict']}")
        print(f"caltech_demo.py: report written to {report_dir / 'report.md'}")

    return cli.run_main("caltech_demo.py", work)


if __name__ == "__main__":
    sys.exit(main())
