"""Figures over training seeds: mean, spread, and the paired difference of two
models with its 95% t-interval and verdict.

Each model (the attention model and its plain-VGG twin) is trained once per
seed with the same recipe; a seed's figures are its accuracy, FGSM accuracy
per eps, transfer accuracy and Jaccard index per rule and map. Two models are
compared seed by seed (seed `s` of one against seed `s` of the other), so the
seed's shared luck cancels: for `n` seeds with differences `d_1..d_n`,

    mean d +/- t(0.975, n - 1) * std(d, ddof=1) / sqrt(n)

is the 95% confidence interval of the mean difference (Student's t with
`n - 1` degrees of freedom). The claim "the model is better" then:

- `"holds"`: the interval lies above 0 in the claimed direction;
- `"does not hold"`: it lies below 0 (the other model is better);
- `"not resolved at this scale"`: it contains 0.

The figures live in `docs/results/seeds.json` (`read_seeds`, `write_seeds`):

    {"format": 1,
     "models": {"cifar10-att3-w0125": {"role": "model", "seeds": [
         {"seed": 0, "source": "...", "figures": {
             "accuracy": 0.8342,
             "fgsm": {"0": 0.835, "1": 0.569, ...},
             "transfer": {"top1": 0.614, "mean_class": 0.466},
             "jaccard": {"mean": {"attention_3": 0.387, ...}, "0.25": {...}}}}]},
                "cifar10-vgg-w0125": {"role": "baseline", "seeds": [...]}}}

`figures_from_report` turns one `evaluate.py --report-dir` report (a model
beside its baseline) into the two models' figures for one seed.
"""

import json
import math
import os

import numpy as np

from keras_ltpa.utils.files import write_json

SEEDS_FORMAT = 1
CONFIDENCE = 0.95
HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_RESOLVED = "not resolved at this scale"
ONE_SEED = "1 seed: no interval"
ROLES = ("model", "baseline")


# --- Statistics ----------------------------------------------------------------


def _values(values, name):
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must hold finite numbers; received {list(values)!r}.")
    return array


def summarize(values):
    """Mean and sample standard deviation (ddof=1) of per-seed figures.

    Args:
        values: a sequence of numbers, one per seed (at least one).

    Returns:
        A dict: `n`, `mean`, `std` (None for a single seed: a spread needs
        two).

    Example:
    >>> summarize([1.0, 2.0, 3.0])
    {'n': 3, 'mean': 2.0, 'std': 1.0}
    """
    array = _values(values, "values")
    if array.size == 0:
        raise ValueError("`values` is empty: give one figure per seed.")
    std = float(np.std(array, ddof=1)) if array.size > 1 else None
    return {"n": int(array.size), "mean": float(array.mean()), "std": std}


def t_quantile(confidence, degrees_of_freedom):
    """The two-sided Student's t quantile, `t.ppf((1 + confidence) / 2, df)`."""
    from scipy import stats

    return float(stats.t.ppf((1.0 + confidence) / 2.0, degrees_of_freedom))


def verdict(low, high):
    """The claim's verdict from the interval of (claimed better - other).

    Args:
        low, high: the interval's ends.

    Returns:
        `"holds"` when `low > 0`, `"does not hold"` when `high < 0`, else
        `"not resolved at this scale"` (an interval touching 0 contains it).
    """
    if low > 0:
        return HOLDS
    if high < 0:
        return DOES_NOT_HOLD
    return NOT_RESOLVED


def paired_difference(model_values, baseline_values, confidence=CONFIDENCE, higher_is_better=True):
    """The mean per-seed difference of two models, its t-interval and verdict.

    Args:
        model_values: the model's figure per seed.
        baseline_values: the other model's figure for the same seeds, in the
            same order.
        confidence: the interval's coverage, in (0, 1); 0.95 by default.
        higher_is_better: the claimed direction: True when the claim is
            that the model's figure is higher (accuracy, Jaccard); False
            when lower is better (an error rate). The difference is taken
            in the claimed direction: `model - baseline` or `baseline -
            model`.

    Returns:
        A dict: `n`, `differences` (per seed), `mean`, `std` (ddof=1), `t`
        (the quantile with n - 1 degrees of freedom), `half_width`, `low`,
        `high` and `verdict`.

    Raises:
        ValueError: fewer than two seeds (no interval without a spread), or
            lists of different lengths.

    Example:
    >>> result = paired_difference([85, 86, 84, 87], [83, 84, 83, 84])
    >>> round(result["low"], 4), round(result["high"], 4), result["verdict"]
    (0.7008, 3.2992, 'holds')
    """
    model_array = _values(model_values, "model_values")
    baseline_array = _values(baseline_values, "baseline_values")
    if model_array.size != baseline_array.size:
        raise ValueError(
            f"Paired figures need one value per seed from each model; received "
            f"{model_array.size} and {baseline_array.size} values."
        )
    n = int(model_array.size)
    if n < 2:
        raise ValueError(
            f"A t-interval needs at least 2 paired seeds (n - 1 >= 1 degrees of "
            f"freedom); received n={n}. Train more seeds, or report the single "
            "difference without an interval."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); received {confidence!r}.")
    differences = model_array - baseline_array
    if not higher_is_better:
        differences = -differences
    mean = float(differences.mean())
    std = float(np.std(differences, ddof=1))
    t = t_quantile(confidence, n - 1)
    half_width = t * std / math.sqrt(n)
    low, high = mean - half_width, mean + half_width
    return {
        "n": n,
        "differences": differences.tolist(),
        "mean": mean,
        "std": std,
        "t": t,
        "half_width": half_width,
        "low": low,
        "high": high,
        "verdict": verdict(low, high),
    }


# --- Figures of one seed -----------------------------------------------------------


def _eps_key(eps):
    return f"{float(eps):g}"


def _rule_key(threshold):
    return "mean" if threshold == "mean" else f"{float(threshold):g}"


def figures_from_report(report):
    """The figures of the model and of its baseline in one evaluation report.

    Args:
        report: a dict as `evaluate.py --report-dir` writes it
            (`keras_ltpa.evaluation.report.read_report`), with a model and
            its `--baseline`.

    Returns:
        {"model": (name, figures), "baseline": (name, figures)}: the names
        are the models' sources without `preset:`; figures as in this
        module's docstring. The model's Jaccard entries are its maps and the
        centred prior (whose area follows the model's map); the baseline's
        is its Grad-CAM, `cam`. The flip-TTA accuracy, when measured, is
        `accuracy_flip_tta`.
    """
    models = report.get("models") or {}
    missing = [role for role in ROLES if role not in models]
    if missing:
        raise ValueError(
            f"The report compares no model with a baseline (missing: {', '.join(missing)}); "
            "write it with `evaluate.py --model ... --baseline ... --report-dir ...`."
        )
    figures = {role: {} for role in ROLES}
    for role in ROLES:
        classification = (report.get("classification") or {}).get(role)
        if classification:
            figures[role]["accuracy"] = classification["accuracy"]
            if "flip_tta" in classification:
                figures[role]["accuracy_flip_tta"] = classification["flip_tta"]["accuracy"]
        robustness = (report.get("robustness") or {}).get(role)
        if robustness:
            figures[role]["fgsm"] = {
                _eps_key(eps): value
                for eps, value in zip(robustness["epsilons"], robustness["accuracy"])
            }
        transfer = (report.get("transfer") or {}).get(role)
        if transfer:
            figures[role]["transfer"] = {
                "top1": transfer["accuracy"],
                "mean_class": transfer["mean_class_accuracy"],
            }
    localization = report.get("localization") or []
    if isinstance(localization, dict):
        localization = [localization]
    for result in localization:
        rule = _rule_key(result["threshold"])
        jaccard = result["jaccard"]
        figures["model"].setdefault("jaccard", {})[rule] = {
            method: value for method, value in jaccard.items() if method != "baseline_cam"
        }
        if "baseline_cam" in jaccard:
            figures["baseline"].setdefault("jaccard", {})[rule] = {"cam": jaccard["baseline_cam"]}
    return {
        role: (models[role]["source"].removeprefix("preset:"), figures[role]) for role in ROLES
    }


# --- seeds.json ----------------------------------------------------------------


def empty_seeds():
    """A seeds document with no models yet."""
    return {"format": SEEDS_FORMAT, "models": {}}


def add_seed(document, name, role, seed, figures, source=None):
    """Adds (or replaces) one seed's figures of one model, in place.

    Args:
        document: a seeds document (`empty_seeds`, `read_seeds`).
        name: the model's name, e.g. a preset name.
        role: `"model"` (the attention model) or `"baseline"`.
        seed: the training seed, an int >= 0.
        figures: the seed's figures (see `figures_from_report`).
        source: where the figures came from (a report path), kept as is.

    Returns:
        `document`.
    """
    if role not in ROLES:
        raise ValueError(f"`role` must be one of {ROLES}; received role={role!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0; received seed={seed!r}.")
    models = document.setdefault("models", {})
    for other, entry in models.items():
        if other != name and entry.get("role") == role:
            raise ValueError(
                f"{other!r} already has the role {role!r}; one model per role "
                f"(received {name!r})."
            )
    entry = models.setdefault(name, {"role": role, "seeds": []})
    if entry.get("role") != role:
        raise ValueError(f"{name!r} has the role {entry.get('role')!r}, not {role!r}.")
    record = {"seed": seed, "figures": figures}
    if source is not None:
        record["source"] = source
    entry["seeds"] = sorted(
        [s for s in entry["seeds"] if s["seed"] != seed] + [record], key=lambda s: s["seed"]
    )
    return document


def seeds_from_report(report, seed, source=None, document=None, names=None):
    """Adds both models' figures of one report as `seed` (see
    `figures_from_report`), each under its name in the report or, where
    `names` ({role: name}) gives one, under that (a run directory filed as
    the preset it is a seed of)."""
    document = empty_seeds() if document is None else document
    names = names or {}
    for role, (name, figures) in figures_from_report(report).items():
        add_seed(document, names.get(role) or name, role, seed, figures, source)
    return document


def check_seeds(document):
    """Validates a seeds document's shape; returns it."""
    if not isinstance(document, dict) or document.get("format") != SEEDS_FORMAT:
        raise ValueError(
            f"Not a seeds document of format {SEEDS_FORMAT}: expected "
            f"{{'format': {SEEDS_FORMAT}, 'models': {{...}}}}."
        )
    roles = {}
    for name, entry in document.get("models", {}).items():
        role = entry.get("role")
        if role not in ROLES:
            raise ValueError(f"Model {name!r} has role {role!r}; expected one of {ROLES}.")
        if role in roles:
            raise ValueError(f"Models {roles[role]!r} and {name!r} both have the role {role!r}.")
        roles[role] = name
        seeds = [s.get("seed") for s in entry.get("seeds", [])]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"Model {name!r} lists a seed twice: {seeds}.")
    return document


def read_seeds(path):
    """The seeds document at `path` (checked)."""
    try:
        with open(os.fspath(path)) as file:
            document = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the seeds file {os.fspath(path)!r}: {error}") from None
    return check_seeds(document)


def write_seeds(path, document):
    """Writes a seeds document as JSON, atomically; returns `path`."""
    return write_json(path, check_seeds(document))


# --- The comparison --------------------------------------------------------------


def _flatten(figures, prefix=()):
    for key, value in figures.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _model_of_role(document, role):
    for name, entry in document.get("models", {}).items():
        if entry["role"] == role:
            return name, {s["seed"]: dict(_flatten(s["figures"])) for s in entry["seeds"]}
    raise ValueError(f"The seeds document has no {role!r} model; add its seeds first.")


def _comparisons(model_keys, baseline_keys):
    """(figure label, model key, other key, other side) of every comparison."""
    rows = []
    for key in sorted(model_keys, key=_sort_key):
        if key in baseline_keys:  # accuracy, fgsm, transfer: the same figure
            rows.append((key, key, "baseline"))
    jaccard = sorted((k for k in model_keys if k[0] == "jaccard"), key=_sort_key)
    for key in jaccard:
        _, rule, method = key
        if method == "gaussian_prior":
            continue
        if ("jaccard", rule, "cam") in baseline_keys:
            rows.append((key, ("jaccard", rule, "cam"), "baseline"))
        if ("jaccard", rule, "gaussian_prior") in model_keys:
            rows.append((key, ("jaccard", rule, "gaussian_prior"), "model"))
    return rows


def _sort_key(key):
    order = {"accuracy": 0, "accuracy_flip_tta": 1, "fgsm": 2, "transfer": 3, "jaccard": 4}
    named = {"mean": -1.0, "top1": 0.0, "mean_class": 1.0}  # mean rule first; top-1 first
    rest = []
    for part in key[1:]:
        try:
            rest.append((0, named[part] if part in named else float(part), ""))
        except ValueError:
            rest.append((1, 0.0, part))
    return (order.get(key[0], 5), rest)


def compare_seeds(document, confidence=CONFIDENCE):
    """Every figure of the two models over their common seeds.

    Per figure: each side's mean and std over the paired seeds, and the
    paired difference (model minus the other side: the baseline's same
    figure; for a Jaccard map, the baseline's Grad-CAM and, in a second
    row, the centred prior) with its t-interval and verdict. With one
    paired seed the difference has no interval (`interval` None, verdict
    `"1 seed: no interval"`).

    Args:
        document: a seeds document.
        confidence: the intervals' coverage.

    Returns:
        A dict: `model`, `baseline` (names), `seeds` (the paired seeds),
        `unpaired` ({name: seeds without a partner}) and `rows`: a list of
        dicts `key`, `versus`, `versus_side`, `model` and `other`
        (`summarize` results), `difference` (mean) and `interval`
        (`paired_difference` result or None) and `verdict`.
    """
    check_seeds(document)
    model_name, model_seeds = _model_of_role(document, "model")
    baseline_name, baseline_seeds = _model_of_role(document, "baseline")
    paired = sorted(set(model_seeds) & set(baseline_seeds))
    if not paired:
        raise ValueError(
            f"{model_name!r} (seeds {sorted(model_seeds)}) and {baseline_name!r} (seeds "
            f"{sorted(baseline_seeds)}) share no seed: nothing to pair."
        )
    model_keys = set.intersection(*(set(model_seeds[s]) for s in paired))
    baseline_keys = set.intersection(*(set(baseline_seeds[s]) for s in paired))
    rows = []
    for key, versus, side in _comparisons(model_keys, baseline_keys):
        ours = [model_seeds[s][key] for s in paired]
        other_seeds = model_seeds if side == "model" else baseline_seeds
        theirs = [other_seeds[s][versus] for s in paired]
        interval = (
            paired_difference(ours, theirs, confidence) if len(paired) > 1 else None
        )
        rows.append({
            "key": list(key),
            "versus": list(versus),
            "versus_side": side,
            "model": summarize(ours),
            "other": summarize(theirs),
            "difference": float(np.mean(np.subtract(ours, theirs))),
            "interval": interval,
            "verdict": interval["verdict"] if interval else ONE_SEED,
        })
    return {
        "model": model_name,
        "baseline": baseline_name,
        "seeds": paired,
        "confidence": confidence,
        "unpaired": {
            name: sorted(set(seeds) - set(paired))
            for name, seeds in ((model_name, model_seeds), (baseline_name, baseline_seeds))
            if set(seeds) - set(paired)
        },
        "rows": rows,
    }


# --- Markdown ------------------------------------------------------------------------


def _label(key, versus, side):
    if key[0] == "accuracy":
        return "test accuracy (%)"
    if key[0] == "accuracy_flip_tta":
        return "test accuracy, flip TTA (%)"
    if key[0] == "fgsm":
        return f"FGSM accuracy (%), eps {key[1]}"
    if key[0] == "transfer":
        return {"top1": "transfer top-1 (%)", "mean_class": "transfer mean-class (%)"}.get(
            key[1], f"transfer {key[1]} (%)"
        )
    rule = "mean rule" if key[1] == "mean" else f"top {float(key[1]):.0%}"
    other = "baseline Grad-CAM" if side == "baseline" else "centred prior"
    return f"Jaccard, {rule}: {key[2]} vs {other}"


def _scale(key):
    """(factor, decimals) of a figure in the table: percent or plain."""
    return (1.0, 3) if key[0] == "jaccard" else (100.0, 1)


def _mean_std(summary, factor, decimals):
    mean = f"{factor * summary['mean']:.{decimals}f}"
    if summary["std"] is None:
        return mean
    return f"{mean} ± {factor * summary['std']:.{decimals}f}"


def _signed(value, decimals):
    return f"{value:+.{decimals}f}"


def markdown_table(comparison):
    """The comparison as a Markdown table (one row per figure).

    Columns: the figure, each model's mean ± std over the paired seeds
    (percent for accuracies, Jaccard as is), the paired difference with its
    95% interval (or "1 seed: no interval") and the verdict.
    """
    confidence = f"{comparison['confidence']:.0%}"
    header = [
        "figure", f"{comparison['model']}", f"{comparison['baseline']} / prior",
        f"difference [{confidence} CI]", "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in comparison["rows"]:
        factor, decimals = _scale(row["key"])
        difference = _signed(factor * row["difference"], decimals)
        interval = row["interval"]
        if interval is None:
            cell = f"{difference} ({ONE_SEED})"
        else:
            cell = (
                f"{difference} [{_signed(factor * interval['low'], decimals)}, "
                f"{_signed(factor * interval['high'], decimals)}]"
            )
        lines.append("| " + " | ".join([
            _label(row["key"], row["versus"], row["versus_side"]),
            _mean_std(row["model"], factor, decimals),
            _mean_std(row["other"], factor, decimals),
            cell,
            row["verdict"],
        ]) + " |")
    return "\n".join(lines)


def markdown(comparison):
    """A short Markdown section: what was paired, then `markdown_table`."""
    seeds = comparison["seeds"]
    count = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    lines = [
        f"{comparison['model']} against {comparison['baseline']}: {count} "
        f"({', '.join(map(str, seeds))}), each model trained once per seed with the "
        "same recipe; mean ± std (ddof=1) over the seeds, and the per-seed "
        f"difference with its {comparison['confidence']:.0%} t-interval "
        "(n - 1 degrees of freedom). Verdicts: \"holds\" when the interval is above 0, "
        "\"does not hold\" when below, \"not resolved at this scale\" when it "
        "contains 0. Accuracies in %, Jaccard indices as is; Jaccard rows compare "
        "each attention map with the baseline's Grad-CAM, then with the centred "
        "prior.",
        "",
    ]
    if comparison["unpaired"]:
        unpaired = "; ".join(
            f"{name}: {', '.join(map(str, seeds))}" for name, seeds in comparison["unpaired"].items()
        )
        lines += [f"Seeds without a partner (left out): {unpaired}.", ""]
    lines.append(markdown_table(comparison))
    return "\n".join(lines) + "\n"
