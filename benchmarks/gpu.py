"""The paper's model on a GPU: Keras (JAX, XLA) against the PyTorch reference.

One prepared run for a machine with one GPU and no TensorFlow (JAX and
PyTorch with CUDA): the full att3-concat-pc model at batch 128 on NumPy
arrays (no tf.data), training (`train_on_batch`: forward, backward, SGD
update) and inference (`predict_on_batch`), in float32 and mixed_bfloat16,
compiled with XLA; then the plain PyTorch reference
(`versus_torch.build_reference`) on the same GPU in float32 and under
bfloat16 autocast. Each configuration: `--warmup` untimed steps
(compilation), then `--steps` timed ones; one after the other in this
process (a GPU is not shared between workers). Well under 10 minutes on an
H100/H200-class GPU.

Commands:

    KERAS_BACKEND=jax python benchmarks/gpu.py
    KERAS_BACKEND=jax python benchmarks/gpu.py --smoke     # tiny, runs on a CPU too

Writes `benchmarks/results/gpu_<backend>.json`.
"""

import sys

import measure
from versus_torch import TORCH_PRECISIONS
from versus_torch import torch_steps

KERAS_PRECISIONS = ("float32", "mixed_bfloat16")


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--batch-size", type=measure.positive(int), default=128)
    parser.add_argument("--steps", type=measure.positive(int), default=20)
    parser.add_argument("--warmup", type=measure.positive(int), default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 4, 1, 1
    return args


def rates(steps, args):
    """{mode: timing with images/s} of {mode: step}."""
    timings = {}
    for mode, step in steps.items():
        timing = measure.time_steps(step, steps=args.steps, warmup=args.warmup)
        timing["images_per_second"] = args.batch_size / timing["median_seconds"]
        timing["images_per_second_best"] = args.batch_size / timing["best_seconds"]
        timings[mode] = timing
    print(" ".join(f"{mode} {t['images_per_second']:.1f} img/s" for mode, t in timings.items()))
    return timings


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    import keras
    import numpy as np

    width = measure.SMOKE_WIDTH if args.smoke else 1.0
    images, labels = measure.random_batch(args.batch_size)
    result = {
        "benchmark": "gpu", "smoke": args.smoke,
        "settings": {"model": "att3-concat-pc", "width_multiplier": width,
                     "batch_size": args.batch_size, "steps": args.steps,
                     "warmup": args.warmup, "input": "NumPy arrays"},
        "keras": {}, "torch": {},
    }
    for precision in KERAS_PRECISIONS:
        keras.config.set_dtype_policy(precision)
        keras.utils.set_random_seed(0)
        model = measure.training_model(width_multiplier=width, jit_compile="on")
        print(f"keras {keras.backend.backend()} {precision}:", end=" ")
        result["keras"][precision] = rates({
            "train": lambda: model.train_on_batch(images, labels),
            "inference": lambda: np.asarray(model.predict_on_batch(images))}, args)
    keras.config.set_dtype_policy("float32")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        device = result["settings"]["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        for precision in TORCH_PRECISIONS:  # each step waits for its result
            steps, _ = torch_steps(width, args.batch_size, 32, precision, device)
            print(f"torch {device} {precision}:", end=" ")
            result["torch"][precision] = rates(steps, args)
    result["memory"] = {"peak_rss_mib": measure.peak_rss_mib()}
    return measure.finish(result, f"gpu_{keras.backend.backend()}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
