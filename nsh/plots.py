"""Pictures worth looking at: precision-recall curves and retrieval grids (PNG, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def _log_tick(value: float, _pos) -> str:
    """Plain numbers on a log axis, minor ticks labelled only at 2 and 5 per decade: a sweep spans about one decade,
    where matplotlib's default writes every minor tick as 3x10^-1 and the labels overlap."""
    mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}" if mantissa in (1, 2, 5) else ""


def pr_curve(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> Path:
    """curves: label -> (precision, recall) by Hamming radius."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, (precision, recall) in curves.items():
        ok = ~np.isnan(precision)
        ax.plot(recall[ok], precision[ok], marker=".", label=label)
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    # below the axes: method names are long, and inside the plot the legend hid the curves' upper left
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def retrieval_grid(queries: Sequence, hits: np.ndarray, correct: np.ndarray | None, load: Callable[[object], object],
                   path: str | Path, title: str = "") -> Path:
    """One row per query: the query image, then its top hits; wrong hits framed in red, right ones in green.

    queries: keys of the query images; hits: (len(queries), k) keys; correct: same shape, bool, or None when
    relevance is unknown (hits are then framed in grey); load: key -> PIL image.
    """
    rows, k = hits.shape
    if correct is None:
        correct = np.full(hits.shape, None, dtype=object)
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.1 * (k + 1), 1.15 * rows), dpi=110, squeeze=False)
    for r in range(rows):
        cells = [(queries[r], "query")] + [(hits[r, j], None if correct[r, j] is None else bool(correct[r, j]))
                                           for j in range(k)]
        for c, (key, ok) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(np.asarray(load(key)))
            ax.set_xticks([])
            ax.set_yticks([])
            color = {"query": "black", None: "grey", True: "tab:green", False: "tab:red"}[ok]
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(1.0 if ok == "query" else 3.0)
            if ok is False:
                ax.text(0.5, 0.5, "x", color="red", fontsize=14, ha="center", va="center", transform=ax.transAxes)
    axes[0, 0].set_title("query", fontsize=8)
    for c in range(1, k + 1):
        axes[0, c].set_title(f"#{c}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def heatmap(x: np.ndarray, y: np.ndarray, value: np.ndarray, path: str | Path, xlabel: str, ylabel: str,
            title: str) -> Path:
    """Scatter of trials over a 2-D hyperparameter plane, coloured and labelled by value."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    sc = ax.scatter(x, y, c=value, cmap="viridis", s=120, edgecolors="black")
    for xi, yi, v in zip(x, y, value):
        ax.annotate(f"{v:.3f}", (xi, yi), textcoords="offset points", xytext=(6, 6), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_log_tick))
        axis.set_minor_formatter(FuncFormatter(_log_tick))
    ax.margins(0.2)  # room for the value labels
    fig.colorbar(sc, ax=ax, label="validation mAP")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
