"""The generated data lies in the ranges measured on real MS scans (mssoft.arrays.realism).

Real ranges (public data sets, FLAIR, rater 1, per-scan means): FLAIR-threshold Dice 21-61 %,
lesion/brain FLAIR median 1.31-1.61 with a 10th percentile of 1.12-1.34, mimics 0.07-3.9 %,
19-51 lesions per scan, inter-rater Dice 59-86 %. The generator targets the harder end: a single
FLAIR threshold 15-40 %, lesion/brain median 1.25-1.45, p10 <= 1.2, mimics 1-5 %, 20-60
lesions, inter-rater Dice 60-75 %. The fast test checks a smaller grid (fewer, relatively larger
lesions); the slow one the demo's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.realism import ScanRealism, SetRealism, scan_realism, set_realism
from mssoft.synthetic import make_patient, make_scan
from mssoft.synthetic.mimics import make_mimics


def _realism(shape: tuple[int, int, int], seeds, timepoints: int = 1) -> SetRealism:
    scans: list[ScanRealism] = []
    for seed in seeds:
        for scan in make_patient(shape, seed=seed, timepoints=timepoints):
            others = {m: scan.images[m] for m in ("t1", "t2", "pd")}
            scans.append(scan_realism(scan.images["flair"], scan.masks, others=others))
    return set_realism(scans)


def _assert_real_ranges(result: SetRealism, *, dice_max: float, min_lesions: float) -> None:
    assert 1.25 <= result.mean("lesion_contrast_median") <= 1.45
    assert result.mean("lesion_contrast_p10") <= 1.2
    assert 0.01 <= result.mean("mimics") <= 0.05
    assert min_lesions <= result.mean("lesion_count") <= 60
    assert 0.15 <= float(np.mean(result.set_dice[1])) <= dice_max
    assert 0.60 <= result.agreement_mean()[(1, 2)]["dice"] <= 0.78  # small grids vary more
    # Lesions separable by other contrasts: dark on T1, bright on T2.
    assert np.mean([s.other_contrast["t1"] for s in result.scans]) < 1.0
    assert np.mean([s.other_contrast["t2"] for s in result.scans]) > 1.1
    # Heavy-tailed sizes: many small lesions, a few much larger ones.
    sizes = result.pooled_sizes()
    assert np.mean(sizes <= 20) >= 0.3 and sizes.max() >= 20 * np.median(sizes)


def test_small_grid_lies_in_the_real_ranges():
    result = _realism((64, 80, 48), seeds=range(4))
    _assert_real_ranges(result, dice_max=0.45, min_lesions=12)


@pytest.mark.slow
def test_demo_grid_lies_in_the_real_ranges():
    # the demo's grid and its first patients' seeds (write_isbi_dataset: (seed, 0, patient))
    result = _realism((96, 112, 64), seeds=[(0, 0, p) for p in range(1, 5)], timepoints=2)
    _assert_real_ranges(result, dice_max=0.40, min_lesions=20)


def test_mimics_hug_the_ventricles_and_flow_stays_inside():
    scan = make_scan((64, 80, 48), seed=2)
    mimics = make_mimics(scan.anatomy, 2)
    vent = scan.anatomy.ventricles
    assert mimics.flow.any() and not mimics.flow[vent == 0].any()
    assert not mimics.bright[scan.anatomy.csf >= 0.999].any()
    dist = ndimage.distance_transform_edt(vent < 0.5)
    bright = mimics.bright > 0.3
    # most of the bright mimic volume is within 3 voxels of a ventricle (lining and caps)
    assert np.mean(dist[bright] <= 3) > 0.6
    # bright on FLAIR, not dark on T1 as lesions are
    t1, flair = scan.images["t1"], scan.images["flair"]
    wm = (scan.anatomy.wm >= 0.95) & (scan.truth == 0) & ~bright
    core = (mimics.bright > 0.7) & (scan.truth == 0)
    assert flair[core].mean() > 1.3 * flair[wm].mean()
    assert t1[core].mean() > 0.85 * t1[wm].mean()
    lesion = scan.truth >= 0.9
    assert t1[lesion].mean() < 0.8 * t1[wm].mean()
    assert not make_mimics(scan.anatomy, 2, amount=0).bright.any()
