"""Matplotlib defaults and the figures several notebooks share (learning curves, image grids).

Vision figures (boxes, masks) live here too, beside the grid they build on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from helpers.train import History

COURSE_STYLE = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "axes.prop_cycle": mpl.cycler(color=plt.get_cmap("tab10").colors),
    "image.cmap": "viridis",
    "legend.frameon": False,
}


def use_course_style() -> None:
    """Apply the course's matplotlib defaults (plain rcParams; no named style sheets)."""
    mpl.rcParams.update(COURSE_STYLE)


def plot_history(history: History, metrics: Sequence[str] = (), title: str = "learning curves"):
    """Training loss per epoch, and each named evaluation metric on a second panel; returns the figure."""
    panels = 1 + (1 if metrics else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 3.5), squeeze=False)
    epochs = np.arange(1, history.epochs_run + 1)
    axes[0, 0].plot(epochs, history.train_loss, marker="o", label="train loss")
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    axes[0, 0].legend()
    if metrics:
        for name in metrics:
            axes[0, 1].plot(epochs, history.metric(name), marker="o", label=name)
        if history.best_epoch is not None:
            axes[0, 1].axvline(history.best_epoch + 1, color="grey", linestyle="--", label="best epoch")
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(
    images: np.ndarray | Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str | None = None,
):
    """A grid of images, (N, H, W) or (N, H, W, C) arrays or (C, H, W) tensors; returns the figure."""
    items = [np.asarray(img.detach().cpu() if hasattr(img, "detach") else img) for img in images]
    if not items:
        raise ValueError("images: expected at least one image")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"titles: expected {len(items)} titles, got {len(titles)}")
    ncols = max(1, min(ncols, len(items)))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(items):
        if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
            img = np.moveaxis(img, 0, -1)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax = axes.flat[i]
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
