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


# ----------------------------------------------------------------------------- vision: labels, boxes, masks
# Taught in notebooks/00_start_here.ipynb ("The data"); used by the classification, detection and
# segmentation notebooks.


def _as_hwc(image) -> np.ndarray:
    """(C, H, W) / (H, W, C) / (H, W) tensor or array -> float (H, W, 3) in [0, 1] for imshow."""
    img = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = img.astype(np.float32)
    return img / 255.0 if img.max() > 1.0 else img


def _grid(count: int, ncols: int, size: float):
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _finish(fig, title: str | None, bottom: float = 0.0):
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def class_colours(num_classes: int) -> np.ndarray:
    """A distinct RGB colour per class, float (num_classes, 3) in [0, 1] (tab10, then tab20)."""
    if num_classes < 1:
        raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    return np.array([cmap(i % cmap.N)[:3] for i in range(num_classes)])


def show_labelled_images(
    images,
    labels,
    class_names: Sequence[str] | None = None,
    predictions=None,
    ncols: int = 8,
    size: float = 1.4,
    title: str | None = None,
):
    """A grid of images titled with their labels; with predictions, "pred (true)" in green when right, red when wrong.

    images: (N, C, H, W) or (N, H, W[, C]); labels, predictions: (N,) class ids. Returns the figure.
    """
    labels = [int(v) for v in np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)]
    if len(images) != len(labels):
        raise ValueError(f"labels: expected {len(images)} labels, got {len(labels)}")
    if len(labels) == 0:
        raise ValueError("images: expected at least one image")
    if predictions is not None:
        predictions = [int(v) for v in np.asarray(predictions.cpu() if hasattr(predictions, "cpu") else predictions).reshape(-1)]
        if len(predictions) != len(labels):
            raise ValueError(f"predictions: expected {len(labels)} predictions, got {len(predictions)}")

    def name(c):
        return class_names[c] if class_names is not None else str(c)

    fig, axes = _grid(len(labels), ncols, size)
    for i, label in enumerate(labels):
        ax = axes.flat[i]
        ax.imshow(_as_hwc(images[i]), interpolation="nearest" if _as_hwc(images[i]).shape[0] <= 16 else "antialiased")
        if predictions is None:
            ax.set_title(name(label), fontsize=8)
        else:
            right = predictions[i] == label
            ax.set_title(f"{name(predictions[i])} ({name(label)})", fontsize=8, color="green" if right else "red")
    return _finish(fig, title)


def draw_boxes(
    ax,
    boxes,
    labels=None,
    scores=None,
    class_names: Sequence[str] | None = None,
    colour=None,
    linestyle: str = "-",
    linewidth: float = 1.5,
    fontsize: float = 7,
) -> None:
    """Draw xyxy pixel-edge boxes (k, 4) on an imshow axis, captioned "name score".

    Boxes are coloured by class (or all `colour`); imshow puts pixel centres on integers, so a box
    from x1 to x2 spans x1 - 0.5 .. x2 - 0.5 on the axis.
    """
    from matplotlib.patches import Rectangle

    boxes = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float32).reshape(-1, 4)
    k = len(boxes)
    labels = None if labels is None else np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
    scores = None if scores is None else np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores).reshape(-1)
    for arg, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != k:
            raise ValueError(f"{arg}: expected {k} values (one per box), got {len(values)}")
    palette = class_colours(max(10, len(class_names) if class_names else 10, int(labels.max()) + 1 if labels is not None and k else 1))
    for j, (x1, y1, x2, y2) in enumerate(boxes):
        c = colour if colour is not None else (palette[int(labels[j])] if labels is not None else "yellow")
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                               linewidth=linewidth, linestyle=linestyle))
        parts = []
        if labels is not None:
            parts.append(class_names[int(labels[j])] if class_names is not None else str(int(labels[j])))
        if scores is not None:
            parts.append(f"{float(scores[j]):.2f}")
        if parts:
            ax.text(x1 - 0.5, y1 - 0.5, " ".join(parts), fontsize=fontsize, color="white", va="bottom",
                    bbox=dict(facecolor=c, alpha=0.8, pad=0.5, edgecolor="none"))


def show_detections(
    images,
    boxes,
    labels=None,
    scores=None,
    class_names: Sequence[str] | None = None,
    ground_truth: tuple | None = None,
    ncols: int = 4,
    size: float = 2.6,
    title: str | None = None,
):
    """A grid of images with their boxes: boxes[i] (k_i, 4), labels[i] (k_i,), scores[i] (k_i,).

    `ground_truth=(gt_boxes, gt_labels)` adds the true boxes dashed in white beneath. Returns the figure.
    """
    n = len(images)
    if n == 0:
        raise ValueError("images: expected at least one image")
    for arg, values in (("boxes", boxes), ("labels", labels), ("scores", scores)):
        if values is not None and len(values) != n:
            raise ValueError(f"{arg}: expected one entry per image ({n}), got {len(values)}")
    fig, axes = _grid(n, ncols, size)
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(_as_hwc(images[i]))
        if ground_truth is not None:
            draw_boxes(ax, ground_truth[0][i], None, None, class_names, colour="white", linestyle="--", linewidth=1.0)
        draw_boxes(ax, boxes[i], None if labels is None else labels[i], None if scores is None else scores[i], class_names)
    return _finish(fig, title)


def overlay_mask(image, mask, num_classes: int, alpha: float = 0.55, ignore_index: int = 255,
                 background: int | None = 0) -> np.ndarray:
    """An image with its class mask painted over: float (H, W, 3) in [0, 1].

    mask: (H, W) class ids. Class `background` is left unpainted (None paints every class);
    `ignore_index` pixels are painted white.
    """
    img = _as_hwc(image)
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask).astype(np.int64)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask: expected shape {img.shape[:2]} (the image's), got {m.shape}")
    colours = np.vstack([class_colours(num_classes), [[1.0, 1.0, 1.0]]])
    index = np.where(m == ignore_index, num_classes, np.clip(m, 0, num_classes - 1))
    paint = colours[index]
    weight = np.full(m.shape, alpha)
    if background is not None:
        weight[m == background] = 0.0
    return img * (1 - weight[..., None]) + paint * weight[..., None]


def show_masks(
    images,
    masks,
    num_classes: int,
    predictions=None,
    class_names: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.2,
    ignore_index: int = 255,
    title: str | None = None,
):
    """Images with their masks overlaid (and predicted masks beside them, when given).

    masks, predictions: (N, H, W) class ids, 0 = background. A legend names the classes present.
    Returns the figure.
    """
    from matplotlib.patches import Patch

    n = len(images)
    if n == 0 or len(masks) != n:
        raise ValueError(f"masks: expected one mask per image ({n}), got {len(masks)}")
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"predictions: expected one mask per image ({n}), got {len(predictions)}")
    panels = 1 if predictions is None else 2
    fig, axes = _grid(n * panels, ncols * panels if predictions is not None and ncols * panels <= 8 else ncols, size)
    present: set[int] = set()
    for i in range(n):
        pairs = [("truth" if predictions is not None else None, masks[i])]
        if predictions is not None:
            pairs.append(("prediction", predictions[i]))
        for j, (panel, m) in enumerate(pairs):
            ax = axes.flat[i * panels + j]
            ax.imshow(overlay_mask(images[i], m, num_classes, ignore_index=ignore_index))
            values = np.unique(np.asarray(m.cpu() if hasattr(m, "cpu") else m))
            present.update(int(v) for v in values if v not in (0, ignore_index) and v < num_classes)
            if panel:
                ax.set_title(panel, fontsize=8)
    if present:
        colours = class_colours(num_classes)
        handles = [Patch(color=colours[c], label=class_names[c] if class_names else str(c)) for c in sorted(present)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=7)
    return _finish(fig, title, bottom=0.08 if present else 0.0)
