"""Keras against the plain PyTorch reference, side by side on one machine.

The speed targets are ratios to the PyTorch reference network
(`torch_reference.build_reference`, the paper's model in plain PyTorch) on
the same machine at the same time. Each configuration runs in a worker
process of its own (`measure.StepWorker`: two frameworks in one process
slow each other with their spinning thread pools), started by this script,
which interleaves their steps: the Keras model as `training/fit.py` compiles it (`measure.training_model`,
the current backend, `--precision auto`'s choice for this machine unless
`--keras-precision`), and the PyTorch model in each of `--torch-precisions`
(float32; bfloat16 autocast). Their training steps (forward, backward, SGD
update), then their inference steps, run in interleaved rounds
(`measure.interleaved_rounds`), so a busy machine slows all of them alike;
the ratio is taken round by round against the fastest PyTorch precision of
that round and its median reported:

    ratio = min(torch step times of the round) / Keras step time

Targets: training >= 1.1, inference >= 1.2. The CPU model and its ISA are
recorded (`environment.machine`), and the file name carries a CPU tag, so
results from several machine kinds sit side by side in `results/`.

Commands (the full model at batch 32, and width 0.25 at batch 128):

    KERAS_BACKEND=tensorflow python benchmarks/versus_torch.py
    KERAS_BACKEND=tensorflow python benchmarks/versus_torch.py --width 0.25 --batch-size 128
    KERAS_BACKEND=jax python benchmarks/versus_torch.py --smoke

Writes `benchmarks/results/versus_torch_<backend>_w<width>_b<batch>_<cpu>.json`.
"""

import os
import re
import statistics
import sys
import time

import measure
from torch_reference import torch_steps

TORCH_PRECISIONS = ("float32", "bfloat16_autocast")


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--keras-precision", default="auto",
        help="the Keras dtype policy (default: what --precision auto picks here)",
    )
    parser.add_argument(
        "--torch-precisions", default=",".join(TORCH_PRECISIONS),
        help="comma list of: " + ", ".join(TORCH_PRECISIONS),
    )
    args = parser.parse_args(argv)
    args.torch_precisions = [p for p in args.torch_precisions.split(",") if p]
    unknown = set(args.torch_precisions) - set(TORCH_PRECISIONS)
    if unknown:
        parser.error(f"unknown --torch-precisions {sorted(unknown)}")
    if args.smoke:
        args.width, args.batch_size, args.rounds, args.warmup = 0.0625, 4, 2, 1
    return args


def cpu_tag(cpu_model):
    """A short file-name tag for a CPU model string."""
    words = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", cpu_model).split()
    return "-".join(words[:3]).lower() or "cpu"


def keras_steps(width, batch_size, precision):
    """A worker's Keras steps: the model as `training/fit.py` compiles it."""
    import keras

    from keras_ltpa import cpu_defaults
    from keras_ltpa.devices import choose_precision

    precision = choose_precision("auto") if precision == "auto" else precision
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = measure.training_model(width_multiplier=width)
    images, labels = measure.random_batch(batch_size)
    steps = {
        "train": lambda: model.train_on_batch(images, labels),
        "inference": lambda: model.predict_on_batch(images),
    }
    info = {
        "label": f"keras {keras.backend.backend()} {precision}",
        "precision": precision,
        "jit_compile": bool(model.jit_compile),
        "cpu_kernels": cpu_defaults.describe(),
    }
    return steps, info


def torch_worker_steps(width, batch_size, precision):
    """A worker's PyTorch reference steps at one precision."""
    import torch

    train, inference = torch_steps(width, batch_size, precision)
    info = {"label": f"torch {precision}", "torch_threads": torch.get_num_threads()}
    return {"train": train, "inference": inference}, info


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    sizes = {"width": args.width, "batch_size": args.batch_size}
    # One process per framework (see measure.StepWorker), driven from here.
    workers = [measure.StepWorker(
        "versus_torch:keras_steps", dict(sizes, precision=args.keras_precision),
        env={"KERAS_BACKEND": backend},
    )]
    for torch_precision in args.torch_precisions:
        workers.append(measure.StepWorker(
            "versus_torch:torch_worker_steps", dict(sizes, precision=torch_precision)
        ))
    keras_label = workers[0].info["label"]
    result = {
        "benchmark": "versus_torch",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": args.width,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "keras_precision": workers[0].info["precision"],
            "keras_jit_compile": workers[0].info["jit_compile"],
            "torch_precisions": args.torch_precisions,
            "processes": "one per framework configuration, steps interleaved by the parent",
        },
        "workers": {worker.info["label"]: worker.info for worker in workers},
        "targets": {"train": 1.1, "inference": 1.2},
    }
    for mode in ("train", "inference"):
        calls = {worker.info["label"]: worker.step(mode) for worker in workers}
        warm = {}
        for label, call in calls.items():  # tracing, compilation, allocator warm-up
            start = time.perf_counter()
            for _ in range(args.warmup):
                call()
            warm[label] = round(time.perf_counter() - start, 3)
        times = measure.interleaved_rounds(calls, args.rounds)
        torch_labels = [label for label in calls if label.startswith("torch")]
        rates = {
            label: round(args.batch_size / statistics.median(t), 3) for label, t in times.items()
        }
        best_torch = max(torch_labels, key=rates.get)
        result[mode] = {
            "images_per_second": rates,
            "step_seconds": {label: [round(x, 4) for x in t] for label, t in times.items()},
            "warmup_seconds": warm,
            "torch_best": best_torch,
            "ratio_to_torch_best": round(measure.round_ratios(times, keras_label, torch_labels), 3),
        }
        print(
            f"{mode:9s} " + "  ".join(f"{label} {rate:.2f} img/s" for label, rate in rates.items())
            + f"  ratio {result[mode]['ratio_to_torch_best']:.2f} (target {result['targets'][mode]})"
        )
    for worker in workers:
        worker.close()
    environment_cpu = measure.environment(backend)["machine"]["cpu"]
    name = f"versus_torch_{backend}_w{args.width:g}_b{args.batch_size}_{cpu_tag(environment_cpu)}"
    return measure.finish(result, name, args, load_at_start, backend=backend)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
