"""The benchmark report: Markdown tables from the JSON files in
`benchmarks/results/`, written between two markers of benchmarks/README.md.

    python benchmarks/report.py            # rewrite the tables from the results

`run_all.py` calls `write_report` after its measurements.
"""

import json
import pathlib
import sys

README = pathlib.Path(__file__).resolve().parent / "README.md"
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
BEGIN = "<!-- begin results: written by benchmarks/run_all.py -->"
END = "<!-- end results -->"


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
        if "ideal_latency_ms" in r and "float32" in r["ideal_latency_ms"]:
            rows.append((setting, "float32 floor: forward FLOPs / float32 matmul rate",
                         r["ideal_latency_ms"]["float32"], "-"))
        if r.get("savedmodel_p50_over_float32_floor") is not None:
            rows.append((setting, "SavedModel p50 / float32 floor (target <= 1.5)",
                         r["savedmodel_p50_over_float32_floor"], "-"))
        for batch, entry in (r.get("savedmodel_versus_torch_eager") or {}).items():
            for label in ("savedmodel", "torch_eager"):
                rows.append((setting, f"{batch}, {label.replace('_', ' ')} (interleaved)",
                             entry[label]["p50_ms"], entry[label]["p99_ms"]))
            rows.append((setting, f"{batch}, torch eager / SavedModel p50 ratio",
                         entry["torch_over_savedmodel"], "-"))
    return _table(("exported model", "what", "p50 ms", "p99 ms"), rows)


def machine_kind(result):
    """'CPU model (ISA flags)' of the machine a result was measured on."""
    machine = result["environment"]["machine"]
    flags = ", ".join(machine.get("cpu_flags", [])) or "no AVX2"
    return f"{machine['cpu']}, {machine['cores']} cores ({flags})"


def versus_torch_table(results):
    """Keras against the PyTorch reference, one row per machine kind and size."""
    rows = []
    for name, r in sorted(results.items()):
        if r.get("benchmark") != "versus_torch" or r.get("smoke"):
            continue
        s = r["settings"]
        keras_worker = next(
            (w for label, w in r.get("workers", {}).items() if label.startswith("keras")), {}
        )
        kernels = keras_worker.get("cpu_kernels") or r["environment"].get("cpu_kernels", {})
        onednn = {True: ", oneDNN on", False: ", oneDNN off"}.get(kernels.get("tensorflow_onednn"), "")
        for mode in ("train", "inference"):
            entry = r[mode]
            keras_label = next(label for label in entry["images_per_second"] if label.startswith("keras"))
            rates = entry["images_per_second"]
            rows.append((
                machine_kind(r), f"{s['width_multiplier']:g}", s["batch_size"], mode,
                f"{rates[keras_label]} ({keras_label.split(' ', 1)[1]}"
                f"{onednn if 'tensorflow' in keras_label else ''})",
                f"{rates[entry['torch_best']]} ({entry['torch_best'].split(' ', 1)[1]})",
                f"{entry['ratio_to_torch_best']} (target {r['targets'][mode]})", _load(r),
            ))
    return _table(
        ("machine", "width", "batch", "mode", "Keras img/s", "PyTorch best img/s",
         "ratio", "load"),
        rows,
    )


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


def serving_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") != "serving":
            continue
        for key, percent in r["limits_overhead_percent"].items():
            signature, batch = key.rsplit("_b", 1)
            on, off = (r["latency"][f"{key}_{label}"]["p50_ms"] for label in ("limits_on", "limits_off"))
            rows.append((signature, batch, off, on, f"{percent:+.2f} %"))
        load = r["threaded_load"]
        rows.append((
            f"serve_bytes, {load['threads']} threads x batch 1", "1",
            "-", f"{load['request_p50_ms']} (p99 {load['request_p99_ms']})",
            f"{load['images_per_second']} img/s, load {_load(r)}",
        ))
    return _table(("signature", "batch", "p50 ms, no limits", "p50 ms, limits", "limits cost"), rows)


def profile_jax_table(results):
    rows = []
    for name, r in results.items():
        if r.get("benchmark") != "profile_jax" or r.get("smoke"):
            continue
        for label, milliseconds in r["median_ms"].items():
            rows.append((machine_kind(r), r["settings"]["batch_size"], label, milliseconds))
        rows.append((machine_kind(r), r["settings"]["batch_size"],
                     "Keras step / pure-JAX step", r["keras_over_pure_jax"]))
        if "conv_jax_over_tensorflow" in r:
            rows.append((machine_kind(r), r["settings"]["batch_size"],
                         "block-2 conv fwd+bwd, JAX / TensorFlow", r["conv_jax_over_tensorflow"]))
    return _table(("machine", "batch", "part", "median ms (or ratio)"), rows)


def write_report(results_dir, readme=None):
    results = load_results(results_dir)
    sections = [
        ("Throughput (att3-concat-pc, 32x32, 10 classes)", throughput_table(results)),
        ("Precision and XLA, interleaved in one process (compare.py)",
         compare_table(results)),
        ("Against the PyTorch reference, worker processes interleaved (versus_torch.py)",
         versus_torch_table(results)),
        ("Forward FLOPs and matmul rate", flops_table(results)),
        ("Batch-1 latency: SavedModel signatures vs Keras", latency_table(results)),
        ("Serving limits and threaded load (serving.py)", serving_table(results)),
        ("Data pipeline (CIFAR-10 JPEGs, paper augmentation)", data_table(results)),
        ("Cost vs input size and batch size", scaling_tables(results)),
        ("Profile: where a step's time goes (TensorFlow)", profile_tables(results)),
        ("Profile: where a JAX step's time goes (profile_jax.py)", profile_jax_table(results)),
    ]
    body = "\n\n".join(f"### {title}\n\n{table}" for title, table in sections if table)
    readme = pathlib.Path(readme or README)
    text = readme.read_text() if readme.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{BEGIN}\n\n{body}\n\n{END}{tail}")
    print(f"wrote {readme}")


if __name__ == "__main__":
    write_report(sys.argv[1] if len(sys.argv) > 1 else RESULTS_DIR)
