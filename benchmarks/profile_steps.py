"""Where the time of a training step and of an inference step goes (TensorFlow).

Runs a few steps of the paper's model (att3-concat-pc, 32x32) under the
TensorFlow profiler, reads the trace it writes (`*.xplane.pb`, parsed with
the protobuf module that ships with TensorFlow, no TensorBoard needed) and
adds up the time of every TensorFlow op:

- by op type (`Conv2D`, `Conv2DBackpropFilter`, `_FusedConv2D`, `Cast`,
  `FusedBatchNormV3`, ...),
- by model layer (the op's name scope: `block3_conv2`, `projector_1`, ...),
  with the layer's forward FLOPs, so a layer that runs far below the rate of
  the others stands out.

Op times are summed over the threads that ran them, so with inter-op
parallelism their total can exceed the wall time of the step; shares are of
that total. `forward` FLOPs per layer come from `measure.forward_flops`.

Commands:

    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py
    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py --precision mixed_bfloat16
    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py --smoke

Writes `benchmarks/results/profile_<precision>_b<batch>.json`.
"""

import collections
import pathlib
import re
import sys
import tempfile

import measure

TOP = 15


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="Profiled steps.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps = 2, 1
    return args


def op_times(trace_dir, layer_names):
    """Sums op durations (ms) of a trace by op type and by layer."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    by_type = collections.Counter()
    by_layer = collections.Counter()
    layer_pattern = re.compile(r"^(.*?)(_\d+)?$")
    for path in pathlib.Path(trace_dir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" not in name or "::" in name:
                        continue  # executor bookkeeping, not an op
                    scope, op_type = name.rsplit(":", 1)
                    milliseconds = event.duration_ps / 1e9
                    by_type[op_type] += milliseconds
                    layer = "(other)"
                    for part in scope.split("/"):
                        base = layer_pattern.match(part).group(1)
                        if base in layer_names:
                            layer = base
                    by_layer[layer] += milliseconds
    return by_type, by_layer


def summarise(counter, steps, flops_per_layer=None, batch_size=1):
    total = sum(counter.values())
    rows = []
    for name, milliseconds in counter.most_common():
        row = {
            "name": name,
            "ms_per_step": round(milliseconds / steps, 2),
            "share": round(milliseconds / total, 4) if total else 0.0,
        }
        if flops_per_layer is not None and flops_per_layer.get(name):
            # Forward FLOPs only: a rate for inference; a lower bound in training.
            seconds = milliseconds / steps / 1e3
            row["forward_gflops_per_second"] = round(
                flops_per_layer[name] * batch_size / seconds / 1e9, 1
            )
        rows.append(row)
    return {"total_op_ms_per_step": round(total / steps, 2), "rows": rows}


def profile(step, steps, trace_dir):
    import tensorflow as tf

    step()  # trace, compile and warm the kernels outside the profile
    tf.profiler.experimental.start(str(trace_dir))
    timing = measure.time_steps(step, steps=steps, warmup=0)
    tf.profiler.experimental.stop()
    return timing


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras

    if not measure.needs_tensorflow("profile_steps.py (the TF profiler)"):
        return None

    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    width = measure.model_width(args)
    model = measure.training_model(width_multiplier=width, jit_compile="off")
    images, labels = measure.random_batch(args.batch_size)
    layer_names = {layer.name for layer in model.layers}
    flops_per_layer = measure.forward_flops(model)["per_layer"]

    result = {
        "benchmark": "profile",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "precision": args.precision,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "jit_compile": False,
        },
    }
    for mode, step in (
        ("train", lambda: model.train_on_batch(images, labels)),
        ("inference", lambda: model.predict_on_batch(images)),
    ):
        with tempfile.TemporaryDirectory(prefix=f"ltpa_profile_{mode}_") as trace_dir:
            timing = profile(step, args.steps, trace_dir)
            by_type, by_layer = op_times(trace_dir, layer_names)
        result[mode] = {
            "wall_ms_per_step": round(timing["median_seconds"] * 1e3, 1),
            "images_per_second": round(args.batch_size / timing["median_seconds"], 2),
            "by_op_type": summarise(by_type, args.steps),
            "by_layer": summarise(
                by_layer, args.steps, flops_per_layer, args.batch_size
            ),
        }
        print(
            f"{mode}: {result[mode]['wall_ms_per_step']:.0f} ms/step wall, "
            f"{result[mode]['by_op_type']['total_op_ms_per_step']:.0f} ms of ops"
        )
        for row in result[mode]["by_op_type"]["rows"][:TOP]:
            print(f"  {row['name']:32s} {row['ms_per_step']:9.1f} ms {row['share']:6.1%}")
    name = f"profile_{args.precision}_b{args.batch_size}"
    return measure.finish(result, name, args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
