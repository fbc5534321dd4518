"""``mssoft demo``: the whole method on generated data, soft against binary masks, with a report.

:func:`run_demo` generates a small synthetic data set in the ISBI 2015 layout
(:mod:`mssoft.synthetic`), builds soft masks, trains a U-Net on rater 1's binary masks and another
on the soft masks (same seed, same slices, same split), calibrates each on its training scans,
segments held-out patients that neither model saw, evaluates both against rater 1, rater 2 and the
synthetic truth beside the FLAIR-threshold baseline (:mod:`mssoft.experiments.demo.baseline`), and
writes a Markdown report with figures. A model whose validation Dice does not beat the baseline's
on the same validation slices did not learn, and the comparison is void. Every step calls the
library function behind the matching command (``build-masks``, ``fit``, ``calibrate``,
``predict``, ``evaluate``), so each subfolder is the output that command would have written::

    DIR/config.json          command "demo", the settings, then the result and the wall time
    DIR/report.md            the report (table, verdict, figures, settings, commands)
    DIR/comparison.csv       model, reference, scans, mean dice, ppv, tpr, ltpr, lfpr and
                             rel_volume_diff (fractions); model ``flair-threshold`` is the
                             FLAIR-threshold baseline
    DIR/flair_baseline.json  the baseline: threshold, grid, Dice on each model's validation slices
    DIR/figures/*.png        data.png, predictions.png, training.png, calibration.png
    DIR/data/                the generated ISBI-layout data (with trainingNN/truth/)
    DIR/softmasks/           build-masks output (every scan; training uses its patients only)
    DIR/runs/{binary,soft}/  fit runs, each with its calibration.json
    DIR/predictions/{binary,soft}/, DIR/evaluation/{binary,soft}/

TensorFlow is imported when training starts, not on import.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mssoft.experiments.demo import analysis
from mssoft.experiments.demo.baseline import run_baseline
from mssoft.experiments.demo.folder import holding_demo_folder, prepare_demo_folder
from mssoft.experiments.demo.report import (
    failed_models,
    render_report,
    saved_epoch_dice,
    write_comparison_csv,
)
from mssoft.experiments.demo.types import (
    FLAIR_MODEL,
    MODELS,
    DataSummary,
    DemoConfig,
    DemoResult,
    ModelRun,
    Score,
)
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.folders import package_versions, prepare_output_folder, read_config, write_config
from mssoft.files.layout import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    DEMO_BASELINE_NAME,
    DEMO_DATA_DIR,
    DEMO_EVAL_DIR,
    DEMO_FIGURES_DIR,
    DEMO_MASKS_DIR,
    DEMO_PRED_DIR,
    DEMO_REPORT_NAME,
    DEMO_RUNS_DIR,
    DEMO_TABLE_NAME,
)
from mssoft.files.run_record import parse_run_record
from mssoft.files.scans import Scan, discover_scans
from mssoft.nn.model_reuse import keep_compiled_models
from mssoft.workflows.build_masks import build_soft_masks
from mssoft.workflows.evaluate import PRED_SOURCE, Evaluation
from mssoft.workflows.pipeline import run_pipeline
from mssoft.workflows.progress import Progress, no_progress
from mssoft.workflows.settings import TrainConfig

__all__ = ["prepare_demo_folder", "run_demo"]

logger = logging.getLogger(__name__)


class _Stages:
    """Times the steps and logs one line as each starts."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.seconds = total, 0, {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.count += 1
        logger.info("[%d/%d] %s", self.count, self.total, name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start


def _split_scans(data: Path, config: DemoConfig) -> tuple[list[Scan], list[Scan]]:
    scans = discover_scans(data)
    train_ids = {f"training{p:02d}" for p in range(1, config.patients + 1)}
    train = [s for s in scans if s.patient_id in train_ids]
    heldout = [s for s in scans if s.patient_id not in train_ids]
    return train, heldout


def _count_parameters(run_dir: Path) -> int:
    from mssoft.nn.model_files import load_run_model

    return int(load_run_model(run_dir).count_params())


def _scores(name: str, evaluation: Evaluation) -> tuple[list[Score], list[Score]]:
    """Per-rater scores of the prediction, and the inter-rater score if evaluated."""
    model, human = [], []
    for group in evaluation.groups:
        dice = {
            row.scan_id: row.metrics.dice
            for row in evaluation.rows
            if (row.source, row.rater) == (group.source, group.rater)
        }
        if group.source == PRED_SOURCE:
            model.append(Score(name, f"rater {group.rater}", group.summary, dice))
        else:
            human.append(Score("rater 1", f"rater {group.rater}", group.summary, dice))
    return model, human


def _model_run(
    name: str,
    config: DemoConfig,
    out: Path,
    data: DataSummary,
    masks_dir: Path,
    stage: _Stages,
    progress: Progress,
) -> tuple[ModelRun, Evaluation]:
    """Train, calibrate, segment the held-out scans and evaluate one model."""
    root = out / DEMO_DATA_DIR
    run_dir, pred_dir, eval_dir = (
        out / DEMO_RUNS_DIR / name,
        out / DEMO_PRED_DIR / name,
        out / DEMO_EVAL_DIR / name,
    )
    train = TrainConfig.from_settings(
        config.training,
        data=root,
        out=run_dir,
        masks=masks_dir if name == "soft" else None,
        rater=1,
        patients=tuple(dict.fromkeys(s.patient_id for s in data.train_scans)),
    )
    result = run_pipeline(
        train,
        calibrate_scans=[s.scan_id for s in data.train_scans],
        predict_scans=[s.scan_id for s in data.heldout_scans],
        pred_dir=pred_dir,
        eval_dir=eval_dir,
        inter_rater=True,
        name=f"{name}-mask model",
        progress=progress,
        step=stage,
    )
    fitted, evaluation = result.fit, result.evaluation
    assert evaluation is not None
    record = parse_run_record(
        read_config(run_dir, command="fit")["config"], run_dir / CONFIG_NAME
    ).config
    run = ModelRun(
        name=name,
        run_dir=run_dir,
        pred_dir=pred_dir,
        eval_dir=eval_dir,
        history=fitted.history,
        best_epoch=fitted.best_epoch,
        parameters=_count_parameters(run_dir),
        train_slices=int(record.get("train_slices", 0)),
        val_slices=int(record.get("val_slices", 0)),
        calibration=json.loads((run_dir / CALIBRATION_NAME).read_text()),
    )
    return run, evaluation


@holding_demo_folder
def run_demo(config: DemoConfig, *, progress: Progress = no_progress) -> DemoResult:
    """Run the demo and write its folder (see the module docstring).

    Parameters
    ----------
    config : DemoConfig
    progress : callable, optional
        ``progress(items, description)`` wraps the iteration over scans of each step (a
        progress bar); stage and epoch lines are logged on ``mssoft.*`` loggers.

    Returns
    -------
    DemoResult

    Raises
    ------
    ConfigError
        ``config.out`` is a file, a non-empty folder that is not a demo output, or an earlier demo
        without ``overwrite``.
    """
    start = time.perf_counter()
    out = prepare_demo_folder(config.out, overwrite=config.overwrite)
    write_config(out, "demo", config.to_dict(), status="running")
    stage = _Stages(total=5 + 3 * len(MODELS))
    root = out / DEMO_DATA_DIR

    with stage("generating the synthetic data"):
        from mssoft.synthetic import write_isbi_dataset

        write_isbi_dataset(
            root,
            n_patients=config.patients + config.heldout,
            timepoints=config.timepoints,
            shape=config.shape,
            seed=config.seed,
        )
        train, heldout = _split_scans(root, config)
    with stage("building the soft masks"):
        masks_dir = prepare_output_folder(out / DEMO_MASKS_DIR, command="build-masks", data=root)
        summaries = list(build_soft_masks([*train, *heldout], masks_dir, config.mask))
        data = analysis.summarise_data(train, heldout, summaries)
    runs: dict[str, ModelRun] = {}
    scores: list[Score] = []
    human: list[Score] = []
    with keep_compiled_models():  # the second model trains the first's compiled graph
        for name in MODELS:
            runs[name], evaluation = _model_run(name, config, out, data, masks_dir, stage, progress)
            model_scores, inter_rater = _scores(name, evaluation)
            scores += model_scores
            human = human or inter_rater  # the same for every model
    with stage("scoring against the synthetic truth"):
        truth_models, truth_raters = analysis.truth_scores(
            heldout, {name: run.pred_dir for name, run in runs.items()}
        )
        human += truth_raters
    with stage("the FLAIR-threshold baseline"):
        baseline, baseline_scores = run_baseline(train, heldout, runs, masks_dir)
        write_json(baseline.to_dict(), out / DEMO_BASELINE_NAME)
    order = (*MODELS, FLAIR_MODEL)
    scores = sorted(
        scores + truth_models + baseline_scores, key=lambda s: (s.reference, order.index(s.model))
    )
    with stage("drawing the figures"):
        figures = analysis.draw_figures(
            out / DEMO_FIGURES_DIR, data, masks_dir, runs, scores, config, baseline
        )
    write_comparison_csv(scores + human, out / DEMO_TABLE_NAME)
    result = DemoResult(
        config=config,
        out=out,
        data=data,
        runs=runs,
        scores=scores,
        human=human,
        figures=figures,
        timings=dict(stage.seconds),
        wall_seconds=time.perf_counter() - start,
        versions=package_versions(),
        report=out / DEMO_REPORT_NAME,
        baseline=baseline,
    )
    with atomic_path(result.report) as tmp:
        tmp.write_text(render_report(result))
    write_config(
        out,
        "demo",
        config.to_dict(),
        status="done",
        result={
            "scores": [
                {"model": s.model, "reference": s.reference, **s.summary.to_dict()}
                for s in scores + human
            ],
            "thresholds": {n: r.calibration["threshold"] for n, r in runs.items()},
            "flair_baseline": baseline.to_dict(),
            "failed_models": failed_models(result),
            "wall_seconds": result.wall_seconds,
            "timings_seconds": result.timings,
            "report": DEMO_REPORT_NAME,
        },
    )
    for name in failed_models(result):
        logger.warning(
            "the %s-mask model did not beat the FLAIR-threshold baseline on its validation slices "
            "(Dice %.3f against the baseline's %.3f at the saved epoch): the comparison is void; "
            "train longer (--epochs) or try another --seed",
            name,
            saved_epoch_dice(runs[name].history, runs[name].best_epoch),
            baseline.validation_dice.get(name, float("nan")),
        )
    logger.info("demo finished in %.0f s: %s", result.wall_seconds, result.report)
    return result
