"""How a run is spread over devices and processes (`--strategy`), and what
only the chief process does.

    TensorFlow  `tf.distribute.MirroredStrategy` over this machine's GPUs (its
                logical CPU devices when it has no GPU). Several machines are
                refused: Keras 3's `fit` fails under
                `MultiWorkerMirroredStrategy` (keras-team/keras#20585).
    JAX         `keras.distribution.DataParallel` over the local devices, or
                over the devices of several processes (machines) joined by
                `jax.distributed`: the path for several machines.
    torch       one device.

`--batch-size` is per replica (device): a step takes `batch_size * replicas`
examples, the global batch. With `--lr-scaling` the learning rate is
multiplied by the number of replicas (the linear scaling rule). The process
group of a multi-process run (`ProcessGroup`, `process_group_settings`,
`initialize_processes`) is read in `keras_ltpa.train.processes`.
"""

import contextlib
import json
import os

import keras
import numpy as np

# The process group lives in its own module; its names stay importable here.
from keras_ltpa.train.processes import CLUSTER_MANAGERS  # noqa: F401
from keras_ltpa.train.processes import COORDINATOR_ADDRESS_ENV  # noqa: F401
from keras_ltpa.train.processes import NUM_PROCESSES_ENV  # noqa: F401
from keras_ltpa.train.processes import PROCESS_ID_ENV  # noqa: F401
from keras_ltpa.train.processes import ProcessGroup  # noqa: F401
from keras_ltpa.train.processes import initialize_processes
from keras_ltpa.train.processes import process_group_settings
from keras_ltpa.utils.checks import check_choice
from keras_ltpa.utils.scopes import no_distribution

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")

TF_MULTI_WORKER_MESSAGE = (
    "Training on several machines is not available with the TensorFlow "
    "backend: Keras 3's model.fit fails under "
    "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585). Use "
    "the JAX backend, one process per machine: KERAS_BACKEND=jax python "
    "training/fit.py --strategy multi_worker --coordinator-address HOST:PORT "
    "--num-processes N --process-id I ... (README, section 'Distributed "
    "training'). For several GPUs in one machine use --strategy mirrored."
)


class TrainingDistribution:
    """How one run is spread over devices and processes: a resolved `--strategy`.

    Made by `resolve_distribution`. Build, compile and fit the model inside
    `scope()`; write files only where `is_chief`.

    Attributes:
        strategy: `"one_device"`, `"mirrored"` (several devices of one
            machine) or `"multi_worker"` (several processes).
        backend: the Keras backend.
        num_replicas: model replicas in sync (devices, all processes).
        tf_strategy: the `tf.distribute.Strategy` (TensorFlow), else None.
        keras_distribution: the `keras.distribution.DataParallel` (JAX),
            else None.
        process_group: the `ProcessGroup` of a multi-process run, else None.
    """

    def __init__(
        self,
        strategy,
        backend,
        num_replicas=1,
        tf_strategy=None,
        keras_distribution=None,
        process_group=None,
    ):
        self.strategy = strategy
        self.backend = backend
        self.num_replicas = int(num_replicas)
        self.tf_strategy = tf_strategy
        self.keras_distribution = keras_distribution
        self.process_group = process_group

    @property
    def num_processes(self):
        return self.process_group.num_processes if self.process_group else 1

    @property
    def is_chief(self):
        """Whether this process writes the run directory (process 0)."""
        return self.process_group is None or self.process_group.process_id == 0

    def global_batch_size(self, batch_size):
        """Examples per step over all replicas for a per-replica `batch_size`."""
        return int(batch_size) * self.num_replicas

    def scope(self):
        """The context in which to build, compile, fit and evaluate."""
        if self.tf_strategy is not None:
            return self.tf_strategy.scope()
        if self.keras_distribution is not None:
            return self.keras_distribution.scope()
        return contextlib.nullcontext()

    def shared_seed(self, seed):
        """`seed` as process 0 has it, on every process: all processes must
        shuffle alike (Keras gives each process its own slice of every global
        batch) and initialise the same weights."""
        if self.num_processes == 1:
            return seed
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int32(seed)))

    def describe(self):
        """A JSON-able summary for the run's config.json."""
        engine = None
        if self.tf_strategy is not None:
            engine = f"tf.distribute.{type(self.tf_strategy).__name__}"
        elif self.keras_distribution is not None:
            engine = f"keras.distribution.{type(self.keras_distribution).__name__}"
        return {
            "strategy": self.strategy,
            "engine": engine,
            "replicas": self.num_replicas,
            "processes": self.num_processes,
            "process_group_source": (
                self.process_group.source if self.process_group else None
            ),
        }

    def __repr__(self):
        return (
            f"TrainingDistribution(strategy={self.strategy!r}, "
            f"backend={self.backend!r}, num_replicas={self.num_replicas}, "
            f"num_processes={self.num_processes})"
        )


def resolve_distribution(
    strategy="auto", *, coordinator_address=None, num_processes=None, process_id=None,
    backend=None, environ=None,
):
    """Chooses the engine for `--strategy` on the current backend.

    `"auto"`: several processes when a process group is configured (JAX),
    else every local device when there are several (TensorFlow: GPUs
    only), else one device. `"one_device"`: the default device.
    `"mirrored"`: every device of this machine (TensorFlow:
    `MirroredStrategy` over the GPUs, or over the logical CPU devices when
    there is no GPU; JAX: `DataParallel` over `jax.local_devices()`).
    `"multi_worker"`: several processes, one per machine (JAX only, see
    `process_group_settings`); this calls `jax.distributed.initialize`, so
    it must come before any JAX computation in the process.

    Args:
        strategy: one of `STRATEGIES`.
        coordinator_address, num_processes, process_id: the process group
            (see `process_group_settings`; also read from the environment).
        backend: the Keras backend (default: the current one).
        environ: the environment (default `os.environ`).

    Returns:
        A `TrainingDistribution`.

    Raises:
        ValueError: an unknown strategy, a strategy the backend cannot run
            (TensorFlow multi-worker: see `TF_MULTI_WORKER_MESSAGE`), or bad
            process settings.

    Example:
    >>> from keras_ltpa import build_model
    >>> distribution = resolve_distribution("one_device")
    >>> with distribution.scope():
    ...     model = build_model(10, width_multiplier=0.0625)
    >>> distribution.num_replicas, distribution.global_batch_size(128)
    (1, 128)
    """
    check_choice("strategy", strategy, STRATEGIES)
    backend = backend or keras.backend.backend()
    environ = os.environ if environ is None else environ
    group = process_group_settings(coordinator_address, num_processes, process_id, environ)
    if backend == "tensorflow":
        return _tensorflow_distribution(strategy, group, environ)
    if backend == "jax":
        return _jax_distribution(strategy, group)
    if strategy in ("mirrored", "multi_worker") or group is not None:
        raise ValueError(
            f"--strategy {strategy}"
            + (f" with {group.num_processes} processes" if group else "")
            + f" is not available with the {backend} backend: use "
            "KERAS_BACKEND=tensorflow (several GPUs of one machine) or "
            "KERAS_BACKEND=jax (several GPUs, several machines)."
        )
    return TrainingDistribution("one_device", backend)


def _tf_config_workers(environ):
    """Number of tasks in a TF_CONFIG cluster (0 when there is none)."""
    text = environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError):
        return 0
    return sum(len(tasks) for tasks in cluster.values())


def _tensorflow_distribution(strategy, group, environ):
    if strategy == "multi_worker" or group is not None or _tf_config_workers(environ) > 1:
        raise ValueError(TF_MULTI_WORKER_MESSAGE)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "one_device" or (strategy == "auto" and len(gpus) < 2):
        return TrainingDistribution("one_device", "tensorflow")
    devices = [device.name for device in gpus] or [
        device.name for device in tf.config.list_logical_devices("CPU")
    ]
    mirrored = tf.distribute.MirroredStrategy(devices)
    return TrainingDistribution(
        "mirrored",
        "tensorflow",
        num_replicas=mirrored.num_replicas_in_sync,
        tf_strategy=mirrored,
    )


def _jax_distribution(strategy, group):
    import jax

    if group is not None:
        if strategy in ("one_device", "mirrored"):
            raise ValueError(
                f"--strategy {strategy} trains in one process, but "
                f"{group.num_processes} processes are configured ({group.source}); "
                "use --strategy multi_worker (or auto)."
            )
        initialize_processes(group)
        devices = jax.devices()
        name = "multi_worker"
    else:
        if strategy == "multi_worker":
            raise ValueError(
                "--strategy multi_worker needs the process group: "
                "--coordinator-address HOST:PORT, --num-processes N and "
                "--process-id I on each process (or JAX_COORDINATOR_ADDRESS, "
                "JAX_NUM_PROCESSES, JAX_PROCESS_ID, or a SLURM / Open MPI launch)."
            )
        devices = jax.local_devices()
        if strategy == "one_device" or (strategy == "auto" and len(devices) < 2):
            return TrainingDistribution("one_device", "jax")
        name = "mirrored"
    data_parallel = keras.distribution.DataParallel(devices=devices)
    return TrainingDistribution(
        name,
        "jax",
        num_replicas=len(devices),
        keras_distribution=data_parallel,
        process_group=group,
    )


def scaled_learning_rate(learning_rate, distribution, lr_scaling=False):
    """The learning rate to train with: `learning_rate * replicas` with
    `lr_scaling` (the linear scaling rule for a global batch that grows with
    the replicas), else `learning_rate`."""
    if lr_scaling:
        return float(learning_rate) * distribution.num_replicas
    return float(learning_rate)


def check_jit_compile(jit_compile, distribution):
    """`--jit-compile` under `distribution`: XLA cannot compile a
    `MirroredStrategy` step (it spans devices; TensorFlow's XLA known issue
    "tf.Variable on a different device"), so "auto" turns it off there and
    "on" is refused."""
    if distribution.tf_strategy is None or distribution.num_replicas < 2:
        return jit_compile
    if jit_compile in (True, "on"):
        raise ValueError(
            "--jit-compile on cannot be used with --strategy mirrored on the "
            "TensorFlow backend (XLA cannot compile a step spanning several "
            "devices); use --jit-compile auto or off."
        )
    return "off"


@contextlib.contextmanager
def outside_distribution():
    """Runs the body with no Keras distribution active (JAX).

    For what one process does alone, like the chief writing a `.keras` file:
    Keras' saving creates a throwaway optimizer, and under a multi-process
    distribution creating a variable is a step every process must take.
    """
    if keras.backend.backend() != "jax":
        yield
        return
    with no_distribution():
        yield
