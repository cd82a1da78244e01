"""The one plotting helper every figure uses: an Agg-backed matplotlib ``Figure`` (no pyplot state,
safe in threads and without a display) and an atomic write, plus honest accuracy axes.

matplotlib is imported inside :func:`figure`, so importing this module costs nothing until a figure
is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simxir.io import atomic_write_bytes


def honest_ylim(values: Sequence[float], min_span: float = 10.0, top: float = 100.0) -> tuple[float, float]:
    """Accuracy axis limits that span at least ``min_span`` points (capped at [0, ``top``]), so that a
    change of a few test images does not fill the plot."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, top)
    pad = max(0.0, min_span - (hi - lo)) / 2
    lo, hi = lo - pad - 0.5, hi + pad + 0.5
    if hi > top:
        lo, hi = lo - (hi - top), top
    return max(0.0, lo), hi


def figure(ncols: int = 1, width: float = 5.0, height: float = 3.6) -> Any:
    """An Agg-backed matplotlib Figure (no pyplot state), ``ncols`` panels of ``width`` wide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - start-up time
    from matplotlib.figure import Figure  # noqa: PLC0415 - start-up time

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def colour(name: str, x: float) -> Any:
    """The RGBA colour at ``x`` in [0, 1] of the colormap ``name``."""
    from matplotlib import colormaps  # noqa: PLC0415 - start-up time

    return colormaps[name](x)
