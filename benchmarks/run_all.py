"""Runs the benchmarks and writes their results tables into benchmarks/README.md.

Every measurement is one of the other scripts in a fresh process (so each
has its own backend, dtype policy and peak memory); this script only
chooses the configurations; `report.py` turns the JSON files in
`benchmarks/results/` into Markdown tables.

The throughput matrix: each backend in `--backends` x float32 and
mixed_bfloat16 x its compilation modes (TensorFlow: XLA off and on; JAX:
XLA, which JAX always uses; PyTorch: eager and `torch.compile`), at batch
32. Then FLOPs and the matmul rate, the SavedModel latency, the data
pipeline, the input/batch size scaling and a profile, each under the
backend it needs or the fastest one.

Wait for a quiet machine first (`cat /proc/loadavg`, 1-minute load well
under the core count): the timings assume nothing else runs. Each result
records the load average at its start and end.

Commands:

    python benchmarks/run_all.py                      # all (about an hour on 2 cores)
    python benchmarks/run_all.py --only throughput --backends tensorflow
    python benchmarks/run_all.py --report-only        # tables from existing results
"""

import argparse
import sys

import measure
import report
COMPILE_MODES = {"tensorflow": ("off", "on"), "jax": ("on",), "torch": ("off", "on")}
PRECISIONS = ("float32", "mixed_bfloat16")
# One configuration may not hold the machine longer than this (seconds).
RUN_TIMEOUT = 1800
PARTS = (
    "throughput", "reference", "compare", "versus_torch", "flops", "latency", "serving", "data",
    "scaling", "profile",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"Comma-separated parts to run: {', '.join(PARTS)}.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--report-only", action="store_true",
                        help="Only rewrite the tables from the existing results.")
    parser.add_argument("--results-dir", default=str(measure.RESULTS_DIR))
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.only = [p for p in args.only.split(",") if p]
    unknown = [p for p in args.only if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r} in --only; choose from {', '.join(PARTS)}")
    return args


def report_failure(label, result):
    if "error" in result:
        print(f"{label}: FAILED ({result['error']})\n{result.get('output', '')}")
        return True
    return False


def run(args):
    out = ["--output-dir", args.results_dir]
    if "throughput" in args.only:
        for backend in args.backends:
            for precision in PRECISIONS:
                for jit in COMPILE_MODES[backend]:
                    label = f"throughput {backend} {precision} jit={jit}"
                    print(f"{label} ...", flush=True)
                    result = measure.run_script(
                        "throughput.py",
                        ["--precision", precision, "--jit-compile", jit,
                         "--batch-size", args.batch_size, "--steps", args.steps,
                         "--warmup", args.warmup] + out,
                        backend,
                        timeout=RUN_TIMEOUT,
                    )
                    if not report_failure(label, result):
                        print(f"  train {result['train']['images_per_second']} img/s, "
                              f"inference {result['inference']['images_per_second']} img/s")
    jobs = {
        "reference": [
            ("torch_reference.py", ["--precision", precision, "--batch-size", args.batch_size],
             "torch")
            for precision in ("float32", "bfloat16_autocast")
        ],
        "compare": [
            ("compare.py", ["--mode", mode] + (
                ["--jit-compile", "off,on"] if backend == "tensorflow" else []), backend)
            for backend in args.backends
            for mode in ("train", "inference")
        ],
        "versus_torch": [
            ("versus_torch.py", sizes, backend)
            for backend in args.backends
            for sizes in ([], ["--width", "0.25", "--batch-size", "128"])
        ],
        "flops": [("flops.py", [], "tensorflow")],
        "latency": [
            ("latency.py", ["--precision", "float32"], "tensorflow"),
            ("latency.py", ["--precision", "mixed_bfloat16", "--skip-unfolded"], "tensorflow"),
            ("latency.py", ["--onednn-bf16-rewrite", "--skip-unfolded"], "tensorflow"),
        ],
        "serving": [("serving.py", [], "tensorflow")],
        "data": [("data_pipeline.py", ["--results-dir", args.results_dir], "tensorflow")],
        "scaling": [("scaling.py", ["--precision", "float32", "--jit-compile", "off"],
                     "tensorflow")],
        "profile": [
            ("profile_steps.py", ["--precision", precision], "tensorflow")
            for precision in PRECISIONS
        ] + [("profile_jax.py", [], "jax")],
    }
    for part, scripts in jobs.items():
        if part not in args.only:
            continue
        for script, arguments, backend in scripts:
            label = f"{script} {' '.join(map(str, arguments))}"
            print(f"{label} ...", flush=True)
            result = measure.run_script(script, arguments + out, backend, timeout=RUN_TIMEOUT)
            report_failure(label, result)


def main(argv=None):
    args = parse_args(argv)
    if not args.report_only:
        run(args)
    report.write_report(args.results_dir)
    return True


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
