"""The whole method for one model: fit → calibrate → predict → evaluate, in one call.

``mssoft cv`` (every cell), ``mssoft demo`` (each model) and ``examples/train_isbi2015.py`` run
this one function, so they cannot drift apart. Each step is the workflow of its command, writing
the same folders the command writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mssoft.workflows.calibrate import Calibration, calibrate_run
from mssoft.workflows.evaluate import Evaluation, evaluate_folder
from mssoft.workflows.predict import PredictionReport, predict_folder
from mssoft.workflows.progress import Progress, labelled, no_progress
from mssoft.workflows.settings import TrainConfig

if TYPE_CHECKING:  # imports TensorFlow
    from mssoft.nn.callbacks import FitResult

__all__ = ["Step", "log_step", "PipelineResult", "run_pipeline"]

logger = logging.getLogger(__name__)

#: ``step(description)`` is a context manager around each step (e.g. to time or log it).
Step = Callable[[str], AbstractContextManager[None]]


@contextmanager
def log_step(description: str) -> Iterator[None]:
    """The default :data:`Step`: log the step's description as it starts."""
    logger.info("%s", description)
    yield


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` produced for one model.

    Attributes
    ----------
    fit : FitResult
        The run folder and its training history.
    calibration : Calibration
        The threshold chosen on the calibration scans (in ``RUN/calibration.json``).
    prediction : PredictionReport or None
        The segmentations of the predicted scans (None when none was to be predicted).
    evaluation : Evaluation or None
        Their scores against every rater (None when nothing was evaluated).
    """

    fit: FitResult
    calibration: Calibration
    prediction: PredictionReport | None
    evaluation: Evaluation | None


def _trained_model(train: TrainConfig, tta: str) -> Any:
    """The run's best model as calibration and prediction use it, XLA as ``train`` says."""
    from mssoft.nn.model_files import load_ensemble  # imports TensorFlow

    model = load_ensemble([train.out], tta=tta)
    if train.jit_compile != "auto" and hasattr(model, "jit_compile"):
        model.jit_compile = train.jit_compile == "on"
    return model


def run_pipeline(
    train: TrainConfig,
    *,
    calibrate_scans: Sequence[str],
    predict_scans: Sequence[str],
    pred_dir: str | Path,
    eval_dir: str | Path | None = None,
    evaluate_scans: Sequence[str] | None = None,
    inter_rater: bool = False,
    name: str = "model",
    progress: Progress = no_progress,
    step: Step = log_step,
    tta: str = "none",
    share_model: bool = True,
    slice_cache: str | Path | None = None,
) -> PipelineResult:
    """Fit a model, calibrate its threshold, segment scans and evaluate them.

    Parameters
    ----------
    train : TrainConfig
        The ``mssoft fit`` run (its ``out`` is the run folder; ``data`` serves every step).
    calibrate_scans : sequence of str
        Scan ids whose Dice chooses the threshold (the training scans, as in the paper).
    predict_scans : sequence of str
        Scan ids to segment into ``pred_dir`` (none: fit and calibrate only).
    pred_dir : path-like
        Output folder of the prediction.
    eval_dir : path-like, optional
        Output folder of the evaluation; None skips it.
    evaluate_scans : sequence of str, optional
        Scans to evaluate (they need masks); default ``predict_scans``. Empty skips evaluation.
    inter_rater : bool
        Also score the raters against each other.
    name : str
        The model's name in step descriptions and progress labels.
    progress : callable, optional
        ``progress(items, label)`` around each step's iteration over scans.
    step : callable, optional
        ``step(description)`` context manager around each step (default: a log line).
    tta : {"none", "flip"}
        Test-time augmentation of calibration and prediction (``flip``: mean with the left-right
        mirror of each slice).
    share_model : bool
        Load the trained model once for calibration and prediction (compiled with XLA as
        ``train.jit_compile`` says); False loads it in each step, as the commands do.
    slice_cache : path-like, optional
        On-disk slice cache folder of the fit (default: in the run folder); see
        :func:`mssoft.workflows.fit.fit`.

    Returns
    -------
    PipelineResult
    """
    from mssoft.workflows.fit import fit  # imports TensorFlow

    with step(f"training the {name} ({train.epochs} epochs)"):
        fitted = fit(train, slice_cache=None if slice_cache is None else Path(slice_cache))
    model = _trained_model(train, tta) if share_model else None
    with step(f"calibrating the {name} on {len(calibrate_scans)} scans"):
        calibration = calibrate_run(
            train.out,
            train.data,
            scans=list(calibrate_scans),
            progress=labelled(progress, f"calibrate {name}"),
            tta=tta,
            model=model,
        )
    to_evaluate = list(predict_scans if evaluate_scans is None else evaluate_scans)
    prediction = evaluation = None
    if not predict_scans:
        return PipelineResult(fitted, calibration, prediction, evaluation)
    with step(f"segmenting {len(predict_scans)} scans with the {name}"):
        prediction = predict_folder(
            train.out,
            train.data,
            pred_dir,
            scans=list(predict_scans),
            progress=labelled(progress, f"predict {name}"),
            tta=tta,
            qc=False,  # experiments report their own figures; the lesion tables are written
            model=model,
        )
        if eval_dir is not None and to_evaluate:
            evaluation = evaluate_folder(
                pred_dir,
                train.data,
                eval_dir,
                scans=to_evaluate,
                inter_rater=inter_rater,
                progress=labelled(progress, f"evaluate {name}"),
            )
    return PipelineResult(fitted, calibration, prediction, evaluation)
