"""
Title: A tour of soft lesion masks
Author: mssoft developers
Date created: 2026/11/29
Last modified: 2026/11/29
Description: How the dilation ratio, the soft label gamma and the FLAIR threshold shape the soft
mask of Kats et al. (ISBI 2019), on a generated brain scan.

Run it with `python examples/soft_mask_tour.py [OUTPUT.png] [--seed N] [--shape X Y Z]`.
It needs no data: the scan comes from `mssoft.synthetic`.
"""

"""
## Setup

The figure is drawn with Matplotlib's non-interactive Agg backend, so the script runs on a server
without a display.
"""

import argparse  # noqa: E402 (keras-io layout: prose blocks between code)
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from scipy import ndimage  # noqa: E402

from mssoft import dilation_region, soft_mask  # noqa: E402
from mssoft.arrays.soft_masks import resolve_flair_threshold  # noqa: E402
from mssoft.experiments.demo.figures import CONVENTION, mark_sides  # noqa: E402
from mssoft.synthetic import make_scan  # noqa: E402

"""
## A synthetic scan

`make_scan` draws a brain (white and grey matter, CSF, ventricles) with MS-like lesions and
renders FLAIR, T1, T2 and PD images. Two simulated raters mark the lesions; rater 1 is the
reference here, as in the paper. Images and masks are NumPy arrays in RAS order (axis 2 is
axial), on a 1 mm grid.
"""


def focus(
    mask: np.ndarray, flair: np.ndarray, spacing, half: int = 15
) -> tuple[int, tuple[slice, slice]]:
    """An axial slice and a square of it where the FLAIR threshold drops most ring voxels.

    Those are grown voxels that fall into dark CSF, next to periventricular lesions: the place
    where all three knobs show.
    """
    dropped = dilation_region(mask, spacing=spacing, ratio=1.6) & (
        flair < resolve_flair_threshold(flair, "p50")
    )
    score = mask.astype(float) + 4.0 * dropped
    side = 2 * half
    density = ndimage.uniform_filter(score, size=(side, side, 1), mode="constant")
    r, c, z = (int(v) for v in np.unravel_index(int(np.argmax(density)), density.shape))
    r = int(np.clip(r, half, mask.shape[0] - half))
    c = int(np.clip(c, half, mask.shape[1] - half))
    return z, (slice(r - half, r + half), slice(c - half, c + half))


"""
## The soft mask in one line

`soft_mask` grows the binary mask `M` by 3D dilation to `ratio` times its volume (the region
`D0`), drops grown voxels darker than the FLAIR threshold (`D = D0 ∩ {FLAIR >= t}`) and returns
`S = M + gamma * D`. The counts below show each step.
"""


def counts(mask, flair, spacing, *, ratio, gamma, threshold):
    """Voxel counts of M, D0, D and the soft total sum(S) for one setting."""
    soft = soft_mask(
        mask, flair, spacing=spacing, ratio=ratio, gamma=gamma, flair_threshold=threshold
    )
    ring0 = dilation_region(mask, spacing=spacing, ratio=ratio)
    ring = (soft > 0) & (soft < 1)
    return soft, {
        "M": int(mask.sum()),
        "D0": int(ring0.sum()),
        "D": int(ring.sum()),
        "sum(S)": float(soft.sum()),
    }


"""
## Three knobs

Each row changes one parameter, the others staying at the middle value:

* **ratio**: how far the mask grows (1.2 is the paper's "120 %");
* **gamma**: the soft label of the ring (0.3 in the paper);
* **FLAIR threshold**: grown voxels darker than this are dropped (`p50` is the median brain
  FLAIR intensity; `none` keeps the whole ring). Dark CSF next to periventricular lesions is
  what this removes.

At ratio 1.2 the grown voxels are only part of the first shell around the lesions: voxels at
equal distance are taken in array order, so some lesions get a ring and others none yet.
"""

RED = ListedColormap(["#e41a1c"])
SETTINGS: dict[str, list[dict]] = {
    "ratio": [dict(ratio=r, gamma=0.3, threshold="p50") for r in (1.2, 1.6, 2.5)],
    "gamma": [dict(ratio=1.6, gamma=g, threshold="p50") for g in (0.1, 0.3, 0.6)],
    "FLAIR threshold": [dict(ratio=1.6, gamma=0.3, threshold=t) for t in ("none", "p50", "p75")],
}


def label(setting: dict) -> str:
    return f"ratio {setting['ratio']:g}, gamma {setting['gamma']:g}, t {setting['threshold']}"


def draw(output: Path, seed: int, shape: tuple[int, int, int]) -> None:
    scan = make_scan(shape, seed=seed)
    flair, mask = scan.images["flair"], scan.masks[1]
    spacing = scan.spacing
    z, box = focus(mask, flair, spacing)
    # Display convention (neurological): RAS axis 1 (anterior) up, axis 0 (right) to the right.
    show = lambda a: a[box].T  # noqa: E731
    grey = dict(
        cmap="gray", origin="lower", vmin=0, vmax=float(np.percentile(flair[flair > 0], 99.5))
    )

    fig, axes = plt.subplots(4, 3, figsize=(10, 13.5), constrained_layout=True)
    axes[0, 0].imshow(flair[:, :, z].T, **grey)
    rows, cols = box
    axes[0, 0].add_patch(
        plt.Rectangle(
            (rows.start, cols.start),
            rows.stop - rows.start,
            cols.stop - cols.start,
            fill=False,
            color="yellow",
            lw=1.5,
        )
    )
    axes[0, 0].set_title(f"FLAIR, axial slice {z}")
    axes[0, 1].imshow(show(flair[:, :, z]), **grey)
    axes[0, 1].set_title("FLAIR (zoom)")
    axes[0, 2].imshow(show(flair[:, :, z]), **grey)
    axes[0, 2].imshow(
        np.ma.masked_equal(show(mask[:, :, z].astype(float)), 0),
        cmap="autumn",
        origin="lower",
        vmin=0,
        vmax=1,
        alpha=0.8,
    )
    axes[0, 2].set_title(f"rater 1 mask M ({int(mask.sum())} voxels)")

    print(f"{'setting':<36} {'|M|':>6} {'|D0|':>6} {'|D|':>6} {'sum(S)':>8}")
    image = None
    for row, (knob, settings) in enumerate(SETTINGS.items(), start=1):
        for col, setting in enumerate(settings):
            soft, n = counts(mask, flair, spacing, **setting)
            print(f"{label(setting):<36} {n['M']:>6} {n['D0']:>6} {n['D']:>6} {n['sum(S)']:>8.1f}")
            ax = axes[row, col]
            ax.imshow(show(flair[:, :, z]), **grey)
            image = ax.imshow(
                np.ma.masked_equal(show(soft[:, :, z]), 0),
                cmap="viridis",
                origin="lower",
                vmin=0,
                vmax=1,
                alpha=0.85,
            )
            value = setting[
                {"ratio": "ratio", "gamma": "gamma", "FLAIR threshold": "threshold"}[knob]
            ]
            if knob == "FLAIR threshold":
                # Grown voxels darker than t, dropped from the ring, in red.
                t = resolve_flair_threshold(flair, setting["threshold"])
                value = f"{value}" + ("" if t is None else f" ({t:.0f})")
                ring0 = dilation_region(mask, spacing=spacing, ratio=setting["ratio"])
                dropped = ring0 & (soft == 0)
                ax.imshow(
                    np.ma.masked_equal(show(dropped[:, :, z].astype(float)), 0),
                    cmap=RED,
                    origin="lower",
                    vmin=0,
                    vmax=1,
                )
            ax.set_title(f"{knob} = {value}\nring kept: {n['D']} of {n['D0']} voxels", fontsize=10)
    for ax in axes.flat:  # every panel is an axial view: mark the patient's left and right
        ax.set_xticks([])
        ax.set_yticks([])
        mark_sides(ax)
    assert image is not None
    fig.colorbar(image, ax=axes[1:, :], shrink=0.5, label="soft label (1 = lesion, gamma = ring)")
    fig.suptitle(
        f"Soft masks S = M + gamma * D (Kats et al., ISBI 2019)\n({CONVENTION})", fontsize=12
    )
    fig.supxlabel(
        "Counts are whole-volume voxels. Last row, red: grown voxels darker than t (dropped).",
        fontsize=10,
    )
    fig.savefig(output, dpi=110)
    plt.close(fig)
    print(f"figure: {output}")


"""
## Run
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Draw how ratio, gamma and the FLAIR threshold shape soft masks."
    )
    parser.add_argument(
        "output", nargs="?", default="soft_mask_tour.png", type=Path, help="PNG to write"
    )
    parser.add_argument("--seed", type=int, default=0, help="patient seed of the synthetic scan")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(96, 112, 80),
        metavar=("X", "Y", "Z"),
        help="grid of the synthetic scan (1 mm voxels)",
    )
    args = parser.parse_args(argv)
    draw(args.output, args.seed, tuple(args.shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
