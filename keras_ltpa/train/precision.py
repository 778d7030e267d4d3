"""The policy a training run computes in: `--precision`, resolved once.

`devices.precision_record` chooses from the hardware (explicit, a GPU's
capability, or the measured CPU probe); a run adds two rules of its own:
a resumed run keeps the policy it started with, and the processes of a
multi-process CPU run agree on float32.
"""

import json
import os

from keras_ltpa.devices.precision import precision_record
from keras_ltpa.train import runs


def previous_settings(run_dir):
    """The config.json of a run in `run_dir` being resumed, or {}."""
    path = os.path.join(os.fspath(run_dir), runs.CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def run_precision(config, distribution):
    """`--precision` as a policy, with how it was chosen (`precision_record`).

    Processes of one group must train in one policy: a CPU probe measured on
    each host could disagree, so `auto` on a multi-process CPU run is
    float32 (a GPU's capability rule, the same on every host, still holds).
    """
    record = precision_record(config.precision)
    previous = previous_settings(config.output_dir)
    if config.precision == "auto" and previous.get("precision_policy"):
        # A resumed run keeps the policy it started with (its optimizer state
        # and loss scale were saved under it), whatever a new probe says.
        return dict(record, policy=previous["precision_policy"], how="resumed run")
    if (
        config.precision == "auto"
        and distribution.num_processes > 1
        and record["how"] in ("measured", "probe failed")
    ):
        record = dict(record, policy="float32", how="multi-process CPU default")
    return record
