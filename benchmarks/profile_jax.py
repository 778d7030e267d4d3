"""Where a JAX training step's time goes on a CPU: Keras, XLA, or the convolutions.

Under JAX the paper's model trains at about half TensorFlow's speed on
these CPUs. This script splits a training step (att3-concat-pc, 32x32,
batch `--batch-size`, float32) into parts, each jitted and timed alone in
interleaved rounds (`measure.interleaved_rounds`), all in one process:

- `keras_train_step`: `model.train_on_batch`, what `training/fit.py` runs;
- `jax_train_step`: the same forward, loss, backward and SGD update written
  directly with `jax.value_and_grad` over `model.stateless_call`, jitted:
  no Keras trainer, metrics or callbacks. Its gap to the Keras step is
  what Keras' train step adds;
- `jax_forward` and `jax_forward_backward`: the model's forward pass, and
  forward + backward, alone;
- `conv_jax` against `conv_tensorflow`: the model's costliest convolution
  (block 2, 32x32, 128 -> 128 channels, 3x3) forward + backward with
  `jax.jit` (XLA:CPU) and with `tf.function` (TensorFlow's kernels: oneDNN
  when on; in a worker process, `measure.StepWorker`).

If the JAX step is close to the pure-JAX step and the convolution alone is
as many times slower under XLA:CPU as the whole step, the time goes to
XLA:CPU's convolutions, not to this project's code. Commands:

    KERAS_BACKEND=jax python benchmarks/profile_jax.py
    KERAS_BACKEND=jax python benchmarks/profile_jax.py --smoke

Writes `benchmarks/results/profile_jax_b<batch>.json`.
"""

import importlib.util
import statistics
import sys

import numpy as np

import measure


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.rounds = 2, 1
    return args


def jax_steps(model, images, labels):
    """Jitted pure-JAX forward, forward+backward and SGD train step."""
    import jax
    import jax.numpy as jnp
    import keras

    # Copies: the Keras train step donates (frees) its variables' buffers.
    trainable = [jnp.array(v.value) for v in model.trainable_variables]
    non_trainable = [jnp.array(v.value) for v in model.non_trainable_variables]
    x = jnp.asarray(images)
    y = jnp.asarray(labels)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
        return loss, non_trainable

    @jax.jit
    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

    @jax.jit
    def train_step(trainable, velocity, non_trainable, x, y):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y
        )
        velocity = [0.9 * v - 0.1 * (g + 5e-4 * w) for v, g, w in zip(velocity, grads, trainable)]
        trainable = [w + v for w, v in zip(trainable, velocity)]
        return trainable, velocity, non_trainable, loss

    state = {"trainable": trainable, "velocity": [jnp.zeros_like(w) for w in trainable],
             "non_trainable": non_trainable}

    def run_train():
        out = train_step(state["trainable"], state["velocity"], state["non_trainable"], x, y)
        state["trainable"], state["velocity"], state["non_trainable"], loss = out
        return float(loss)

    return {
        "jax_forward": lambda: np.asarray(forward(trainable, non_trainable, x)),
        "jax_forward_backward": lambda: float(grad_fn(trainable, non_trainable, x, y)[0][0]),
        "jax_train_step": run_train,
    }


def conv_inputs(batch_size, width):
    """Block 2's conv input and kernel (32x32, 128 -> 128 channels, 3x3)."""
    channels = max(1, int(round(128 * width)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 32, 32, channels)).astype("float32")
    kernel = rng.normal(size=(3, 3, channels, channels)).astype("float32") * 0.05
    return x, kernel


def jax_conv_step(batch_size, width):
    """Forward + backward of block 2's 3x3 convolution under `jax.jit`."""
    import jax
    import jax.numpy as jnp

    x, kernel = conv_inputs(batch_size, width)

    def conv_loss(x, kernel):
        out = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(out * out)

    grad = jax.jit(jax.grad(conv_loss, argnums=(0, 1)))
    jx, jk = jnp.asarray(x), jnp.asarray(kernel)
    return lambda: [np.asarray(g) for g in grad(jx, jk)]


def tensorflow_conv_steps(batch_size, width):
    """A worker's step: the same convolution's forward + backward in
    TensorFlow (`tf.function`; oneDNN when on)."""
    import tensorflow as tf

    from keras_ltpa import cpu_defaults

    x, kernel = conv_inputs(batch_size, width)
    tx, tk = tf.constant(x), tf.Variable(kernel)

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.nn.conv2d(x, tk, 1, "SAME")
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [x, tk])

    return {"conv": lambda: [g.numpy() for g in grad(tx)]}, {"cpu_kernels": cpu_defaults.describe()}


def main(argv=None):
    args = parse_args(argv)
    load_at_start = measure.load_average()

    import keras

    if keras.backend.backend() != "jax":
        print("profile_jax.py profiles the JAX backend: run it with KERAS_BACKEND=jax.")
        return None
    keras.utils.set_random_seed(0)
    width = measure.model_width(args)
    model = measure.training_model(width_multiplier=width)
    images, labels = measure.random_batch(args.batch_size)
    steps = {"keras_train_step": lambda: model.train_on_batch(images, labels)}
    steps.update(jax_steps(model, images, labels))
    steps["conv_jax"] = jax_conv_step(args.batch_size, width)
    channels = conv_inputs(1, width)[0].shape[-1]
    tensorflow_worker = None
    if importlib.util.find_spec("tensorflow") is not None:
        # In a process of its own: TensorFlow's threads would slow JAX's here.
        tensorflow_worker = measure.StepWorker(
            "profile_jax:tensorflow_conv_steps", {"batch_size": args.batch_size, "width": width}
        )
        steps["conv_tensorflow"] = tensorflow_worker.step("conv")
    warmup_seconds = {}
    for label, step in steps.items():
        warmup_seconds[label] = measure.time_steps(step, steps=1, warmup=1)["warmup_seconds"]
    times = measure.interleaved_rounds(steps, args.rounds)
    if tensorflow_worker is not None:
        tensorflow_worker.close()
    medians = {label: statistics.median(t) for label, t in times.items()}
    result = {
        "benchmark": "profile_jax",
        "smoke": args.smoke,
        "settings": {
            "model": "att3-concat-pc",
            "width_multiplier": width,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "precision": "float32",
            "conv_channels": channels,
        },
        "median_ms": {label: round(m * 1e3, 2) for label, m in medians.items()},
        "step_seconds": {label: [round(x, 4) for x in t] for label, t in times.items()},
        "warmup_seconds": warmup_seconds,
        "keras_over_pure_jax": round(
            measure.round_ratios(times, "jax_train_step", ["keras_train_step"]), 3
        ),
    }
    if "conv_tensorflow" in times:
        result["conv_jax_over_tensorflow"] = round(
            measure.round_ratios(times, "conv_tensorflow", ["conv_jax"]), 3
        )
    for label, milliseconds in result["median_ms"].items():
        print(f"{label:24s} {milliseconds:10.2f} ms")
    print(f"Keras train step / pure-JAX train step: {result['keras_over_pure_jax']:.2f}")
    if "conv_jax_over_tensorflow" in result:
        print(f"conv fwd+bwd, JAX / TensorFlow: {result['conv_jax_over_tensorflow']:.2f}")
    return measure.finish(result, f"profile_jax_b{args.batch_size}", args, load_at_start)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
