"""PNG charts for evaluation reports: ROC curves, per-group bars, accuracy-vs-resolution lines.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never through
``pyplot``: no global figure registry, no backend switch for the rest of the process, nothing
to leak when a chart is drawn from a training callback. matplotlib is imported on first use,
so importing :mod:`fr_lightning.eval` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bar_plot", "line_plot", "roc_plot"]

#: FAR values marked on ROC plots (the TAR@FAR operating points logged during validation).
_FAR_MARKS: tuple[float, ...] = (1e-4, 1e-3, 1e-2)


def _new_figure(width: float = 6.0, height: float = 4.5) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    fig.clear()
    return path


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Save ROC curves (TAR against FAR, FAR on a log axis) as a PNG.

    Args:
        curves: name -> ``(fpr, tpr)``, e.g. from :func:`fr_lightning.eval.verification.roc_curve`.
            Points with FPR = 0 cannot appear on a log axis and are dropped.
        path: output PNG file; parent folders are created.

    Returns:
        ``Path(path)``.
    """
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    smallest = 1.0
    for name, (fpr, tpr) in curves.items():
        fpr = np.asarray(fpr, dtype=np.float64)
        tpr = np.asarray(tpr, dtype=np.float64)
        keep = fpr > 0
        if keep.any():
            smallest = min(smallest, float(fpr[keep].min()))
        ax.plot(fpr[keep], tpr[keep], label=name, linewidth=1.5)
    for far in _FAR_MARKS:
        ax.axvline(far, color="0.8", linestyle="--", linewidth=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlim(min(smallest, 1e-4) / 2, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title("ROC")
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def bar_plot(values: dict[str, float], path: str | Path, title: str, ylabel: str) -> Path:
    """Save a bar chart of named values (e.g. accuracy per demographic group) as a PNG.

    Args:
        values: bar label -> height, drawn in the given order.
        path: output PNG file; parent folders are created.
        title: chart title.
        ylabel: y-axis label.

    Returns:
        ``Path(path)``.
    """
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    labels = list(values)
    heights = [float(values[k]) for k in labels]
    bars = ax.bar(range(len(labels)), heights, color="tab:blue")
    ax.bar_label(bars, fmt="%.4g", fontsize="small")
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def line_plot(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Save one or more lines over a shared x axis (e.g. accuracy against probe resolution) as a PNG.

    Args:
        x: shared x values.
        series: line name -> y values, each as long as ``x``.
        path: output PNG file; parent folders are created.
        title: chart title.
        xlabel: x-axis label.
        ylabel: y-axis label.

    Returns:
        ``Path(path)``.
    """
    xs = np.asarray(x, dtype=np.float64)
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in series.items():
        ys = np.asarray(ys, dtype=np.float64)
        if ys.shape != xs.shape:
            raise ValueError(f"series {name!r} has {ys.shape[0]} values for {xs.shape[0]} x values")
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return _save(fig, path)
