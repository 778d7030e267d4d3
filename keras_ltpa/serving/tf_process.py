"""The export of a JAX or PyTorch model, run by a TensorFlow child process.

A SavedModel needs the TensorFlow backend, and Keras fixes its backend when
it is first imported. Under JAX or PyTorch, `export_saved_model` saves the
model as a `.keras` file (weights are backend-neutral) and hands it to a
child Python process running `export_saved_model` with
`KERAS_BACKEND=tensorflow`; the child's answer (the version folder, or the
error) comes back as one JSON line on its stdout.
"""

import json
import os
import subprocess
import sys
import tempfile

import keras

_CHILD_SCRIPT = """
import json, sys
request = json.loads(sys.argv[1])
try:
    from keras_ltpa.serving.export import export_saved_model
    path = export_saved_model(request.pop("model"), request.pop("export_dir"), **request)
    print(json.dumps({"path": path}))
except Exception as error:
    print(json.dumps({"error_type": type(error).__name__, "message": str(error)}))
    sys.exit(1)
"""


def export_in_tensorflow_process(model, export_dir, **options):
    """Runs `export_saved_model` in a child process whose backend is TensorFlow.

    Args:
        model: a `keras.Model` (saved to a temporary `.keras` file first) or
            the path of a `.keras` file.
        export_dir: TF Serving model root, as `export_saved_model` takes it.
        **options: the other keyword arguments of `export_saved_model`, all
            JSON values.

    Returns:
        The path of the written version directory, as a string.

    Raises:
        ValueError: the child refused an argument or the model (its message).
        RuntimeError: the child failed otherwise (its message or stderr).
    """
    with tempfile.TemporaryDirectory(prefix="keras_ltpa_export_") as scratch:
        if isinstance(model, keras.Model):
            path = os.path.join(scratch, "model.keras")
            model.save(path)
        else:
            path = os.fspath(model)
        request = json.dumps({"model": path, "export_dir": os.fspath(export_dir), **options})
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(
            [sys.executable, "-c", _CHILD_SCRIPT, request],
            env=env,
            capture_output=True,
            text=True,
        )
    return _reply(result)


def _reply(result):
    """The version path the child printed, or its error raised here."""
    # TensorFlow may print its own lines first; the answer is the last JSON one.
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    reply = json.loads(lines[-1]) if lines else {}
    if result.returncode == 0 and "path" in reply:
        return reply["path"]
    if reply.get("error_type") == "ValueError":
        raise ValueError(reply["message"])
    detail = reply.get("message") or result.stderr.strip()[-2000:]
    raise RuntimeError(f"SavedModel export under the TensorFlow backend failed: {detail}")
