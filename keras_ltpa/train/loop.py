"""`run_training(config)`: one resumable training run into a run directory.

`training/fit.py` builds a `TrainingConfig` from its flags and calls
`run_training`, which loads the data, builds and compiles the model, trains
it with `model.fit` (callbacks from `keras_ltpa.train.callbacks`, spread over
devices by `keras_ltpa.train.distribution`), evaluates it on the test split and
exports it for TF Serving. The pieces live in their own modules:
`optimizers` (SGD and the schedule), `devices` (precision and XLA),
`runs` (the run directory), `stages` (the backbone, and training it frozen
then fine-tuned).
"""

import dataclasses
import os
import random
import time

import keras
import numpy as np

from keras_ltpa.data import pipelines as ltpa_data
from keras_ltpa.devices import cpu_kernels as cpu_defaults
from keras_ltpa.devices.precision import gpu_compute_capability
from keras_ltpa.model import CIFAR10_MEAN
from keras_ltpa.model import CIFAR10_STD
from keras_ltpa.model import build_model
from keras_ltpa.serving import export
from keras_ltpa.train import callbacks as ltpa_callbacks
from keras_ltpa.train import runs
from keras_ltpa.train import stages as ltpa_stages
from keras_ltpa.train.config import TrainingConfig
from keras_ltpa.train.distribution import check_jit_compile
from keras_ltpa.train.distribution import resolve_distribution
from keras_ltpa.train.distribution import scaled_learning_rate
from keras_ltpa.train.losses import balanced_class_weight
from keras_ltpa.train.optimizers import make_optimizer
from keras_ltpa.train.precision import run_precision
from keras_ltpa.utils.files import write_json


def _fixed_batch(dataset, count):
    """The first `count` (images, int labels) of a dataset, as NumPy."""
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(np.asarray(batch_images))
        labels.append(np.asarray(batch_labels))
        if sum(len(x) for x in images) >= count:
            break
    images = np.concatenate(images)[:count]
    labels = np.concatenate(labels)[:count]
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    return images, labels


def _pixel_statistics(config, class_names, source):
    """`(mean, std, where_from)` for the model's input normalisation.

    `pixel_stats="cifar10"` keeps CIFAR-10's fixed values (the reference
    code's); `"data"` computes the training split's in one pass; `"auto"`
    keeps CIFAR-10's for CIFAR-10 (tfds `cifar10`, or a folder of its ten
    classes) and computes them for any other data. A pretrained backbone
    brings its own preprocessing: no statistics, `(None, None, ...)`.
    """
    if not ltpa_stages.needs_pixel_statistics(config):
        return None, None, "backbone preprocessing"
    is_cifar10 = config.dataset == "cifar10" or (
        config.data_dir is not None
        and tuple(class_names) == ltpa_data.CIFAR10_CLASS_NAMES
    )
    if config.pixel_stats == "cifar10" or (config.pixel_stats == "auto" and is_cifar10):
        return CIFAR10_MEAN, CIFAR10_STD, "cifar10"
    plain, _ = ltpa_data.load_dataset(
        "train", training=False, limit=config.limit, verify=False, **source
    )
    mean, std = ltpa_data.pixel_statistics(plain)
    return mean, std, "train split"


def run_training(config):
    """Trains, evaluates and exports one model into a run directory.

    Running it again with the same settings resumes after the last finished
    epoch (or step backup); a finished run trains no further and is
    evaluated and exported again.

    The run directory (`config.output_dir`) is laid out as `keras_ltpa.train.runs`
    describes: settings, history, checkpoints, backup, TensorBoard logs, the
    final `model.keras`, `metrics.json` and the TF Serving export.

    Args:
        config: a `TrainingConfig`, a dict of its fields or an argparse
            Namespace.

    Returns:
        A dict: `run_dir`, `metrics` (test loss/accuracy), `model_path`,
        `export_path` (or None), `epochs_trained` (in this call),
        `wall_time_s`, and the trained `model`. On a process other than the
        chief of a multi-process run (see `resolve_distribution`) nothing is
        written and `model_path`/`export_path` are None.

    Raises:
        SetupError (bad settings) or `keras_ltpa.data.DataError` (bad data),
        both ValueErrors, before anything is written.

    Example:
    >>> result = run_training(TrainingConfig(  # doctest: +SKIP
    ...     data_dir="../shared/data/cifar10", width_multiplier=0.25, epochs=3,
    ...     output_dir="runs/w025"))
    >>> result["metrics"]["accuracy"], result["export_path"]  # doctest: +SKIP
    """
    start = time.time()
    try:
        setup = _set_up(config)
    except ValueError as error:
        if isinstance(error, ltpa_data.DataError):
            raise  # Bad data keeps its own type.
        raise SetupError(str(error)) from error
    return _train(setup, start)


class SetupError(ValueError):
    """A bad setting or bad data found before training starts (nothing has
    been written to the run directory then)."""


@dataclasses.dataclass
class _Data:
    """The checked input of a run: pipelines, classes, pixel statistics,
    class weights and the validation split."""

    train: object  # tf.data.Dataset of (images, labels) batches
    test: object
    class_names: list
    steps_per_epoch: int
    global_batch_size: int
    pixel_mean: tuple
    pixel_std: tuple
    pixel_source: str
    class_weight: dict = None
    split: dict = None


@dataclasses.dataclass
class _Setup:
    """A run read and checked by `_set_up`, ready for `_train`."""

    config: TrainingConfig
    distribution: object  # a `TrainingDistribution`
    precision: str
    data: _Data
    settings: dict  # what config.json records
    stages: list = None  # the `keras_ltpa.train.stages.Stage`s of the run
    jit_compile: object = None
    model: object = None
    overlay_images: object = None
    overlay_labels: object = None

    @property
    def run_dir(self):
        return os.fspath(self.config.output_dir)


def _set_up(config):
    """Reads and checks everything: config, data, model; writes nothing."""
    config = TrainingConfig.from_any(config).validate()
    # First: joining a process group must precede any JAX computation.
    distribution = resolve_distribution(
        config.strategy,
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes,
        process_id=config.process_id,
    )
    jit_compile = check_jit_compile(config.jit_compile, distribution)
    precision_choice = run_precision(config, distribution)
    precision = precision_choice["policy"]
    keras.config.set_dtype_policy(precision)
    seed = config.seed if config.seed is not None else random.randrange(2**31)
    seed = distribution.shared_seed(seed)
    keras.utils.set_random_seed(seed)

    # Everything is read and checked before the run directory is touched.
    ltpa_stages.check_backbone_source(config)
    data = _load_data(config, distribution, seed)
    stages = ltpa_stages.training_stages(config)
    settings = _run_settings(config, data, distribution, precision_choice, seed, stages)
    runs.check_resume(os.fspath(config.output_dir), settings)
    setup = _Setup(config, distribution, precision, data, settings, stages, jit_compile)
    with distribution.scope():
        setup.model = _build_model(setup)
    # The attention grid runs the model on the chief alone, which a
    # multi-process model (its weights live on every process) cannot do.
    if config.tensorboard and config.overlay_images and distribution.num_processes == 1:
        setup.overlay_images, setup.overlay_labels = _fixed_batch(
            data.test, config.overlay_images
        )
    return setup


def _load_data(config, distribution, seed):
    """The training and test pipelines, the classes, the pixel statistics,
    the class weights and the validation split."""
    source = dict(
        dataset=config.dataset,
        data_dir=config.data_dir,
        validation_split=config.validation_split,
        tfds_data_dir=config.tfds_data_dir,
        image_size=(config.image_size, config.image_size),
        batch_size=distribution.global_batch_size(config.batch_size),
        # Replicas need equal shares of every batch.
        drop_remainder=distribution.num_replicas > 1,
    )
    train, class_names = ltpa_data.load_dataset(
        "train",
        training=True,
        augment=config.augmentations,
        cache=config.cache,
        limit=config.limit,
        seed=seed,
        label_mode=config.label_mode,
        **source,
    )
    pixel_mean, pixel_std, pixel_source = _pixel_statistics(config, class_names, source)
    test, _ = ltpa_data.load_dataset(
        "test",
        cache=config.cache,
        limit=config.test_limit,
        label_mode=config.label_mode,
        **source,
    )
    steps_per_epoch = config.steps_per_epoch or ltpa_data.dataset_size(train)
    if steps_per_epoch is None:
        raise ValueError(
            "The number of training batches is unknown; give --steps-per-epoch."
        )
    if config.steps_per_epoch is not None:
        train = train.repeat()
    if distribution.num_replicas > 1 and ltpa_data.dataset_size(test) == 0:
        raise ValueError(
            f"The test split has fewer examples than one global batch of "
            f"{source['batch_size']} ({config.batch_size} per replica x "
            f"{distribution.num_replicas} replicas); lower --batch-size."
        )
    class_weight = None
    if config.class_weight == "balanced":
        counts, _ = ltpa_data.label_counts("train", limit=config.limit, **source)
        class_weight = balanced_class_weight(counts)
    split = None
    if config.validation_split is not None:
        split = ltpa_data.describe_split(config.data_dir, config.validation_split)
    return _Data(
        train, test, class_names, steps_per_epoch, source["batch_size"],
        pixel_mean, pixel_std, pixel_source, class_weight, split,
    )


def _run_settings(config, data, distribution, precision_choice, seed, stages):
    """The run's config.json: every option, and what was resolved from them."""
    settings = dataclasses.asdict(config)
    settings.update(
        seed=seed,
        class_names=data.class_names,
        precision_policy=precision_choice["policy"],
        # How the policy was chosen and the measured bfloat16/float32 speed
        # ratio; not part of the resume check (a cached verdict may be
        # re-measured between a run and its resumption).
        precision_choice={k: v for k, v in precision_choice.items() if k != "probe"},
        backend=keras.backend.backend(),
        steps_per_epoch=data.steps_per_epoch,
        distribution=distribution.describe(),
        global_batch_size=data.global_batch_size,
        pixel_mean=None if data.pixel_mean is None else list(data.pixel_mean),
        pixel_std=None if data.pixel_std is None else list(data.pixel_std),
        pixel_stats_source=data.pixel_source,
        stages=[stage.describe() for stage in stages],
        # JSON keys are strings: the class weights as a list by class id.
        class_weights=None if data.class_weight is None else [
            data.class_weight.get(index) for index in range(len(data.class_names))
        ],
        validation_split_files=data.split,
        cpu_kernels=cpu_defaults.describe(),
        learning_rate_used=scaled_learning_rate(
            config.learning_rate, distribution, config.lr_scaling
        ),
    )
    return settings


def _build_model(setup):
    """The model of the run, not compiled: each stage compiles it (call
    inside the distribution's scope)."""
    config, data = setup.config, setup.data
    statistics = {}
    if data.pixel_mean is not None:
        statistics = dict(pixel_mean=data.pixel_mean, pixel_std=data.pixel_std)
    return build_model(
        len(data.class_names),
        input_shape=(config.image_size, config.image_size, 3),
        class_names=data.class_names,
        **statistics,
        **ltpa_stages.model_options(config),
    )


def _train(setup, start):
    """Trains, evaluates, saves and exports a run prepared by `_set_up`."""
    distribution, run_dir = setup.distribution, setup.run_dir
    if distribution.is_chief:  # Only the chief process writes the run directory.
        os.makedirs(run_dir, exist_ok=True)
        runs.remove_temporaries(run_dir)
        write_json(os.path.join(run_dir, runs.CONFIG_FILE), setup.settings)
    history = _fit(setup)
    metrics = _evaluate(setup)
    epochs_trained = len(history.get("loss", []))
    model_path = export_path = None
    if distribution.is_chief:  # The other processes of a group write nothing.
        model_path = runs.save_model(
            setup.model, os.path.join(run_dir, runs.FINAL_MODEL_FILE)
        )
        write_json(os.path.join(run_dir, runs.METRICS_FILE), metrics)
        if setup.config.export:
            export_path = _export(setup, model_path, epochs_trained)
    return {
        "run_dir": run_dir,
        "metrics": metrics,
        "model_path": model_path,
        "export_path": export_path,
        "epochs_trained": epochs_trained,
        "wall_time_s": time.time() - start,
        "model": setup.model,
    }


def _fit(setup):
    """Trains the run's stages in turn; returns their merged history (a
    dict of lists). A stage its backup records as finished trains nothing:
    its backup restores the weights and optimizer the next stage goes on
    from. FloatingPointError when the loss turned NaN/inf."""
    config, data = setup.config, setup.data
    backup_root = os.path.join(setup.run_dir, runs.BACKUP_DIR)
    history, previous = {}, None
    for stage in setup.stages[ltpa_stages.first_stage(setup.stages, backup_root):]:
        # The optimizer's variables belong to the distribution, as the model's.
        with setup.distribution.scope():
            optimizer = make_optimizer(
                data.steps_per_epoch,
                learning_rate=setup.settings["learning_rate_used"],
                momentum=config.momentum,
                weight_decay=config.weight_decay,
                weight_decay_mode=config.weight_decay_mode,
                decay_epochs=config.lr_decay_epochs,
                decay_factor=config.lr_decay_factor,
                schedule=config.lr_schedule,
                epochs=config.epochs,
                warmup_epochs=config.warmup_epochs,
                ema=config.ema,
                ema_momentum=config.ema_momentum,
            )
            ltpa_stages.compile_stage(
                setup.model, stage, optimizer, previous,
                label_mode=config.label_mode,
                jit_compile=setup.jit_compile,
                label_smoothing=config.label_smoothing,
            )
        for key, values in _fit_stage(setup, stage).history.items():
            history.setdefault(key, []).extend(values)
        previous = setup.model.optimizer
    return history


def _fit_stage(setup, stage):
    """`model.fit` over one stage's epochs with the run's callbacks."""
    config, distribution, run_dir = setup.config, setup.distribution, setup.run_dir
    backup_dir = ltpa_stages.backup_dir(os.path.join(run_dir, runs.BACKUP_DIR), stage)
    callbacks = ltpa_callbacks.make_callbacks(
        run_dir,
        epochs=config.epochs,
        overlay_images=setup.overlay_images,
        overlay_labels=setup.overlay_labels,
        class_names=setup.data.class_names,
        save_freq=config.save_freq,
        tensorboard=config.tensorboard,
        progress_bar=config.verbose != 0,
        # On a CPU a run can take days: say so after the first steps.
        steps_per_epoch=None if gpu_compute_capability() else setup.data.steps_per_epoch,
        backup_dir=backup_dir,
        ema=config.ema,
    )
    callbacks = ltpa_callbacks.distributed_callbacks(
        callbacks, run_dir, distribution, config.save_freq, backup_dir=backup_dir
    )
    with distribution.scope():
        history = setup.model.fit(
            setup.data.train,
            validation_data=setup.data.test,
            initial_epoch=stage.start,
            epochs=stage.end,
            steps_per_epoch=config.steps_per_epoch,
            callbacks=callbacks,
            class_weight=setup.data.class_weight,
            verbose=config.verbose if distribution.is_chief else 0,
            shuffle=False,  # The pipeline shuffles.
        )
    if setup.model.stop_training and any(
        not np.isfinite(v) for v in history.history.get("loss", [])[-1:]
    ):
        raise FloatingPointError(
            "Training stopped: the loss became NaN/inf (TerminateOnNaN). Try a "
            "lower --learning-rate or --precision float32."
        )
    return history


def _evaluate(setup):
    """Test loss and accuracy, with what metrics.json records beside them."""
    config = setup.config
    with setup.distribution.scope():
        metrics = setup.model.evaluate(setup.data.test, return_dict=True, verbose=0)
    metrics = {key: float(value) for key, value in metrics.items()}
    history = runs.read_history(os.path.join(setup.run_dir, runs.HISTORY_FILE))
    metrics.update(
        epochs=len(history),
        val_accuracy_milestones=runs.accuracy_milestones(history),
        test_examples=int(sum(int(np.shape(labels)[0]) for _, labels in setup.data.test)),
        class_names=setup.data.class_names,
        variant=config.variant,
        backbone=config.backbone,
        width_multiplier=config.width_multiplier,
        precision=setup.precision,
        backend=keras.backend.backend(),
    )
    return metrics


def _export(setup, model_path, epochs_trained):
    """The TF Serving export of the run: a new version, or the latest one
    when this call trained nothing."""
    config = setup.config
    export_root = config.export_dir or os.path.join(setup.run_dir, runs.EXPORT_DIR)
    existing = _latest_export(export_root, config.export_name)
    if epochs_trained == 0 and existing is not None:
        return existing  # Nothing new since the last export.
    # A distributed model is exported from its file, on one device.
    in_memory = keras.backend.backend() == "tensorflow" and (
        setup.distribution.tf_strategy is None
    )
    return export.export_saved_model(
        setup.model if in_memory else model_path,
        export_root,
        name=config.export_name,
        class_names=setup.data.class_names,
    )


def _latest_export(export_root, name):
    """The newest version folder of `<export_root>/<name>`, or None."""
    folder = os.path.join(export_root, name)
    versions = export.model_versions(folder)
    return os.path.join(folder, str(versions[-1])) if versions else None
