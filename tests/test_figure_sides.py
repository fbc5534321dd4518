"""Every axial view of the figures is marked left/right, and the convention is stated."""

import numpy as np

from mssoft.experiments.demo import figures


def capture(monkeypatch):
    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, dpi: saved.append(fig) or path)
    return saved


def check_sides(fig):
    views = [ax for ax in fig.axes if ax.axison and ax.images]
    assert views
    for ax in views:
        texts = sorted(t.get_text() for t in ax.texts)
        assert texts == ["L", "R"], texts
        left, right = sorted(ax.texts, key=lambda t: t.get_position()[0])
        assert (left.get_text(), right.get_text()) == ("L", "R")  # neurological: R on the right
    assert "neurological convention" in fig._suptitle.get_text()


def test_demo_figures_mark_left_and_right(monkeypatch):
    saved = capture(monkeypatch)
    rng = np.random.default_rng(0)
    flair = rng.uniform(1, 2, (20, 24)).astype(np.float32)
    mask = np.zeros((20, 24), bool)
    mask[8:11, 9:13] = True
    window = figures.focus_window(mask, 12)
    figures.plot_data_overview(
        {"flair": flair, "t1": flair, "t2": flair},
        {1: mask, 2: mask},
        mask * 1.0,
        mask * 0.8,
        "unused.png",
        title="scan",
        window=window,
        gamma=0.3,
    )
    figures.plot_predictions(
        flair,
        {1: mask},
        None,
        {"binary": mask * 0.9, "soft": mask * 0.7},
        {"binary": mask, "soft": mask},
        "unused.png",
        title="scan",
        window=window,
    )
    assert len(saved) == 2
    for fig in saved:
        check_sides(fig)


def test_mark_sides_radiological_swaps_the_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    figures.mark_sides(ax, right_on_right=False)
    left, right = sorted(ax.texts, key=lambda t: t.get_position()[0])
    assert (left.get_text(), right.get_text()) == ("R", "L")
    plt.close(fig)
