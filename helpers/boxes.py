"""Bounding boxes for object detection: formats, IoU, SSD anchors, matching, box encoding,
the MultiBox loss, (batched) non-maximum suppression and VOC mean average precision.

Taught in notebooks/05_object_detection.ipynb. Public names follow torchvision.ops where the two
overlap (`box_area`, `box_iou`, `box_convert`, `clip_boxes_to_image`, `nms`, `batched_nms`), so one
can be swapped for the other. Boxes are float tensors of shape (N, 4), corners `xyxy` unless a
function says otherwise; every function computes on the device its inputs are on.

Conventions (and where they differ from a library):
- IoU of two boxes whose union has zero area is 0 (torchvision gives NaN).
- Boxes with x2 < x1 or y2 < y1, and NaN coordinates, are rejected with a ValueError.
- NMS suppresses a box whose IoU with a kept, higher-scoring box is > `iou_threshold` (as
  torchvision); equal scores keep the lower index first.
- mAP follows PASCAL VOC: a detection is a true positive when its best same-class ground truth
  (IoU >= `iou_threshold`) has not been claimed by a higher-scoring detection; boxes marked
  difficult count neither way; coordinates are continuous (no VOC "+1" pixel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
AP_METHODS = ("all", "11point")
DEFAULT_VARIANCES = (0.1, 0.2)
# torchvision's limit on log-scale offsets: a decoded box is at most ~62x its anchor.
_MAX_LOG_SCALE = math.log(1000.0 / 16)
_NMS_BLOCK = 1024


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def _check_boxes(name: str, boxes: object, *, corners: bool = True, batched: bool = False) -> torch.Tensor:
    """`boxes` as a float tensor of shape (N, 4) (or (..., 4) when `batched`), checked for NaN
    and, for corner boxes, for x2 < x1 or y2 < y1."""
    boxes = _check_tensor(name, boxes)
    if boxes.shape[-1:] != (4,) or (not batched and boxes.ndim != 2):
        expected = "(..., 4)" if batched else "(N, 4)"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if boxes.numel() and torch.isnan(boxes).any():
        raise ValueError(f"{name}: contains NaN coordinates")
    if corners and boxes.numel():
        inverted = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
        if inverted.any():
            first = tuple(int(i) for i in inverted.nonzero()[0])
            raise ValueError(
                f"{name}: expected xyxy corners with x1 <= x2 and y1 <= y2; box at index {first} is "
                f"{boxes[first].tolist()} (convert xywh/cxcywh boxes with box_convert first)"
            )
    return boxes


def _check_scores(name: str, scores: object, n: int) -> torch.Tensor:
    scores = _check_tensor(name, scores)
    if scores.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match the boxes, got {tuple(scores.shape)}")
    if scores.numel() and torch.isnan(scores.float()).any():
        raise ValueError(f"{name}: contains NaN")
    return scores


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _image_size(name: str, size: object) -> tuple[float, float]:
    """(height, width) from an int (square) or a (height, width) pair of positive numbers."""
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(f"{name}: expected (height, width) of positive numbers, got {size!r}")
    return float(size[0]), float(size[1])


# ----------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------
def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert boxes (..., 4) between `xyxy` (corners), `xywh` (top-left corner and size, which is
    SageMaker's `left, top, width, height`) and `cxcywh` (centre and size)."""
    boxes = _check_tensor("boxes", boxes)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes: expected shape (..., 4), got {tuple(boxes.shape)}")
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"{name}: expected one of {BOX_FORMATS}, got {fmt!r}")
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        return torch.stack((x1, y1, x2, y2), dim=-1)
    if out_fmt == "xywh":
        return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def normalize_boxes(boxes: torch.Tensor, image_size: int | tuple[float, float]) -> torch.Tensor:
    """Pixel xyxy boxes (..., 4) as fractions of the image: SageMaker's normalised corners.

    image_size: (height, width) in pixels, or one int for a square image.
    """
    boxes = _check_boxes("boxes", boxes, batched=True)
    height, width = _image_size("image_size", image_size)
    return boxes / boxes.new_tensor([width, height, width, height])


def denormalize_boxes(boxes: torch.Tensor, image_size: int | tuple[float, float]) -> torch.Tensor:
    """Normalised xyxy boxes (..., 4) back to pixels of an image of `image_size` (height, width)."""
    boxes = _check_boxes("boxes", boxes, batched=True)
    height, width = _image_size("image_size", image_size)
    return boxes * boxes.new_tensor([width, height, width, height])


def clip_boxes_to_image(boxes: torch.Tensor, size: int | tuple[float, float]) -> torch.Tensor:
    """xyxy boxes (..., 4) clipped to an image of `size` (height, width); `size=1` clips
    normalised boxes to [0, 1]."""
    boxes = _check_tensor("boxes", boxes)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes: expected shape (..., 4), got {tuple(boxes.shape)}")
    height, width = _image_size("size", size)
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (N,) of xyxy boxes (N, 4); zero for degenerate boxes."""
    boxes = _check_boxes("boxes", boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of (..., N, 4) against (..., M, 4) xyxy boxes -> (..., N, M); unchecked."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    # Two zero-area boxes have union 0: define their IoU as 0, not NaN.
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of xyxy boxes (N, 4) and (M, 4) -> (N, M).

    $\\mathrm{IoU}(A, B) = |A \\cap B| / |A \\cup B|$, and 0 when the union has zero area.
    """
    boxes1 = _check_boxes("boxes1", boxes1)
    boxes2 = _check_boxes("boxes2", boxes2)
    if boxes1.device != boxes2.device:
        raise ValueError(f"boxes2: expected the device of boxes1 ({boxes1.device}), got {boxes2.device}")
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    return _iou(boxes1.to(dtype), boxes2.to(dtype))


# ----------------------------------------------------------------------------------------------
# SSD default boxes (anchors), matching and encoding
# ----------------------------------------------------------------------------------------------
def ssd_sizes(num_maps: int, min_scale: float = 0.2, max_scale: float = 0.9) -> list[tuple[float, float]]:
    """SSD's anchor sizes per feature map, as fractions of the image side.

    Map k of m gets scale $s_k = s_{min} + (s_{max} - s_{min})(k - 1)/(m - 1)$ and the extra
    square size $\\sqrt{s_k s_{k+1}}$ (with $s_{m+1} = 2 s_m - s_{m-1}$, capped at 1); returns
    [(s_k, sqrt(s_k s_{k+1})), ...] for `anchor_boxes`.
    """
    if isinstance(num_maps, bool) or not isinstance(num_maps, int) or num_maps < 1:
        raise ValueError(f"num_maps: expected an integer >= 1, got {num_maps!r}")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"min_scale, max_scale: expected 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    if num_maps == 1:
        scales = [min_scale, max_scale if max_scale > min_scale else 1.0]
    else:
        step = (max_scale - min_scale) / (num_maps - 1)
        scales = [min_scale + step * k for k in range(num_maps)] + [min(1.0, max_scale + step)]
    return [(scales[k], math.sqrt(scales[k] * scales[k + 1])) for k in range(num_maps)]


def anchors_per_location(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> int:
    """How many anchors `anchor_boxes` places at each cell for these sizes and ratios."""
    return len(sizes) + len(aspect_ratios) - 1


def anchor_boxes(
    feature_shapes: Sequence[tuple[int, int]],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[Sequence[float]],
    *,
    clip: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """SSD's default boxes for every cell of every feature map, normalised xyxy -> (A, 4).

    feature_shapes: [(H_k, W_k), ...], one per feature map, finest first.
    sizes:          per map, box sides as fractions of the image (e.g. from `ssd_sizes`).
    aspect_ratios:  per map, width/height ratios; the first is paired with every size, the rest
                    with the first size (as SSD and MXNet's MultiBoxPrior do), so a cell holds
                    `len(sizes) + len(ratios) - 1` boxes.
    Order: map by map, then row by row, column by column, then box by box, matching a head's
    output (B, k*C, H, W) permuted to (B, H, W, k, C) and flattened.
    """
    if not (len(feature_shapes) == len(sizes) == len(aspect_ratios)) or not feature_shapes:
        raise ValueError(
            f"feature_shapes, sizes, aspect_ratios: expected one entry per feature map each, got "
            f"{len(feature_shapes)}, {len(sizes)}, {len(aspect_ratios)}"
        )
    per_map = []
    for k, (shape, map_sizes, ratios) in enumerate(zip(feature_shapes, sizes, aspect_ratios)):
        if len(shape) != 2 or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"feature_shapes[{k}]: expected (height, width) of positive ints, got {shape!r}")
        if not map_sizes or any(not s > 0 for s in map_sizes):
            raise ValueError(f"sizes[{k}]: expected positive sizes, got {map_sizes!r}")
        if not ratios or any(not r > 0 for r in ratios):
            raise ValueError(f"aspect_ratios[{k}]: expected positive ratios, got {ratios!r}")
        pairs = [(s, ratios[0]) for s in map_sizes] + [(map_sizes[0], r) for r in ratios[1:]]
        wh = torch.tensor([(s * math.sqrt(r), s / math.sqrt(r)) for s, r in pairs], dtype=torch.float32, device=device)
        height, width = shape
        cy = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        cx = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # (H, W) each
        centres = torch.stack((cx, cy), dim=-1).reshape(-1, 1, 2).expand(-1, len(pairs), 2)  # (H*W, k, 2)
        boxes = torch.cat((centres, wh.expand_as(centres)), dim=-1).reshape(-1, 4)  # cxcywh
        per_map.append(box_convert(boxes, "cxcywh", "xyxy"))
    anchors = torch.cat(per_map)
    return anchors.clamp(0.0, 1.0) if clip else anchors


def _match(anchors: torch.Tensor, gt_boxes: torch.Tensor, valid: torch.Tensor, overlap_threshold: float):
    """Batched matching: anchors (A, 4), gt_boxes (B, G, 4), valid (B, G) -> index (B, A), -1 unmatched."""
    batch, num_gt = valid.shape
    num_anchors = anchors.shape[0]
    if num_gt == 0:
        return torch.full((batch, num_anchors), -1, dtype=torch.long, device=anchors.device)
    iou = _iou(gt_boxes, anchors.expand(batch, -1, -1))  # (B, G, A)
    iou = iou.masked_fill(~valid[..., None], -1.0)
    best_iou, best_gt = iou.max(dim=1)  # (B, A): each anchor's best ground truth
    # Every ground truth claims its best anchor, whatever the IoU (ties: the lower gt index wins).
    best_anchor = iou.argmax(dim=2)  # (B, G)
    forced = torch.zeros_like(iou, dtype=torch.bool)
    forced.scatter_(2, best_anchor[..., None], valid[..., None])
    claimed = forced.any(dim=1)  # (B, A)
    claimer = forced.to(torch.uint8).argmax(dim=1)  # first gt claiming the anchor
    index = torch.where(claimed, claimer, best_gt)
    matched = claimed | (best_iou >= overlap_threshold)
    return torch.where(matched, index, torch.full_like(index, -1))


def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, overlap_threshold: float = 0.5) -> torch.Tensor:
    """Which ground truth each anchor is trained to predict: index (A,) into gt_boxes, -1 for background.

    anchors (A, 4) and gt_boxes (G, 4) are xyxy in the same units. Each ground truth first
    claims its best-overlapping anchor (so no object goes unmatched; if two claim the same anchor
    the lower index wins), then every other anchor takes its best ground truth if their IoU is
    >= `overlap_threshold`.
    """
    anchors = _check_boxes("anchors", anchors)
    gt_boxes = _check_boxes("gt_boxes", gt_boxes)
    overlap_threshold = _check_threshold("overlap_threshold", overlap_threshold)
    valid = torch.ones(1, gt_boxes.shape[0], dtype=torch.bool, device=anchors.device)
    return _match(anchors, gt_boxes.to(anchors)[None], valid, overlap_threshold)[0]


def encode_boxes(
    boxes: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES
) -> torch.Tensor:
    """Offsets (..., 4) that move each anchor onto its box; both xyxy (..., 4) of positive size.

    $t_x = (x - x_a) / (v_0 w_a)$, $t_y = (y - y_a) / (v_0 h_a)$, $t_w = \\log(w / w_a) / v_1$,
    $t_h = \\log(h / h_a) / v_1$ on centres and sizes, with SSD's variances $(v_0, v_1) = (0.1, 0.2)$.
    """
    boxes = _check_boxes("boxes", boxes, batched=True)
    anchors = _check_boxes("anchors", anchors, batched=True)
    for name, b in (("boxes", boxes), ("anchors", anchors)):
        if b.numel() and ((b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1])).any():
            raise ValueError(f"{name}: zero-width or zero-height boxes cannot be encoded (log of 0)")
    g = box_convert(boxes, "xyxy", "cxcywh")
    a = box_convert(anchors, "xyxy", "cxcywh")
    v0, v1 = variances
    return torch.cat(
        ((g[..., :2] - a[..., :2]) / (v0 * a[..., 2:]), torch.log(g[..., 2:] / a[..., 2:]) / v1), dim=-1
    )


def decode_boxes(
    offsets: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES
) -> torch.Tensor:
    """xyxy boxes (..., 4) from offsets (..., 4) predicted against anchors (..., 4): the inverse of
    `encode_boxes` (log-scales are capped at log(1000/16), as torchvision does)."""
    offsets = _check_tensor("offsets", offsets)
    anchors = _check_boxes("anchors", anchors, batched=True)
    if offsets.shape[-1:] != (4,):
        raise ValueError(f"offsets: expected shape (..., 4), got {tuple(offsets.shape)}")
    a = box_convert(anchors, "xyxy", "cxcywh")
    v0, v1 = variances
    centre = a[..., :2] + offsets[..., :2] * v0 * a[..., 2:]
    size = a[..., 2:] * torch.exp((offsets[..., 2:] * v1).clamp(max=_MAX_LOG_SCALE))
    return box_convert(torch.cat((centre, size), dim=-1), "cxcywh", "xyxy")


def _pad(name: str, items: Sequence[torch.Tensor], width: int | None, fill: float, device, dtype) -> torch.Tensor:
    longest = max((len(t) for t in items), default=0)
    shape = (len(items), longest) + (() if width is None else (width,))
    out = torch.full(shape, fill, dtype=dtype, device=device)
    for i, t in enumerate(items):
        out[i, : len(t)] = t
    return out


def multibox_targets(
    anchors: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    overlap_threshold: float = 0.5,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets for a batch: (labels (B, A) int64, offsets (B, A, 4)).

    anchors: (A, 4) xyxy; gt_boxes: B tensors (G_i, 4) xyxy in the anchors' units; gt_labels: B
    int tensors (G_i,) in 0..num_classes-1. Target label 0 is background and class c becomes c+1;
    offsets are `encode_boxes` of each anchor's matched box (zeros for background).
    """
    anchors = _check_boxes("anchors", anchors)
    overlap_threshold = _check_threshold("overlap_threshold", overlap_threshold)
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"gt_labels: expected one tensor per image ({len(gt_boxes)}), got {len(gt_labels)}")
    boxes_list, labels_list = [], []
    for i, (b, l) in enumerate(zip(gt_boxes, gt_labels)):
        b = _check_boxes(f"gt_boxes[{i}]", b).to(anchors)
        l = _check_tensor(f"gt_labels[{i}]", l)
        if l.shape != (b.shape[0],) or l.is_floating_point():
            raise ValueError(f"gt_labels[{i}]: expected an integer tensor of shape ({b.shape[0]},), got {l.dtype} {tuple(l.shape)}")
        if l.numel() and l.min() < 0:
            raise ValueError(f"gt_labels[{i}]: expected class indices >= 0, got {int(l.min())}")
        if b.numel() and ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any():
            raise ValueError(f"gt_boxes[{i}]: zero-width or zero-height boxes cannot be trained on; drop them first")
        boxes_list.append(b)
        labels_list.append(l.to(anchors.device))
    batch = len(boxes_list)
    padded = _pad("gt_boxes", boxes_list, 4, 0.0, anchors.device, anchors.dtype)  # (B, G, 4)
    padded_labels = _pad("gt_labels", labels_list, None, -1, anchors.device, torch.long)  # (B, G)
    valid = padded_labels >= 0
    index = _match(anchors, padded, valid, overlap_threshold)  # (B, A)
    matched = index >= 0
    safe = index.clamp(min=0)
    target_labels = torch.where(matched, padded_labels.gather(1, safe) + 1, torch.zeros_like(safe))
    anchors_b = anchors.expand(batch, -1, -1)
    matched_boxes = torch.where(matched[..., None], padded.gather(1, safe[..., None].expand(-1, -1, 4)), anchors_b)
    return target_labels, encode_boxes(matched_boxes, anchors_b, variances)


def hard_negative_mining(background_loss: torch.Tensor, positive: torch.Tensor, negative_ratio: float = 3.0) -> torch.Tensor:
    """Which background anchors to train on: mask (B, A), the `negative_ratio` x (number of
    positives in the image) negatives with the highest loss, per image (ties: lower index first).

    background_loss: (B, A) the classification loss each anchor would have as background.
    positive:        (B, A) bool, anchors matched to an object.
    """
    background_loss = _check_tensor("background_loss", background_loss)
    positive = _check_tensor("positive", positive)
    if background_loss.ndim != 2 or positive.shape != background_loss.shape or positive.dtype != torch.bool:
        raise ValueError(
            f"positive: expected a bool tensor shaped like background_loss {tuple(background_loss.shape)}, "
            f"got {positive.dtype} {tuple(positive.shape)}"
        )
    if isinstance(negative_ratio, bool) or not isinstance(negative_ratio, (int, float)) or negative_ratio < 0:
        raise ValueError(f"negative_ratio: expected a number >= 0, got {negative_ratio!r}")
    loss = background_loss.detach().masked_fill(positive, -math.inf)
    order = loss.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1)  # rank of each anchor by loss
    num_negative = (positive.sum(dim=1, keepdim=True) * negative_ratio).floor().long()
    return (rank < num_negative) & ~positive


def multibox_loss(
    class_logits: torch.Tensor,
    box_offsets: torch.Tensor,
    target_labels: torch.Tensor,
    target_offsets: torch.Tensor,
    negative_ratio: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD's MultiBox loss, split as (classification, localisation), each a scalar divided by the
    number of positive anchors N (their sum is the loss to minimise).

    class_logits (B, A, C+1) with class 0 background; box_offsets (B, A, 4); target_labels (B, A)
    and target_offsets (B, A, 4) from `multibox_targets`.
    $L = \\frac{1}{N}\\big(\\sum_{pos \\cup neg} \\mathrm{CE} + \\sum_{pos} \\mathrm{smoothL1}\\big)$
    with the negatives chosen by `hard_negative_mining`.
    """
    for name, t, ndim in (("class_logits", class_logits, 3), ("box_offsets", box_offsets, 3), ("target_labels", target_labels, 2), ("target_offsets", target_offsets, 3)):
        t = _check_tensor(name, t)
        if t.ndim != ndim:
            raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    batch, num_anchors = target_labels.shape
    if class_logits.shape[:2] != (batch, num_anchors) or box_offsets.shape != (batch, num_anchors, 4) or target_offsets.shape != (batch, num_anchors, 4):
        raise ValueError(
            f"class_logits, box_offsets, target_offsets: expected (B, A, C+1), (B, A, 4), (B, A, 4) with "
            f"(B, A) = {(batch, num_anchors)}, got {tuple(class_logits.shape)}, {tuple(box_offsets.shape)}, {tuple(target_offsets.shape)}"
        )
    positive = target_labels > 0
    ce = F.cross_entropy(class_logits.float().reshape(-1, class_logits.shape[-1]), target_labels.reshape(-1), reduction="none")
    ce = ce.reshape(batch, num_anchors)
    # For a negative anchor, its cross-entropy *is* the background loss to rank by.
    negative = hard_negative_mining(ce, positive, negative_ratio)
    num_positive = positive.sum().clamp(min=1).float()
    classification = ce[positive | negative].sum() / num_positive
    localisation = F.smooth_l1_loss(box_offsets.float()[positive], target_offsets.float()[positive], reduction="sum") / num_positive
    return classification, localisation


# ----------------------------------------------------------------------------------------------
# Non-maximum suppression
# ----------------------------------------------------------------------------------------------
def _fixed_point(valid: torch.Tensor, suppresses: torch.Tensor) -> torch.Tensor:
    """keep (..., L) with keep[i] = valid[i] and no kept j < i suppresses i, for a batch of
    strictly upper-triangular suppression matrices (..., L, L) ("Cluster-NMS", Zheng et al. 2020).

    Jacobi iteration from keep = valid: each pass fixes at least one more box in dependency order
    and the fixed point is unique, so it ends on exactly the sequential greedy answer.
    """
    weights = suppresses.to(torch.float32)
    state = valid
    for _ in range(valid.shape[-1] + 1):
        new_state = valid & ~((state.to(torch.float32).unsqueeze(-2) @ weights).squeeze(-2) > 0)
        if torch.equal(new_state, state):
            break
        state = new_state
    return state


def _nms_sorted(boxes: torch.Tensor, iou_threshold: float, block: int) -> torch.Tensor:
    """Greedy NMS of boxes sorted by decreasing score -> keep mask (N,).

    Blocks of `block` boxes are resolved in order: first suppressed by the boxes kept in earlier
    blocks, then among themselves by `_fixed_point` on the block's suppression matrix.
    """
    n = boxes.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    kept = boxes[:0]
    for start in range(0, n, block):
        chunk = boxes[start : start + block]
        alive = torch.ones(chunk.shape[0], dtype=torch.bool, device=boxes.device)
        if kept.shape[0]:
            alive &= ~(_iou(chunk, kept) > iou_threshold).any(dim=1)
        # suppresses[j, i]: box j (earlier, higher score) would suppress box i.
        suppresses = (_iou(chunk, chunk) > iou_threshold).triu_(diagonal=1)
        state = _fixed_point(alive, suppresses & alive[:, None])
        keep[start : start + block] = state
        kept = torch.cat((kept, chunk[state]))
    return keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices (K,) int64 of the kept boxes, by decreasing score.

    boxes (N, 4) xyxy, scores (N,). Going down the scores, a box is dropped if its IoU with a box
    already kept is > `iou_threshold`. Same answer as `torchvision.ops.nms` when scores have no ties.
    """
    boxes = _check_boxes("boxes", boxes)
    scores = _check_scores("scores", scores, boxes.shape[0])
    iou_threshold = _check_threshold("iou_threshold", iou_threshold)
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    keep = _nms_sorted(boxes[order], iou_threshold, _NMS_BLOCK)
    return order[keep]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category: boxes of different `idxs` (N,) (class or image ids) never
    suppress each other. Returns kept indices (K,) by decreasing score, like torchvision's.

    Categories are resolved side by side: small ones padded into a batch of suppression matrices
    (bucketed by size), large ones block by block as in `nms`.
    """
    boxes = _check_boxes("boxes", boxes)
    scores = _check_scores("scores", scores, boxes.shape[0])
    idxs = _check_tensor("idxs", idxs)
    if idxs.shape != (boxes.shape[0],) or idxs.is_floating_point():
        raise ValueError(f"idxs: expected an integer tensor of shape ({boxes.shape[0]},), got {idxs.dtype} {tuple(idxs.shape)}")
    iou_threshold = _check_threshold("iou_threshold", iou_threshold)
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    device = boxes.device
    by_score = scores.argsort(descending=True, stable=True)
    rank = torch.empty_like(by_score)
    rank[by_score] = torch.arange(n, device=device)
    # Category by category (stable, so scores stay in decreasing order within each).
    order = by_score[idxs[by_score].argsort(stable=True)]
    ordered = boxes[order]
    _, counts = torch.unique_consecutive(idxs[order], return_counts=True)
    starts = counts.cumsum(0) - counts
    keep = torch.zeros(n, dtype=torch.bool, device=device)
    counts_list, starts_list = counts.tolist(), starts.tolist()
    # Padded length of each category: the next power of two (few distinct shapes to batch).
    lengths = [max(8, 1 << (c - 1).bit_length()) for c in counts_list]
    for g, (start, count) in enumerate(zip(starts_list, counts_list)):
        if lengths[g] > _NMS_BLOCK:
            keep[start : start + count] = _nms_sorted(ordered[start : start + count], iou_threshold, _NMS_BLOCK)
    for length in sorted({ln for ln in lengths if ln <= _NMS_BLOCK}):
        groups = torch.tensor([g for g, ln in enumerate(lengths) if ln == length], device=device)
        per_batch = max(1, (1 << 22) // (length * length))  # bounds the (G, L, L) matrices' memory
        positions = torch.arange(length, device=device)
        for first in range(0, groups.numel(), per_batch):
            chosen = groups[first : first + per_batch]
            valid = positions[None, :] < counts[chosen, None]  # (G, L)
            index = (starts[chosen, None] + positions[None, :]).clamp(max=n - 1)  # (G, L)
            padded = ordered[index]  # (G, L, 4)
            suppresses = (_iou(padded, padded) > iou_threshold).triu_(diagonal=1) & valid[:, :, None]
            state = _fixed_point(valid, suppresses)
            keep[index[valid]] = state[valid]
    kept = order[keep]
    return kept[rank[kept].argsort()]


# ----------------------------------------------------------------------------------------------
# Mean average precision (PASCAL VOC)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectionMetrics:
    """What `mean_average_precision` measured.

    map:              mean of `ap` over the classes that have ground truth (NaN if none has).
    ap:               (C,) average precision per class, NaN for classes without ground truth.
    precision/recall: per class, the curves (D_c,) over that class's detections by decreasing score.
    num_ground_truth: (C,) non-difficult ground-truth boxes per class.
    """

    map: float
    ap: torch.Tensor
    precision: list[torch.Tensor]
    recall: list[torch.Tensor]
    num_ground_truth: torch.Tensor


def average_precision(recall: torch.Tensor, precision: torch.Tensor, method: str = "all") -> float:
    """Area under one precision-recall curve (D,), points in order of decreasing score.

    "all": VOC2010+ all-point interpolation, the area under the monotone envelope of precision.
    "11point": VOC2007, mean of the best precision at recall >= 0, 0.1, ..., 1.
    An empty curve has AP 0.
    """
    recall = _check_tensor("recall", recall)
    precision = _check_tensor("precision", precision)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(f"precision: expected the shape of recall {tuple(recall.shape)}, got {tuple(precision.shape)}")
    if method not in AP_METHODS:
        raise ValueError(f"method: expected one of {AP_METHODS}, got {method!r}")
    if recall.numel() == 0:
        return 0.0
    recall = recall.double()
    precision = precision.double()
    if method == "11point":
        thresholds = torch.linspace(0, 1, 11, dtype=recall.dtype, device=recall.device)
        reached = recall[None, :] >= thresholds[:, None] - 1e-12  # (11, D)
        best = torch.where(reached, precision[None, :], torch.zeros_like(precision)[None, :]).amax(dim=1)
        return float(best.mean())
    zero = recall.new_zeros(1)
    r = torch.cat((zero, recall))
    p = torch.cat((precision, zero))
    envelope = p.flip(0).cummax(0).values.flip(0)  # best precision at this recall or beyond
    return float(((r[1:] - r[:-1]) * envelope[:-1]).sum())


def _check_image_lists(**lists: Sequence[torch.Tensor]) -> int:
    lengths = {name: len(v) for name, v in lists.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"expected one entry per image in every list, got lengths {lengths}")
    return next(iter(lengths.values()))


def mean_average_precision(
    pred_boxes: Sequence[torch.Tensor],
    pred_scores: Sequence[torch.Tensor],
    pred_labels: Sequence[torch.Tensor],
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    gt_difficult: Sequence[torch.Tensor] | None = None,
    *,
    num_classes: int | None = None,
    iou_threshold: float = 0.5,
    method: str = "all",
) -> DetectionMetrics:
    """PASCAL VOC mean average precision over a set of images (SageMaker's `validation:mAP`).

    Per image i: pred_boxes (D_i, 4) xyxy, pred_scores (D_i,), pred_labels (D_i,) ints;
    gt_boxes (G_i, 4) xyxy, gt_labels (G_i,), gt_difficult (G_i,) bool (optional).
    For each class, detections are taken by decreasing score; one is a true positive when its
    best-overlapping same-class ground truth has IoU >= `iou_threshold`, is not difficult and was
    not claimed by an earlier detection; matched to a difficult box it is ignored; otherwise it is
    a false positive. AP per class by `average_precision(method)`, mAP their mean.
    """
    num_images = _check_image_lists(
        pred_boxes=pred_boxes, pred_scores=pred_scores, pred_labels=pred_labels,
        gt_boxes=gt_boxes, gt_labels=gt_labels, gt_difficult=gt_difficult,
    )
    iou_threshold = _check_threshold("iou_threshold", iou_threshold)
    if method not in AP_METHODS:
        raise ValueError(f"method: expected one of {AP_METHODS}, got {method!r}")
    if num_images == 0:
        raise ValueError("pred_boxes: expected at least one image")
    device = gt_boxes[0].device if isinstance(gt_boxes[0], torch.Tensor) else torch.device("cpu")

    det_boxes, det_scores, det_labels, det_image = [], [], [], []
    gts, gt_labs, gt_diff = [], [], []
    for i in range(num_images):
        b = _check_boxes(f"pred_boxes[{i}]", pred_boxes[i]).to(device)
        s = _check_scores(f"pred_scores[{i}]", pred_scores[i], b.shape[0]).to(device)
        l = _check_tensor(f"pred_labels[{i}]", pred_labels[i])
        if l.shape != (b.shape[0],) or l.is_floating_point():
            raise ValueError(f"pred_labels[{i}]: expected an integer tensor of shape ({b.shape[0]},), got {l.dtype} {tuple(l.shape)}")
        g = _check_boxes(f"gt_boxes[{i}]", gt_boxes[i]).to(device)
        gl = _check_tensor(f"gt_labels[{i}]", gt_labels[i])
        if gl.shape != (g.shape[0],) or gl.is_floating_point():
            raise ValueError(f"gt_labels[{i}]: expected an integer tensor of shape ({g.shape[0]},), got {gl.dtype} {tuple(gl.shape)}")
        if gt_difficult is not None:
            d = _check_tensor(f"gt_difficult[{i}]", gt_difficult[i])
            if d.shape != (g.shape[0],):
                raise ValueError(f"gt_difficult[{i}]: expected shape ({g.shape[0]},), got {tuple(d.shape)}")
            d = d.to(device=device, dtype=torch.bool)
        else:
            d = torch.zeros(g.shape[0], dtype=torch.bool, device=device)
        det_boxes.append(b.double())
        det_scores.append(s.double())
        det_labels.append(l.to(device=device, dtype=torch.long))
        det_image.append(torch.full((b.shape[0],), i, dtype=torch.long, device=device))
        gts.append(g.double())
        gt_labs.append(gl.to(device=device, dtype=torch.long))
        gt_diff.append(d)

    all_det_labels = torch.cat(det_labels)
    all_gt_labels = torch.cat(gt_labs)
    for name, labels in (("pred_labels", all_det_labels), ("gt_labels", all_gt_labels)):
        if labels.numel() and labels.min() < 0:
            raise ValueError(f"{name}: expected class indices >= 0, got {int(labels.min())}")
    if num_classes is None:
        num_classes = int(max(all_det_labels.max().item() if all_det_labels.numel() else -1,
                              all_gt_labels.max().item() if all_gt_labels.numel() else -1)) + 1
        num_classes = max(num_classes, 1)
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    else:
        for name, labels in (("pred_labels", all_det_labels), ("gt_labels", all_gt_labels)):
            if labels.numel() and labels.max() >= num_classes:
                raise ValueError(f"{name}: expected class indices < num_classes={num_classes}, got {int(labels.max())}")

    scores = torch.cat(det_scores)
    image = torch.cat(det_image)
    labels = all_det_labels
    boxes = torch.cat(det_boxes)
    # Ground truth padded per image (I, G, .) so every detection sees its own image's boxes.
    gt_pad = _pad("gt_boxes", gts, 4, 0.0, device, torch.float64)
    gt_lab_pad = _pad("gt_labels", gt_labs, None, -1, device, torch.long)
    gt_diff_pad = _pad("gt_difficult", gt_diff, None, False, device, torch.bool)
    num_gt_slots = gt_pad.shape[1]

    num_ground_truth = torch.bincount(all_gt_labels[~torch.cat(gt_diff)], minlength=num_classes)[:num_classes]
    # Detections by decreasing score (stable: ties keep input order); ranks order the claims.
    order = scores.argsort(descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device)
    true_positive = torch.zeros(scores.numel(), dtype=torch.bool, device=device)
    ignored = torch.zeros_like(true_positive)
    if scores.numel() and num_gt_slots:
        iou = _iou(boxes[:, None, :], gt_pad[image])[:, 0, :]  # (D, G)
        same_class = gt_lab_pad[image] == labels[:, None]
        iou = torch.where(same_class, iou, torch.full_like(iou, -1.0))
        best_iou, best_gt = iou.max(dim=1)  # (D,)
        hit = best_iou >= iou_threshold
        difficult = gt_diff_pad[image, best_gt]
        ignored = hit & difficult
        claims = hit & ~difficult
        # A ground truth goes to the first (highest-scoring) detection that claims it.
        gt_id = image * num_gt_slots + best_gt
        first = torch.full((gt_pad.shape[0] * num_gt_slots,), order.numel(), dtype=torch.long, device=device)
        first.scatter_reduce_(0, gt_id[claims], rank[claims], reduce="amin")
        true_positive = claims & (first[gt_id] == rank)

    ap = torch.full((num_classes,), math.nan, dtype=torch.float64)
    precisions, recalls = [], []
    by_class = order[~ignored[order]]  # score order, ignored detections dropped
    class_of = labels[by_class]
    for c in range(num_classes):
        idx = by_class[class_of == c]
        tp = true_positive[idx].double().cumsum(0)
        fp = (~true_positive[idx]).double().cumsum(0)
        npos = int(num_ground_truth[c])
        recall = tp / npos if npos else torch.zeros_like(tp)
        precision = tp / (tp + fp).clamp(min=1e-12)
        precisions.append(precision.float().cpu())
        recalls.append(recall.float().cpu())
        if npos:
            ap[c] = average_precision(recall, precision, method)
    valid = ~torch.isnan(ap)
    mean = float(ap[valid].mean()) if valid.any() else math.nan
    return DetectionMetrics(map=mean, ap=ap.float(), precision=precisions, recall=recalls, num_ground_truth=num_ground_truth.cpu())
