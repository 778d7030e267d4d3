"""The processes (usually one per machine) that train one model together.

`process_group_settings` reads the multi-process settings of a run from the
`--coordinator-address`, `--num-processes` and `--process-id` flags or the
environment (JAX's and Keras' variables, a SLURM step or an Open MPI
launch); `initialize_processes` joins this process to the group with
`jax.distributed`. `keras_ltpa.train.distribution` builds the JAX
`DataParallel` of a multi-process run on top of them.
"""

import dataclasses
import os

# Multi-process settings are read from these environment variables when no
# flag gives them (first found wins): JAX's own, then Keras' (see
# `keras.distribution.initialize`). JAX itself also recognises SLURM (srun),
# Open MPI (mpirun) and Kubernetes launches when a setting is left unset.
COORDINATOR_ADDRESS_ENV = ("JAX_COORDINATOR_ADDRESS", "KERAS_DISTRIBUTION_JOB_ADDRESSES")
NUM_PROCESSES_ENV = ("JAX_NUM_PROCESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
PROCESS_ID_ENV = ("JAX_PROCESS_ID", "KERAS_DISTRIBUTION_PROCESS_ID")
# Cluster managers: (name, number of processes, this process' id, a variable
# present only in a launched step).
CLUSTER_MANAGERS = (
    ("SLURM", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_STEP_NODELIST"),
    ("Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """The processes (usually one per machine) that train one model together.

    Attributes:
        coordinator_address: `"host:port"` of process 0's coordination
            service, or None to let `jax.distributed` find it (SLURM, Open MPI).
        num_processes: number of processes, > 1.
        process_id: this process' rank in `[0, num_processes)`; 0 is the chief.
        source: where the settings came from (for the run's config.json).
    """

    coordinator_address: str | None
    num_processes: int
    process_id: int
    source: str


def _first_env(environ, names):
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return value, name
    return None, None


def _as_int(value, what, where):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer; received {value!r} ({where}).")


def _cluster_manager(environ):
    """The entry of `CLUSTER_MANAGERS` that launched this process, or None."""
    for manager in CLUSTER_MANAGERS:
        if manager[3] in environ and manager[1] in environ:
            return manager
    return None


def _read_count(value, environ, names, fallback, what, sources):
    """An integer setting: `value` when given, else the first of `names` set
    in the environment, else the variable `fallback` (a cluster manager's).
    Adds the variable it came from to `sources`."""
    if value is not None:
        return value
    value, name = _first_env(environ, names)
    if name is None and fallback is not None and fallback in environ:
        value, name = environ[fallback], fallback
    if name:
        sources.add(name)
        value = _as_int(value, what, name)
    return value


def _check_single_process(coordinator_address, num_processes, process_id):
    if num_processes is None and (coordinator_address is not None or process_id is not None):
        raise ValueError(
            "A coordinator address or process id was given without the "
            "number of processes: give --num-processes (or JAX_NUM_PROCESSES)."
        )
    if process_id not in (None, 0):
        raise ValueError(f"`process_id` must be 0 with one process; received {process_id!r}.")


def _check_group(coordinator_address, num_processes, process_id, manager):
    if not isinstance(num_processes, int) or isinstance(num_processes, bool) or num_processes < 1:
        raise ValueError(
            f"`num_processes` must be a positive integer; received {num_processes!r}."
        )
    if process_id is None:
        raise ValueError(
            f"{num_processes} processes but no process id: give each process "
            "--process-id 0 .. N-1 (or JAX_PROCESS_ID); 0 is the chief."
        )
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"`process_id` must be in [0, {num_processes - 1}] for "
            f"{num_processes} processes; received {process_id!r}."
        )
    if coordinator_address is None and manager is None:
        raise ValueError(
            f"{num_processes} processes but no coordinator address: give "
            "--coordinator-address HOST:PORT (process 0's host, a free port; "
            "or JAX_COORDINATOR_ADDRESS), the same on every process."
        )
    if coordinator_address is not None:
        host, _, port = str(coordinator_address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                "`coordinator_address` must be HOST:PORT (e.g. 10.0.0.1:8476); "
                f"received {coordinator_address!r}."
            )


def process_group_settings(
    coordinator_address=None, num_processes=None, process_id=None, environ=None
):
    """The multi-process settings of this run, or None for one process.

    Each setting comes from its argument (the `--coordinator-address`,
    `--num-processes`, `--process-id` flags) when given, else from the
    environment: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
    `JAX_PROCESS_ID`, then Keras' `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
    `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`, then
    a SLURM step (`SLURM_NTASKS`, `SLURM_PROCID`) or an Open MPI launch
    (`OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_RANK`), whose coordinator
    address `jax.distributed` works out itself.

    Args:
        coordinator_address: `"host:port"` of process 0 (any free port there).
        num_processes: the number of processes.
        process_id: this process' id, 0 .. num_processes - 1.
        environ: the environment (default `os.environ`).

    Returns:
        A `ProcessGroup`, or None when there is one process.

    Raises:
        ValueError naming the missing or bad setting.

    Example:
    >>> process_group_settings("10.0.0.1:8476", 2, 1)
    ProcessGroup(coordinator_address='10.0.0.1:8476', num_processes=2, process_id=1, source='flags')
    >>> process_group_settings(environ={"SLURM_NTASKS": "4", "SLURM_PROCID": "3",
    ...                                 "SLURM_STEP_NODELIST": "n[1-4]"}).source
    'SLURM'
    """
    environ = os.environ if environ is None else environ
    sources = set()
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        sources.add("flags")
    if coordinator_address is None:
        coordinator_address, name = _first_env(environ, COORDINATOR_ADDRESS_ENV)
        if name:
            sources.add(name)
            # Keras' variable lists every job; the first is the coordinator.
            coordinator_address = coordinator_address.split(",")[0].strip()
    manager = _cluster_manager(environ)
    num_processes = _read_count(
        num_processes, environ, NUM_PROCESSES_ENV, manager and manager[1],
        "The number of processes", sources,
    )
    process_id = _read_count(
        process_id, environ, PROCESS_ID_ENV, manager and manager[2], "The process id", sources
    )
    if num_processes is None or num_processes == 1:
        _check_single_process(coordinator_address, num_processes, process_id)
        return None
    _check_group(coordinator_address, num_processes, process_id, manager)
    if manager is not None and not sources - {manager[1], manager[2]}:
        source = manager[0]
    else:
        source = ", ".join(sorted(sources))
    return ProcessGroup(coordinator_address, num_processes, process_id, source)


def initialize_processes(group):
    """Joins this process to `group` with `jax.distributed.initialize`.

    Must run before any JAX computation of the process. On CPUs the
    cross-process collectives go through gloo (TCP); GPUs use NCCL.
    A second call in the same process is a no-op.

    Example:
    >>> group = process_group_settings("10.0.0.1:8476", 2, 0)
    >>> initialize_processes(group)  # doctest: +SKIP
    """
    import jax

    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
    )
