"""How much a data set looks like real MS scans: the realism report of any data mssoft reads.

For every scan of DATA (ISBI 2015 layout, nnU-Net v2 raw, BIDS or a CSV manifest; read with
:func:`mssoft.files.scans.discover_scans`) this computes, from the FLAIR and the rater masks
(:mod:`mssoft.arrays.realism`; lesions = rater 1's 26-connected components, brain = non-zero FLAIR
voxels): lesion/brain FLAIR (median and 10th percentile), the share of FLAIR mimics, the lesion
count and sizes, the FLAIR-threshold baseline's Dice per rater (one threshold for the whole set,
and each scan's own best threshold) and, with two raters or more, inter-rater Dice and the share
of each rater's lesions touched by the other.

Usage::

    nice .venv/bin/python benchmarks/realism.py DATA [--json OUT] [--modalities flair,t1,t2,pd]

``--modalities`` adds, per extra modality, the lesion/brain median ratio (e.g. T1 below 1 when
lesions are dark on T1). Prints a Markdown table (one row per scan, then the set's means and the
pooled lesion-size quantiles) on stdout, progress on stderr; ``--json OUT`` also writes every
figure (written to a temporary file, then renamed). Bad input: one ``Error: ...`` line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from mssoft.arrays.realism import SetRealism, scan_realism, set_realism
from mssoft.errors import MssoftError
from mssoft.files.atomic import write_json
from mssoft.files.scans import discover_scans, load_scan, read_mask, resolve_modalities

logger = logging.getLogger("realism")


def measure(data: str | Path, modalities: str | None = None) -> SetRealism:
    """Realism statistics of every scan with at least one rater mask under ``data``."""
    scans = [s for s in discover_scans(data) if s.masks]
    if not scans:
        raise MssoftError(f"{data}: no scan has a rater mask")
    names = resolve_modalities(scans, modalities) if modalities else ("flair",)
    if "flair" not in names:
        names = ("flair", *names)
    results = []
    for i, scan in enumerate(scans, 1):
        loaded = load_scan(scan, modalities=names)
        masks = {r: read_mask(p, scan.label_map) for r, p in sorted(scan.masks.items())}
        image = loaded.image
        channels = {m: image[..., c] for c, m in enumerate(loaded.modalities)}
        flair = channels.pop("flair")
        results.append(scan_realism(flair, masks, scan_id=scan.scan_id, others=channels))
        print(f"[{i}/{len(scans)}] {scan.scan_id}", file=sys.stderr, flush=True)
    return set_realism(results)


def _pct(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f}"


def _num(value: float, digits: int = 2) -> str:
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def format_table(result: SetRealism) -> str:
    """Markdown: one row per scan and a mean row, then lesion sizes and rater agreement."""
    raters = sorted(result.set_threshold)
    extra = list(result.scans[0].other_contrast)
    head = ["scan", "lesion/brain FLAIR median (p10)", "mimics %", "lesions", "median size"]
    head += [f"FLAIR-thr Dice r{r} % (set; own)" for r in raters]
    head += [f"lesion/brain {m}" for m in extra]
    pairs = sorted(result.agreement_mean())
    head += [f"r{a} vs r{b}: Dice %; touched r{a}/r{b} %" for a, b in pairs]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for i, s in enumerate(result.scans):
        row = [
            s.scan_id,
            f"{_num(s.lesion_contrast_median)} ({_num(s.lesion_contrast_p10)})",
            _num(100 * s.mimics),
            str(s.lesion_count),
            _num(s.median_lesion_size, 0),
        ]
        row += [f"{_pct(result.set_dice[r][i])}; {_pct(result.own_dice[r][i])}" for r in raters]
        row += [_num(s.other_contrast[m]) for m in extra]
        agreement = {a.raters: a for a in s.agreement}
        row += [
            f"{_pct(agreement[p].dice)}; {_pct(agreement[p].touched_a)}/"
            f"{_pct(agreement[p].touched_b)}"
            for p in pairs
        ]
        lines.append("| " + " | ".join(row) + " |")
    mean_row = [
        f"**mean of {len(result.scans)}**",
        f"{_num(result.mean('lesion_contrast_median'))} ({_num(result.mean('lesion_contrast_p10'))})",
        _num(100 * result.mean("mimics")),
        _num(result.mean("lesion_count"), 1),
        _num(result.mean("median_lesion_size"), 0),
    ]
    mean_row += [
        f"{_pct(float(np.mean(result.set_dice[r])))}; {_pct(float(np.mean(result.own_dice[r])))}"
        for r in raters
    ]
    mean_row += [
        _num(float(np.nanmean([s.other_contrast[m] for s in result.scans]))) for m in extra
    ]
    means = result.agreement_mean()
    mean_row += [
        f"{_pct(means[p]['dice'])}; {_pct(means[p]['touched_a'])}/{_pct(means[p]['touched_b'])}"
        for p in pairs
    ]
    lines.append("| " + " | ".join(mean_row) + " |")
    thresholds = ", ".join(f"rater {r}: z >= {result.set_threshold[r]:g}" for r in raters)
    quantiles = ", ".join(f"p{100 * q:g} {v:g}" for q, v in result.size_quantiles().items())
    sizes = result.pooled_sizes()
    lines += [
        "",
        f"One FLAIR threshold for the set (highest mean Dice): {thresholds}.",
        f"Lesion sizes (voxels), all {sizes.size} lesions pooled: {quantiles}"
        + (f", max {int(sizes.max())}" if sizes.size else "")
        + (f"; {100 * np.mean(sizes <= 20):.0f} % of lesions <= 20 voxels" if sizes.size else "")
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="data folder (ISBI, nnU-Net, BIDS) or CSV manifest")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--modalities",
        help="comma-separated modalities; those beyond FLAIR get a lesion/brain ratio column",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.json is not None and args.json.is_dir():
        print(f"Error: --json {args.json}: is a folder", file=sys.stderr)
        return 2
    try:
        result = measure(args.data, args.modalities)
    except MssoftError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json is not None:
        try:
            write_json(result.to_dict(), args.json)
        except OSError as error:
            print(f"Error: --json {args.json}: {error.strerror or error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
