"""One report of every evaluation: JSON, a Markdown table and PNG plots.

`training/evaluate.py --report-dir DIR` (or `write_report`) gathers what was
measured for a model and, with `--baseline`, its plain VGG baseline:

- `classification`: test accuracy and top-5 (`evaluate_classification`),
  and with `--tta flip` the same over each image and its mirror, apart;
- `localization`: mean Jaccard of each map against the masks, with the
  centred prior and the baseline's Grad-CAM (`localization`);
- `robustness`: FGSM accuracy at each epsilon (`fgsm_robustness`);
- `transfer`: linear-SVM accuracy on an unseen dataset (`transfer`);

and writes `report.json` (everything, per-image values included),
`report.md` (the tables, each file written to a temporary name and
renamed) and the plots `fgsm_accuracy.png` and `localization_jaccard.png`.
"""

import json
import os

from keras_ltpa.utils.files import write_atomically
from keras_ltpa.utils.files import write_json

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
FGSM_PLOT = "fgsm_accuracy.png"
LOCALIZATION_PLOT = "localization_jaccard.png"


def _rule_name(threshold):
    return "mean rule" if threshold == "mean" else f"top {float(threshold):.0%}"


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _models_table(models, names):
    return _table(
        ["", *names],
        [
            ["file", *[f"`{models[n]['source']}`" for n in names]],
            ["variant", *[str(models[n].get("variant")) for n in names]],
            ["width", *[str(models[n].get("width_multiplier")) for n in names]],
            ["input", *["x".join(map(str, models[n].get("input_shape", [])[:2])) for n in names]],
        ],
    )


def _classification_section(report, names):
    classification = report.get("classification")
    if not classification:
        return []
    first = classification[names[0]]
    return ["", f"## Classification ({first['count']} images)", ""] + _table(
        ["", *names],
        [
            ["top-1 accuracy (%)", *[_percent(classification[n]["accuracy"]) for n in names]],
            [f"top-{first['top_k']} accuracy (%)",
             *[_percent(classification[n]["top_k_accuracy"]) for n in names]],
            *_flip_tta_rows(classification, names, first["top_k"]),
        ],
    )


def _flip_tta_rows(classification, names, top_k):
    """The flip-TTA accuracies (`evaluate.py --tta flip`), when measured."""
    if not any("flip_tta" in classification[n] for n in names):
        return []

    def cell(name, key):
        tta = classification[name].get("flip_tta")
        return _percent(tta[key]) if tta else "-"

    return [
        ["top-1 accuracy, flip TTA (%)", *[cell(n, "accuracy") for n in names]],
        [f"top-{top_k} accuracy, flip TTA (%)", *[cell(n, "top_k_accuracy") for n in names]],
    ]


def _localization_section(report, names):
    localization = report.get("localization")
    if not localization:
        return []
    methods = list(localization[0]["jaccard"])
    title = f"## Localisation: mean Jaccard index over {localization[0]['count']} images"
    return ["", title, ""] + _table(
        ["method", *[_rule_name(r["threshold"]) for r in localization]],
        [[m, *[f"{r['jaccard'][m]:.3f}" for r in localization]] for m in methods],
    )


def _robustness_section(report, names):
    robustness = report.get("robustness")
    if not robustness:
        return []
    first = robustness[names[0]]
    rows = [
        [f"{eps:g}", *[_percent(robustness[n]["accuracy"][i]) for n in names]]
        for i, eps in enumerate(first["epsilons"])
    ]
    flips = [robustness[n]["mean_flip_epsilon"] for n in names]
    rows.append(["mean flip eps", *["-" if f is None else f"{f:.2f}" for f in flips]])
    title = f"## Robustness: accuracy (%) under FGSM, {first['count']} images"
    return (
        ["", title, ""]
        + _table(["eps (0..255)", *names], rows)
        + ["", f"![FGSM accuracy]({FGSM_PLOT})"]
    )


def _transfer_section(report, names):
    transfer = report.get("transfer")
    if not transfer:
        return []
    first = transfer[names[0]]
    title = (
        f"## Transfer: linear SVM on {report.get('transfer_dataset', 'the target set')} "
        f"({first['num_classes']} classes, {first['train_count']} train / "
        f"{first['test_count']} test images)"
    )
    return ["", title, ""] + _table(
        ["", *names],
        [
            ["features", *[f"{transfer[n]['features']} ({transfer[n]['feature_dim']})" for n in names]],
            ["top-1 accuracy (%)", *[_percent(transfer[n]["accuracy"]) for n in names]],
            ["mean class accuracy (%)",
             *[_percent(transfer[n]["mean_class_accuracy"]) for n in names]],
        ],
    )


def markdown(report):
    """The report's tables as Markdown.

    Args:
        report: a dict as `write_report` takes it.

    Returns:
        A string: a title, the models' table, then one section per
        evaluation present (classification, localisation, robustness,
        transfer).

    Example:
    >>> report = {"models": {"model": {"source": "a.keras", "input_shape": [32, 32, 3]}},
    ...           "classification": {"model": {"count": 8, "accuracy": 0.5,
    ...                                        "top_k": 5, "top_k_accuracy": 0.875}}}
    >>> print(markdown(report).split("## ")[1].strip())
    Classification (8 images)
    <BLANKLINE>
    |  | model |
    |---|---|
    | top-1 accuracy (%) | 50.0 |
    | top-5 accuracy (%) | 87.5 |
    """
    models = report["models"]
    names = sorted(models, key=lambda name: name != "model")  # the model first
    lines = ["# Evaluation report", ""] + _models_table(models, names)
    for section in (
        _classification_section, _localization_section, _robustness_section, _transfer_section
    ):
        lines += section(report, names)
    return "\n".join(lines) + "\n"


def _save_figure(figure, path):
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))


def plot_fgsm(robustness, path):
    """Accuracy against epsilon, one line per model, as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    for name, result in robustness.items():
        axes.plot(result["epsilons"], [100 * a for a in result["accuracy"]], marker="o", label=name)
    axes.set_xlabel("FGSM epsilon (pixel units, 0..255)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _save_figure(figure, path)


def plot_localization(localization, path):
    """Mean Jaccard per method (bars), for the first threshold rule, as a PNG."""
    from matplotlib.figure import Figure

    result = localization[0]
    methods = list(result["jaccard"])
    figure = Figure(figsize=(1.2 + 0.9 * len(methods), 3.5))
    axes = figure.subplots()
    axes.bar(range(len(methods)), [result["jaccard"][m] for m in methods], color="tab:blue")
    axes.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes.set_ylabel(f"mean Jaccard ({_rule_name(result['threshold'])})")
    axes.set_ylim(0, 1)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    _save_figure(figure, path)


def write_report(report, directory):
    """Writes `report.json`, `report.md` and the plots into `directory`.

    Args:
        report: a dict with `models` ({name: description}) and any of
            `classification`, `robustness`, `transfer` ({name: result}) and
            `localization` (a list of results, one per threshold rule).
        directory: the output folder (created if missing).

    Returns:
        {kind: path} of the files written.
    """
    if not report.get("models"):
        raise ValueError("`report` needs `models`: {name: description} of what was scored.")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    written = {"json": write_json(os.path.join(directory, REPORT_JSON), report)}
    if report.get("robustness"):
        written["fgsm_plot"] = os.path.join(directory, FGSM_PLOT)
        plot_fgsm(report["robustness"], written["fgsm_plot"])
    if report.get("localization"):
        written["localization_plot"] = os.path.join(directory, LOCALIZATION_PLOT)
        plot_localization(report["localization"], written["localization_plot"])
    text = markdown(report)
    if report.get("localization"):
        text += f"\n![Localisation]({LOCALIZATION_PLOT})\n"

    def write_text(temporary):
        with open(temporary, "w") as file:
            file.write(text)

    written["markdown"] = write_atomically(os.path.join(directory, REPORT_MARKDOWN), write_text)
    return written


def read_report(directory):
    """The `report.json` of a report folder."""
    path = os.path.join(os.fspath(directory), REPORT_JSON)
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the report {path!r}: {error}") from None


def rewrite_between_markers(path, start, end, block):
    """Replaces the text of a file between two marker lines, atomically.

    Everything before the `start` marker and after the `end` marker is kept;
    `block` (which should begin with `start` and end with `end`, so that the
    next rewrite finds them again) takes their place.

    Args:
        path: the file, e.g. the README.
        start, end: the marker strings, e.g. `"<!-- seeds:start -->"`.
        block: the new text from `start` to `end`, both included.

    Returns:
        `path`.

    Raises:
        ValueError: the file lacks one of the markers, or `block` does not
            start and end with them.
    """
    path = os.fspath(path)
    with open(path) as file:
        text = file.read()
    missing = [marker for marker in (start, end) if marker not in text]
    if missing:
        raise ValueError(
            f"{path} has no {' and no '.join(missing)} line; add the lines "
            f"{start} and {end} where the block belongs."
        )
    if not (block.startswith(start) and block.rstrip().endswith(end)):
        raise ValueError(f"`block` must start with {start} and end with {end}.")
    before = text.split(start, 1)[0]
    after = text.split(end, 1)[1]

    def write(temporary):
        with open(temporary, "w") as file:
            file.write(before + block.rstrip() + after)

    return write_atomically(path, write)
