"""``mssoft demo --cross-site``: train at one scanner site, segment held-out patients of two.

:func:`run_cross_site` writes two synthetic sites into one ISBI-layout data folder
(:func:`mssoft.synthetic.write_site_dataset`; the test site's patients are numbered after the
training site's), trains one soft-mask model (rater 1, on the fly) on the training site's
patients with the given training options (``--augment``, ``--normalise``, ...), calibrates it on
its training scans, segments the held-out patients of both sites and evaluates them against
rater 1, beside the FLAIR-threshold baseline calibrated on the same training scans
(:mod:`mssoft.workflows.flair_baseline`). The report gives, per site, the mean Dice and the
predicted over true lesion volume of both, and whether the model beat the baseline on its
validation slices::

    DIR/config.json          command "demo", the settings, then the result
    DIR/report.md            the within-site and cross-site table
    DIR/comparison.csv       model (``model`` or ``flair-threshold``), site, role, scans, dice,
                             pred_volume_ml, true_volume_ml, volume_ratio
    DIR/data/                both sites' generated patients (ISBI layout)
    DIR/runs/model/          the fit run with calibration.json
    DIR/predictions/model/, DIR/evaluation/model/

TensorFlow is imported when training starts, not on import.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mssoft.errors import ConfigError, DataError
from mssoft.experiments.demo.folder import holding_demo_folder, prepare_demo_folder
from mssoft.experiments.demo.report import saved_epoch_dice
from mssoft.experiments.demo.types import FLAIR_MODEL, CrossSiteConfig, CrossSiteResult, SiteScore
from mssoft.files.atomic import atomic_path
from mssoft.files.folders import write_config
from mssoft.files.layout import (
    DEMO_DATA_DIR,
    DEMO_EVAL_DIR,
    DEMO_PRED_DIR,
    DEMO_REPORT_NAME,
    DEMO_RUNS_DIR,
    DEMO_TABLE_NAME,
)
from mssoft.files.scans import Scan, discover_scans
from mssoft.synthetic.sites import SITES
from mssoft.synthetic.writer import write_site_dataset
from mssoft.workflows.evaluate import PRED_SOURCE, Evaluation
from mssoft.workflows.flair_baseline import (
    calibrate_on_scans,
    run_validation_dice,
    score_against_raters,
    segment_scans,
)
from mssoft.workflows.pipeline import run_pipeline
from mssoft.workflows.progress import Progress, no_progress
from mssoft.workflows.settings import TrainConfig

__all__ = ["run_cross_site", "site_scores", "cross_site_text", "MODEL_NAME"]

logger = logging.getLogger(__name__)

#: Subfolder name of the one model under runs/, predictions/ and evaluation/.
MODEL_NAME = "model"
#: Offset of the test site's data seed, so that its patients differ from the training site's.
_TEST_SEED_OFFSET = 1000


def _patient(number: int) -> str:
    return f"training{number:02d}"


def site_scores(
    evaluation: Evaluation, sites: dict[str, Sequence[str]], roles: dict[str, str]
) -> list[SiteScore]:
    """Mean Dice and total volumes of the model against rater 1, per site.

    Parameters
    ----------
    evaluation : Evaluation
    sites : dict of site name to patient ids
    roles : dict of site name to ``within-site`` or ``cross-site``
    """
    rows = [r for r in evaluation.rows if r.source == PRED_SOURCE and r.rater == 1]
    scores = []
    for site, patients in sites.items():
        mine = [r for r in rows if r.patient_id in set(patients)]
        dice = {r.scan_id: float(r.metrics.dice) for r in mine}
        values = [d for d in dice.values() if not math.isnan(d)]
        scores.append(
            SiteScore(
                site=site,
                role=roles[site],
                scans=tuple(r.scan_id for r in mine),
                dice=float(np.mean(values)) if values else float("nan"),
                pred_volume_ml=float(sum(r.metrics.pred_volume_ml for r in mine)),
                true_volume_ml=float(sum(r.metrics.ref_volume_ml for r in mine)),
                scan_dice=dice,
            )
        )
    return scores


def baseline_site_scores(
    scans: Sequence[Scan],
    train_scans: Sequence[str],
    sites: dict[str, Sequence[str]],
    roles: dict[str, str],
    run_dir: Path,
    history: Sequence[dict[str, float]],
    best_epoch: int | None,
) -> tuple[list[SiteScore], dict[str, object]]:
    """The FLAIR-threshold baseline per site, calibrated on ``train_scans`` against rater 1.

    Returns
    -------
    list of SiteScore
        The baseline against rater 1 on each site's held-out scans.
    dict
        Its rule, the model's validation Dice at the saved epoch, the baseline's on the same
        validation slices, and ``learned`` (the model beat it).
    """
    train = [s for s in scans if s.scan_id in set(train_scans)]
    rule = calibrate_on_scans(train, rater=1)
    scores = []
    for site, patients in sites.items():
        mine = [s for s in scans if s.patient_id in set(patients)]
        scored = score_against_raters(segment_scans(rule, mine), mine)
        rows = [(sid, m) for sid, r, m in scored if r == 1]
        dice = {sid: float(m.dice) for sid, m in rows}
        values = [d for d in dice.values() if not math.isnan(d)]
        scores.append(
            SiteScore(
                site=site,
                role=roles[site],
                scans=tuple(sid for sid, _ in rows),
                dice=float(np.mean(values)) if values else float("nan"),
                pred_volume_ml=float(sum(m.pred_volume_ml for _, m in rows)),
                true_volume_ml=float(sum(m.ref_volume_ml for _, m in rows)),
                scan_dice=dice,
            )
        )
    model_dice = saved_epoch_dice(history, best_epoch)
    level = run_validation_dice(segment_scans(rule, train), train, run_dir)
    learned = bool(math.isfinite(model_dice) and not (math.isfinite(level) and model_dice <= level))
    record = {
        **rule.to_dict(),
        "model_validation_dice": model_dice,
        "baseline_validation_dice": level,
        "learned": learned,
    }
    return scores, record


def cross_site_text(result: CrossSiteResult) -> str:
    """The result table as tab-separated text (what ``mssoft demo --cross-site`` prints)."""
    training = result.config.training
    lines = [
        f"trained at site {result.config.train_site} "
        f"(augment={training.augment}, normalise={training.normalise}, seed={training.seed})",
        "model\tsite\trole\tscans\tdice_%\tpred_ml\ttrue_ml\tpred/true",
    ]
    for model, scores in ((MODEL_NAME, result.scores), (FLAIR_MODEL, result.baseline_scores)):
        for s in scores:
            lines.append(
                f"{model}\t{s.site}\t{s.role}\t{len(s.scans)}\t{100 * s.dice:.1f}\t"
                f"{s.pred_volume_ml:.2f}\t{s.true_volume_ml:.2f}\t{s.volume_ratio:.2f}"
            )
    if result.baseline and not result.baseline.get("learned", True):
        lines.append("the model did not beat the FLAIR-threshold baseline on its validation slices")
    return "\n".join(lines)


def _baseline_paragraph(result: CrossSiteResult) -> str:
    b = result.baseline
    if not b:
        return ""
    verdict = "beat" if b["learned"] else "did **not** beat"
    return (
        f"FLAIR threshold: the trivial baseline, brain-z-scored FLAIR >= {b['threshold']:g} "
        f"chosen on the same training scans, then the model's post-processing. The model "
        f"{verdict} it on its validation slices (Dice {100 * b['model_validation_dice']:.1f} % "
        f"against {100 * b['baseline_validation_dice']:.1f} %)."
    )


def _report(result: CrossSiteResult) -> str:
    config = result.config
    rows = "\n".join(
        f"| {s.site} | {s.role} | {len(s.scans)} | {100 * s.dice:.1f} | {s.pred_volume_ml:.2f} "
        f"| {s.true_volume_ml:.2f} | {s.volume_ratio:.2f} |"
        for s in result.scores
    )
    rows += "".join(
        f"\n| {s.site} | {s.role}, FLAIR threshold | {len(s.scans)} | {100 * s.dice:.1f} "
        f"| {s.pred_volume_ml:.2f} | {s.true_volume_ml:.2f} | {s.volume_ratio:.2f} |"
        for s in result.baseline_scores
    )
    sites = "\n".join(
        f"- site {name}: `{SITES[name].to_dict()}`"
        for name in dict.fromkeys((config.train_site, config.test_site))
    )
    return f"""# mssoft cross-site demo

A soft-mask model trained on {config.patients} patients of site {config.train_site}
(`--augment {config.training.augment} --normalise {config.training.normalise}`, seed
{config.seed}), calibrated on its training scans, segmenting {config.heldout} held-out patients of
each site. Scores against rater 1; volumes are totals over the scans.

| site | role | scans | Dice % | predicted mL | true mL | predicted / true |
|---|---|---:|---:|---:|---:|---:|
{rows}

{_baseline_paragraph(result)}

Threshold chosen at site {config.train_site}: {result.threshold:.2f}. Wall time
{result.wall_seconds:.0f} s. One seed: run several (e.g. `benchmarks/cross_site.py`) before
reading a difference.

## Sites

{sites}
"""


def _generate(root: Path, config: CrossSiteConfig) -> None:
    """Write the training site's patients, then the test site's (numbered after them)."""
    n_train_site = config.patients + config.heldout
    logger.info("generating site %s (%d patients)", config.train_site, n_train_site)
    write_site_dataset(
        root,
        SITES[config.train_site],
        shape_mm=config.shape,
        n_patients=n_train_site,
        timepoints=config.timepoints,
        seed=config.seed,
    )
    if config.test_site != config.train_site:
        logger.info("generating site %s (%d patients)", config.test_site, config.heldout)
        write_site_dataset(
            root,
            SITES[config.test_site],
            shape_mm=config.shape,
            n_patients=config.heldout,
            timepoints=config.timepoints,
            seed=config.seed + _TEST_SEED_OFFSET,
            first_patient=n_train_site + 1,
        )


@holding_demo_folder
def run_cross_site(
    config: CrossSiteConfig, *, progress: Progress = no_progress, data: Path | None = None
) -> CrossSiteResult:
    """Run the cross-site demo and write its folder (see the module docstring).

    Parameters
    ----------
    config : CrossSiteConfig
    progress : callable, optional
        ``progress(items, label)`` around each step's iteration over scans.
    data : Path, optional
        The ``data`` folder of an earlier cross-site run with the same sites, patients, shape and
        seed: used as it is instead of generating the data again (a sweep over training options
        shares one data set per seed).

    Raises
    ------
    ConfigError
        ``config.out`` is a file, a non-empty folder that is not a demo output, or an earlier demo
        without ``overwrite``.
    DataError
        ``data`` lacks a patient the settings need.
    """
    start = time.perf_counter()
    for label in ("train_site", "test_site"):
        if getattr(config, label) not in SITES:
            raise ConfigError(
                f"Invalid value for `{label}`. Expected one of {', '.join(SITES)}. "
                f"Received: {getattr(config, label)!r}"
            )
    out = prepare_demo_folder(config.out, overwrite=config.overwrite)
    record = {**config.to_dict(), "cross_site": True}
    write_config(out, "demo", record, status="running")
    root = out / DEMO_DATA_DIR if data is None else Path(data)
    n_train_site = config.patients + config.heldout
    train_patients = [_patient(p) for p in range(1, config.patients + 1)]
    sites = {
        config.train_site: [_patient(p) for p in range(config.patients + 1, n_train_site + 1)],
    }
    roles = {config.train_site: "within-site"}
    if data is None:
        _generate(root, config)
    if config.test_site != config.train_site:
        sites[config.test_site] = [
            _patient(p) for p in range(n_train_site + 1, n_train_site + config.heldout + 1)
        ]
        roles[config.test_site] = "cross-site"
    scans = discover_scans(root)
    missing = sorted(
        {*train_patients, *(p for v in sites.values() for p in v)} - {s.patient_id for s in scans}
    )
    if missing:
        raise DataError(f"{root}: patient(s) {', '.join(missing)} not found")
    train_scans = [s.scan_id for s in scans if s.patient_id in set(train_patients)]
    heldout = {p for patients in sites.values() for p in patients}
    predict_scans = [s.scan_id for s in scans if s.patient_id in heldout]
    run_dir = out / DEMO_RUNS_DIR / MODEL_NAME
    train = TrainConfig.from_settings(
        config.training,
        data=root,
        out=run_dir,
        mask=config.mask,
        rater=1,
        patients=tuple(train_patients),
    )
    result = run_pipeline(
        train,
        calibrate_scans=train_scans,
        predict_scans=predict_scans,
        pred_dir=out / DEMO_PRED_DIR / MODEL_NAME,
        eval_dir=out / DEMO_EVAL_DIR / MODEL_NAME,
        name=f"site-{config.train_site} model",
        progress=progress,
    )
    assert result.evaluation is not None
    scores = site_scores(result.evaluation, sites, roles)
    baseline_scores, baseline = baseline_site_scores(
        scans,
        train_scans,
        sites,
        roles,
        run_dir,
        result.fit.history,
        result.fit.best_epoch,
    )
    outcome = CrossSiteResult(
        config=config,
        out=out,
        run_dir=run_dir,
        scores=scores,
        threshold=float(result.calibration.binarisation.threshold),
        wall_seconds=time.perf_counter() - start,
        report=out / DEMO_REPORT_NAME,
        baseline_scores=baseline_scores,
        baseline=baseline,
    )
    with atomic_path(outcome.report) as tmp:
        tmp.write_text(_report(outcome))
    with atomic_path(out / DEMO_TABLE_NAME) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "model",
                "site",
                "role",
                "scans",
                "dice",
                "pred_volume_ml",
                "true_volume_ml",
                "volume_ratio",
            ]
        )
        for model, s in [(MODEL_NAME, s) for s in scores] + [
            (FLAIR_MODEL, s) for s in baseline_scores
        ]:
            writer.writerow(
                [
                    model,
                    s.site,
                    s.role,
                    len(s.scans),
                    s.dice,
                    s.pred_volume_ml,
                    s.true_volume_ml,
                    s.volume_ratio,
                ]
            )
    write_config(
        out,
        "demo",
        record,
        status="done",
        result={
            "scores": [s.to_dict() for s in scores],
            "threshold": outcome.threshold,
            "flair_baseline": {
                **baseline,
                "scores": [s.to_dict() for s in baseline_scores],
            },
            "wall_seconds": outcome.wall_seconds,
            "report": DEMO_REPORT_NAME,
        },
    )
    logger.info("cross-site demo finished in %.0f s: %s", outcome.wall_seconds, outcome.report)
    return outcome
