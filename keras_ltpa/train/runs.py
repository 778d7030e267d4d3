"""The run directory: its file names, config.json, resume check, history,
and finding a run's model and class names.

    config.json            the settings (and the seed, classes, precision)
    history.csv            one row per finished epoch (kept across resumes),
                           with its wall time (`epoch_seconds`)
    checkpoints/best.keras best validation accuracy so far (+ best.json)
    checkpoints/last.keras the end of the last finished epoch
    backup/                BackupAndRestore state (resume); a frozen-backbone
                           stage's own in backup/frozen_backbone/
    tensorboard/           train/ and validation/ scalars, attention/ grids
    model.keras            the final model
    metrics.json           test loss and accuracy of the final model, and
                           when validation first reached 80/85/90/95%
    saved_models/ltpa/1/   TF Serving export

`find_model_file` and `run_class_names` read such a folder, as the CLIs do
for `--model RUN_DIR`.
"""

import csv
import json
import os

from keras_ltpa.train.distribution import outside_distribution
from keras_ltpa.utils.files import TEMPORARY_PREFIX
from keras_ltpa.utils.files import write_atomically

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
# Validation accuracies whose first epoch and wall time metrics.json records.
MILESTONES = (0.8, 0.85, 0.9, 0.95)
FINAL_MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "saved_models"

# Settings a resumed run must share with the run it continues: they fix the
# weights' shapes, the meaning of the labels and the backup's optimizer
# variables (`ema` adds the averages).
RESUME_KEYS = (
    "variant", "width_multiplier", "dropout", "image_size", "class_names", "backbone", "weights",
    "attention_layers", "global_layer", "freeze_backbone_epochs", "validation_split", "ema",
)

# Where a run keeps a model, in the order they are looked for: the final
# model, then the best and last checkpoints of an unfinished run.
MODEL_FILES = (
    FINAL_MODEL_FILE,
    os.path.join(CHECKPOINT_DIR, BEST_CHECKPOINT),
    os.path.join(CHECKPOINT_DIR, LAST_CHECKPOINT),
)


def save_model(model, path):
    """`model.save(path)` (a `.keras` file), atomically."""
    with outside_distribution():  # Also when one process of several saves.
        return write_atomically(path, model.save)


def read_history(path):
    """The rows of a `history.csv` as dicts (an empty list if none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def accuracy_milestones(rows, thresholds=MILESTONES, metric="val_accuracy"):
    """When a run first reached each accuracy in `thresholds`.

    Args:
        rows: `history.csv` rows (`read_history`), one per epoch in order.
        thresholds: accuracies (fractions) to look for.
        metric: the column compared with each threshold.

    Returns:
        One dict per threshold reached: `threshold`, `epoch` (1-based) and
        `wall_seconds` (the sum of `epoch_seconds` up to that epoch; None
        if the history has no times). Thresholds never reached are left out.
    """
    thresholds, reached, elapsed = sorted(thresholds), [], 0.0
    for row in rows:
        seconds = row.get("epoch_seconds")
        elapsed = None if elapsed is None or seconds in (None, "") else elapsed + float(seconds)
        value = row.get(metric)
        if value in (None, ""):
            continue
        for threshold in thresholds[len(reached):]:
            if float(value) < threshold:
                break
            reached.append({
                "threshold": threshold,
                "epoch": int(row["epoch"]) + 1,
                "wall_seconds": None if elapsed is None else round(elapsed, 1),
            })
    return reached


def check_resume(run_dir, settings):
    """Refuses to continue a run of another model in the same folder."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as file:
        previous = json.load(file)
    for key in RESUME_KEYS:
        if key in previous and previous[key] != settings[key]:
            raise ValueError(
                f"The run directory {run_dir!r} holds a run with {key}="
                f"{previous[key]!r}, but this run has {key}={settings[key]!r}. "
                "Use another --output-dir to start a new run, or the same "
                "settings to resume it."
            )


def backup_epoch(backup_dir):
    """The epochs a BackupAndRestore folder has recorded as done, or None
    when it holds no backup."""
    path = os.path.join(os.fspath(backup_dir), "training_metadata.json")
    try:
        with open(path) as file:
            return int(json.load(file)["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def remove_temporaries(run_dir):
    """Deletes `.tmp-*` files a killed run left mid-write (never read)."""
    for folder, _, names in os.walk(run_dir):
        for name in names:
            if name.startswith(TEMPORARY_PREFIX):
                os.remove(os.path.join(folder, name))


def find_model_file(path):
    """The `.keras` file at `path`: the file itself, or a run directory's.

    In a run directory the model is the first of `MODEL_FILES` found
    (`model.keras`, then `checkpoints/best.keras`, `checkpoints/last.keras`),
    else its only `.keras` file.

    Raises:
        ValueError: `path` is missing, not a `.keras` file, or a folder where
            none (or several unranked) `.keras` files are; the message lists
            where it looked.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"Model file {path!r} is not a `.keras` file.")
        return path
    if not os.path.isdir(path):
        raise ValueError(
            f"Model path {path!r} does not exist (give a .keras file or a run directory)."
        )
    for name in MODEL_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    found = sorted(name for name in os.listdir(path) if name.endswith(".keras"))
    if len(found) == 1:
        return os.path.join(path, found[0])
    listed = ", ".join(found) if found else "none"
    raise ValueError(
        f"Cannot pick the model in {path!r}: it has {len(found)} .keras files at "
        f"its top ({listed}) and none of {', '.join(MODEL_FILES)}. Pass the file itself."
    )


def run_directory(path):
    """The run directory a model path belongs to, or None.

    `path` is a run directory, or a `.keras` file in one (`model.keras`) or
    in its `checkpoints/` folder: the folder holding `config.json`.
    """
    path = os.path.abspath(os.fspath(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (folder, os.path.dirname(folder)):
        if os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return candidate
    return None


def read_run_config(path):
    """The `config.json` of the run `path` belongs to (see `run_directory`),
    or None when there is none."""
    run_dir = run_directory(path)
    if run_dir is None:
        return None
    config_path = os.path.join(run_dir, CONFIG_FILE)
    try:
        with open(config_path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the run's settings {config_path!r}: {error}") from None


def run_class_names(path):
    """The class names recorded by the run `path` belongs to, or None."""
    config = read_run_config(path) or {}
    names = config.get("class_names")
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    return None


def load_model(path):
    """The model at `path` (a `.keras` file, a run directory, or
    `preset:NAME` for a preset shipped with the package), loaded in safe
    mode; a ValueError names what is wrong."""
    from keras_ltpa.model import load_model_file
    from keras_ltpa.presets import PRESET_PREFIX
    from keras_ltpa.presets import load_preset

    if os.fspath(path).startswith(PRESET_PREFIX):
        return load_preset(os.fspath(path))
    return load_model_file(find_model_file(path))


def class_names_of(model, path, given=None):
    """The class names to show for `model` loaded from `path`: `given` (a
    `--class-names` flag), else those the model records, else those of the
    run it came from, else None."""
    from keras_ltpa.model import describe

    if given:
        return list(given)
    facts = describe(model)
    if facts["class_names_recorded"]:
        return facts["class_names"]
    return run_class_names(path)
