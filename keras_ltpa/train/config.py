"""`TrainingConfig`: every option of one training run, checked once."""

import dataclasses

from keras_ltpa.data import pipelines as ltpa_data
from keras_ltpa.devices.precision import JIT_COMPILE
from keras_ltpa.devices.precision import PRECISIONS
from keras_ltpa.train.distribution import STRATEGIES
from keras_ltpa.train.losses import compile_model  # noqa: F401  (re-exported)
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
from keras_ltpa.utils.checks import check_choice
from keras_ltpa.variants import parse_variant

# Where the model's input normalisation comes from (`--pixel-stats`).
PIXEL_STATS = ("auto", "data", "cifar10")


@dataclasses.dataclass
class TrainingConfig:
    """Everything a training run needs; `training/fit.py` flags map 1:1.

    Data: `dataset` (a tensorflow-datasets name) or `data_dir` (an image
    folder), `image_size`, `augment`, `cache`, `limit`/`test_limit`
    (examples), `tfds_data_dir`, `pixel_stats` (see `PIXEL_STATS`).
    Model: `variant`, `width_multiplier`, `dropout`.
    Optimisation: the paper's defaults (see the module docstring),
    `steps_per_epoch`, `precision`, `jit_compile`, `seed`.
    Distribution (see `resolve_distribution`): `strategy`, `lr_scaling`,
    `coordinator_address`, `num_processes`, `process_id`; `batch_size` is
    per replica.
    Output: `output_dir` (the run directory), `save_freq` (steps between
    backups; None = every epoch), `tensorboard`, `overlay_images` (images
    in the TensorBoard attention grid), `export`, `export_dir` (TF Serving
    model root; default `<output_dir>/saved_models`), `export_name`,
    `verbose`.
    """

    # Data.
    dataset: str | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    image_size: int = 32
    augment: str = "paper"
    pixel_stats: str = "auto"
    cache: bool = False
    limit: int | None = None
    test_limit: int | None = None
    # Model.
    variant: str = "att3-concat-pc"
    width_multiplier: float = 1.0
    dropout: float = 0.0
    # Optimisation.
    epochs: int = PAPER_EPOCHS
    batch_size: int = PAPER_BATCH_SIZE
    learning_rate: float = PAPER_LEARNING_RATE
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY
    weight_decay_mode: str = "coupled"
    lr_decay_epochs: int = PAPER_LR_DECAY_EPOCHS
    lr_decay_factor: float = PAPER_LR_DECAY_FACTOR
    recipe: str = "paper"
    lr_schedule: str | None = None
    warmup_epochs: int | None = None
    label_smoothing: float | None = None
    steps_per_epoch: int | None = None
    precision: str = "auto"
    jit_compile: str = "auto"
    seed: int | None = None
    # Distribution.
    strategy: str = "auto"
    lr_scaling: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    # Output.
    output_dir: str = "runs/ltpa"
    save_freq: int | None = None
    tensorboard: bool = True
    overlay_images: int = 8
    export: bool = True
    export_dir: str | None = None
    export_name: str = "ltpa"
    verbose: int = 1

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
        """Raises ValueError naming the first bad setting."""
        if self.dataset is None and self.data_dir is None:
            self.dataset = "cifar10"
        if self.dataset is not None and self.data_dir is not None:
            raise ValueError(
                "Give either a tensorflow-datasets name (dataset) or an image "
                f"folder (data_dir), not both; received dataset={self.dataset!r}, "
                f"data_dir={self.data_dir!r}."
            )
        parse_variant(self.variant)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("jit_compile", self.jit_compile, JIT_COMPILE)
        check_choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("pixel_stats", self.pixel_stats, PIXEL_STATS)
        check_choice("recipe", self.recipe, tuple(RECIPES))
        # The recipe fills in what was not given; an explicit flag wins.
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        ltpa_data.parse_augment(self.augment, training=True)
        positive_ints = ("image_size", "epochs", "batch_size")
        optional_positive_ints = ("limit", "test_limit", "steps_per_epoch", "save_freq")
        for name in positive_ints + optional_positive_ints:
            value = getattr(self, name)
            if value is None and name in optional_positive_ints:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
        if self.image_size % 32:
            raise ValueError(
                f"`image_size` must be a multiple of 32 (the VGG backbone pools "
                f"five times); received {self.image_size}."
            )
        for name in ("learning_rate", "width_multiplier"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0; received {getattr(self, name)!r}.")
        for name in ("momentum", "weight_decay", "lr_decay_epochs", "overlay_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0; received {getattr(self, name)!r}.")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(
                f"`lr_decay_factor` must be in (0, 1]; received {self.lr_decay_factor!r}."
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1); received {self.dropout!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1); received {self.label_smoothing!r}."
            )
        if self.lr_schedule == "cosine" and not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"`warmup_epochs` must be >= 0 and < epochs ({self.epochs}); "
                f"received {self.warmup_epochs!r}."
            )
        return self
