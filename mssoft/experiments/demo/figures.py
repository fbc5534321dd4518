"""Figures of the demo report: data, predictions, training curves, calibration curves (PNG).

Every function takes arrays or plain records (no file reading) and writes one PNG atomically with
Matplotlib's non-interactive Agg backend. Axial slices are 2D arrays ``(X, Y)`` in RAS order and
are shown in the neurological convention: the patient's right on the right, anterior up; every
axial view is marked ``R`` and ``L`` on its sides (:func:`mark_sides`) and every figure title
states the convention (:data:`CONVENTION`).

Matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mssoft.files.figures import pyplot, save_figure

__all__ = [
    "CONVENTION",
    "mark_sides",
    "focus_window",
    "mask_outline",
    "plot_data_overview",
    "plot_predictions",
    "plot_training_curves",
    "plot_calibration_curves",
]

#: Line colour of each model in every figure.
MODEL_COLOURS = {"binary": "#1f77b4", "soft": "#d95f02"}
RATER_COLOURS = {1: "#e41a1c", 2: "#00bfff"}
_DPI = 110
#: The display convention of every axial view, stated under each figure's title.
CONVENTION = "axial views in neurological convention: the patient's right (R) on the right"


def focus_window(mask: np.ndarray, size: int) -> tuple[slice, slice]:
    """A square window of a 2D slice centred where the mask is densest.

    Parameters
    ----------
    mask : ndarray of shape (X, Y)
        Lesion mask (or any non-negative weights) of the slice.
    size : int
        Side of the window in voxels (clipped to the slice).

    Returns
    -------
    (slice, slice)
        Index of the window along X and Y (centred on the slice when ``mask`` is empty).
    """
    weights = np.asarray(mask, dtype=np.float64)
    sides = [min(int(size), n) for n in weights.shape]
    if not weights.any():
        centre = [n // 2 for n in weights.shape]
    else:  # a smooth peak at the centre of the nearby lesion mass (no plateau of equal windows)
        density = ndimage.gaussian_filter(weights, sigma=max(sides) / 6.0, mode="constant")
        centre = [int(v) for v in np.unravel_index(int(np.argmax(density)), density.shape)]
    window = []
    for c, side, n in zip(centre, sides, weights.shape, strict=True):
        start = int(np.clip(c - side // 2, 0, n - side))
        window.append(slice(start, start + side))
    return window[0], window[1]


def _show(ax: Any, image: np.ndarray, **kwargs: Any) -> Any:
    """Draw a (X, Y) slice with X to the right and Y (anterior) up."""
    return ax.imshow(np.ma.asarray(image).T, origin="lower", interpolation="nearest", **kwargs)


def _grey(image: np.ndarray) -> dict[str, Any]:
    brain = image[image > 0]
    top = float(np.percentile(brain, 99.5)) if brain.size else 1.0
    return {"cmap": "gray", "vmin": 0.0, "vmax": top if top > 0 else 1.0}


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The voxels just outside a 2D mask, as drawn around lesions in the figures.

    Parameters
    ----------
    mask : ndarray of shape (X, Y)
        Lesion mask of a slice (non-zero is lesion).

    Returns
    -------
    ndarray of bool, shape (X, Y)
        Background voxels that share an edge with the mask
        (``skimage.segmentation.find_boundaries``, ``mode="outer"``): the outline leaves every
        lesion voxel visible, however small the lesion.
    """
    from skimage.segmentation import find_boundaries

    inside = np.asarray(mask) != 0
    return find_boundaries(inside, connectivity=1, mode="outer") & ~inside


def _contour(ax: Any, mask: np.ndarray, colour: str, alpha: float = 1.0) -> None:
    from matplotlib.colors import ListedColormap

    outline = mask_outline(mask)
    if outline.any():
        _show(ax, np.ma.masked_where(~outline, outline), cmap=ListedColormap([colour]), alpha=alpha)


def _box(ax: Any, window: tuple[slice, slice], colour: str = "yellow") -> None:
    import matplotlib.patches as patches

    (xs, ys) = window
    ax.add_patch(
        patches.Rectangle(
            (xs.start - 0.5, ys.start - 0.5),
            xs.stop - xs.start,
            ys.stop - ys.start,
            fill=False,
            edgecolor=colour,
            linewidth=1.5,
        )
    )


def mark_sides(ax: Any, *, right_on_right: bool = True) -> None:
    """Write ``L`` and ``R`` at the middle of the left and right edges of an axial view.

    Parameters
    ----------
    ax : matplotlib Axes
        Shows an axial slice.
    right_on_right : bool
        True (neurological convention, as :func:`_show` draws): the patient's right is on the
        right of the view; False for the radiological convention.
    """
    import matplotlib.patheffects as effects

    outline = [effects.withStroke(linewidth=2.0, foreground="black")]
    for x, side, align in ((0.015, "L", "left"), (0.985, "R", "right")):
        label = side if right_on_right else {"L": "R", "R": "L"}[side]
        ax.text(
            x,
            0.5,
            label,
            transform=ax.transAxes,
            ha=align,
            va="center",
            color="white",
            fontsize=9,
            fontweight="bold",
            path_effects=outline,
        )


def _clean(axes: Any) -> None:
    """No ticks; the sides marked on every panel that shows a slice."""
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if ax.axison and ax.images:
            mark_sides(ax)


def _grid(plt: Any, columns: int, height: float) -> tuple[Any, np.ndarray, list[Any]]:
    """Two rows of ``columns`` image panels plus a narrow colour-bar column (one per row)."""
    fig, grid = plt.subplots(
        2,
        columns + 1,
        figsize=(3.0 * columns + 0.9, height),
        constrained_layout=True,
        gridspec_kw={"width_ratios": [1.0] * columns + [0.06]},
    )
    return fig, grid[:, :columns], list(grid[:, columns])


def _rater_outlines(ax: Any, raters: Mapping[int, np.ndarray]) -> None:
    from matplotlib.lines import Line2D

    handles = []
    for rater, mask in raters.items():
        colour = RATER_COLOURS.get(rater, f"C{rater}")
        _contour(ax, mask, colour)
        handles.append(Line2D([], [], color=colour, lw=2, label=f"rater {rater}"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_title("rater masks (outlines)")


def plot_data_overview(
    images: Mapping[str, np.ndarray],
    raters: Mapping[int, np.ndarray],
    soft: np.ndarray,
    truth: np.ndarray | None,
    path: str | Path,
    *,
    title: str,
    window: tuple[slice, slice],
    gamma: float,
) -> Path:
    """One axial slice of a training scan: every modality, the rater masks and the soft mask.

    Parameters
    ----------
    images : mapping of str to ndarray of shape (X, Y)
        Modality name (``flair``, ``t1``, ...) to the slice's raw intensities, FLAIR first.
    raters : mapping of int to ndarray of bool, shape (X, Y)
        Each rater's mask on the slice.
    soft : ndarray of shape (X, Y)
        Soft mask on the slice (1 lesion, ``gamma`` ring, 0 elsewhere).
    truth : ndarray of shape (X, Y) or None
        True lesion fraction in [0, 1] (synthetic data only).
    path : path-like
        PNG to write.
    title : str
        Figure title (names the scan and slice).
    window : (slice, slice)
        Zoomed region shown in the second row (outlined on the FLAIR slice).
    gamma : float
        Soft label of the ring, for the colour-bar ticks.

    Returns
    -------
    Path
    """
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = list(images)
    columns = max(len(names), 4)
    fig, axes, bars = _grid(plt, columns, 6.9)
    for k, name in enumerate(names):
        ax = axes[0, k]
        _show(ax, images[name], **_grey(images[name]))
        ax.set_title(f"{name.upper() if len(name) <= 5 else name} (whole slice)")
    for k in range(len(names), columns):
        axes[0, k].axis("off")
    _box(axes[0, 0], window)

    flair = images[names[0]]
    zoom = lambda a: np.asarray(a)[window]  # noqa: E731
    grey = _grey(flair)

    ax = axes[1, 0]
    _show(ax, zoom(flair), **grey)
    ax.set_title("FLAIR (zoom: yellow box)")

    ax = axes[1, 1]
    _show(ax, zoom(flair), **grey)
    _rater_outlines(ax, {r: zoom(m) for r, m in raters.items()})

    ax = axes[1, 2]
    _show(ax, zoom(flair), **grey)
    ring, lesion = "#ffd92f", "#e7298a"
    soft_zoom = zoom(soft)
    codes = np.where(soft_zoom >= 0.5, 2.0, np.where(soft_zoom > 0, 1.0, 0.0))
    _show(ax, np.ma.masked_equal(codes, 0), cmap=ListedColormap([ring, lesion]), vmin=0.5, vmax=2.5)
    ax.set_title("soft mask from rater 1")
    ax.legend(
        handles=[
            Patch(color=lesion, label="lesion: 1"),
            Patch(color=ring, label=f"ring: gamma = {gamma:g}"),
        ],
        loc="lower left",
        fontsize=8,
        framealpha=0.8,
    )

    ax = axes[1, 3]
    if truth is None:
        ax.axis("off")
        bars[1].axis("off")
    else:
        image = _show(ax, zoom(truth), cmap="magma", vmin=0.0, vmax=1.0)
        _contour(ax, zoom(raters.get(1, np.zeros_like(truth, bool))), "white", 1.0)
        ax.set_title("true lesion fraction\n(white: rater 1 outline)")
        fig.colorbar(image, cax=bars[1], label="true lesion fraction of the voxel")
    for k in range(4, columns):
        axes[1, k].axis("off")
    bars[0].axis("off")
    _clean(axes)
    fig.suptitle(f"{title}\n({CONVENTION})", fontsize=12)
    return save_figure(fig, path, dpi=_DPI)


def _outcome(seg: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """0 nothing, 1 true positive, 2 false positive, 3 false negative (masked where 0)."""
    seg, ref = np.asarray(seg, bool), np.asarray(ref, bool)
    codes = np.zeros(seg.shape, dtype=float)
    codes[seg & ref] = 1
    codes[seg & ~ref] = 2
    codes[~seg & ref] = 3
    return np.ma.masked_equal(codes, 0)


def plot_predictions(
    flair: np.ndarray,
    raters: Mapping[int, np.ndarray],
    truth: np.ndarray | None,
    probabilities: Mapping[str, np.ndarray],
    segmentations: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    title: str,
    window: tuple[slice, slice],
    subtitles: Mapping[str, str] | None = None,
) -> Path:
    """Both models on one held-out slice: probabilities and segmentations against rater 1.

    Parameters
    ----------
    flair : ndarray of shape (X, Y)
        FLAIR slice.
    raters : mapping of int to ndarray of bool, shape (X, Y)
        Rater masks (rater 1 is the reference of the outcome maps).
    truth : ndarray of shape (X, Y) or None
        True lesion fraction.
    probabilities, segmentations : mapping of str to ndarray of shape (X, Y)
        Per model (``binary``, ``soft``): probabilities in [0, 1] and the calibrated, post-processed
        segmentation.
    path : path-like
    title : str
    window : (slice, slice)
        Zoomed region of every panel but the first.
    subtitles : mapping of str to str, optional
        Extra line under each model's panel titles (e.g. the threshold and scan Dice).

    Returns
    -------
    Path
    """
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    models = list(probabilities)
    subtitles = dict(subtitles or {})
    fig, axes, bars = _grid(plt, 2 + len(models), 7.2)
    zoom = lambda a: np.asarray(a)[window]  # noqa: E731
    grey = _grey(flair)
    unit = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
    reference = raters.get(1, np.zeros_like(flair, bool))

    _show(axes[0, 0], flair, **grey)
    _box(axes[0, 0], window)
    axes[0, 0].set_title("FLAIR (whole slice)")
    if truth is None:
        axes[0, 1].axis("off")
    else:
        _show(axes[0, 1], zoom(truth), **unit)
        _contour(axes[0, 1], zoom(reference), "white", 1.0)
        axes[0, 1].set_title("true lesion fraction (zoom)")
    _show(axes[1, 0], zoom(flair), **grey)
    axes[1, 0].set_title("FLAIR (zoom: yellow box)")
    _show(axes[1, 1], zoom(flair), **grey)
    _rater_outlines(axes[1, 1], {r: zoom(m) for r, m in raters.items()})

    outcome = ListedColormap(["#1a9850", "#fc8d59", "#4575b4"])
    image = None
    for k, model in enumerate(models, start=2):
        extra = f"\n{subtitles[model]}" if model in subtitles else ""
        ax = axes[0, k]
        image = _show(ax, zoom(probabilities[model]), **unit)
        _contour(ax, zoom(reference), "white", 1.0)
        ax.set_title(f"{model} model: probability{extra}", fontsize=10)
        ax = axes[1, k]
        _show(ax, zoom(flair), **grey)
        codes = _outcome(zoom(segmentations[model]), zoom(reference))
        _show(ax, codes, cmap=outcome, vmin=0.5, vmax=3.5, alpha=0.9)
        ax.set_title(f"{model} model: segmentation{extra}", fontsize=10)
    if image is not None:
        fig.colorbar(image, cax=bars[0], label="probability / true lesion fraction")
    bars[1].axis("off")
    legend = [
        Patch(color="#1a9850", label="model and rater 1 (TP)"),
        Patch(color="#fc8d59", label="model only (FP)"),
        Patch(color="#4575b4", label="rater 1 only (FN)"),
    ]
    fig.legend(
        handles=legend,
        loc="outside lower center",
        ncol=3,
        fontsize=9,
        title="segmentations against rater 1 (rater 1 outlined in white on the top row)",
        title_fontsize=9,
    )
    _clean(axes)
    fig.suptitle(f"{title}\n({CONVENTION})", fontsize=12)
    return save_figure(fig, path, dpi=_DPI)


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    *,
    best_epochs: Mapping[str, int | None] | None = None,
    baseline_dice: Mapping[str, float] | None = None,
) -> Path:
    """Loss and binarised Dice per epoch, training (dashed) and validation (solid), per model.

    With ``baseline_dice``, the Dice panel also shows, per model, the FLAIR-threshold baseline's
    Dice on that model's validation slices (dotted line): the level a model must beat to count
    as learned.

    Parameters
    ----------
    histories : mapping of str to sequence of dict
        Per model, the rows of its ``history.csv`` (``epoch``, ``loss``, ``val_loss``, ``dice``,
        ``val_dice``).
    path : path-like
    best_epochs : mapping of str to int, optional
        Epoch of each model's saved weights (marked with a dot).
    baseline_dice : mapping of str to float, optional
        Per model, the baseline's Dice on its validation slices (fraction; NaN is not drawn).

    Returns
    -------
    Path
    """
    plt = pyplot()
    best_epochs = dict(best_epochs or {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.4), constrained_layout=True)
    for model, rows in histories.items():
        colour = MODEL_COLOURS.get(model)
        epochs = [int(r["epoch"]) for r in rows]
        for ax, key in ((left, "loss"), (right, "dice")):
            for prefix, style, part in (("", "--", "training"), ("val_", "-", "validation")):
                values = [r.get(prefix + key, math.nan) for r in rows]
                if np.isfinite(values).any():
                    ax.plot(
                        epochs, values, style, color=colour, marker=".", label=f"{model}, {part}"
                    )
            best = best_epochs.get(model)
            if best is not None and best in epochs:
                row = rows[epochs.index(best)]
                value = row.get(f"val_{key}", row.get(key, math.nan))
                ax.plot([best], [value], "o", ms=10, mfc="none", mec=colour, mew=2)
        level = (baseline_dice or {}).get(model, math.nan)
        if math.isfinite(level):
            right.axhline(
                level, linestyle=":", color=colour, label=f"FLAIR threshold, {model}'s val. slices"
            )
    left.set(
        xlabel="epoch",
        ylabel="soft Dice loss (lower is better)",
        title="Loss (soft targets cannot reach -1)",
    )
    right.set(
        xlabel="epoch",
        ylabel="Dice at 0.5 against rater 1 (pooled over slices)",
        title="Binarised Dice of the lesion slices",
        ylim=(0, 1),
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Training curves (circle: epoch of the saved model, best validation loss)")
    return save_figure(fig, path, dpi=_DPI)


def plot_calibration_curves(
    calibrations: Mapping[str, Mapping[str, Any]],
    path: str | Path,
) -> Path:
    """Mean Dice against the threshold on the training scans, per model, with the chosen point.

    Parameters
    ----------
    calibrations : mapping of str to dict
        Per model, a ``calibration.json`` record: ``thresholds``, ``mean_dice_curve``
        (``{min_size: [...]}``), ``scan_dice_curves``, ``threshold``, ``min_size``,
        ``mean_dice``, ``rater``.
    path : path-like

    Returns
    -------
    Path
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    rater = None
    for model, record in calibrations.items():
        colour = MODEL_COLOURS.get(model)
        thresholds = np.asarray(record["thresholds"], dtype=float)
        size = str(record["min_size"])
        for curves in record.get("scan_dice_curves", {}).values():
            ax.plot(thresholds, 100 * np.asarray(curves[size]), color=colour, alpha=0.18, lw=0.8)
        mean = 100 * np.asarray(record["mean_dice_curve"][size])
        ax.plot(thresholds, mean, color=colour, lw=2.2, label=f"{model} model, mean over scans")
        chosen = float(record["threshold"])
        ax.axvline(chosen, color=colour, ls=":", lw=1.5)
        ax.plot(
            [chosen],
            [100 * float(record["mean_dice"])],
            "o",
            color=colour,
            label=f"{model}: threshold {chosen:.2f}, Dice {100 * float(record['mean_dice']):.1f} %",
        )
        rater = record.get("rater", rater)
    ax.set(
        xlabel="probability threshold (lesion where prob >= threshold)",
        ylabel=f"Dice against rater {rater} (%)",
        title="Calibration on the training scans (thin lines: single scans)",
        xlim=(0, 1),
    )
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2)
    return save_figure(fig, path, dpi=_DPI)
