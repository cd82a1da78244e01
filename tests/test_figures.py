"""The figures read at a glance: what each one shows is read back from the drawn figure (tick labels,
title length, legends, the normalisation in the axis label), not from the PNG's pixels."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def drawn(monkeypatch):
    """Patch ``save_figure`` in a module: the figure it would save is kept in the returned list."""
    figures: list = []

    def patch(module):
        monkeypatch.setattr(module, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
        return figures

    return patch


def _labels(ticks) -> list[str]:
    return [t.get_text() for t in ticks if t.get_text()]


def test_demo_k_axis_shows_the_k_values(drawn, tmp_path):
    from simxir.experiments import demo

    figs = drawn(demo)
    knn = {"cosine": {str(k): 50.0 + k for k in (5, 7, 11, 15, 17, 21)}}
    ci = {"change": 1.0, "ci_low": -0.5, "ci_high": 2.5}
    demo._plot({"a": {"knn": knn}, "b": {"knn": knn}}, {"knn": {"cosine": {"5": ci}}, "linear": ci},
               {"a": {"within_class_msd": 0.2, "between_class_msd": 1.0}}, tmp_path / "d.png")
    ax = figs[0].axes[0]
    figs[0].canvas.draw()
    assert _labels(ax.get_xticklabels()) == ["5", "7", "11", "15", "17", "21"]


def test_knn_over_k_has_a_short_title_k_ticks_and_intervals(drawn, tmp_path):
    from simxir.finetune import report

    figs = drawn(report)
    acc = {"knn": {"cosine": {str(k): 60.0 + k / 10 for k in (5, 11, 21)},
                   "euclidean": {str(k): 58.0 for k in (5, 11, 21)}}}
    summary = {"encoder_source": "/very/long/path/to/some/folder/encoder.ckpt",
               "config": {"data": "folder:/another/very/long/path/photos"}, "n_test": 500}
    title = report.short_title(summary)
    assert title == "SimXIR: encoder.ckpt on folder:photos" and len(title) < 60
    report.plot_knn_over_k(acc, acc, tmp_path / "k.png", title=title, n_test=500)
    ax = figs[0].axes[0]
    figs[0].canvas.draw()
    assert ax.get_title() == title and _labels(ax.get_xticklabels()) == ["5", "11", "21"]
    assert ax.get_legend() is not None and "Wilson" in ax.get_ylabel()
    assert len(ax.containers) == 4                                   # an errorbar per curve
    lo, hi = report.wilson(60.0, 500)
    assert lo < 60.0 < hi and hi - lo == pytest.approx(2 * 1.96 * (0.6 * 0.4 / 500) ** 0.5 * 100, rel=0.05)


def test_decorrelation_is_normalised_by_the_width_with_whole_epochs(drawn, tmp_path):
    from simxir.analysis import plots

    figs = drawn(plots)
    plots.plot_decorrelation([1, 2], [2000.0, 1000.0], tmp_path / "d.png", dim=64)
    ax = figs[0].axes[0]
    figs[0].canvas.draw()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2000 / (64 * 63), 1000 / (64 * 63)])
    assert "d(d-1)" in ax.get_ylabel() and "d=64" in ax.get_ylabel()
    assert all(float(t.get_text().replace("\u2212", "-")).is_integer() for t in ax.get_xticklabels() if t.get_text())
    plots.plot_decorrelation([1, 2], [2000.0, 1000.0], tmp_path / "e.png")
    assert "not normalised" in figs[1].axes[0].get_ylabel()


def test_groups_figure_drops_repeated_collapsed_panels_and_has_legends(drawn, tmp_path):
    from simxir.dynamics import figures
    from simxir.dynamics.steps import DynamicsResult

    figs = drawn(figures)
    rng = np.random.default_rng(0)
    start = rng.normal(size=(40, 2))
    snaps = {0: start, 10: start * 0.1, 100: start * 0.0 + 0.5, 1000: start * 0.0 + 0.5}   # collapsed by 100
    hist = {"diameter": np.abs(rng.normal(size=(4, 3))) + 1e-3, "min_distance": np.ones((4, 3)),
            "mean_drift": np.zeros((4, 3))}
    runs = {name: DynamicsResult(reps=None, steps=[0, 10, 100, 1000], history=hist, snapshots=snaps)
            for name in ("unconstrained", "spherical")}
    assert figures.distinct_panels([0, 10, 100, 1000], runs) == [0, 10, 100]
    figures.plot_groups(start, np.arange(40) % 4, 0.3, [0, 10, 100, 1000], runs, tmp_path / "g.png")
    titles = [ax.get_title() for ax in figs[0].axes]
    assert not any("t=1000" in t for t in titles)
    curves = [ax for ax in figs[0].axes if ax.get_title() in ("group diameters", "min inter-group distance",
                                                               "group-mean drift")]
    assert len(curves) == 3 and all(ax.get_legend() is not None for ax in curves)
