"""`TrainingConfig`: every option of one training run, declared and checked once.

Each field is declared with `keras_ltpa.train.options.option`: its default,
its `fit.py` flag and help text, the `--help` group it is listed under, and
its choices or number range. `keras_ltpa.cli.fit` builds its parser from
these fields and `TrainingConfig.validate` checks the same declarations, so
a new option is one field here. The data pipeline (which loads TensorFlow)
is imported only when the augmentation is checked, so `fit.py --help`
stays light.
"""

import dataclasses

from keras_ltpa.devices.precision import JIT_COMPILE
from keras_ltpa.devices.precision import PRECISIONS
from keras_ltpa.train.distribution import STRATEGIES
from keras_ltpa.train.optimizers import LR_SCHEDULES
from keras_ltpa.train.optimizers import PAPER_BATCH_SIZE
from keras_ltpa.train.optimizers import PAPER_EPOCHS
from keras_ltpa.train.optimizers import PAPER_LEARNING_RATE
from keras_ltpa.train.optimizers import PAPER_LR_DECAY_EPOCHS
from keras_ltpa.train.optimizers import PAPER_LR_DECAY_FACTOR
from keras_ltpa.train.optimizers import PAPER_MOMENTUM
from keras_ltpa.train.optimizers import PAPER_WEIGHT_DECAY
from keras_ltpa.train.optimizers import RECIPES
from keras_ltpa.train.optimizers import WEIGHT_DECAY_MODES
from keras_ltpa.train.optimizers import check_warmup
from keras_ltpa.train.options import FRACTION
from keras_ltpa.train.options import NON_NEGATIVE
from keras_ltpa.train.options import NON_NEGATIVE_INT
from keras_ltpa.train.options import POSITIVE
from keras_ltpa.train.options import POSITIVE_INT
from keras_ltpa.train.options import SHARE
from keras_ltpa.train.options import Range
from keras_ltpa.train.options import check_options
from keras_ltpa.train.options import option
from keras_ltpa.train.stages import check_backbone_settings
from keras_ltpa.train.stages import default_image_size
from keras_ltpa.variants import parse_variant

# Where the model's input normalisation comes from (`--pixel-stats`).
PIXEL_STATS = ("auto", "data", "cifar10")
# How `--class-weight` weighs the classes.
CLASS_WEIGHTS = ("balanced",)

# The groups of `fit.py --help`, in order, each with an optional paragraph.
OPTION_GROUPS = {
    "data": None,
    "model": None,
    "optimisation": None,
    "distribution": (
        "Several GPUs of one machine: --strategy mirrored (TensorFlow MirroredStrategy, or JAX "
        "DataParallel). Several machines: the JAX backend, one process per machine, each given "
        "the same --coordinator-address and --num-processes and its own --process-id; only "
        "process 0 writes the run directory."
    ),
    "output": None,
}


@dataclasses.dataclass
class TrainingConfig:
    """Everything a training run needs; each field is a `fit.py` flag.

    The fields are grouped as `fit.py --help` lists them (`OPTION_GROUPS`):
    data (`dataset` or `data_dir`, `image_size`, `augment`, ...), model
    (`variant`, `width_multiplier`, `dropout`), optimisation (the paper's
    defaults, see `keras_ltpa.train.optimizers`), distribution (see
    `resolve_distribution`; `batch_size` is per replica) and output (the
    run directory, backups, TensorBoard, the TF Serving export). A field's
    declaration (`field.metadata`: help, group, flag, choices, bounds) is
    what `fit.py --help` prints and what `validate` checks.

    Example:
    >>> config = TrainingConfig(data_dir="images", epochs=3, recipe="budget").validate()
    >>> config.lr_schedule, config.warmup_epochs, config.label_smoothing
    ('cosine', 2, 0.1)
    >>> TrainingConfig(image_size=48).validate()
    Traceback (most recent call last):
    ...
    ValueError: `image_size` must be a multiple of 32 (the VGG backbone pools five times); received 48.
    >>> TrainingConfig(data_dir="photos", backbone="resnet50").validate().image_size
    224
    """

    # Data.
    dataset: str | None = option(
        None,
        "tensorflow-datasets name: cifar10 (the default when no --data-dir), cifar100, "
        "svhn_cropped or any image-classification set with 'image' and 'label' features.",
        "data",
        exclusive="source",
    )
    data_dir: str | None = option(
        None,
        "image folder DIR with DIR/train/<class>/<image> and DIR/test/<class>/<image> "
        "(JPEG/PNG/BMP/GIF), or a single DIR/<class>/<image> with --validation-split; classes "
        "are the sorted folder names.",
        "data",
        exclusive="source",
    )
    validation_split: float | None = option(
        None,
        "hold out this share of each class of a single folder DIR/<class>/<image> (no train/ "
        "and test/ inside) for validation and the final test: a fixed, seeded split, recorded "
        "in config.json.",
        "data",
        bounds=SHARE,
    )
    tfds_data_dir: str | None = option(
        None,
        "where tensorflow-datasets keeps its files (default: its own, ~/tensorflow_datasets or "
        "$TFDS_DATA_DIR).",
        "data",
    )
    image_size: int | None = option(
        None,
        "side of the square images the model takes; other sizes are resized. Default: 32 for "
        "the VGG (a multiple of 32), 224 for other backbones (any size >= 32).",
        "data",
        bounds=POSITIVE_INT,
    )
    augment: str = option(
        "paper",
        "training augmentation: 'paper' (= crop,flip: random crop after 4-pixel zero padding "
        "and horizontal flip), 'none', or a comma list of crop, flip, randaugment, mixup, "
        "cutmix.",
        "data",
    )
    pixel_stats: str = option(
        "auto",
        "the model's input normalisation: data = the training split's per-channel mean/std "
        "(one pass, recorded in config.json); cifar10 = CIFAR-10's fixed values (the reference "
        "code's); auto = cifar10 for CIFAR-10, data for any other dataset. A pretrained "
        "backbone's own preprocessing replaces it.",
        "data",
        choices=PIXEL_STATS,
    )
    class_weight: str | None = option(
        None,
        "balanced: weigh each training example's loss by n_examples / (n_classes x "
        "n_examples of its class), scikit-learn's 'balanced', for unbalanced classes (not with "
        "mixup or cutmix).",
        "data",
        choices=CLASS_WEIGHTS,
    )
    cache: bool = option(
        False, "keep the decoded images in memory after the first epoch.", "data"
    )
    limit: int | None = option(
        None,
        "train on this many examples only (a fixed mix of classes).",
        "data",
        bounds=POSITIVE_INT,
    )
    test_limit: int | None = option(
        None,
        "validate and test on this many test examples only.",
        "data",
        bounds=POSITIVE_INT,
    )
    # Model.
    backbone: str = option(
        "vgg",
        "vgg (the paper's CIFAR VGG; alias vgg-cifar), a keras.applications name (resnet50, "
        "resnet50v2, efficientnetv2b0, convnexttiny, mobilenetv3small, ...: docs/training.md) "
        "or a keras-hub preset: a local preset folder, a preset name, or an hf:// or kaggle:// "
        "handle.",
        "model",
    )
    weights: str | None = option(
        None,
        "the backbone's starting weights: imagenet, preset (a keras-hub preset's own), none "
        "(random) or the PATH of a weights file. Default: imagenet for keras.applications, the "
        "preset's own for keras-hub, none for vgg.",
        "model",
    )
    attention_layers: str | None = option(
        None,
        "comma list of the layers whose outputs get an attention estimator: VGG block numbers "
        "(e.g. 4,5), else backbone layer names. Default: the variant's blocks (VGG), else the "
        "last layer at each of the strides 8, 16 and 32.",
        "model",
    )
    global_layer: str | None = option(
        None,
        "the backbone layer whose output (average-pooled) is the global feature g; default: "
        "the last layer at stride 32. Not for vgg.",
        "model",
    )
    variant: str = option(
        "att3-concat-pc",
        "paper variant: tokens att3|att2|noatt, concat|indep, pc|dp, softmax|sigmoid, "
        "before|after joined by '-'; 'noatt' is the plain VGG baseline.",
        "model",
    )
    width_multiplier: float = option(
        1.0,
        "width multiplier of every VGG layer (0.25 = a quarter of the channels, for small "
        "CPUs).",
        "model",
        flag="--width",
        bounds=POSITIVE,
    )
    dropout: float = option(
        0.0, "dropout rate in the VGG (the paper's: 0).", "model", bounds=FRACTION
    )
    # Optimisation.
    epochs: int = option(
        PAPER_EPOCHS, "epochs to train in all.", "optimisation", bounds=POSITIVE_INT
    )
    batch_size: int = option(
        PAPER_BATCH_SIZE,
        "examples per step on each replica (device); a step takes batch-size x replicas "
        "examples (see --strategy).",
        "optimisation",
        bounds=POSITIVE_INT,
    )
    learning_rate: float = option(
        PAPER_LEARNING_RATE, "initial SGD learning rate.", "optimisation", bounds=POSITIVE
    )
    momentum: float = option(
        PAPER_MOMENTUM, "SGD momentum.", "optimisation", bounds=NON_NEGATIVE
    )
    weight_decay: float = option(
        PAPER_WEIGHT_DECAY, "weight decay coefficient.", "optimisation", bounds=NON_NEGATIVE
    )
    weight_decay_mode: str = option(
        "coupled",
        "coupled: L2 added to the gradient before momentum, as PyTorch's SGD and the paper's "
        "code; decoupled: Keras' SGD weight_decay (about 10x weaker at momentum 0.9).",
        "optimisation",
        choices=WEIGHT_DECAY_MODES,
    )
    lr_decay_epochs: int = option(
        PAPER_LR_DECAY_EPOCHS,
        "epochs between learning-rate decays (0: constant rate).",
        "optimisation",
        bounds=NON_NEGATIVE_INT,
    )
    lr_decay_factor: float = option(
        PAPER_LR_DECAY_FACTOR,
        "learning-rate multiplier at each decay.",
        "optimisation",
        bounds=Range(float, 0, 1, low_open=True),
    )
    recipe: str = option(
        "paper",
        "paper: the step schedule above, no label smoothing (for the paper's 300 epochs); "
        "budget: linear warm-up into a cosine decay to 0 over --epochs and label smoothing "
        "0.1, for a short fixed budget (chosen by benchmarks/recipes.py). The three flags "
        "below override it.",
        "optimisation",
        choices=tuple(RECIPES),
    )
    lr_schedule: str | None = option(
        None,
        "step: --lr-decay-factor every --lr-decay-epochs; cosine: warm-up then cosine to 0 at "
        "the last epoch (default: the recipe's).",
        "optimisation",
        choices=LR_SCHEDULES,
    )
    warmup_epochs: int | None = option(
        None,
        "epochs of linear warm-up, cosine schedule (default: the recipe's, budget: 2).",
        "optimisation",
        bounds=NON_NEGATIVE_INT,
    )
    label_smoothing: float | None = option(
        None,
        "label smoothing in [0, 1) (default: the recipe's, budget: 0.1).",
        "optimisation",
        bounds=FRACTION,
    )
    ema: bool = option(
        False,
        "keep an exponential moving average of the weights (Keras' use_ema): validation, the "
        "checkpoints and model.keras use it; the backup keeps the raw weights and the average.",
        "optimisation",
    )
    ema_momentum: float = option(
        0.99, "the average's momentum per step, with --ema.", "optimisation", bounds=SHARE
    )
    freeze_backbone_epochs: int = option(
        0,
        "train epochs 1..N with the backbone frozen (the attention head and the classifier "
        "only), then every layer, the backbone's batch norm in inference mode and its rate "
        "scaled by --backbone-lr-multiplier. With 0 a pretrained backbone is fine-tuned that "
        "way from the start.",
        "optimisation",
        bounds=NON_NEGATIVE_INT,
    )
    backbone_lr_multiplier: float = option(
        0.1,
        "the backbone's learning rate as a fraction of the head's while it is fine-tuned "
        "(after --freeze-backbone-epochs, or throughout for a pretrained backbone).",
        "optimisation",
        bounds=POSITIVE,
    )
    steps_per_epoch: int | None = option(
        None,
        "optimizer steps per epoch (default: one pass over the training set); the data repeats "
        "as needed.",
        "optimisation",
        bounds=POSITIVE_INT,
    )
    precision: str = option(
        "auto",
        "dtype policy; auto: mixed_bfloat16 on GPUs with compute capability >= 8 and on CPUs "
        "with AMX (TensorFlow backend), mixed_float16 on 7.x GPUs, float32 otherwise "
        "(AVX512-BF16 alone trains slower in bfloat16).",
        "optimisation",
        choices=PRECISIONS,
    )
    jit_compile: str = option(
        "auto",
        "XLA compilation of the train step; auto: on for JAX, on for TensorFlow on a GPU (off "
        "on a CPU, where it is slower), off for torch.",
        "optimisation",
        choices=JIT_COMPILE,
    )
    seed: int | None = option(
        None,
        "random seed (weights, shuffling, augmentation); default: a random one, recorded in "
        "config.json.",
        "optimisation",
    )
    # Distribution.
    strategy: str = option(
        "auto",
        "auto: several processes when a process group is configured, else all local GPUs when "
        "there are several (JAX: all local devices), else one device; one_device; mirrored: "
        "all devices of this machine (TensorFlow: GPUs, or the logical CPU devices without "
        "one); multi_worker: several machines (JAX backend only; TensorFlow's "
        "MultiWorkerMirroredStrategy does not work with Keras 3's fit).",
        "distribution",
        choices=STRATEGIES,
    )
    lr_scaling: bool = option(
        False,
        "multiply --learning-rate by the number of replicas (the linear scaling rule, for a "
        "global batch that grows with the replicas).",
        "distribution",
    )
    coordinator_address: str | None = option(
        None,
        "HOST:PORT of process 0 (any free port there), the same on every process (default: "
        "$JAX_COORDINATOR_ADDRESS; found by JAX under SLURM or Open MPI).",
        "distribution",
    )
    num_processes: int | None = option(
        None,
        "number of processes training together (default: $JAX_NUM_PROCESSES, $SLURM_NTASKS or "
        "$OMPI_COMM_WORLD_SIZE; 1).",
        "distribution",
        bounds=POSITIVE_INT,
    )
    process_id: int | None = option(
        None,
        "this process' id, 0 .. N-1; 0 is the chief that writes the run directory (default: "
        "$JAX_PROCESS_ID, $SLURM_PROCID or $OMPI_COMM_WORLD_RANK).",
        "distribution",
    )
    # Output.
    output_dir: str = option(
        "runs/ltpa",
        "the run directory: checkpoints, backup, TensorBoard logs, history.csv, metrics.json, "
        "model.keras, saved_models/. Reuse it to resume.",
        "output",
    )
    save_freq: int | None = option(
        None,
        "also back up every N steps within an epoch (default: at the end of each epoch only).",
        "output",
        bounds=POSITIVE_INT,
    )
    tensorboard: bool = option(True, "write no TensorBoard logs.", "output")
    overlay_images: int = option(
        8,
        "test images in the attention grid logged to TensorBoard each epoch (0: none).",
        "output",
        bounds=NON_NEGATIVE_INT,
    )
    export: bool = option(
        True, "skip the TF Serving SavedModel export at the end.", "output"
    )
    export_dir: str | None = option(
        None,
        "TF Serving model root the SavedModel goes to, as "
        "<export-dir>/<export-name>/<version>/ (default: <output-dir>/saved_models).",
        "output",
    )
    export_name: str = option(
        "ltpa", "model name under the export root (TF Serving's model name).", "output"
    )
    verbose: int = option(
        1,
        "Keras fit verbosity: 1 progress bar, 2 one line per epoch, 0 silent (the summary line "
        "per epoch is always printed).",
        "output",
        choices=(0, 1, 2),
    )

    @classmethod
    def from_any(cls, config):
        """A `TrainingConfig` from itself, a dict or an argparse Namespace
        (unknown keys are ignored)."""
        if isinstance(config, cls):
            return dataclasses.replace(config)
        if not isinstance(config, dict):
            config = vars(config)
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def validate(self):
        """Fills in what the data source and the recipe imply, then checks
        every setting; returns the config.

        Raises:
            ValueError naming the first bad setting.
        """
        self._choose_source()
        # The recipe fills in what was not given; an explicit value wins (an
        # unknown recipe is reported by `check_options`).
        recipe = RECIPES[self.recipe] if self.recipe in tuple(RECIPES) else {}
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.image_size is None:
            self.image_size = default_image_size(self)
        check_options(self)
        self._check_combinations()
        return self

    def _choose_source(self):
        if self.dataset is None and self.data_dir is None:
            self.dataset = "cifar10"
        if self.dataset is not None and self.data_dir is not None:
            raise ValueError(
                "Give either a tensorflow-datasets name (dataset) or an image "
                f"folder (data_dir), not both; received dataset={self.dataset!r}, "
                f"data_dir={self.data_dir!r}."
            )

    def _check_combinations(self):
        """The rules a single field's declaration cannot state."""
        parse_variant(self.variant)
        self.augmentations  # Parsing the names is the check.
        check_backbone_settings(self)
        if self.validation_split is not None and self.data_dir is None:
            raise ValueError(
                "`validation_split` splits an image folder (data_dir, --data-dir); a "
                f"tensorflow-datasets set has its own splits; received dataset={self.dataset!r}."
            )
        if self.class_weight is not None and self.label_mode == "categorical":
            raise ValueError(
                f"`class_weight` weighs each example by its class, but augment={self.augment!r} "
                "mixes two classes into each example (Keras would weigh it by the larger share "
                "alone); drop mixup/cutmix or class_weight."
            )
        if self.lr_schedule == "cosine":
            check_warmup(self.epochs, self.warmup_epochs)

    @property
    def augmentations(self):
        """The training augmentations `augment` names, as a tuple in the
        pipeline's order (see `keras_ltpa.data.pipelines.parse_augment`)."""
        # Imported here: the pipeline module loads TensorFlow.
        from keras_ltpa.data import pipelines

        return pipelines.parse_augment(self.augment, training=True)

    @property
    def label_mode(self):
        """`"categorical"` (one-hot rows) when an augmentation mixes labels
        (mixup, cutmix), else `"int"`: what the pipelines yield and the loss
        expects."""
        from keras_ltpa.data.augmentation import resolve_label_mode

        return resolve_label_mode(self.augmentations)
