"""The paper's model on a GPU: Keras (JAX, XLA) against the PyTorch reference.

One prepared run for a machine with one GPU and no TensorFlow (JAX and
PyTorch with CUDA; Keras carried as a wheel): the full att3-concat-pc model
at batch 128 on NumPy arrays (no tf.data), training (`train_on_batch`:
forward, backward, SGD update) and inference (`predict_on_batch`), in
float32 and mixed_bfloat16, compiled with XLA; then the plain PyTorch
reference (`torch_reference.build_reference`) on the same GPU in float32 and
under bfloat16 autocast. Each configuration: `--warmup` untimed steps
(compilation), then `--steps` timed ones. Well under 10 minutes on an
H100/H200-class GPU.

Commands:

    KERAS_BACKEND=jax python benchmarks/gpu.py
    KERAS_BACKEND=jax python benchmarks/gpu.py --smoke     # tiny, runs on a CPU too

Writes `benchmarks/results/gpu_<backend>.json`.
"""

import sys

import measure
from versus_torch import TORCH_PRECISIONS
from torch_reference import torch_steps

KERAS_PRECISIONS = ("float32", "mixed_bfloat16")


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 4, 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras
    import numpy as np

    backend = keras.backend.backend()
    width = measure.model_width(args)
    images, labels = measure.random_batch(args.batch_size)
    result = {
        "benchmark": "gpu",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "input": "NumPy arrays",
        },
        "keras": {},
        "torch": {},
    }
    for precision in KERAS_PRECISIONS:
        keras.config.set_dtype_policy(precision)
        keras.utils.set_random_seed(0)
        model = measure.training_model(width_multiplier=width, jit_compile="on")
        entry = {}
        for mode, step in (
            ("train", lambda: model.train_on_batch(images, labels)),
            ("inference", lambda: np.asarray(model.predict_on_batch(images))),
        ):
            timing = measure.time_steps(step, steps=args.steps, warmup=args.warmup)
            measure.add_rates(timing, args.batch_size)
            entry[mode] = timing
        result["keras"][precision] = entry
        print(f"keras {backend} {precision}: train {entry['train']['images_per_second']:.1f} "
              f"img/s, inference {entry['inference']['images_per_second']:.1f} img/s")
    keras.config.set_dtype_policy("float32")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        result["settings"]["torch_device"] = device
        for precision in TORCH_PRECISIONS:
            train, inference = torch_steps(width, args.batch_size, precision, device)

            def synchronized(call):
                def step():
                    out = call()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return out
                return step

            entry = {}
            for mode, step in (("train", train), ("inference", inference)):
                timing = measure.time_steps(synchronized(step), steps=args.steps, warmup=args.warmup)
                measure.add_rates(timing, args.batch_size)
                entry[mode] = timing
            result["torch"][precision] = entry
            print(f"torch {device} {precision}: train {entry['train']['images_per_second']:.1f} "
                  f"img/s, inference {entry['inference']['images_per_second']:.1f} img/s")
    result["memory"] = measure.memory_record()
    return measure.finish(result, f"gpu_{backend}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
