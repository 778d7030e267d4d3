"""Runs the benchmarks, each in a fresh process, then rewrites the results tables.

Each configuration is one of the other scripts in a process of its own (its
own backend, dtype policy and peak memory): `versus_torch.py` per backend
for the full model at batch 32 and width 0.25 at batch 128 (Keras in what
`--precision auto` picks, then float32 and mixed_bfloat16), `serving.py`
(the full model, and width 0.0625 where the limits' own cost shows), and
`profile_steps.py` (TensorFlow in both precisions, JAX). Then
`measure.write_report` rebuilds the tables of docs/benchmarks.md from
`benchmarks/results/*.json`. `recipes.py` (training runs) and `gpu.py` (a
GPU machine) are run by hand.

Wait for a quiet machine first (`cat /proc/loadavg`: a 1-minute load well
under the core count); each result records the load at its start and end.

    python benchmarks/run_all.py                      # all, about an hour on 2 cores
    python benchmarks/run_all.py --only versus_torch --backends tensorflow
    python benchmarks/run_all.py --report-only        # the tables from existing results
"""

import sys

import measure

BACKENDS = ("tensorflow", "jax", "torch")
# One configuration may not hold the machine longer than this (seconds).
RUN_TIMEOUT = 1800


def jobs(backends):
    """{part: [(script, arguments, backend)]}."""
    return {
        "versus_torch": [
            ("versus_torch.py", sizes + ["--precision", "auto,float32,mixed_bfloat16"], backend)
            for backend in backends
            for sizes in ([], ["--width", "0.25", "--batch-size", "128"])
        ],
        "serving": [
            ("serving.py", [], "tensorflow"),
            ("serving.py", ["--width", "0.0625", "--iterations", "300", "--iterations-32", "60"],
             "tensorflow"),
        ],
        "profile": [("profile_steps.py", ["--precision", precision], "tensorflow")
                    for precision in ("float32", "mixed_bfloat16")]
        + [("profile_steps.py", [], "jax")],
    }


def parse_args(argv=None):
    parser = measure.argument_parser(__doc__)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated: " + ", ".join(BACKENDS))
    parser.add_argument("--only", default=",".join(jobs(())),
                        help="comma-separated parts to run: " + ", ".join(jobs(())))
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the tables from the existing results")
    args = parser.parse_args(argv)
    args.backends = measure.comma_list(parser, "--backends", args.backends, BACKENDS)
    args.only = measure.comma_list(parser, "--only", args.only, tuple(jobs(())))
    return args


def main(argv=None):
    args = parse_args(argv)
    for part, scripts in jobs(args.backends).items():
        if args.report_only or part not in args.only:
            continue
        for script, arguments, backend in scripts:
            label = f"{backend} {script} {' '.join(arguments)}"
            print(f"{label} ...", flush=True)
            arguments = arguments + ["--output-dir", args.output_dir] + ["--smoke"] * args.smoke
            result = measure.run_script(script, arguments, backend, timeout=RUN_TIMEOUT)
            if "error" in result:
                print(f"{label}: FAILED ({result['error']})\n{result.get('output', '')}")
    if not args.smoke:  # smoke numbers never reach the tables
        measure.write_report(args.output_dir)
    return True


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
