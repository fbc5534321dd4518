"""The demo's comparison table, verdict and Markdown report (text only; no file reading).

:func:`comparison_text` is what ``mssoft demo`` prints; :func:`render_report` is ``report.md`` (one
function per section); :func:`write_comparison_csv` is ``comparison.csv``. All take the
:class:`mssoft.experiments.demo.run.DemoResult` (or its scores) and format numbers as percent with
one decimal; an undefined mean is ``NaN``.

The FLAIR-threshold baseline (:data:`mssoft.experiments.demo.types.FLAIR_MODEL`) stands beside the
two U-Nets everywhere: a column of the table, paired "U-Net minus baseline" differences, and the
definition of *learned*: a model learned when its validation Dice at the saved epoch beats the
baseline's Dice on the same validation slices (:func:`failed_models`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY
from mssoft.arrays.paired_stats import PairedDifference, paired_difference
from mssoft.experiments.demo.types import FLAIR_MODEL, DemoResult, Score
from mssoft.files.atomic import atomic_path

__all__ = [
    "TABLE_METRICS",
    "REFERENCES",
    "saved_epoch_dice",
    "failed_models",
    "comparison_rows",
    "comparison_text",
    "verdict",
    "dice_differences",
    "baseline_differences",
    "describe_difference",
    "calibration_grid_text",
    "render_report",
    "write_comparison_csv",
]

#: Metric key and label of the comparison table (the paper's three).
TABLE_METRICS = (("dice", "Dice"), ("ppv", "Precision"), ("tpr", "Recall"))
#: References in table order.
REFERENCES = ("rater 1", "rater 2", "truth")
_CSV_METRICS = ("dice", "ppv", "tpr", "ltpr", "lfpr", "rel_volume_diff")


def _pct(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{100 * value:.1f}"


def _delta(soft: float, binary: float) -> str:
    diff = soft - binary
    return "NaN" if math.isnan(diff) else f"{100 * diff:+.1f}"


def _by_key(scores: Sequence[Score]) -> dict[tuple[str, str], Score]:
    return {(s.model, s.reference): s for s in scores}


def comparison_rows(
    scores: Sequence[Score], metrics: Sequence[tuple[str, str]] = TABLE_METRICS
) -> list[tuple[str, ...]]:
    """Rows ``(reference, metric label, binary %, soft %, soft - binary, FLAIR threshold %)``.

    References without both a binary and a soft score are left out; the FLAIR-threshold column is
    ``n/a`` without a baseline score.
    """
    index = _by_key(scores)
    rows = []
    for reference in REFERENCES:
        binary, soft = index.get(("binary", reference)), index.get(("soft", reference))
        if binary is None or soft is None:
            continue
        flair = index.get((FLAIR_MODEL, reference))
        name = "truth > 0.5" if reference == "truth" else reference
        for key, label in metrics:
            b, s = binary.mean(key), soft.mean(key)
            f = "n/a" if flair is None else _pct(flair.mean(key))
            rows.append((name, label, _pct(b), _pct(s), _delta(s, b), f))
    return rows


def saved_epoch_dice(history: Sequence[dict[str, float]], best_epoch: int | None) -> float:
    """Dice at 0.5 on the validation slices (else the training slices) at the saved epoch.

    Returns NaN when the history has no row for ``best_epoch``.
    """
    for row in history:
        if best_epoch is not None and int(row["epoch"]) == best_epoch:
            return float(row.get("val_dice", row.get("dice", math.nan)))
    return math.nan


def _baseline_dice(result: Any, name: str) -> float:
    """The baseline's Dice on model ``name``'s validation slices (NaN without a baseline)."""
    baseline = getattr(result, "baseline", None)
    return math.nan if baseline is None else baseline.validation_dice.get(name, math.nan)


def failed_models(result: DemoResult) -> list[str]:
    """Models that did not learn: their saved epoch's validation Dice does not beat the
    FLAIR-threshold baseline's Dice on the same validation slices (or they have no saved epoch).

    Without a baseline (none computed) only a missing validation Dice fails a model.
    """
    failed = []
    for name, run in result.runs.items():
        dice = saved_epoch_dice(run.history, run.best_epoch)
        level = _baseline_dice(result, name)
        if not math.isfinite(dice) or (math.isfinite(level) and dice <= level):
            failed.append(name)
    return failed


def _void_verdict(result: DemoResult, failed: Sequence[str]) -> str:
    """The verdict when a model did not learn: no winner is named."""
    detail = ", ".join(
        f"the {name}-mask model {_pct(saved_epoch_dice(run.history, run.best_epoch))} % "
        f"against the baseline's {_pct(_baseline_dice(result, name))} %"
        for name, run in result.runs.items()
        if name in failed
    )
    which = (
        "neither model beat the FLAIR-threshold baseline"
        if len(failed) == len(result.runs)
        else f"the {failed[0]}-mask model did not beat the FLAIR-threshold baseline"
    )
    return (
        f"**No fair comparison in this run**: {which} on its validation slices (Dice at 0.5 at the "
        f"saved epoch: {detail}). A model that a single FLAIR threshold matches has learned "
        "nothing the comparison could credit to its masks: training was too short, or the "
        "outputs collapsed towards 0 early on, a known failure of Dice-loss training from some "
        "initialisations (see the training curves). The table compares models that did not both "
        "learn; run the demo again with more `--epochs` or another `--seed`."
    )


def _headline(differences: dict[str, PairedDifference]) -> str:
    deltas = {r: d.mean_difference for r, d in differences.items()}
    points = ", ".join(f"{100 * d:+.1f} points against {r}" for r, d in deltas.items())
    if deltas and all(d.ci_low > 0 for d in differences.values()):
        return f"**Soft masks beat binary masks** in mean Dice on the held-out scans ({points})."
    if deltas and all(d.ci_high < 0 for d in differences.values()):
        return f"**Soft masks did not beat binary masks** here: mean Dice is lower ({points})."
    if deltas and all(d == 0 for d in deltas.values()):
        return "**Soft and binary masks tie** in mean Dice on the held-out scans."
    if deltas and all(d > 0 for d in deltas.values()):
        return f"**Soft masks scored higher, but not beyond the noise** ({points})."
    if deltas and all(d < 0 for d in deltas.values()):
        return f"**Soft masks scored lower, but not beyond the noise** ({points})."
    return f"**Mixed result**: soft masks change the mean Dice by {points}."


def _against_baseline_sentence(result: DemoResult) -> str:
    """`` Against the FLAIR-threshold baseline (...): binary ...; soft ...`` or ""."""
    differences = baseline_differences(result)
    if not differences:
        return ""
    parts = "; ".join(
        f"{model} − baseline against {reference}: {describe_difference(d)}"
        for (model, reference), d in differences.items()
        if reference == "rater 1"
    )
    return (
        " Against the FLAIR-threshold baseline (one z-score threshold on the FLAIR, calibrated "
        f"on the same training scans), U-Net minus baseline Dice: {parts}."
    )


def verdict(result: DemoResult) -> str:
    """One honest paragraph: did soft masks beat binary masks in Dice against the raters?

    A model that did not learn (:func:`failed_models`) voids the comparison, and the paragraph
    says so instead of naming a winner.
    """
    failed = failed_models(result)
    if failed:
        return _void_verdict(result, failed)
    differences = dice_differences(result)
    wins = pairs = 0
    index = _by_key(result.scores)
    for reference in differences:
        binary, soft = index[("binary", reference)], index[("soft", reference)]
        for scan, dice in soft.scan_dice.items():
            if scan in binary.scan_dice:
                pairs += 1
                wins += dice > binary.scan_dice[scan]
    evidence = "; ".join(f"{r}: {describe_difference(d)}" for r, d in differences.items())
    n_scans = len(result.data.heldout_scans)
    n_patients = len(result.data.patients("heldout"))
    return (
        f"{_headline(differences)} Paired per held-out scan, soft minus binary Dice: {evidence} "
        "(95 % paired bootstrap interval of the mean difference, two-sided Wilcoxon signed-rank "
        f"p). Per scan and rater, the soft-mask model has the higher Dice in {wins} of {pairs} "
        f"comparisons.{_against_baseline_sentence(result)} This is {n_scans} held-out scans of "
        f"{n_patients} synthetic patient{'s' if n_patients > 1 else ''}, one "
        "training seed and a small network: an interval that includes 0 means the difference is "
        "within the run-to-run noise (change `--seed` to see it), and even one that excludes 0 "
        "speaks for this seed only; this run shows the workflow, not evidence for or against the "
        "method (`mssoft cv` with `--repeats` gives that). The paper's claim (a gain of a few "
        "Dice points against both raters, mostly from recall) concerns the real ISBI 2015 data."
    )


def _paired(index: dict[tuple[str, str], Score], treatment: str, base: str, reference: str):
    a, b = index.get((treatment, reference)), index.get((base, reference))
    if a is None or b is None:
        return None
    scans = [s for s in a.scan_dice if s in b.scan_dice]
    return paired_difference([a.scan_dice[s] for s in scans], [b.scan_dice[s] for s in scans])


def dice_differences(result: DemoResult) -> dict[str, PairedDifference]:
    """Soft minus binary Dice per rater, paired per held-out scan (same code as ``mssoft cv``)."""
    index = _by_key(result.scores)
    out = {}
    for reference in ("rater 1", "rater 2"):
        difference = _paired(index, "soft", "binary", reference)
        if difference is not None:
            out[reference] = difference
    return out


def baseline_differences(result: DemoResult) -> dict[tuple[str, str], PairedDifference]:
    """U-Net minus FLAIR-threshold baseline Dice per (model, rater), paired per held-out scan."""
    index = _by_key(result.scores)
    out = {}
    for model in ("binary", "soft"):
        for reference in ("rater 1", "rater 2"):
            difference = _paired(index, model, FLAIR_MODEL, reference)
            if difference is not None:
                out[(model, reference)] = difference
    return out


def describe_difference(d: PairedDifference) -> str:
    """``+5.0 points [95 % CI +1.2, +8.9], p=0.03, n=4`` (Dice points)."""
    if d.n == 0:
        return "no pair"
    ci = (
        "no interval with one pair"
        if not math.isfinite(d.ci_low)
        else f"95 % CI {100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}"
    )
    p = "n/a" if not math.isfinite(d.p_value) else f"{d.p_value:.2g}"
    return f"{100 * d.mean_difference:+.1f} points [{ci}], p={p}, n={d.n}"


def comparison_text(result: DemoResult) -> str:
    """The comparison table as aligned plain text (what ``mssoft demo`` prints)."""
    heldout = result.data.heldout_scans
    thresholds = ", ".join(f"{n} {r.calibration['threshold']:.2f}" for n, r in result.runs.items())
    baseline = getattr(result, "baseline", None)
    if baseline is not None:
        thresholds += f"; FLAIR threshold z >= {baseline.threshold:g}"
    lines = [
        f"Held-out: {len(heldout)} scans of patients {', '.join(result.data.patients('heldout'))}"
        f"; mean over scans, %; calibrated thresholds: {thresholds}",
        f"{'reference':<12}{'metric':<11}{'binary':>8}{'soft':>8}{'soft-binary':>13}"
        f"{'FLAIR-thr':>11}",
    ]
    for reference, metric, b, s, d, f in comparison_rows(result.scores):
        lines.append(f"{reference:<12}{metric:<11}{b:>8}{s:>8}{d:>13}{f:>11}")
    for (model, reference), d in baseline_differences(result).items():
        lines.append(f"{model} minus FLAIR threshold, Dice against {reference}: "
                     f"{describe_difference(d)}")
    inter = _by_key(result.human).get(("rater 1", "rater 2"))
    if inter is not None:
        lines.append(f"human agreement: rater 1 against rater 2, Dice {_pct(inter.mean('dice'))}")
    return "\n".join(lines)


def write_comparison_csv(scores: Sequence[Score], path: str | Path) -> Path:
    """``model, reference, scans`` and the means of :data:`_CSV_METRICS` (fractions), per score
    (model ``flair-threshold`` is the FLAIR-threshold baseline)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "reference", "scans", *_CSV_METRICS])
        for s in scores:
            values = [s.mean(m) for m in _CSV_METRICS]
            writer.writerow(
                [s.model, s.reference, s.summary.n_scans]
                + ["nan" if math.isnan(v) else repr(v) for v in values]
            )
    return path


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """``align``: one of ``l``/``r`` per column."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def calibration_grid_text(calibration: dict[str, Any]) -> str:
    """``grid 0.01 to 0.99 by 0.01`` from a ``calibration.json`` record's ``thresholds``."""
    thresholds = [float(t) for t in calibration.get("thresholds", [])]
    if not thresholds:
        return "its threshold grid"
    if len(thresholds) == 1:
        return f"grid {thresholds[0]:g}"
    steps = {round(b - a, 6) for a, b in zip(thresholds, thresholds[1:], strict=False)}
    step = f" by {steps.pop():g}" if len(steps) == 1 else f" ({len(thresholds)} values)"
    return f"grid {thresholds[0]:g} to {thresholds[-1]:g}{step}"


def _commands(result: DemoResult) -> str:
    c, d = result.config, str(result.config.out)
    train = ",".join(result.data.patients("train"))
    train_scans = ",".join(s.scan_id for s in result.data.train_scans)
    heldout = ",".join(s.scan_id for s in result.data.heldout_scans)
    t = c.training
    common = (
        f"--patients {train} --epochs {t.epochs} --batch-size {t.batch_size} "
        f"--learning-rate {t.learning_rate:g} --base-filters {t.base_filters} --depth {t.depth} "
        f"--seed {t.seed}"
    )
    lines = [
        f"mssoft build-masks {d}/data --out {d}/softmasks --rater 1 "
        f"--ratio {c.mask.params.ratio:g} --gamma {c.mask.params.gamma:g} "
        f"--flair-threshold {c.mask.params.flair_threshold}",
        f"mssoft fit {d}/data --out {d}/runs/binary {common}",
        f"mssoft fit {d}/data --out {d}/runs/soft --masks {d}/softmasks {common}",
    ]
    for name in result.runs:
        lines += [
            f"mssoft calibrate {d}/runs/{name} {d}/data --scans {train_scans}",
            f"mssoft predict {d}/runs/{name} {d}/data --out {d}/predictions/{name} "
            f"--scans {heldout}",
            f"mssoft evaluate {d}/predictions/{name} {d}/data --out {d}/evaluation/{name} "
            f"--scans {heldout} --inter-rater",
        ]
    return "```bash\n" + "\n".join(lines) + "\n```"


_TABLE_HEADER = [
    "Reference",
    "Metric (%)",
    "Binary masks",
    "Soft masks",
    "Soft − binary",
    "FLAIR threshold",
]


def _header_section(result: DemoResult) -> list[str]:
    v, c = result.versions, result.config
    return [
        "# mssoft demo: soft against binary masks on synthetic MS data",
        "",
        f"Wall time **{_duration(result.wall_seconds)}**; mssoft {v.get('mssoft')}, "
        f"TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, "
        f"Python {v.get('python')}. Settings: `{c.out / 'config.json'}`.",
        "",
    ]


def _baseline_rule(result: DemoResult) -> str:
    baseline = getattr(result, "baseline", None)
    if baseline is None:
        return "no FLAIR-threshold baseline was computed"
    return (
        f"FLAIR threshold: brain-z-scored FLAIR >= {baseline.threshold:g}, chosen on the "
        f"training scans (mean Dice {_pct(baseline.rule['mean_dice'])} % against rater 1), "
        "then the models' post-processing"
    )


def _result_section(result: DemoResult) -> list[str]:
    runs, data = result.runs, result.data
    calibration = "; ".join(
        f"{n} model: {r.calibration['threshold']:.2f}, mean Dice "
        f"{_pct(r.calibration['mean_dice'])} % on those scans"
        for n, r in runs.items()
    )
    min_size = runs["binary"].calibration["min_size"]
    return [
        "## Result",
        "",
        verdict(result),
        "",
        _markdown_table(_TABLE_HEADER, comparison_rows(result.scores), "llrrrr"),
        "",
        f"Means over the {len(data.heldout_scans)} scans of the held-out patients "
        f"({', '.join(data.patients('heldout'))}), which neither model saw in training or "
        "calibration. Each segmentation is "
        f"`prob >= threshold` with the threshold calibrated on the training scans ({calibration}), "
        f"then {DEFAULT_CONNECTIVITY}-connected lesions of more than {min_size} voxels; "
        f"{_baseline_rule(result)}. Precision and recall are voxel-wise; `truth > 0.5` is the "
        "synthetic true lesion fraction above one half, which no real data set has.",
        "",
    ]


def _baseline_section(result: DemoResult) -> list[str]:
    baseline = getattr(result, "baseline", None)
    if baseline is None:
        return []
    rows = [
        [f"{model} − FLAIR threshold", reference, describe_difference(d)]
        for (model, reference), d in baseline_differences(result).items()
    ]
    learned = [
        [
            name,
            _pct(saved_epoch_dice(run.history, run.best_epoch)),
            _pct(baseline.validation_dice.get(name, math.nan)),
            "no" if name in failed_models(result) else "yes",
        ]
        for name, run in result.runs.items()
    ]
    return [
        "### Against the FLAIR-threshold baseline",
        "",
        "The trivial baseline: one threshold on the FLAIR, z-scored over the brain, for all "
        "scans, chosen on the training scans by mean Dice against rater 1 (as each model's "
        "threshold), then the models' post-processing. A U-Net that does not beat it has "
        "learned nothing a single intensity threshold would not give. Paired per held-out scan:",
        "",
        _markdown_table(["U-Net minus baseline", "Reference", "Dice"], rows, "lll"),
        "",
        "A model counts as learned when its validation Dice at the saved epoch beats the "
        "baseline's Dice on the same validation slices:",
        "",
        _markdown_table(
            ["Model", "Validation Dice (%)", "FLAIR threshold, same slices (%)", "Learned"],
            learned,
            "lrrl",
        ),
        "",
    ]


def _lesion_section(result: DemoResult) -> list[str]:
    return [
        "Lesion-wise detection (any overlap counts; lesions are "
        f"{DEFAULT_CONNECTIVITY}-connected components):",
        "",
        _markdown_table(
            _TABLE_HEADER,
            comparison_rows(
                result.scores, (("ltpr", "Lesion TPR"), ("lfpr", "Lesion FPR (lower is better)"))
            ),
            "llrrrr",
        ),
        "",
    ]


def _human_section(result: DemoResult) -> list[str]:
    human = _by_key(result.human)
    return [
        "Human reference on the same scans (the first source scored against the second):",
        "",
        _markdown_table(
            ["Comparison", "Dice (%)", "Precision (%)", "Recall (%)"],
            [
                [f"{m} against {'truth > 0.5' if r == 'truth' else r}"]
                + [_pct(human[(m, r)].mean(k)) for k, _ in TABLE_METRICS]
                for (m, r) in human
            ],
            "lrrr",
        ),
        "",
    ]


def _per_scan_section(result: DemoResult) -> list[str]:
    index = _by_key(result.scores)
    models = [*result.runs, FLAIR_MODEL]
    columns = [(n, r) for r in ("rater 1", "rater 2") for n in models if (n, r) in index]
    names = {FLAIR_MODEL: "FLAIR threshold"}
    return [
        "Dice of each held-out scan (%):",
        "",
        _markdown_table(
            ["Scan"] + [f"{names.get(n, n)}, {r}" for n, r in columns],
            [
                [s.scan_id] + [_pct(index[k].scan_dice.get(s.scan_id, math.nan)) for k in columns]
                for s in result.data.heldout_scans
            ],
            "l" + "r" * len(columns),
        ),
        "",
    ]


def _figures_section(result: DemoResult) -> list[str]:
    path = {name: p.relative_to(result.out).as_posix() for name, p in result.figures.items()}
    return [
        "## Figures",
        "",
        f"![Data]({path['data']})",
        "",
        "A training scan: the four modalities, then (zoom) the rater masks, the soft mask built "
        f"from rater 1 (lesion 1, ring {result.config.mask.params.gamma:g}) and the true lesion fraction the "
        "raters were simulated from.",
        "",
        f"![Predictions]({path['predictions']})",
        "",
        "Both models on a held-out slice: lesion probabilities (rater 1 outlined in white) and "
        "the calibrated segmentation coloured against rater 1.",
        "",
        f"![Training curves]({path['training']})",
        "",
        "Soft Dice loss and Dice at 0.5 against rater 1's mask per epoch (validation: solid; "
        "dotted: the FLAIR-threshold baseline on each model's validation slices, the level a "
        "model must beat). The soft-mask model's loss cannot reach -1 (its target is not "
        "binary), so compare the Dice panel between models, not the loss values.",
        "",
        f"![Calibration]({path['calibration']})",
        "",
        "Mean Dice against rater 1 over the training scans at each threshold; the dot is the "
        "chosen threshold.",
        "",
    ]


def _settings_section(result: DemoResult) -> list[str]:
    c, data, binary = result.config, result.data, result.runs["binary"]
    soft = result.runs["soft"]
    shape = " × ".join(str(s) for s in c.shape)
    baseline = getattr(result, "baseline", None)
    flair_grid = (
        ""
        if baseline is None
        else f" The FLAIR-threshold baseline's z-score threshold is chosen the same way, grid "
        f"{baseline.grid[0]:g} to {baseline.grid[-1]:g} ({len(baseline.grid)} values)."
    )
    return [
        "## Settings",
        "",
        f"- **Data**: {len(data.train_scans) + len(data.heldout_scans)} synthetic scans "
        f"(`mssoft.synthetic`, seed {c.seed}) in the ISBI 2015 layout: {c.patients} training "
        f"and {c.heldout} held-out patient{'s' if c.heldout > 1 else ''} × {c.timepoints} "
        f"time point{'s' if c.timepoints > 1 else ''}, grid {shape} at "
        "1 mm, FLAIR, T1, T2 and PD. Two simulated raters per scan; mean lesion load per scan: "
        + ", ".join(
            f"rater {r} {v:.1f} mL ({data.rater_lesions[r]:.1f} lesions)"
            for r, v in data.rater_volume_ml.items()
        )
        + ".",
        f"- **Soft masks** (rater 1): ratio {c.mask.params.ratio:g}, "
        f"gamma {c.mask.params.gamma:g}, FLAIR threshold {c.mask.params.flair_threshold}; "
        f"achieved (|M| + |D|) / |M| = {data.soft_ratio:.3f} over the "
        "training scans (grown voxels darker than the threshold are dropped).",
        f"- **Model**: 2D U-Net, {c.training.base_filters} filters at the first level, "
        f"depth {c.training.depth}, "
        f"{binary.parameters:,} weights; inputs FLAIR, T1, T2, PD normalised over the brain "
        f"(`--normalise {c.training.normalise}`).",
        f"- **Training** (both models, same seed {c.seed}, same slices and split): axial slices "
        f"with a rater-1 lesion only, {binary.train_slices} training and {binary.val_slices} "
        f"validation slices; {c.training.epochs} epochs, batch {c.training.batch_size}, "
        f"Adam {c.training.learning_rate:g}, "
        f"random rotations in [-{c.training.rotation_degrees:g}, {c.training.rotation_degrees:g}] "
        f"degrees (`--augment {c.training.augment}`); the saved model is the epoch with the best "
        f"validation loss (binary: epoch {binary.best_epoch}, soft: epoch {soft.best_epoch}).",
        f"- **Calibration**: threshold maximising the mean per-scan Dice against rater 1 over "
        f"the {len(data.train_scans)} training scans, "
        f"{calibration_grid_text(binary.calibration)}.{flair_grid}",
        f"- **Lesion definition**: {DEFAULT_CONNECTIVITY}-connected components; post-processing "
        f"keeps lesions of more than {binary.calibration['min_size']} voxels; the lesion-wise "
        "metrics count every component.",
        "",
        "Wall time of each step:",
        "",
        _markdown_table(
            ["Step", "Seconds"],
            [[name, f"{seconds:.1f}"] for name, seconds in result.timings.items()]
            + [["total (with imports and set-up)", f"{result.wall_seconds:.1f}"]],
            "lr",
        ),
        "",
    ]


def _files_section(result: DemoResult) -> list[str]:
    return [
        "## Files and the equivalent commands",
        "",
        "`data/` (with `trainingNN/truth/`, the true lesion fractions), `softmasks/`, "
        "`runs/{binary,soft}/` (model, history.csv, calibration.json), "
        "`predictions/{binary,soft}/`, `evaluation/{binary,soft}/` (metrics.csv per scan and "
        "rater), `comparison.csv` (the tables above, as fractions; model `flair-threshold` is "
        "the baseline), `flair_baseline.json` (the baseline's threshold and its Dice on each "
        "model's validation slices). Each step is one command:",
        "",
        _commands(result),
        "",
    ]


def render_report(result: DemoResult) -> str:
    """``report.md``: verdict, tables, figures, settings, wall time and the equivalent commands."""
    sections = (
        _header_section,
        _result_section,
        _baseline_section,
        _lesion_section,
        _human_section,
        _per_scan_section,
        _figures_section,
        _settings_section,
        _files_section,
    )
    return "\n".join(line for section in sections for line in section(result))
