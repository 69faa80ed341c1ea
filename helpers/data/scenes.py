"""Scenes of digits on real photos, with boxes, instance masks and semantic masks.

Our offline stand-in for Pascal VOC: the same scenes feed object detection and semantic
segmentation. Each scene pastes 1 to 6 digits (printed in a bundled font, or an upscaled real
handwritten digit) at random scales, rotations and positions onto a crop of a bundled photo (or
a texture), in random z-order, so digits partly hide each other. Filled shapes (disc, star, ...)
are drawn too as unlabelled distractors: they occlude digits and count as background.

Labels are the 10 digit classes (`CLASS_NAMES`). For every labelled object the instance mask is
the set of pixels where it is the visible top layer (coverage > 0.5), and its box is exactly the
tight extent of that mask, in pixel-edge coordinates: the mask's pixels satisfy
x1 <= x + 0.5 < x2, so `x2 - x1` is the mask's width in pixels (torchvision's `masks_to_boxes`
gives x2 - 1). A digit whose visible part is smaller than `min_visible` of its own area is not
drawn at all (and not labelled), so nothing hidden is ever labelled and nothing visible is
unlabelled. The semantic mask is 0 for background, class_id + 1 on objects and 255 on an
optional ignore band just outside each object's visible outline (where anti-aliased edges blend
into what lies below), as VOC marks object borders "void".

Taught in notebooks/00_start_here.ipynb ("The data"); used by the object detection and semantic
segmentation notebooks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from helpers.data.images import (
    CHUNK,
    GLYPH_FILL,
    HANDWRITTEN_FILL,
    _bank_levels,
    _bank_sizes,
    _check_fraction,
    _check_int,
    _check_range,
    _font_paths,
    backgrounds,
    cached,
    chunk_generator,
    contrasting_colours,
    generator_digest,
    glyph_bank,
    handwritten_bank,
    shape_bank,
    warp_into,
)

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IGNORE_INDEX = 255


@dataclass
class Scenes:
    """A batch of generated scenes.

    images: uint8 (N, 3, H, W). boxes[i]: float32 (k_i, 4) xyxy pixels. labels[i]: int64 (k_i,)
    in 0..9. instance_masks[i]: bool (k_i, H, W), disjoint. semantic_masks: uint8 (N, H, W) with
    0 background, class + 1 on objects, 255 ignore. instance_ids: uint8 (N, H, W), j + 1 where
    object j of that scene is visible, else 0 (the compact form of instance_masks).
    Objects of a scene are listed bottom to top (drawing order).
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    instance_masks: list[torch.Tensor]
    semantic_masks: torch.Tensor
    instance_ids: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> "Scenes":
        """A sub-batch (a Scenes again): `scenes[:100]`, `scenes[[3, 5]]`."""
        if isinstance(index, int):
            index = [index]
        rows = list(range(len(self)))[index] if isinstance(index, slice) else [int(i) for i in index]
        return Scenes(
            images=self.images[rows],
            boxes=[self.boxes[i] for i in rows],
            labels=[self.labels[i] for i in rows],
            instance_masks=[self.instance_masks[i] for i in rows],
            semantic_masks=self.semantic_masks[rows],
            instance_ids=self.instance_ids[rows],
        )

    def padded(self, pad_label: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes float32 (N, K, 4) and labels int64 (N, K), K = most objects in a scene, padded
        with zero boxes and `pad_label`: the fixed-shape form a GPU training loop wants."""
        return pad_targets(self.boxes, self.labels, pad_label)

    def to(self, device: str | torch.device) -> "Scenes":
        """The same scenes with every tensor on `device`."""
        return Scenes(
            images=self.images.to(device),
            boxes=[b.to(device) for b in self.boxes],
            labels=[lab.to(device) for lab in self.labels],
            instance_masks=[m.to(device) for m in self.instance_masks],
            semantic_masks=self.semantic_masks.to(device),
            instance_ids=self.instance_ids.to(device),
        )


def pad_targets(boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], pad_label: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-image targets as fixed-shape tensors: boxes (N, K, 4), labels (N, K) padded."""
    if len(boxes) != len(labels):
        raise ValueError(f"boxes, labels: expected the same number of images, got {len(boxes)} and {len(labels)}")
    n = len(boxes)
    k = max((b.shape[0] for b in boxes), default=0)
    device = boxes[0].device if n else torch.device("cpu")
    out_boxes = torch.zeros(n, k, 4, dtype=torch.float32, device=device)
    out_labels = torch.full((n, k), pad_label, dtype=torch.int64, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        out_boxes[i, : b.shape[0]] = b
        out_labels[i, : lab.shape[0]] = lab
    return out_boxes, out_labels


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks (k, H, W) -> float32 (k, 4) xyxy in pixel-edge coordinates.

    x1 = first column with a pixel, x2 = last column + 1 (same for y). Empty masks give zeros.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks: expected shape (k, H, W), got {tuple(masks.shape)}")
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    cols = masks.any(1)  # (k, W)
    rows = masks.any(2)  # (k, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = max(h, w) + 1
    x1 = torch.where(cols, xs, big).amin(1)
    x2 = torch.where(cols, xs, -1).amax(1) + 1
    y1 = torch.where(rows, ys, big).amin(1)
    y2 = torch.where(rows, ys, -1).amax(1) + 1
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(cols.any(1)[:, None], boxes, torch.zeros_like(boxes))


# ----------------------------------------------------------------------------- generation

def make_scenes(
    num_scenes: int,
    image_size: int = 64,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 6,
    *,
    object_size: tuple[float, float] = (0.1, 0.5),
    handwritten_fraction: float = 0.3,
    distractors: tuple[int, int] = (0, 2),
    distractor_size: tuple[float, float] = (0.1, 0.35),
    rotation: float = 20.0,
    min_visible: float = 0.4,
    photo_fraction: float = 0.8,
    contrast: float = 0.25,
    ignore_band: int = 1,
    noise: float = 0.02,
    stream: int = 0,
    device: str | torch.device = "cpu",
    cache: bool | str | Path = False,
    workers: int = 1,
) -> Scenes:
    """Generate `num_scenes` scenes, deterministic per (seed, stream) and every other argument.

    image_size: side in pixels (larger images keep small objects legible). Each scene places
    between min_objects and max_objects digits (uniform), each with a glyph height of
    `object_size` of the image side (log-uniform), a fraction `handwritten_fraction` of them
    upscaled real handwritten digits, rotated within +-`rotation` degrees, plus `distractors`
    (low, high) unlabelled filled shapes of `distractor_size`. Digits hidden so that less than
    `min_visible` of their area shows are dropped (not drawn, not labelled); a scene left with
    fewer than min_objects digits is drawn again. `ignore_band`: width in pixels of the 255 band
    outside each object's outline in semantic_masks (0 for none). `stream` selects an independent
    set of scenes for the same seed (the streaming dataset uses one per epoch). `device`: where
    the pixels are computed (the random draws are always on the CPU, so every device gives the
    same scenes up to float rounding). `cache` (False, True or a folder) stores the result under
    data/scenes/ keyed by every argument. `workers` > 1 draws chunks of 256 scenes in that many
    processes (one thread each; CPU only): the same scenes, faster on several cores.

    Easier variants: fewer/larger objects (`max_objects=3, object_size=(0.25, 0.5)`),
    `distractors=(0, 0)`, `rotation=0`, `handwritten_fraction=0`; harder: the reverse.
    """
    num_scenes = _check_int("num_scenes", num_scenes, 0)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    stream = _check_int("stream", stream, 0)
    workers = _check_int("workers", workers, 1, 256)
    cfg = _scene_config(image_size=image_size, min_objects=min_objects, max_objects=max_objects,
                        object_size=object_size, handwritten_fraction=handwritten_fraction,
                        distractors=distractors, distractor_size=distractor_size, rotation=rotation,
                        min_visible=min_visible, photo_fraction=photo_fraction, contrast=contrast,
                        ignore_band=ignore_band, noise=noise)
    dev = torch.device(device)
    params = dict(cfg, num_scenes=num_scenes, seed=seed, stream=stream,
                  fonts=[Path(p).name for p in _font_paths()], code=generator_digest())

    def make() -> dict[str, torch.Tensor]:
        return _generate(num_scenes, seed, stream, cfg, dev, workers=workers)

    t = cached("scenes", params, make, cache)
    return _from_padded(t["images"], t["boxes"], t["labels"], t["semantic"], t["ids"]).to(dev)


def _scene_config(image_size, min_objects, max_objects, object_size, handwritten_fraction, distractors,
                  distractor_size, rotation, min_visible, photo_fraction, contrast, ignore_band, noise) -> dict[str, Any]:
    """Validated generator settings (everything but count, seed and stream)."""
    image_size = _check_int("image_size", image_size, 16, 1024)
    min_objects = _check_int("min_objects", min_objects, 0, 32)
    max_objects = _check_int("max_objects", max_objects, 1, 32)
    if min_objects > max_objects:
        raise ValueError(f"min_objects: expected <= max_objects ({max_objects}), got {min_objects}")
    if not isinstance(distractors, Sequence) or len(distractors) != 2:
        raise TypeError(f"distractors: expected a (low, high) pair of integers, got {distractors!r}")
    distractors = (_check_int("distractors", distractors[0], 0, 32), _check_int("distractors", distractors[1], 0, 32))
    if distractors[0] > distractors[1]:
        raise ValueError(f"distractors: expected low <= high, got {distractors!r}")
    return dict(
        image_size=image_size, min_objects=min_objects, max_objects=max_objects,
        object_size=_check_range("object_size", object_size, 0.02, 0.9),
        handwritten_fraction=_check_fraction("handwritten_fraction", handwritten_fraction),
        distractors=distractors,
        distractor_size=_check_range("distractor_size", distractor_size, 0.02, 0.9),
        rotation=_check_fraction("rotation", rotation, 0.0, 180.0),
        min_visible=_check_fraction("min_visible", min_visible, 0.0, 1.0),
        photo_fraction=_check_fraction("photo_fraction", photo_fraction),
        contrast=_check_fraction("contrast", contrast, 0.0, 0.5),
        ignore_band=_check_int("ignore_band", ignore_band, 0, 16),
        noise=_check_fraction("noise", noise, 0.0, 1.0),
    )


def _one_chunk(args: tuple) -> dict[str, torch.Tensor]:
    n, seed, stream, c, cfg, device = args
    return {k: v.cpu() for k, v in _scene_chunk(n, chunk_generator(seed, stream, c), cfg, device).items()}


def _pool_chunk(args: tuple) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)  # one process per core: threads would only compete
    return _one_chunk(args)


def _generate(num_scenes: int, seed: int, stream: int, cfg: dict[str, Any], device: torch.device,
              chunks: range | None = None, workers: int = 1) -> dict[str, torch.Tensor]:
    """Padded tensors of the scenes in the given chunks (all by default), on the CPU."""
    s = cfg["image_size"]
    starts = list(range(0, num_scenes, CHUNK))
    chosen = range(len(starts)) if chunks is None else chunks
    jobs = [(min(CHUNK, num_scenes - starts[c]), seed, stream, c, cfg, device) for c in chosen]
    if workers > 1 and len(jobs) > 1 and device.type == "cpu":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # build the glyph banks once here, so that forked workers inherit them
        _draw_scenes(1, torch.Generator().manual_seed(0), cfg, device)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context(method)) as pool:
            parts = list(pool.map(_pool_chunk, jobs))
    else:
        parts = [_one_chunk(job) for job in jobs]
    if not parts:
        return {"images": torch.zeros(0, 3, s, s, dtype=torch.uint8), "boxes": torch.zeros(0, 1, 4),
                "labels": torch.zeros(0, 1, dtype=torch.int64), "semantic": torch.zeros(0, s, s, dtype=torch.uint8),
                "ids": torch.zeros(0, s, s, dtype=torch.uint8)}
    k = max(p["labels"].shape[1] for p in parts)
    return {
        "images": torch.cat([p["images"] for p in parts]).cpu(),
        "boxes": torch.cat([F.pad(p["boxes"], (0, 0, 0, k - p["boxes"].shape[1])) for p in parts]).cpu(),
        "labels": torch.cat([F.pad(p["labels"], (0, k - p["labels"].shape[1]), value=-1) for p in parts]).cpu(),
        "semantic": torch.cat([p["semantic"] for p in parts]).cpu(),
        "ids": torch.cat([p["ids"] for p in parts]).cpu(),
    }


def _from_padded(images, boxes, labels, semantic, ids) -> Scenes:
    counts = (labels >= 0).sum(1).tolist()
    box_list = [boxes[i, :k].clone() for i, k in enumerate(counts)]
    label_list = [labels[i, :k].clone() for i, k in enumerate(counts)]
    mask_list = [ids[i][None] == torch.arange(1, k + 1, dtype=torch.uint8)[:, None, None] for i, k in enumerate(counts)]
    return Scenes(images, box_list, label_list, mask_list, semantic, ids)


def _uniform(n, gen, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _scene_chunk(n: int, gen: torch.Generator, cfg: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """n scenes; scenes with too few surviving digits are redrawn from the same stream."""
    out = _draw_scenes(n, gen, cfg, device)
    for _ in range(50):
        short = ((out["labels"] >= 0).sum(1) < cfg["min_objects"]).nonzero().flatten()
        if short.numel() == 0:
            return out
        again = _draw_scenes(short.numel(), gen, cfg, device)
        k = max(out["labels"].shape[1], again["labels"].shape[1])
        for key in ("boxes", "labels"):
            pad = (0, 0, 0, k - out[key].shape[1]) if key == "boxes" else (0, k - out[key].shape[1])
            pad2 = (0, 0, 0, k - again[key].shape[1]) if key == "boxes" else (0, k - again[key].shape[1])
            out[key] = F.pad(out[key], pad, value=-1 if key == "labels" else 0)
            again[key] = F.pad(again[key], pad2, value=-1 if key == "labels" else 0)
        for key in out:
            out[key][short.to(out[key].device)] = again[key]
    raise RuntimeError("make_scenes: could not place min_objects visible digits in 50 attempts; "
                       "lower min_objects or min_visible, or raise object_size")


def _draw_scenes(n: int, gen: torch.Generator, cfg: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    s = cfg["image_size"]
    lo_obj, hi_obj = cfg["min_objects"], cfg["max_objects"]
    lo_d, hi_d = cfg["distractors"]
    k_obj, k_dis = hi_obj, hi_d
    layers = k_obj + k_dis

    # ---- per-layer random draws (CPU), fixed order so every device sees the same numbers
    n_obj = torch.randint(lo_obj, hi_obj + 1, (n,), generator=gen)
    n_dis = torch.randint(lo_d, hi_d + 1, (n,), generator=gen)
    slot = torch.arange(layers)
    is_obj = (slot[None, :] < k_obj).expand(n, layers)
    active = torch.where(is_obj, slot[None, :] < n_obj[:, None], (slot[None, :] - k_obj) < n_dis[:, None])
    labels = torch.randint(10, (n, layers), generator=gen)
    handwritten = torch.rand(n, layers, generator=gen) < cfg["handwritten_fraction"]
    log_lo, log_hi = math.log(cfg["object_size"][0]), math.log(cfg["object_size"][1])
    obj_h = torch.exp(_uniform((n, layers), gen, log_lo, log_hi)) * s
    dis_h = _uniform((n, layers), gen, *cfg["distractor_size"]) * s
    height = torch.where(is_obj, obj_h, dis_h)
    angle = (torch.rand(n, layers, generator=gen) * 2 - 1) * math.radians(cfg["rotation"])
    angle = torch.where(is_obj, angle, torch.rand(n, layers, generator=gen) * 2 * math.pi)
    stretch = torch.exp(_uniform((n, layers), gen, math.log(0.8), math.log(1.25)))
    where = torch.rand(n, layers, 2, generator=gen)
    center = height[..., None] / 2 + where * (s - height[..., None])
    z = torch.rand(n, layers, generator=gen)

    glyph_alpha = glyph_bank(_bank_sizes(s * cfg["object_size"][1] / GLYPH_FILL)[-1])[0]
    per_class = glyph_alpha.shape[0] // 10
    glyph_index = torch.randint(per_class, (n, layers), generator=gen) * 10 + labels
    hand_labels = handwritten_bank()[1]
    hand_index = _hand_index_for(labels, torch.rand(n, layers, generator=gen), hand_labels)
    shape_index = torch.randint(shape_bank(16)[0].shape[0], (n, layers), generator=gen)
    colour_gen_state = torch.randint(2**62, (1,), generator=gen).item()

    # ---- drawing order: sort layers by z; inactive layers stay (empty) wherever they land
    order = torch.argsort(z, dim=1)

    def take(t):
        return torch.gather(t, 1, order.view(n, layers, *([1] * (t.ndim - 2))).expand_as(t))

    active, is_obj, labels, handwritten, height, angle, stretch, center, glyph_index, hand_index, shape_index = map(
        take, (active, is_obj, labels, handwritten, height, angle, stretch, center, glyph_index, hand_index, shape_index))
    is_obj = is_obj & active

    # ---- coverage of every active layer on the canvas; layer-major (layers, n, ...) so that
    # each layer is one contiguous block
    alpha = torch.zeros(layers * n, s * s, device=device)
    own = torch.zeros(layers * n, dtype=torch.long, device=device)  # pixels with coverage > 0.5
    flat = lambda t: t.transpose(0, 1).reshape(layers * n, *t.shape[2:])  # noqa: E731
    kinds = [
        (is_obj & ~handwritten, _bank_levels("glyph", s * cfg["object_size"][1] / GLYPH_FILL, device), glyph_index, GLYPH_FILL),
        (is_obj & handwritten, _bank_levels("handwritten", 12, device), hand_index, HANDWRITTEN_FILL),
        (active & ~is_obj, _bank_levels("shape", s * cfg["distractor_size"][1] / GLYPH_FILL, device), shape_index, GLYPH_FILL),
    ]
    for chosen, levels, index, fill in kinds:
        rows = flat(chosen).nonzero().flatten()
        if rows.numel():
            own[rows.to(device)] = warp_into(alpha, rows.to(device), levels, flat(index)[rows].to(device), flat(center)[rows].to(device),
                      flat(height)[rows].to(device), flat(angle)[rows].to(device), flat(stretch)[rows].to(device), s, fill)
    alpha = alpha.view(layers, n, s * s)

    # ---- visibility: a pixel belongs to the top layer covering it (> 0.5)
    obj_dev = is_obj.to(device)
    solid = alpha > 0.5
    own = own.view(layers, n).T  # (n, layers)
    top = _top_layer(solid)  # (n, s*s) layer + 1 of the visible layer, 0 = none
    shown = _layer_counts(top, layers)
    keep = obj_dev & (own > 0) & (shown >= cfg["min_visible"] * own) & (shown > 0)
    dropped = obj_dev & ~keep
    if bool(dropped.any()):
        alpha[dropped.T] = 0.0
        solid[dropped.T] = False
        top = _top_layer(solid)  # earlier layers only gain pixels, so every kept digit stays kept

    # ---- pixels: background, then layers bottom to top in contrasting colours
    img = backgrounds(n, s, gen, cfg["photo_fraction"], device=device).view(n, 3, s * s)
    grain = torch.randn(n, 1, s, s, generator=gen).to(device)
    colour_gen = torch.Generator().manual_seed(int(colour_gen_state))
    # mean background colour under each layer, (n, layers, 3): one pass for all layers
    weights = alpha.permute(1, 2, 0)  # (n, s*s, layers)
    under = torch.bmm(img, weights).transpose(1, 2) / weights.sum(1).clamp(min=1e-6)[..., None]
    colours = contrasting_colours(under.reshape(-1, 3), colour_gen, cfg["contrast"]).view(n, layers, 3)
    for layer in range(layers):
        img.lerp_(colours[:, layer, :, None], alpha[layer, :, None, :])
    img = img.view(n, 3, s, s).add_(grain, alpha=cfg["noise"]).clamp_(0, 1)
    images = img.mul_(255).round_().to(torch.uint8)

    # ---- targets: kept digits in drawing order, compacted to the front
    rank = torch.cumsum(keep.long(), 1) - 1  # (n, layers): index among kept
    k_max = max(int(keep.sum(1).max()) if n else 0, 1)
    zero = torch.zeros(n, 1, dtype=torch.long, device=device)
    layer_no = torch.arange(1, layers + 1, device=device).expand(n, layers)
    lut_ids = torch.cat([zero, torch.where(keep, rank + 1, 0)], 1)
    lut_sem = torch.cat([zero, torch.where(keep, labels.to(device) + 1, 0)], 1)
    lut_depth = torch.cat([zero, torch.where(keep, layer_no, 0)], 1)
    ids = torch.gather(lut_ids, 1, top).to(torch.uint8).view(n, s, s)
    semantic = torch.gather(lut_sem, 1, top).to(torch.uint8).view(n, s, s)
    if cfg["ignore_band"]:
        # ignore pixels that have a higher (later drawn) object within ignore_band: the band
        # hugs each object's outline on the side of whatever lies below it
        depth = torch.gather(lut_depth, 1, top).to(torch.uint8).view(n, s, s)
        above = _dilate_max(depth, cfg["ignore_band"])
        semantic = torch.where(above > depth, IGNORE_INDEX, semantic).to(torch.uint8)

    # boxes: the tight extent of each visible mask, in pixel-edge coordinates
    coords = torch.arange(s, device=device)
    xs = coords.repeat(s).expand(n, s * s)
    ys = coords.repeat_interleave(s).expand(n, s * s)
    big = torch.full((n, layers + 1), s, dtype=torch.long, device=device)
    small = torch.full((n, layers + 1), -1, dtype=torch.long, device=device)
    x1 = big.scatter_reduce(1, top, xs, "amin")[:, 1:]
    y1 = big.scatter_reduce(1, top, ys, "amin")[:, 1:]
    x2 = small.scatter_reduce(1, top, xs, "amax")[:, 1:] + 1
    y2 = small.scatter_reduce(1, top, ys, "amax")[:, 1:] + 1
    layer_boxes = torch.stack([x1, y1, x2, y2], 2).float()  # (n, layers, 4)
    out_labels = torch.full((n, k_max), -1, dtype=torch.int64, device=device)
    out_boxes = torch.zeros(n, k_max, 4, device=device)
    r, c = keep.nonzero(as_tuple=True)
    out_labels[r, rank[r, c]] = labels.to(device)[r, c]
    out_boxes[r, rank[r, c]] = layer_boxes[r, c]
    return {"images": images, "boxes": out_boxes, "labels": out_labels, "semantic": semantic, "ids": ids}


def _top_layer(solid: torch.Tensor) -> torch.Tensor:
    """solid (layers, n, P) bool -> int64 (n, P): index + 1 of the top solid layer, 0 where none."""
    top = torch.zeros(solid.shape[1:], dtype=torch.uint8, device=solid.device)
    for layer in range(solid.shape[0]):  # later layers have larger numbers: they are drawn above
        torch.maximum(top, solid[layer].to(torch.uint8) * (layer + 1), out=top)
    return top.long()


def _layer_counts(top: torch.Tensor, layers: int) -> torch.Tensor:
    """Pixels per layer in a top-layer map (n, P) -> int64 (n, layers)."""
    counts = torch.zeros(top.shape[0], layers + 1, dtype=torch.long, device=top.device)
    counts.scatter_add_(1, top, torch.ones_like(top))
    return counts[:, 1:]


def _dilate_max(x: torch.Tensor, width: int) -> torch.Tensor:
    """Max over the (2 width + 1)^2 neighbourhood of each pixel of x (n, H, W), edges clamped."""
    out = x.clone()
    for _ in range(width):  # separable: grow by one pixel left/right, then up/down
        out[:, :, 1:] = torch.maximum(out[:, :, 1:], out[:, :, :-1].clone())
        out[:, :, :-1] = torch.maximum(out[:, :, :-1], out[:, :, 1:].clone())
    cols = out
    for _ in range(width):
        cols[:, 1:] = torch.maximum(cols[:, 1:], cols[:, :-1].clone())
        cols[:, :-1] = torch.maximum(cols[:, :-1], cols[:, 1:].clone())
    return cols


def _hand_index_for(labels: torch.Tensor, u: torch.Tensor, hand_labels: torch.Tensor) -> torch.Tensor:
    """A random handwritten sample of each requested class (u uniform in [0, 1))."""
    order = torch.argsort(hand_labels, stable=True)
    counts = torch.bincount(hand_labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    pick = starts[labels] + (u * counts[labels]).long()
    pick = torch.minimum(pick, starts[labels] + counts[labels] - 1)
    return order[pick]


# ----------------------------------------------------------------------------- datasets

def _target(scenes: Scenes, i: int) -> dict[str, torch.Tensor]:
    from torchvision import tv_tensors

    s = scenes.images.shape[-2:]
    return {
        "boxes": tv_tensors.BoundingBoxes(scenes.boxes[i], format="XYXY", canvas_size=tuple(s)),
        "labels": scenes.labels[i],
        "masks": tv_tensors.Mask(scenes.instance_masks[i]),
        "semantic_mask": tv_tensors.Mask(scenes.semantic_masks[i]),
    }


def _image(scenes: Scenes, i: int, dtype: torch.dtype):
    from torchvision import tv_tensors

    img = scenes.images[i]
    if dtype.is_floating_point:
        img = img.to(dtype) / 255.0
    return tv_tensors.Image(img)


class SceneDataset(Dataset):
    """A map-style dataset over fixed scenes: item i is (image, target).

    image: float32 (3, H, W) in [0, 1] (or uint8 with `dtype=torch.uint8`), a tv_tensors.Image.
    target: {"boxes": (k, 4) xyxy BoundingBoxes, "labels": int64 (k,), "masks": bool (k, H, W),
    "semantic_mask": uint8 (H, W)}: torchvision's detection format, so transforms.v2 apply to
    image and target together (`transform(image, target)`).
    """

    def __init__(self, scenes: Scenes, transform=None, dtype: torch.dtype = torch.float32):
        if not isinstance(scenes, Scenes):
            raise TypeError(f"scenes: expected a Scenes (from make_scenes), got {type(scenes).__name__}")
        self.scenes, self.transform, self.dtype = scenes, transform, dtype

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        image, target = _image(self.scenes, i, self.dtype), _target(self.scenes, i)
        return self.transform(image, target) if self.transform is not None else (image, target)


class StreamingScenes(IterableDataset):
    """Fresh scenes every epoch: epoch e yields make_scenes(scenes_per_epoch, ..., stream=e).

    Iterating again starts the next epoch (or call `set_epoch`). Works with DataLoader workers:
    each generates every num_workers-th chunk of 256 scenes, so an epoch holds the same scenes
    whatever the worker count (only the interleaving differs). `**scene_args` are make_scenes'
    keyword arguments (`device` included: with a CUDA device the pixels are drawn on the GPU).
    """

    def __init__(self, scenes_per_epoch: int, image_size: int = 64, seed: int = 0, transform=None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **scene_args):
        self.scenes_per_epoch = _check_int("scenes_per_epoch", scenes_per_epoch, 1)
        self.seed = _check_int("seed", seed, 0, 2**63 - 1)
        defaults = {k: v.default for k, v in _signature_defaults().items()
                    if k in _CONFIG_KEYS and v.default is not inspect.Parameter.empty}
        unknown = set(scene_args) - set(_CONFIG_KEYS)
        if unknown:
            raise TypeError(f"scene_args: unknown make_scenes arguments {sorted(unknown)}")
        self.cfg = _scene_config(image_size=image_size, **{**defaults, **scene_args})
        self.image_size, self.transform, self.dtype = image_size, transform, dtype
        self.device = torch.device(device)
        self.scene_args = scene_args
        self.epoch = 0

    def __len__(self) -> int:
        return self.scenes_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """The epoch (stream) the next iteration yields."""
        self.epoch = _check_int("epoch", epoch, 0)

    def epoch_scenes(self, epoch: int) -> Scenes:
        """All the scenes of one epoch at once (the GPU-resident path: pass them to scene_batches)."""
        return make_scenes(self.scenes_per_epoch, self.image_size, self.seed, stream=epoch,
                           device=self.device, **self.scene_args)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        self.epoch += 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        num_chunks = len(range(0, self.scenes_per_epoch, CHUNK))
        for c in range(worker, num_chunks, workers):
            t = _generate(self.scenes_per_epoch, self.seed, epoch, self.cfg, self.device, chunks=range(c, c + 1))
            part = _from_padded(t["images"], t["boxes"], t["labels"], t["semantic"], t["ids"])
            for i in range(len(part)):
                image, target = _image(part, i, self.dtype), _target(part, i)
                yield self.transform(image, target) if self.transform is not None else (image, target)


_CONFIG_KEYS = ("min_objects", "max_objects", "object_size", "handwritten_fraction", "distractors",
                "distractor_size", "rotation", "min_visible", "photo_fraction", "contrast", "ignore_band", "noise")


def _signature_defaults():
    return inspect.signature(make_scenes).parameters


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """DataLoader collate for detection: images stacked (B, 3, H, W), targets kept as a list."""
    if len(batch) == 0:
        raise ValueError("batch: expected at least one (image, target) pair")
    images = torch.stack([torch.as_tensor(image) for image, _ in batch])
    return images, [target for _, target in batch]


def scene_batches(
    scenes: Scenes,
    batch_size: int,
    device: str | torch.device = "cpu",
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    pad_label: int = -1,
) -> Iterator[dict[str, torch.Tensor]]:
    """The GPU-resident path: move the scenes to `device` once, then slice batches there.

    Yields dicts with "images" float32 (B, 3, H, W) in [0, 1], "boxes" (B, K, 4), "labels"
    (B, K) padded with `pad_label`, "semantic_masks" int64 (B, H, W), "instance_ids" uint8
    (B, H, W). No per-item Python, no host-to-device copies inside the epoch. Shuffling is
    deterministic per `seed`.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    dev = torch.device(device)
    images = scenes.images.to(dev)
    boxes, labels = pad_targets(scenes.boxes, scenes.labels, pad_label)
    boxes, labels = boxes.to(dev), labels.to(dev)
    semantic, ids = scenes.semantic_masks.to(dev), scenes.instance_ids.to(dev)
    n = len(scenes)
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)).to(dev)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        rows = order[start:start + batch_size]
        yield {
            "images": images[rows].float().div_(255.0),
            "boxes": boxes[rows],
            "labels": labels[rows],
            "semantic_masks": semantic[rows].long(),
            "instance_ids": ids[rows],
        }
