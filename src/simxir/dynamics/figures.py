"""Figures of the dynamics experiments (paper Figures 3, 4, 5 and smoothed embeddings), drawn with
:mod:`simxir.plotting` from what :mod:`simxir.dynamics.experiments` computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simxir.dynamics.steps import DynamicsResult
from simxir.plotting import figure, save_figure

_SCATTER = {"cmap": "tab10", "s": 6, "vmin": 0, "vmax": 9}


def distinct_panels(panels: Sequence[int], runs: Mapping[str, DynamicsResult], rtol: float = 1e-3) -> list[int]:
    """``panels`` without the steps at which no run's reps moved since the last kept one (collapsed
    groups repeat the same picture): moved = max change > ``rtol`` of the first panel's spread."""
    if not panels:
        return []
    spread = {name: float(np.ptp(np.asarray(res.snapshots[panels[0]]), axis=0).max()) or 1.0
              for name, res in runs.items()}
    kept = [panels[0]]
    for t in panels[1:]:
        if any(float(np.abs(np.asarray(res.snapshots[t]) - np.asarray(res.snapshots[kept[-1]])).max())
               > rtol * spread[name] for name, res in runs.items()):
            kept.append(t)
    return kept


def plot_groups(x: np.ndarray, comp: np.ndarray, eps: float, panels: Sequence[int],
                runs: Mapping[str, DynamicsResult], path: str | Path) -> Path:
    """Figure 4: reps at ``panels`` steps (a row per run; a step whose reps no longer move is shown
    once), the inputs, and diameters, minimum inter-group distances and group-mean drift per step
    (a line per group, solid: unconstrained, dashed: spherical, in the legend)."""
    panels = distinct_panels(panels, runs)
    fig = figure(width=3.0 * max(len(panels), 4), height=9.5)
    top, bottom = fig.subfigures(2, 1, height_ratios=[2, 1])
    axes = top.subplots(len(runs), len(panels), squeeze=False)
    for row, (name, res) in enumerate(runs.items()):
        for j, t in enumerate(panels):
            s = res.snapshots[t]
            axes[row, j].scatter(s[:, 0], s[:, 1], c=comp, **_SCATTER)
            axes[row, j].set_title(f"{name} t={t}", fontsize=9)
            axes[row, j].set_aspect("equal", "datalim")
    inputs, *curves = bottom.subplots(1, 4)
    inputs.scatter(x[:, 0], x[:, 1], c=comp, **_SCATTER)
    inputs.set_title(f"inputs (eps={eps})", fontsize=9)
    inputs.set_aspect("equal")
    for ax, (key, title) in zip(curves, (("diameter", "group diameters"),
                                         ("min_distance", "min inter-group distance"),
                                         ("mean_drift", "group-mean drift"))):
        for name, res in runs.items():
            lines = ax.plot(res.steps, res.history[key], "--" if name == "spherical" else "-", lw=1)
            lines[0].set_label(f"{name} (a line per group)")
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=6)
        ax.set_xscale("symlog")
        if key == "diameter":
            ax.set_yscale("log")
    fig.suptitle("Neighbour-averaging dynamics on four disjoint groups (Figure 4)")
    return save_figure(fig, path, dpi=110)


def plot_overlap(x: np.ndarray, lab: np.ndarray, res: DynamicsResult, shown: Sequence[int],
                 path: str | Path) -> Path:
    """Figure 5: inputs, reps at ``shown`` steps, diameter and mean pairwise distance per group."""
    n = 3 + len(shown)
    fig = figure(ncols=n, width=20 / n, height=3.4)
    axes = fig.subplots(1, n)
    axes[0].scatter(x[:, 0], x[:, 1], c=lab, **_SCATTER)
    axes[0].set_title("inputs (overlapping patches)", fontsize=9)
    for j, t in enumerate(shown):
        s = res.snapshots[t]
        axes[j + 1].scatter(s[:, 0], s[:, 1], c=lab, **_SCATTER)
        axes[j + 1].set_title(f"reps t={t}", fontsize=9)
    axes[-2].plot(res.steps, res.history["diameter"])
    axes[-2].set_title("diameter per group", fontsize=9)
    axes[-1].plot(res.steps, res.history["intra_msd"])
    axes[-1].set_title("mean pairwise sq. distance per group", fontsize=9)
    for ax in axes[-2:]:
        ax.set_xscale("symlog")
        ax.set_yscale("log")
    fig.suptitle("Overlapping groups (Figure 5)")
    return save_figure(fig, path, dpi=110)


def plot_iris(table: Mapping[str, list[dict[str, Any]]], X: np.ndarray, f_end: np.ndarray, y: np.ndarray,
              steps: int, path: str | Path) -> Path:
    """Figure 3: k-means accuracy per averaging step (mean and std over seeds), Iris before/after."""
    fig = figure(ncols=3, width=13 / 3, height=3.6)
    axes = fig.subplots(1, 3)
    for key, rows in table.items():
        axes[0].errorbar([max(r["steps"], 0.5) for r in rows], [r["mean"] for r in rows],
                         yerr=[r["std"] for r in rows], marker="o", label=f"k-means {key}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("averaging steps (0 plotted at 0.5)")
    axes[0].set_ylabel("clustering accuracy")
    axes[0].legend(fontsize=8)
    for ax, data, title in ((axes[1], X, "before"), (axes[2], f_end, f"after {steps} steps")):
        ax.scatter(data[:, 2], data[:, 3], c=y, cmap="viridis", s=10)
        ax.set_title(f"Iris {title} (petal length/width)", fontsize=9)
    fig.suptitle("Neighbour averaging then k-means on Iris (Figure 3)")
    return save_figure(fig, path, dpi=110)


def plot_embeddings(steps: Sequence[int], accs: Sequence[float], k_eval: int, source: str,
                    path: str | Path) -> Path:
    """kNN top-1 of the smoothed features per averaging step."""
    fig = figure()
    ax = fig.add_subplot()
    ax.plot(steps, accs, marker="o")
    ax.set_xlabel("averaging steps")
    ax.set_ylabel(f"{k_eval}-NN top-1 (%)")
    ax.set_title(f"smoothed features: {source}"[:80], fontsize=8)
    return save_figure(fig, path, dpi=110)
