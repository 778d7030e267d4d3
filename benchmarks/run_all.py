"""Runs the benchmarks and writes their results tables into benchmarks/README.md.

Every measurement is one of the other scripts in a fresh process (so each
has its own backend, dtype policy and peak memory); this script only
chooses the configurations and turns the JSON files in
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
import json
import pathlib
import sys

import common

README = pathlib.Path(__file__).resolve().parent / "README.md"
BEGIN = "<!-- begin results: written by benchmarks/run_all.py -->"
END = "<!-- end results -->"
COMPILE_MODES = {"tensorflow": ("off", "on"), "jax": ("on",), "torch": ("off", "on")}
PRECISIONS = ("float32", "mixed_bfloat16")
# One configuration may not hold the machine longer than this (seconds).
RUN_TIMEOUT = 1800
PARTS = (
    "throughput", "reference", "compare", "flops", "latency", "data", "scaling",
    "profile",
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
    parser.add_argument("--results-dir", default=str(common.RESULTS_DIR))
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
                    result = common.run_script(
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
        "flops": [("flops.py", [], "tensorflow")],
        "latency": [
            ("latency.py", ["--precision", "float32"], "tensorflow"),
            ("latency.py", ["--precision", "mixed_bfloat16", "--skip-unfolded"], "tensorflow"),
            ("latency.py", ["--onednn-bf16-rewrite", "--skip-unfolded"], "tensorflow"),
        ],
        "data": [("data_pipeline.py", ["--results-dir", args.results_dir], "tensorflow")],
        "scaling": [("scaling.py", ["--precision", "float32", "--jit-compile", "off"],
                     "tensorflow")],
        "profile": [
            ("profile_steps.py", ["--precision", precision], "tensorflow")
            for precision in PRECISIONS
        ],
    }
    for part, scripts in jobs.items():
        if part not in args.only:
            continue
        for script, arguments, backend in scripts:
            label = f"{script} {' '.join(map(str, arguments))}"
            print(f"{label} ...", flush=True)
            result = common.run_script(script, arguments + out, backend, timeout=RUN_TIMEOUT)
            report_failure(label, result)


def load_results(results_dir):
    results = {}
    for path in sorted(pathlib.Path(results_dir).glob("*.json")):
        result = json.loads(path.read_text())
        if not result.get("smoke"):
            results[path.stem] = result
    return results


def _load(result):
    start, end = result.get("load_average", {}).get("start"), result.get(
        "load_average", {}).get("end")
    if not start or not end:
        return ""
    return f"{start[0]:.2f} / {end[0]:.2f}"


def _rate(timing):
    if not timing:
        return "-"
    best = timing.get("images_per_second_best")
    median = f"{timing['images_per_second']:.2f}"
    return median if best is None else f"{median} / {best:.2f}"


def _table(header, rows):
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") == "torch_reference":
            s = r["settings"]
            rows.append((
                "PyTorch, no Keras (reference)",
                s["precision"] + (" channels_last" if s["channels_last"] else ""),
                "eager",
                s["batch_size"],
                _rate(r["train"]),
                _rate(r["inference"]),
                round(r["memory"]["peak_rss_mib"]),
                _load(r),
            ))
        if r.get("benchmark") != "throughput":
            continue
        s = r["settings"]
        if s["width_multiplier"] != 1.0 or s["input_size"] != 32:
            continue
        compiled = "XLA" if r["environment"]["backend"] != "torch" else "torch.compile"
        compiled = f"{compiled} {'on' if s['jit_compile_resolved'] else 'off'}"
        flags = r["environment"].get("variables", {}).get("XLA_FLAGS")
        rows.append((
            r["environment"]["backend"],
            s["precision"],
            compiled + (f" (XLA_FLAGS={flags})" if flags else ""),
            s["batch_size"],
            _rate(r.get("train")),
            _rate(r.get("inference")),
            round(r["memory"]["peak_rss_mib"]),
            _load(r),
        ))
    rows.sort(key=lambda row: (row[0], row[1], row[2], row[3]))
    return _table(
        ("backend", "precision", "compilation", "batch", "train img/s (median / best step)",
         "inference img/s (median / best step)", "peak RSS MiB", "load 1-min start / end"),
        rows,
    )


def compare_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") != "compare":
            continue
        for variant in r["variants"]:
            rows.append((
                r["environment"]["backend"],
                r["settings"]["mode"],
                variant["precision"],
                "on" if variant["jit_compile_resolved"] else "off",
                variant["images_per_second"],
                variant["images_per_second_best"],
                f"x{variant['speedup_over_first']:.2f}",
                _load(r),
            ))
    return _table(
        ("backend", "step", "precision", "XLA", "img/s (median)", "img/s (best)",
         "speed vs first row of its run", "load 1-min start / end"),
        rows,
    )


def latency_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") != "latency":
            continue
        s = r["settings"]
        setting = s["precision"] + (" + oneDNN bf16 rewrite" if s["onednn_bf16_rewrite"] else "")
        for label, entry in r["latency"].items():
            rows.append((setting, label, entry["p50_ms"], entry["p99_ms"]))
        rows.append((setting, "ideal: forward FLOPs / bf16 matmul rate",
                     r["ideal_latency_ms"]["bfloat16"], "-"))
        rows.append((setting, "SavedModel p50 / ideal (target <= 1.5)",
                     r["savedmodel_p50_over_bf16_ideal"], _load(r)))
    return _table(("exported model", "what", "p50 ms", "p99 ms"), rows)


def data_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") != "data_pipeline":
            continue
        cached = r.get("cached") or {}
        rows.append((
            r["settings"]["batch_size"],
            r["uncached"]["build_seconds"],
            r["uncached"]["images_per_second"],
            cached.get("images_per_second", "-"),
            (r.get("training_rate") or {}).get("images_per_second", "-"),
            r.get("pipeline_over_training") or "-",
            _load(r),
        ))
    return _table(
        ("batch", "build s (list + verify)", "img/s (decode + augment)",
         "img/s (cached)", "training img/s", "pipeline / training",
         "load 1-min start / end"),
        rows,
    )


def scaling_tables(results):
    parts = []
    for name, r in results.items():
        if r.get("benchmark") != "scaling":
            continue
        title = (f"{r['environment']['backend']}, {r['settings']['precision']}, "
                 f"jit {r['settings']['jit_compile']}")
        for key, label in (("by_input_size", "input size"), ("by_batch_size", "batch size")):
            rows = []
            for point in r.get(key, []):
                if "error" in point:
                    rows.append((point["input_size"], point["batch_size"], "failed",
                                 point["error"], "", "", "", ""))
                    continue
                rows.append((
                    f"{point['input_size']}x{point['input_size']}",
                    point["batch_size"],
                    point["forward_gflops_per_image"],
                    point["train"]["ms_per_image"],
                    point["train"]["achieved_gflops_per_second"],
                    point["inference"]["ms_per_image"],
                    point["inference"]["achieved_gflops_per_second"],
                    round(point["peak_rss_mib"]),
                ))
            if rows:
                parts.append(f"By {label} ({title}; load 1-min start / end {_load(r)}):\n")
                parts.append(_table(
                    ("input", "batch", "fwd GFLOPs/img", "train ms/img",
                     "train GFLOP/s", "inference ms/img", "inference GFLOP/s",
                     "peak RSS MiB"),
                    rows,
                ))
    return "\n\n".join(parts)


def flops_table(results):
    parts = []
    for name, r in results.items():
        if r.get("benchmark") != "flops":
            continue
        rows = [
            (f"{size}x{size}", e["gflops"], e["matmul_gflops"],
             e.get("tf_profiler_gflops", "-"))
            for size, e in r["forward_flops"].items()
        ]
        parts.append(_table(
            ("input", "forward GFLOPs/img", "of which conv/matmul",
             "TF profiler's count"),
            rows,
        ))
        rates = r["matmul_rate"]
        measured = ", ".join(f"{dtype} {rate['best']}" for dtype, rate in rates.items())
        best = max(rate["best"] for rate in rates.values())
        gflops = r["forward_flops"]["32"]["gflops"]
        parts.append(
            f"Measured matmul rate ({r['environment']['backend']}, best n x n x n "
            f"of {r['settings']['matmul_sizes']}), GFLOP/s: {measured}; ideal batch-1 "
            f"latency at 32x32: {r['ideal_batch1_latency_ms']['bfloat16']} ms (bf16), "
            f"{r['ideal_batch1_latency_ms']['float32']} ms (float32). At the best of "
            f"these rates the model can do at most {best / (3 * gflops):.1f} training "
            f"and {best / gflops:.1f} inference images/s at 32x32. "
            f"Load 1-min start / end {_load(r)}."
        )
    return "\n\n".join(parts)


def profile_tables(results):
    parts = []
    for name, r in results.items():
        if r.get("benchmark") != "profile":
            continue
        for mode in ("train", "inference"):
            entry = r[mode]
            rows = [(row["name"], row["ms_per_step"], f"{row['share']:.1%}")
                    for row in entry["by_op_type"]["rows"][:8]]
            parts.append(
                f"{mode}, {r['settings']['precision']}, batch "
                f"{r['settings']['batch_size']}: {entry['wall_ms_per_step']} ms per "
                f"step wall, {entry['by_op_type']['total_op_ms_per_step']} ms of ops "
                f"(load 1-min start / end {_load(r)}):\n"
            )
            parts.append(_table(("op type", "ms/step", "share"), rows))
    return "\n\n".join(parts)


def write_report(results_dir):
    results = load_results(results_dir)
    sections = [
        ("Throughput (att3-concat-pc, 32x32, 10 classes)", throughput_table(results)),
        ("Precision and XLA, interleaved in one process (compare.py)",
         compare_table(results)),
        ("Forward FLOPs and matmul rate", flops_table(results)),
        ("Batch-1 latency: SavedModel signatures vs Keras", latency_table(results)),
        ("Data pipeline (CIFAR-10 JPEGs, paper augmentation)", data_table(results)),
        ("Cost vs input size and batch size", scaling_tables(results)),
        ("Profile: where a step's time goes (TensorFlow)", profile_tables(results)),
    ]
    body = "\n\n".join(f"### {title}\n\n{table}" for title, table in sections if table)
    text = README.read_text() if README.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{BEGIN}\n\n{body}\n\n{END}{tail}")
    print(f"wrote {README}")


def main(argv=None):
    args = parse_args(argv)
    if not args.report_only:
        run(args)
    write_report(args.results_dir)
    return True


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
