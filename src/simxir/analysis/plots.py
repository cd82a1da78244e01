"""Figures of the analysis, drawn with :mod:`simxir.plotting` from the numbers the analysis computes.

* :func:`plot_decorrelation` - decorrelation per epoch (paper Figure 1).
* :func:`plot_predictor_heatmaps` - ``W_p`` at chosen epochs (paper Figure 3).
* :func:`plot_eigenvalue_trajectories` - real eigenvalues of ``W_p`` over epochs (paper Figure 4).
* :func:`plot_predictor_diagnostics` - asymmetry, off-diagonal energy, distance to ``cI``.
* :func:`plot_theorem` - the Theorem 3.1 simulation against the ``exp(-2 eta t)`` envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from simxir.plotting import colour, figure, save_figure


def plot_decorrelation(epochs: Sequence[float], values: Sequence[float], path: str | Path,
                       title: str = "feature decorrelation", dim: int | None = None) -> Path:
    """``||corr - I||_F^2`` per epoch, divided by ``d (d - 1)`` when the width ``dim`` is known (the
    mean squared off-diagonal correlation, comparable across projector widths); nan epochs (a
    collapsed projection) are marked; whole epochs on the x axis."""
    fig = figure()
    ax = fig.add_subplot()
    x, y = np.asarray(epochs, float), np.asarray(values, float)
    if dim and dim > 1:
        y = y / (dim * (dim - 1))
    ax.plot(x, y, marker="o", ms=3)
    bad = ~np.isfinite(y)
    if bad.any():
        ax.plot(x[bad], np.zeros(bad.sum()), "rx", label="nan (zero-variance dims)")
        ax.legend()
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(r"mean sq. off-diagonal corr. $\|\mathrm{corr}(z) - I\|_F^2 / (d(d-1))$" + f", d={dim}"
                  if dim and dim > 1 else r"$\|\mathrm{corr}(z) - I\|_F^2$ (not normalised: width unknown)",
                  fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_predictor_heatmaps(epochs: Sequence[int], mats: Sequence[np.ndarray], path: str | Path,
                            max_panels: int = 4) -> Path:
    """Heat maps of ``W_p`` at up to ``max_panels`` epochs (a shared, symmetric colour scale)."""
    if not mats:
        raise ValueError("no predictor matrices to plot")
    fig = figure(ncols=len(mats), width=3.4, height=3.2)
    vmax = max(float(np.abs(m).max()) for m in mats) or 1.0
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    im = None
    for ax, e, m in zip(axes, epochs, mats):
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"$W_p$ epoch {e}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    return save_figure(fig, path)


def plot_eigenvalue_trajectories(epochs: Sequence[int], traj: np.ndarray, path: str | Path,
                                 max_lines: int = 64) -> Path:
    """Sorted real eigenvalues of ``W_p`` (rows = epochs); at most ``max_lines`` evenly chosen ranks."""
    fig = figure()
    ax = fig.add_subplot()
    d = traj.shape[1]
    ranks = np.unique(np.linspace(0, d - 1, min(d, max_lines)).round().astype(int))
    for r in ranks:
        ax.plot(epochs, traj[:, r], lw=1, color=colour("viridis", r / max(d - 1, 1)))
    ax.set_xlabel("epoch")
    ax.set_ylabel("Re eigenvalue of $W_p$")
    ax.set_title(f"predictor eigenvalues ({len(ranks)} of {d} ranks)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_predictor_diagnostics(epochs: Sequence[int], history: dict[str, list[float]], path: str | Path) -> Path:
    """Asymmetry, off-diagonal energy and distance to ``cI`` of ``W_p`` per epoch."""
    fig = figure()
    ax = fig.add_subplot()
    for key, vals in history.items():
        ax.plot(epochs, vals, marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative to $\\|W_p\\|_F$")
    ax.set_title("predictor structure")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_theorem(result: dict[str, Any], path: str | Path) -> Path:
    """Left: exact runs, normalised gap vs ``2 eta t`` against ``e^{-x}``; right: relaxed variants."""
    runs = [r for r in result["runs"] if "curves" in r]
    fig = figure(ncols=2)
    left, right = fig.subplots(1, 2)
    xs = np.linspace(0, result["config"]["e_folds"], 100)
    exact, relaxed = ("exact", "symmetrized-joint"), ("ordinary", "symmetrized")
    for ax, title, keep in ((left, "exact (orthonormal inputs)", lambda r: r["variant"] in exact),
                            (right, "relaxed assumptions", lambda r: r["variant"] in relaxed)):
        for r in filter(keep, runs):
            c = r["curves"]
            t, gap = np.asarray(c["t"]), np.asarray(c[r["tracked"]])
            style = "-" if r["variant"] in ("exact", "ordinary") else "--"
            ax.semilogy(2 * r["eta"] * t, gap / gap[0], style, lw=1.2,
                        label=f"{r['variant']} $\\eta$={r['eta']:g}: "
                              f"rate/2$\\eta$={r['fitted_rate'] / (2 * r['eta']):.3f}")
        ax.semilogy(xs, np.exp(-xs), "k:", lw=2, label=r"$e^{-2\eta t}$")
        ax.set_xlabel(r"$2\eta t$")
        ax.set_ylabel(r"$\|W_p^\top W_p - FF^\top\|_F$ / initial")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    return save_figure(fig, path)

