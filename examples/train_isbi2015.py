"""
Title: Soft against binary masks on the ISBI 2015 data
Author: mssoft developers
Date created: 2026/11/29
Last modified: 2026/11/29
Description: The whole workflow of Kats et al. (ISBI 2019) on an ISBI 2015 data root: soft masks,
a U-Net trained on binary and one on soft masks, threshold calibration, segmentation of held-out
or test scans, and evaluation against both raters.

Run it with `python examples/train_isbi2015.py DATA OUT [--holdout training05] [--epochs 30]`.
`DATA` is the ISBI 2015 folder (`trainingNN/preprocessed`, `trainingNN/masks`, optionally
`testNN/preprocessed`); `OUT` a new folder. Each step below is also one `mssoft` command; the
script calls the same library functions. On two CPU cores the paper's settings (base 32,
depth 4, 30 epochs, 21 training scans) take hours; use a GPU or fewer epochs to try it out.
"""

"""
## Setup

Nothing here is specific to ISBI 2015 except the folder layout, which `mssoft.discover_scans`
recognises (a CSV manifest works as well). TensorFlow is imported by the training step only.
"""

import argparse  # noqa: E402 (keras-io layout: prose blocks between code)
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from mssoft import discover_scans  # noqa: E402
from mssoft.errors import MssoftError  # noqa: E402
from mssoft.files.folders import prepare_output_folder  # noqa: E402
from mssoft.workflows.build_masks import build_soft_masks  # noqa: E402
from mssoft.workflows.evaluate import format_report  # noqa: E402
from mssoft.workflows.pipeline import run_pipeline  # noqa: E402
from mssoft.workflows.settings import MaskConfig, TrainConfig, TrainingSettings  # noqa: E402

MODELS = ("binary", "soft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train on binary and on soft masks, calibrate, segment and evaluate."
    )
    parser.add_argument("data", type=Path, help="ISBI 2015 data root or CSV manifest")
    parser.add_argument("out", type=Path, help="output folder (new or empty)")
    parser.add_argument(
        "--holdout",
        default=None,
        help="patients left out of training, segmented and evaluated (comma-separated, e.g. "
        "training05); without it the model trains on every patient with masks",
    )
    parser.add_argument("--rater", type=int, default=1, help="rater whose masks train the models")
    parser.add_argument("--ratio", type=float, default=1.2, help="soft masks: volume ratio")
    parser.add_argument("--gamma", type=float, default=0.3, help="soft masks: ring label")
    parser.add_argument("--flair-threshold", default="p50", help="soft masks: FLAIR threshold")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--base-filters", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


"""
## The scans

Training scans are those with a mask of the chosen rater; `testNN` scans have none. With
`--holdout`, the named patients are set aside: neither model sees them in training or in
calibration, so their scores estimate accuracy on new patients. (All time points of a patient
stay on one side: time points of one brain are not independent.)
"""


def plan(args: argparse.Namespace) -> tuple[list, list, list]:
    """Training scans, held-out scans (with masks) and test scans (without masks)."""
    scans = discover_scans(args.data)
    holdout = {p.strip() for p in (args.holdout or "").split(",") if p.strip()}
    unknown = holdout - {s.patient_id for s in scans}
    if unknown:
        raise SystemExit(f"--holdout: no patient {', '.join(sorted(unknown))} in {args.data}")
    labelled = [s for s in scans if args.rater in s.masks]
    train = [s for s in labelled if s.patient_id not in holdout]
    heldout = [s for s in labelled if s.patient_id in holdout]
    test = [s for s in scans if not s.masks]
    if not train:
        raise SystemExit(f"{args.data}: no scan with a rater-{args.rater} mask left to train on")
    print(
        f"scans: {len(train)} for training ({len({s.patient_id for s in train})} patients), "
        f"{len(heldout)} held out, {len(test)} test scans without masks"
    )
    return train, heldout, test


"""
## Soft masks

Rater K's mask `M` grows by 3D dilation (in millimetres) to `ratio` times its volume; grown
voxels darker than the FLAIR threshold are dropped; the ring gets the label `gamma`. This is
`mssoft build-masks`.
"""


def soft_masks(args: argparse.Namespace, train: list) -> Path:
    config = MaskConfig(
        rater=args.rater, ratio=args.ratio, gamma=args.gamma, flair_threshold=args.flair_threshold
    )
    folder = prepare_output_folder(args.out / "softmasks", command="build-masks", data=args.data)
    for summary in build_soft_masks(train, folder, config):
        print(f"  {summary.scan_id}: ratio {summary.achieved_ratio:.3f}")
    return folder


"""
## Training, calibration, segmentation and evaluation

Two models with the same seed, hence the same initial weights, slices, split and augmentation:
one on the rater's binary masks (the paper's baseline), one on the soft masks. Only slices with
a lesion of the rater train; 20 % of them validate; the saved model has the best validation
loss (`mssoft fit`). Each model's threshold maximises the mean per-scan Dice against the rater
over the training scans, after removing lesions of 18 voxels or fewer (`mssoft calibrate`): the
two models' probabilities differ (one has learnt the soft ring), so each gets its own threshold.
Held-out scans (with masks) and test scans (without) are then segmented (`mssoft predict`), and
the held-out ones compared with every rater (`mssoft evaluate`). ISBI 2015 test scans have no
public masks: their segmentations are what the challenge's website scores.

`mssoft.workflows.pipeline.run_pipeline` runs these four steps for one model; `mssoft cv` and
`mssoft demo` use the same function.
"""


def train_and_evaluate(
    args: argparse.Namespace, masks: Path, train: list, heldout: list, test: list
) -> None:
    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        base_filters=args.base_filters,
        depth=args.depth,
        seed=args.seed,
    )
    targets = [s.scan_id for s in heldout + test]
    if not targets:
        print(
            "Nothing to segment: no test scans and no --holdout. To estimate accuracy on new "
            "patients, rerun with --holdout trainingNN (leave one patient out), or run "
            "`mssoft cv` for every patient in turn."
        )
    dice = {}
    for name in MODELS:
        result = run_pipeline(
            TrainConfig.from_settings(
                settings,
                data=args.data,
                out=args.out / "runs" / name,
                masks=masks if name == "soft" else None,
                rater=args.rater,
                patients=tuple(dict.fromkeys(s.patient_id for s in train)),
            ),
            calibrate_scans=[s.scan_id for s in train],
            predict_scans=targets,
            pred_dir=args.out / "predictions" / name,
            eval_dir=args.out / "evaluation" / name,
            evaluate_scans=[s.scan_id for s in heldout],
            inter_rater=True,
            name=f"{name}-mask model",
        )
        fitted, chosen = result.fit, result.calibration
        print(f"  {name}: best epoch {fitted.best_epoch}, {fitted.monitor} {fitted.best_loss}")
        print(
            f"  {name}: threshold {chosen.binarisation.threshold:g}, mean Dice on the training "
            f"scans {chosen.mean_dice:.3f}"
        )
        if result.prediction is not None:
            print(
                f"  {name}: {len(result.prediction.scans)} segmentations in {result.prediction.out}"
            )
        if result.evaluation is not None:
            print(f"\n{name} model on the held-out scans:\n{format_report(result.evaluation)}\n")
            dice[name] = {g.label: g.summary.means["dice"] for g in result.evaluation.groups}
    if not dice:
        print(
            "No held-out scan with masks to evaluate: pass --holdout trainingNN to score the "
            "method on a patient it has not seen."
        )
        return
    labels = list(dice["binary"])
    print("Mean Dice (%) on the held-out scans:")
    print(" " * 10 + "".join(f"{label:>10}" for label in labels))
    for name, values in dice.items():
        print(f"{name:<10}" + "".join(f"{100 * values[label]:>10.1f}" for label in labels))


"""
## Run
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        print(f"Error: {args.out} exists and is not an empty folder; choose a new one")
        return 1
    try:
        train, heldout, test = plan(args)
        args.out.mkdir(parents=True, exist_ok=True)
        print("Soft masks:")
        masks = soft_masks(args, train)
        print("Training, calibration, segmentation, evaluation:")
        train_and_evaluate(args, masks, train, heldout, test)
    except MssoftError as exc:  # bad data or options: one line, no traceback
        print(f"Error: {exc}")
        return 1
    print(f"Everything is in {args.out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("mssoft.nn.callbacks").setLevel(logging.INFO)  # one line per epoch
    sys.exit(main())
