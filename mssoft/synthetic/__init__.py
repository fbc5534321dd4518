"""Realistic synthetic MS data: brain-MR-like scans with lesions and two simulated raters.

A new user has no ISBI 2015 data on day one (it is registration-gated); tests, examples and the
demo run on data generated here. :func:`make_scan` returns one scan in memory;
:func:`write_isbi_dataset` writes patients and time points in the ISBI 2015 layout that
:func:`mssoft.files.scans.discover_scans` reads; :func:`write_nnunet_dataset` writes cases as an
nnU-Net v2 raw dataset, which it reads too, and :func:`write_bids_dataset` a BIDS dataset with lesion
masks in its derivatives.

The phantom is procedural: see :mod:`mssoft.synthetic.anatomy` (tissues),
:mod:`~mssoft.synthetic.lesion_model` (lesions and their evolution),
:mod:`~mssoft.synthetic.mimics` (bright non-lesion FLAIR tissue),
:mod:`~mssoft.synthetic.contrast` (FLAIR/T1/T2/PD), :mod:`~mssoft.synthetic.raters` (rater masks)
and :mod:`~mssoft.synthetic.writer` (files); :mod:`~mssoft.synthetic.sites` gives scanner sites
(contrast, intensity units, noise, bias field, voxel size, slice thickness, lesion load) and two
presets that differ as two real scanners do. A real template was considered and rejected: the
nilearn wheel does ship the MNI152 2009 T1, grey- and white-matter maps (no download at run
time), but it brings eight more packages into this environment (pandas, scikit-learn, joblib,
jinja2, ...) used nowhere else, it ships no CSF map and no T2/PD/FLAIR, and it would give every
synthetic patient the same brain. The procedural phantom draws a different brain per seed, on
any grid (a 96 x 112 x 80 scan in under a second), with no dependency beyond NumPy and SciPy.

Quick start::

    from mssoft.synthetic import make_scan, write_isbi_dataset

    scan = make_scan((96, 112, 80), seed=0)        # arrays: scan.images["flair"], scan.masks[1]
    write_isbi_dataset("data", n_patients=6, timepoints=2, shape=(96, 112, 64))
    # data/training01/preprocessed/training01_01_flair_pp.nii.gz, ..._mask1.nii.gz, ...
"""

from __future__ import annotations

from mssoft.synthetic.anatomy import Anatomy, make_anatomy
from mssoft.synthetic.contrast import MODALITIES, TISSUE_INTENSITY
from mssoft.synthetic.lesion_model import Lesion
from mssoft.synthetic.raters import DEFAULT_RATERS, RaterModel
from mssoft.synthetic.scan import DEFAULT_SHAPE, SyntheticScan, make_patient, make_scan
from mssoft.synthetic.sites import SITE_A, SITE_B, SITES, Site
from mssoft.synthetic.writer import (
    isbi_affine,
    write_isbi_dataset,
    write_bids_dataset,
    write_nnunet_dataset,
    write_site_dataset,
)

__all__ = [
    "Anatomy",
    "DEFAULT_RATERS",
    "DEFAULT_SHAPE",
    "Lesion",
    "MODALITIES",
    "RaterModel",
    "SITES",
    "SITE_A",
    "SITE_B",
    "Site",
    "SyntheticScan",
    "TISSUE_INTENSITY",
    "isbi_affine",
    "make_anatomy",
    "make_patient",
    "make_scan",
    "write_isbi_dataset",
    "write_bids_dataset",
    "write_nnunet_dataset",
    "write_site_dataset",
]
