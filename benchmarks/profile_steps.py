"""Where a step's time goes: TensorFlow's ops, or a JAX training step taken apart.

Under TensorFlow, training and inference steps of the paper's model
(att3-concat-pc, 32x32, XLA off) run under the TensorFlow profiler; its
trace (`*.xplane.pb`, read with the protobuf module TensorFlow ships) is
summed by op type and by layer (the op's name scope), with each layer's
forward FLOPs, so a layer far below the others' rate stands out. Op times
add up over threads, so their total can exceed the wall time; shares are of
that total.

Under JAX, parts of a training step are jitted and timed in interleaved
rounds: `keras_train_step` (`train_on_batch`, what fit runs),
`jax_train_step` (the same loss, backward pass and SGD update written with
`jax.value_and_grad` over `model.stateless_call`: no Keras trainer),
`jax_forward`, `jax_forward_backward`, and the costliest convolution (block
2: 32x32, 128 channels, 3x3) forward + backward under `jax.jit` and under
`tf.function` (TensorFlow's kernels, in a worker process). A Keras step close
to the pure-JAX one, and a convolution as many times slower as the whole
step, put the time in XLA:CPU's kernels.

Commands:

    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py
    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py --precision mixed_bfloat16
    KERAS_BACKEND=jax python benchmarks/profile_steps.py
    KERAS_BACKEND=tensorflow python benchmarks/profile_steps.py --smoke

Writes `benchmarks/results/profile_<precision>_b<batch>_<cpu>.json`
(TensorFlow) or `profile_jax[_<precision>]_b<batch>_<cpu>.json` (JAX), the
CPU tag as in versus_torch.py.
"""

import collections
import importlib.util
import pathlib
import re
import statistics
import sys
import tempfile

import measure
import numpy as np


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--batch-size", type=measure.positive(int), default=32)
    parser.add_argument("--steps", type=measure.positive(int), default=2, help="TensorFlow")
    parser.add_argument("--rounds", type=measure.positive(int), default=5, help="JAX")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.rounds = 2, 1, 1
    return args


def op_times(trace_dir, layer_names):
    """Op durations (ms) of a TensorFlow trace, by op type and by layer."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    by_type, by_layer = collections.Counter(), collections.Counter()
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
                    by_type[op_type] += event.duration_ps / 1e9
                    layers = [name for part in scope.split("/")  # `block3_conv2_1`, ...
                              for name in (part, re.sub(r"_\d+$", "", part)) if name in layer_names]
                    by_layer[layers[-1] if layers else "(other)"] += event.duration_ps / 1e9
    return by_type, by_layer


def summarise(counter, steps, flops_per_layer=None, batch_size=1):
    total = sum(counter.values())
    rows = []
    for name, milliseconds in counter.most_common():
        row = {"name": name, "ms_per_step": round(milliseconds / steps, 2),
               "share": milliseconds / total if total else 0.0}
        if flops_per_layer and flops_per_layer.get(name):
            # Forward FLOPs only: a rate for inference, a lower bound in training.
            row["forward_gflops_per_second"] = round(
                flops_per_layer[name] * batch_size / (milliseconds / steps / 1e3) / 1e9, 1)
        rows.append(row)
    return {"total_op_ms_per_step": round(total / steps, 2), "rows": rows}


def profile_tensorflow(args):
    import tensorflow as tf

    model = measure.training_model(width_multiplier=args.width, jit_compile="off")
    images, labels = measure.random_batch(args.batch_size)
    flops = measure.forward_flops(model)["per_layer"]
    result = {"benchmark": "profile", "settings": {
        "model": "att3-concat-pc", "width_multiplier": args.width, "precision": args.precision,
        "batch_size": args.batch_size, "steps": args.steps, "jit_compile": False}}
    for mode, step in (("train", lambda: model.train_on_batch(images, labels)),
                       ("inference", lambda: model.predict_on_batch(images))):
        step()  # trace, compile and warm the kernels outside the profile
        with tempfile.TemporaryDirectory(prefix=f"ltpa_profile_{mode}_") as trace_dir:
            tf.profiler.experimental.start(trace_dir)
            timing = measure.time_steps(step, steps=args.steps, warmup=0)
            tf.profiler.experimental.stop()
            by_type, by_layer = op_times(trace_dir, {layer.name for layer in model.layers})
        entry = result[mode] = {
            "wall_ms_per_step": round(timing["median_seconds"] * 1e3, 1),
            "images_per_second": args.batch_size / timing["median_seconds"],
            "by_op_type": summarise(by_type, args.steps),
            "by_layer": summarise(by_layer, args.steps, flops, args.batch_size)}
        print(f"{mode}: {entry['wall_ms_per_step']:.0f} ms/step wall; ms of ops by type: " + ", ".join(
            f"{row['name']} {row['ms_per_step']:.1f}" for row in entry["by_op_type"]["rows"][:10]))
    return result, f"profile_{args.precision}_b{args.batch_size}"


def jax_steps(model, images, labels):
    """Jitted pure-JAX forward, forward + backward and SGD train step."""
    import jax
    import jax.numpy as jnp
    import keras

    # Copies: the Keras train step donates (frees) its variables' buffers.
    trainable = [jnp.array(v.value) for v in model.trainable_variables]
    non_trainable = [jnp.array(v.value) for v in model.non_trainable_variables]
    x, y = jnp.asarray(images), jnp.asarray(labels)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True)), non_trainable

    forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

    @jax.jit
    def train_step(trainable, velocity, non_trainable, x, y):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y)
        velocity = [0.9 * v - 0.1 * (g + 5e-4 * w) for v, g, w in zip(velocity, grads, trainable)]
        return [w + v for w, v in zip(trainable, velocity)], velocity, non_trainable, loss

    state = [trainable, [jnp.zeros_like(w) for w in trainable], non_trainable]

    def run_train():
        *state[:], loss = train_step(*state, x, y)  # the new weights, velocity, statistics
        return float(loss)

    return {"jax_forward": lambda: np.asarray(forward(trainable, non_trainable, x)),
            "jax_forward_backward": lambda: float(grad_fn(trainable, non_trainable, x, y)[0][0]),
            "jax_train_step": run_train}


def conv_inputs(batch_size, width):
    """Block 2's convolution input and kernel (32x32, 128 -> 128 channels, 3x3)."""
    channels = max(1, int(round(128 * width)))
    rng = np.random.default_rng(0)
    return (rng.normal(size=(batch_size, 32, 32, channels)).astype("float32"),
            rng.normal(size=(3, 3, channels, channels)).astype("float32") * 0.05)


def jax_conv_step(batch_size, width):
    """Forward + backward of block 2's convolution under `jax.jit`."""
    import jax
    import jax.numpy as jnp

    x, kernel = (jnp.asarray(a) for a in conv_inputs(batch_size, width))

    def conv_loss(x, kernel):
        out = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(out * out)

    grad = jax.jit(jax.grad(conv_loss, argnums=(0, 1)))
    return lambda: [np.asarray(g) for g in grad(x, kernel)]


def tensorflow_conv_steps(batch_size, width):
    """A worker's step: the same convolution's forward + backward in TensorFlow."""
    import tensorflow as tf

    x, kernel = conv_inputs(batch_size, width)
    tx, tk = tf.constant(x), tf.Variable(kernel)

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.nn.conv2d(x, tk, 1, "SAME")
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [x, tk])

    return ({"conv": lambda: [g.numpy() for g in grad(tx)]},
            {"cpu_kernels": measure.cpu_kernels.describe()})


def profile_jax(args):
    model = measure.training_model(width_multiplier=args.width)
    images, labels = measure.random_batch(args.batch_size)
    steps = {"keras_train_step": lambda: model.train_on_batch(images, labels)}
    steps.update(jax_steps(model, images, labels), conv_jax=jax_conv_step(args.batch_size, args.width))
    worker = None
    if importlib.util.find_spec("tensorflow") is not None:  # in a process of its own
        worker = measure.StepWorker("profile_steps:tensorflow_conv_steps",
                                    {"batch_size": args.batch_size, "width": args.width},
                                    env={"KERAS_BACKEND": "tensorflow"})
        steps["conv_tensorflow"] = worker.step("conv")
    warmup = {label: measure.time_steps(step, 0, 1)["warmup_seconds"] for label, step in steps.items()}
    times = measure.interleaved_rounds(steps, args.rounds)
    if worker is not None:
        worker.close()
    result = {"benchmark": "profile_jax", "settings": {
        "model": "att3-concat-pc", "width_multiplier": args.width, "batch_size": args.batch_size,
        "rounds": args.rounds, "precision": args.precision,
        "conv_channels": conv_inputs(1, args.width)[1].shape[-1]},
        "median_ms": {label: statistics.median(t) * 1e3 for label, t in times.items()},
        "step_seconds": times, "warmup_seconds": warmup,
        "keras_over_pure_jax": measure.round_ratios(times, "jax_train_step", ["keras_train_step"])}
    if worker is not None:
        result["conv_jax_over_tensorflow"] = measure.round_ratios(
            times, "conv_tensorflow", ["conv_jax"])
    for label, milliseconds in result["median_ms"].items():
        print(f"{label:24s} {milliseconds:10.2f} ms")
    print(f"Keras step / pure-JAX step {result['keras_over_pure_jax']:.2f}; conv JAX / "
          f"TensorFlow {result.get('conv_jax_over_tensorflow', float('nan')):.2f}")
    precision = "" if args.precision == "float32" else f"_{args.precision}"
    return result, f"profile_jax{precision}_b{args.batch_size}"


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()
    if not measure.needs_backend("profile_steps.py", "tensorflow", "jax"):
        return None
    import keras

    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    args.width = measure.SMOKE_WIDTH if args.smoke else 1.0
    profile = profile_tensorflow if keras.backend.backend() == "tensorflow" else profile_jax
    result, name = profile(args)
    result["smoke"] = args.smoke
    return measure.finish(result, f"{name}_{measure.cpu_tag()}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
