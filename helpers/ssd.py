"""SSD (Single Shot MultiBox Detector, Liu et al. 2016) on a ResNet base: the model behind SageMaker's
Object Detection algorithm, its MultiBox training loss and its post-processing.

Taught in notebooks/05_object_detection.ipynb. The box arithmetic (anchors, matching, encoding, the
MultiBox loss with hard negative mining, NMS) lives in `helpers.boxes`; this module assembles it:

- `SSD`: a `helpers.resnet.ResNetBackbone` (the "base network"), extra feature layers that halve the
  resolution map after map, and per-map 3x3 convolutional heads that predict, for every anchor,
  class scores (background + classes) and four box offsets.
- `ssd_model(...)`: SageMaker's knobs (`base_network`, `num_classes`, `image_shape`) to an SSD.
- `ssd_loss(...)`: targets from ground truth, then `helpers.boxes.multibox_loss`.
- `detect(...)` / `predict(...)`: softmax, decode, score threshold, per-class NMS, top-k.
- `sagemaker_response(...)`: SageMaker's JSON answer `{"prediction": [[class, score, xmin, ymin, xmax,
  ymax], ...]}` with corners normalised to [0, 1].

Parameter names start with `base.` (the ResNet, named as torchvision's), `extras.` and `heads.`, so a
regular expression such as SageMaker's `freeze_layer_pattern` picks layers by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from helpers import boxes as B
from helpers.resnet import ResNet, ResNetBackbone, parse_image_shape

DEFAULT_ASPECT_RATIOS = (1.0, 2.0, 0.5)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SSD(nn.Module):
    """Base network, extra layers and prediction heads; forward gives per-anchor predictions.

    backbone:       a ResNetBackbone taking images in [0, 1] (it standardises them itself).
    num_classes:    object classes (background is added as class 0 of the logits).
    image_size:     (height, width) the model is built for: fixes the feature maps and anchors.
    source_stages:  which backbone stages feed heads (indices into its stages, finest first).
    extra_channels: one entry per extra map; each extra layer is a 1x1 reduction then a 3x3
                    stride-2 convolution, halving the previous map.
    sizes, aspect_ratios: per feature map, as for `helpers.boxes.anchor_boxes` (default:
                    `ssd_sizes(num_maps, min_scale, max_scale)` and (1, 2, 1/2) everywhere).

    forward(images (B, 3, H, W)) -> (class_logits (B, A, num_classes + 1), box_offsets (B, A, 4)),
    A = len(self.anchors); `self.anchors` (A, 4) normalised xyxy, a buffer that moves with the model.
    """

    def __init__(
        self,
        backbone: ResNetBackbone,
        num_classes: int,
        image_size: int | tuple[int, int],
        *,
        source_stages: Sequence[int] = (-1,),
        extra_channels: Sequence[int] = (128, 128, 128),
        sizes: Sequence[Sequence[float]] | None = None,
        aspect_ratios: Sequence[Sequence[float]] | None = None,
        min_scale: float = 0.1,
        max_scale: float = 0.8,
    ):
        super().__init__()
        if not isinstance(backbone, ResNetBackbone):
            raise TypeError(f"backbone: expected a helpers.resnet.ResNetBackbone, got {type(backbone).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if len(image_size) != 2 or min(image_size) < 8:
            raise ValueError(f"image_size: expected (height, width) of at least 8 pixels, got {image_size!r}")
        stages = [s if s >= 0 else backbone.num_stages + s for s in source_stages]
        if not stages or sorted(set(stages)) != stages or min(stages) < 0 or max(stages) >= backbone.num_stages:
            raise ValueError(
                f"source_stages: expected increasing stage indices in [0, {backbone.num_stages}), got {list(source_stages)}"
            )
        self.base = backbone
        self.num_classes = num_classes
        self.image_size = tuple(int(s) for s in image_size)
        self.source_stages = stages
        channels = [backbone.out_channels[s] for s in stages]
        extras = []
        previous = channels[-1]
        for out in extra_channels:
            extras.append(nn.Sequential(_conv_bn_relu(previous, out // 2, 1), _conv_bn_relu(out // 2, out, 3, stride=2)))
            channels.append(out)
            previous = out
        self.extras = nn.ModuleList(extras)

        with torch.no_grad():
            was_training = self.training
            self.eval()
            probe = torch.zeros(1, backbone.in_channels, *self.image_size, device=backbone.mean.device)
            shapes = [tuple(int(d) for d in f.shape[-2:]) for f in self._feature_maps(probe)]
            self.train(was_training)
        num_maps = len(shapes)
        if sizes is None:
            sizes = B.ssd_sizes(num_maps, min_scale, max_scale)
        if aspect_ratios is None:
            aspect_ratios = [DEFAULT_ASPECT_RATIOS] * num_maps
        if len(sizes) != num_maps or len(aspect_ratios) != num_maps:
            raise ValueError(
                f"sizes, aspect_ratios: expected one entry per feature map ({num_maps}: {shapes}), got {len(sizes)} and {len(aspect_ratios)}"
            )
        self.feature_shapes = shapes
        self.sizes = [tuple(float(s) for s in map_sizes) for map_sizes in sizes]
        self.aspect_ratios = [tuple(float(r) for r in ratios) for ratios in aspect_ratios]
        self.anchors_per_location = [B.anchors_per_location(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]
        self.heads = nn.ModuleDict(
            {
                "classes": nn.ModuleList(
                    nn.Conv2d(c, k * (num_classes + 1), 3, padding=1) for c, k in zip(channels, self.anchors_per_location)
                ),
                "boxes": nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in zip(channels, self.anchors_per_location)),
            }
        )
        for conv in self.heads.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)
        anchors = B.anchor_boxes(shapes, self.sizes, self.aspect_ratios, device=backbone.mean.device)
        self.register_buffer("anchors", anchors, persistent=False)

    def _feature_maps(self, images: Tensor) -> list[Tensor]:
        stage_maps = self.base.features(images)
        maps = [stage_maps[s] for s in self.source_stages]
        x = maps[-1]
        for layer in self.extras:
            x = layer(x)
            maps.append(x)
        return maps

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The maps the heads read: [(B, C_k, H_k, W_k)], finest first."""
        self._check_images(images)
        return self._feature_maps(images)

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[-2:]) != self.image_size or not images.is_floating_point():
            raise ValueError(
                f"images: expected float (B, {self.base.in_channels}, {self.image_size[0]}, {self.image_size[1]}) in [0, 1], "
                f"got {images.dtype} {tuple(images.shape)} (resize to the model's image_size first)"
            )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        self._check_images(images)
        batch = images.shape[0]
        logits, offsets = [], []
        for x, cls_head, box_head in zip(self._feature_maps(images), self.heads["classes"], self.heads["boxes"]):
            # (B, k*C, H, W) -> (B, H, W, k*C) -> (B, H*W*k, C): the anchors' order.
            logits.append(cls_head(x).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes + 1))
            offsets.append(box_head(x).permute(0, 2, 3, 1).reshape(batch, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)


def parse_base_network(base_network: str) -> int:
    """SageMaker-style `base_network` ("resnet-20", "resnet-50", ...) -> the ResNet depth."""
    match = re.fullmatch(r"resnet-?(\d+)", base_network.strip().lower()) if isinstance(base_network, str) else None
    if match is None:
        raise ValueError(
            f"base_network: expected 'resnet-N' (N a ResNet depth such as 8, 20, 32, 18 or 50), got {base_network!r}; "
            "SageMaker's 'vgg-16' is not rebuilt here"
        )
    return int(match.group(1))


def small_resnet_backbone(
    widths: Sequence[int] = (32, 64, 128),
    blocks: Sequence[int] | None = None,
    in_channels: int = 3,
    max_pool: bool = True,
) -> ResNetBackbone:
    """A small ResNet base: an ImageNet-style stem (7x7 stride-2 convolution, then a 3x3 stride-2 max
    pool unless `max_pool=False`), then one stage per width, each halving the map after the first,
    `blocks` basic blocks each (default one). Stage strides 4, 8, 16, ... (2, 4, 8, ... without the
    pool): cheap enough to train an SSD on a CPU."""
    blocks = (1,) * len(widths) if blocks is None else tuple(blocks)
    network = ResNet("basic", blocks, 2, in_channels=in_channels, stem="imagenet", widths=widths)
    if not max_pool:
        network.maxpool = nn.Identity()
        network.stage_strides = [s // 2 for s in network.stage_strides]
    return ResNetBackbone(network)


def ssd_model(
    num_classes: int,
    image_shape: str | Sequence[int] = (3, 64, 64),
    base_network: str | ResNetBackbone = "resnet-small",
    extra_width: int = 128,
    **kwargs: Any,
) -> SSD:
    """An SSD for SageMaker's `num_classes`, `image_shape` ("3,64,64") and `base_network`.

    base_network: a ResNetBackbone (e.g. the pretrained digit backbone), "resnet-small"
    (`small_resnet_backbone()`), or "resnet-N" for a randomly initialised ResNet of SageMaker's
    depth N (`helpers.resnet.resnet_backbone`). By default the heads read every base stage at stride
    >= 4, then extra layers of `extra_width` channels halve the last map down to 1x1. `kwargs` go to
    `SSD` (source_stages, extra_channels, sizes, ...).
    """
    from helpers.resnet import resnet_backbone

    channels, height, width = parse_image_shape(image_shape)
    if isinstance(base_network, ResNetBackbone):
        backbone = base_network
    elif isinstance(base_network, str) and base_network.strip().lower() == "resnet-small":
        backbone = small_resnet_backbone(in_channels=channels)
    else:
        backbone = resnet_backbone(parse_base_network(base_network), (channels, height, width))
    if backbone.in_channels != channels:
        raise ValueError(f"image_shape: the base network takes {backbone.in_channels} channels, got {channels}")
    if "source_stages" not in kwargs:
        # Heads read every stage at stride >= 4 (finer maps cost much and see little).
        kwargs["source_stages"] = [i for i, s in enumerate(backbone.strides) if s >= 4] or [backbone.num_stages - 1]
    if "extra_channels" not in kwargs:
        # Extra maps halve the last source map down to 1x1 (SSD's last map sees the whole image).
        side = min(height, width) // backbone.strides[kwargs["source_stages"][-1]]
        kwargs["extra_channels"] = (extra_width,) * max(0, math.ceil(math.log2(max(side, 1))))
    return SSD(backbone, num_classes, (height, width), **kwargs)


def detection_augmentation(
    image_size: int | tuple[int, int],
    *,
    flip_probability: float = 0.5,
    zoom_out: tuple[float, float] = (1.0, 1.6),
    zoom_in: tuple[float, float] = (1.0, 1.3),
    colour_jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.05),
    fill: float = 0.5,
    min_size: float = 2.0,
):
    """SSD-style augmentation with torchvision.transforms.v2, so boxes move with the pixels:
    colour jitter (brightness, contrast, saturation, hue), a random rescale (zoom out onto a grey
    canvas by `zoom_out`, or zoom in and shift by `zoom_in`), resize back to `image_size`, a
    horizontal flip with `flip_probability`, then boxes clamped to the image and those thinner than
    `min_size` pixels dropped (with their labels and owners).

    Call it as `transform(images, {"boxes": BoundingBoxes, "labels": ..., "owner": ...})`, or
    through `augment`, which does that for a batch.
    """
    from torchvision.transforms import v2

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not 0.0 <= flip_probability <= 1.0:
        raise ValueError(f"flip_probability: expected a probability in [0, 1], got {flip_probability!r}")
    if not (1.0 <= zoom_out[0] <= zoom_out[1]) or not (1.0 <= zoom_in[0] <= zoom_in[1]):
        raise ValueError(f"zoom_out, zoom_in: expected ranges (low, high) with 1 <= low <= high, got {zoom_out}, {zoom_in}")
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(*colour_jitter)], p=0.8),
            v2.RandomChoice(
                [
                    v2.RandomZoomOut(fill=fill, side_range=zoom_out, p=1.0),
                    v2.RandomAffine(degrees=0.0, scale=zoom_in, translate=(0.1, 0.1), fill=fill),
                ]
            ),
            v2.Resize(size, antialias=True),
            v2.RandomHorizontalFlip(flip_probability),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=lambda inputs: (inputs[1]["labels"], inputs[1]["owner"])),
        ]
    )


def augment(
    transform,
    images: Tensor,
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    group_size: int = 8,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Apply a `detection_augmentation` transform to a batch, `group_size` images at a time.

    images (B, C, H, W) float in [0, 1]; gt_boxes: per image (G_i, 4) xyxy pixels; gt_labels: per
    image (G_i,). The images of a group share one draw of the random parameters (a transform call
    costs about the same for 1 or 8 images, so groups make augmentation cheap on a CPU;
    `group_size=1` draws per image). Returns the augmented images (B, C, H', W') and the surviving
    boxes and labels per image.
    """
    from torchvision import tv_tensors

    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images: expected float (B, C, H, W) in [0, 1], got {getattr(images, 'shape', type(images).__name__)}")
    if len(gt_boxes) != images.shape[0] or len(gt_labels) != images.shape[0]:
        raise ValueError(f"gt_boxes, gt_labels: expected {images.shape[0]} entries each, got {len(gt_boxes)} and {len(gt_labels)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected an integer >= 1, got {group_size!r}")
    canvas = tuple(images.shape[-2:])
    out_images, out_boxes, out_labels = [], [], []
    for start in range(0, images.shape[0], group_size):
        boxes = list(gt_boxes[start : start + group_size])
        labels = list(gt_labels[start : start + group_size])
        owner = torch.cat([torch.full((len(b),), i, dtype=torch.long, device=images.device) for i, b in enumerate(boxes)])
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.cat(boxes).reshape(-1, 4), format="XYXY", canvas_size=canvas),
            "labels": torch.cat(labels).reshape(-1),
            "owner": owner,
        }
        group, target = transform(tv_tensors.Image(images[start : start + group_size]), target)
        out_images.append(group.as_subclass(Tensor))
        kept_boxes = target["boxes"].as_subclass(Tensor)
        for i in range(len(boxes)):
            mine = target["owner"] == i
            out_boxes.append(kept_boxes[mine])
            out_labels.append(target["labels"][mine])
    return torch.cat(out_images), out_boxes, out_labels


def ssd_loss(
    model: SSD,
    images: Tensor,
    gt_boxes: Sequence[Tensor] | Tensor,
    gt_labels: Sequence[Tensor] | Tensor,
    *,
    overlap_threshold: float = 0.5,
    negative_ratio: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """The MultiBox loss of `model` on a batch, as (classification, localisation).

    images (B, 3, H, W) in [0, 1]; gt_boxes: per image (G_i, 4) xyxy in pixels of the model's
    image_size, or padded (B, G, 4) with gt_labels (B, G) < 0 on the padding; gt_labels: per image
    (G_i,) class indices.
    """
    logits, offsets = model(images)
    height, width = model.image_size
    if isinstance(gt_boxes, Tensor):
        if not isinstance(gt_labels, Tensor) or gt_boxes.ndim != 3 or gt_labels.shape != gt_boxes.shape[:2]:
            raise ValueError("gt_boxes, gt_labels: expected padded (B, G, 4) and (B, G) tensors, or two lists")
        keep = gt_labels >= 0
        gt_boxes = [b[k] for b, k in zip(gt_boxes, keep)]
        gt_labels = [lab[k] for lab, k in zip(gt_labels, keep)]
    normalised = [B.normalize_boxes(b, (height, width)) for b in gt_boxes]
    target_labels, target_offsets = B.multibox_targets(model.anchors, normalised, list(gt_labels), overlap_threshold)
    return B.multibox_loss(logits, offsets, target_labels, target_offsets, negative_ratio)


def detect(
    class_logits: Tensor,
    box_offsets: Tensor,
    anchors: Tensor,
    *,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    top_k: int = 200,
    pre_nms_top_k: int = 400,
) -> list[dict[str, Tensor]]:
    """Detections per image from raw predictions: a list of {"boxes" (K, 4) normalised xyxy,
    "scores" (K,), "labels" (K,) class indices} sorted by decreasing score.

    class_logits (B, A, C+1), box_offsets (B, A, 4), anchors (A, 4). Softmax over classes; each
    (anchor, class) pair with probability > `score_threshold` is a candidate (at most
    `pre_nms_top_k` per image); candidates go through NMS per image and class at `nms_threshold`;
    the `top_k` best survivors remain. `nms_threshold=1` keeps every candidate (no suppression).
    """
    if class_logits.ndim != 3 or box_offsets.shape != (*class_logits.shape[:2], 4) or anchors.shape != (class_logits.shape[1], 4):
        raise ValueError(
            f"class_logits, box_offsets, anchors: expected (B, A, C+1), (B, A, 4), (A, 4), got "
            f"{tuple(class_logits.shape)}, {tuple(box_offsets.shape)}, {tuple(anchors.shape)}"
        )
    batch, num_anchors, num_outputs = class_logits.shape
    probs = class_logits.float().softmax(dim=-1)[..., 1:]  # (B, A, C), background dropped
    decoded = B.decode_boxes(box_offsets.float(), anchors.float().expand(batch, -1, -1)).clamp(0.0, 1.0)  # (B, A, 4)
    flat = probs.reshape(batch, -1)  # (B, A*C): anchor-major, class-minor
    k = min(pre_nms_top_k, flat.shape[1])
    scores, index = flat.topk(k, dim=1)  # (B, k)
    anchor_index, labels = index // (num_outputs - 1), index % (num_outputs - 1)
    candidate_boxes = decoded.gather(1, anchor_index[..., None].expand(-1, -1, 4))  # (B, k, 4)
    image = torch.arange(batch, device=flat.device)[:, None].expand(-1, k)
    keep = scores > score_threshold
    boxes_k, scores_k, labels_k, image_k = candidate_boxes[keep], scores[keep], labels[keep], image[keep]
    # Degenerate boxes (clamped flat at the border) can never be right: drop them before NMS.
    solid = (boxes_k[:, 2] > boxes_k[:, 0]) & (boxes_k[:, 3] > boxes_k[:, 1])
    boxes_k, scores_k, labels_k, image_k = boxes_k[solid], scores_k[solid], labels_k[solid], image_k[solid]
    kept = B.batched_nms(boxes_k, scores_k, image_k * (num_outputs - 1) + labels_k, nms_threshold)
    results = []
    kept_image = image_k[kept]
    for i in range(batch):
        mine = kept[kept_image == i][:top_k]  # batched_nms returns decreasing scores
        results.append({"boxes": boxes_k[mine], "scores": scores_k[mine], "labels": labels_k[mine]})
    return results


@torch.no_grad()
def predict(
    model: SSD,
    images: Tensor,
    *,
    batch_size: int = 256,
    **detect_kwargs: Any,
) -> list[dict[str, Tensor]]:
    """`detect` on the model's predictions for images (N, 3, H, W) in [0, 1] (or uint8), in eval mode,
    batch by batch; boxes in normalised xyxy."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}")
    was_training = model.training
    model.eval()
    device = model.anchors.device
    results: list[dict[str, Tensor]] = []
    try:
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            if not chunk.is_floating_point():
                chunk = chunk.float() / 255.0
            logits, offsets = model(chunk)
            results += detect(logits, offsets, model.anchors, **detect_kwargs)
    finally:
        model.train(was_training)
    return results


def sagemaker_response(detections: dict[str, Tensor], score_threshold: float = 0.0) -> dict[str, list[list[float]]]:
    """One image's detections in SageMaker's JSON shape:
    {"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}, corners normalised to [0, 1],
    by decreasing score, those with score >= `score_threshold`."""
    try:
        boxes, scores, labels = detections["boxes"], detections["scores"], detections["labels"]
    except (KeyError, TypeError):
        raise ValueError("detections: expected a dict with 'boxes', 'scores' and 'labels' (one entry of detect())") from None
    order = scores.argsort(descending=True, stable=True)
    rows = []
    for i in order.tolist():
        score = float(scores[i])
        if score < score_threshold:
            continue
        rows.append([float(labels[i]), score, *(float(v) for v in boxes[i])])
    return {"prediction": rows}
