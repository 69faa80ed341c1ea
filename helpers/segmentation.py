"""Semantic segmentation: the confusion-matrix metrics SageMaker reports (mIoU, pixel accuracy),
the bilinear kernel for transposed convolutions, the FCN / PSP / ASPP heads on a ResNet's stage
outputs, random rescale-then-crop, tiled (sliding-window) inference and indexed-PNG masks.

Taught in notebooks/06_semantic_segmentation.ipynb.

Conventions
-----------
- Masks are integer class maps, (N, H, W) or (H, W); `ignore_index` (255) marks pixels that count
  nowhere (object borders, padding).
- The confusion matrix has the TRUE class on rows and the PREDICTED class on columns.
- A class absent from both prediction and target over the whole evaluation (its union is empty) has
  IoU NaN and is left out of the mean, as torchmetrics' macro Jaccard index does. (GluonCV, on
  which SageMaker's algorithm is built, counts such a class as 0 instead; with every class present
  in the validation set, the two agree.)
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ALGORITHMS = ("fcn", "psp", "deeplab")
FCN_VARIANTS = ("32s", "16s", "8s")
LR_SCHEDULERS = ("poly", "cosine", "step")


# --------------------------------------------------------------------------------------------
# Masks and metrics


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array of class ids, got {type(value).__name__}")


def _check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    return int(num_classes)


def _check_ignore_index(ignore_index, num_classes: int) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index: expected an int or None, got {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index: {ignore_index} is a real class id (num_classes={num_classes}); use a value outside [0, {num_classes})")
    return int(ignore_index)


def check_mask(
    mask,
    num_classes: int,
    ignore_index: int | None = 255,
    *,
    shape: Sequence[int] | None = None,
    name: str = "mask",
) -> torch.Tensor:
    """`mask` as a tensor after checking it is a valid class map.

    mask:  (..., H, W) integer class ids in [0, num_classes), or `ignore_index`.
    shape: the (..., H, W) the mask must have (e.g. its image's batch and spatial size).
    Raises TypeError for a non-integer mask and ValueError (naming `name`) for a wrong shape or an
    out-of-range class id.
    """
    num_classes = _check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index, num_classes)
    mask = _as_tensor(name, mask)
    if mask.dtype == torch.bool or mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(f"{name}: expected integer class ids (uint8/int64), got dtype {mask.dtype}")
    if mask.dim() < 2:
        raise ValueError(f"{name}: expected a (..., H, W) class map, got shape {tuple(mask.shape)}")
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.numel():
        valid = (mask >= 0) & (mask < num_classes)
        if ignore_index is not None:
            valid |= mask == ignore_index
        if not bool(valid.all()):
            bad = torch.unique(mask[~valid])[:5].tolist()
            allowed = f"[0, {num_classes})" + (f" or {ignore_index} (ignore)" if ignore_index is not None else "")
            raise ValueError(f"{name}: class ids must be in {allowed}; found {bad}")
    return mask


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = 255) -> torch.Tensor:
    """Pixel counts (num_classes, num_classes), int64: row = true class, column = predicted class.

    pred, target: (..., H, W) integer class maps of the same shape (tensors or arrays); pixels whose
    target is `ignore_index` are skipped. Sum the matrices of several batches to accumulate over a
    data set. One `bincount` over `target * num_classes + pred`, on the inputs' device.
    """
    num_classes = _check_num_classes(num_classes)
    target = check_mask(target, num_classes, ignore_index, name="target")
    pred = check_mask(pred, num_classes, None, shape=target.shape, name="pred")
    if pred.device != target.device:
        raise ValueError(f"pred: on {pred.device}, but target is on {target.device}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_confusion(cm) -> torch.Tensor:
    cm = _as_tensor("confusion", cm)
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion: expected a square (num_classes, num_classes) matrix, got shape {tuple(cm.shape)}")
    if cm.is_floating_point() and bool(torch.isnan(cm).any()):
        raise ValueError("confusion: contains NaN")
    if bool((cm < 0).any()):
        raise ValueError("confusion: counts must be >= 0")
    return cm.double()


def per_class_iou(confusion) -> torch.Tensor:
    """IoU of each class, (num_classes,) float64: TP / (TP + FP + FN) from a confusion matrix.

    A class with an empty union (absent from both prediction and target) gets NaN.
    """
    cm = _check_confusion(confusion)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))


def mean_iou(confusion) -> float:
    """SageMaker's `mIOU`: the mean of `per_class_iou` over classes with a non-empty union
    (NaN when every class is absent, i.e. the matrix is all zeros)."""
    iou = per_class_iou(confusion)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if bool(present.any()) else math.nan


def pixel_accuracy(confusion) -> float:
    """SageMaker's `pixel_accuracy`: correctly labelled pixels / labelled pixels (ignored pixels are
    not in the matrix); NaN for an empty matrix."""
    cm = _check_confusion(confusion)
    total = cm.sum()
    return float(cm.diagonal().sum() / total) if total > 0 else math.nan


@torch.no_grad()
def accumulate_confusion(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    ignore_index: int | None = 255,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """One confusion matrix (num_classes, num_classes) over a whole data set.

    batches:   iterable of (images (N, C, H, W), masks (N, H, W)); `model(images)` returns logits
               (N, num_classes, H, W), predictions are their argmax.
    transform: applied to the images on `device` before the model (e.g. uint8 -> normalised float).
    """
    num_classes = _check_num_classes(num_classes)
    device = torch.device(device)
    total = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    if isinstance(model, nn.Module):
        model.eval()
    for images, masks in batches:
        images, masks = images.to(device), _as_tensor("masks", masks).to(device)
        if transform is not None:
            images = transform(images)
        logits = model(images)
        if logits.dim() != 4 or logits.shape[1] != num_classes or logits.shape[-2:] != masks.shape[-2:]:
            raise ValueError(f"model: expected logits (N, {num_classes}, {masks.shape[-2]}, {masks.shape[-1]}), got {tuple(logits.shape)}")
        total += confusion_matrix(logits.argmax(1), masks, num_classes, ignore_index)
    return total.cpu()


# --------------------------------------------------------------------------------------------
# Upsampling


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (in_channels, out_channels, k, k) for `nn.ConvTranspose2d` that perform bilinear
    upsampling channel by channel (identity between channel i and i, zero across channels).

    With stride s, kernel_size 2s - s % 2 and padding ceil((s - 1) / 2) (see `bilinear_upsampling`)
    the transposed convolution equals `F.interpolate(scale_factor=s, mode="bilinear",
    align_corners=False)` away from the border (where interpolate replicates the edge and the
    transposed convolution sees zeros).
    """
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor  # (k,)
    kernel = (taps[:, None] * taps[None, :]).float()  # (k, k), separable
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(min(in_channels, out_channels))
    weight[channels, channels] = kernel
    return weight


def bilinear_upsampling(channels: int, scale: int, *, learnable: bool = True) -> nn.ConvTranspose2d:
    """A ConvTranspose2d(channels, channels) that upsamples by the integer `scale` (H -> scale * H),
    initialised as bilinear interpolation; frozen when `learnable` is False."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale: expected an integer >= 1, got {scale!r}")
    kernel_size, padding = 2 * scale - scale % 2, math.ceil((scale - 1) / 2)
    layer = nn.ConvTranspose2d(channels, channels, kernel_size, stride=scale, padding=padding, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, channels, kernel_size))
    layer.weight.requires_grad_(learnable)
    return layer


def _fit_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop (top-left aligned) or bilinearly resize `x` (N, C, h, w) to `size` (H, W)."""
    h, w = x.shape[-2:]
    if h >= size[0] and w >= size[1]:
        return x[..., : size[0], : size[1]]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------
# Heads. Each takes the backbone's stage outputs, finest first (strides 8, 16, 32 of a ResNet, or
# 8, 8, 8 when its last stages are dilated), and the output size; it returns logits (N, K, H, W).


def _check_channels(in_channels, count: int | None = None) -> tuple[int, ...]:
    if isinstance(in_channels, int):
        in_channels = (in_channels,)
    channels = tuple(in_channels)
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"in_channels: expected positive channel counts, got {in_channels!r}")
    if count is not None and len(channels) < count:
        raise ValueError(f"in_channels: expected at least {count} stage channel counts (finest first), got {channels}")
    return channels


class FCNHead(nn.Module):
    """FCN-32s / 16s / 8s (Long, Shelhamer & Darrell, 2015): 1x1 class scores on the coarsest map,
    upsampled by transposed convolutions initialised as bilinear, with the scores of finer stages
    added on the way (their 1x1 layers start at zero, so a fresh 16s/8s predicts what 32s does).

    in_channels: channels of the stride-8, 16 and 32 maps (finest first; 32s uses only the last).
    features:    [(N, C8, H/8, W/8), (N, C16, H/16, W/16), (N, C32, H/32, W/32)] -> (N, K, H, W).
    hidden:      0 for the paper's plain 1x1 score layer on the coarse map; > 0 puts a
                 3x3 conv-BN-ReLU of that width before it (torchvision's FCNHead does the same).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, variant: str = "8s", *, hidden: int = 0, strides: Sequence[int] = (8, 16, 32)):
        super().__init__()
        if variant not in FCN_VARIANTS:
            raise ValueError(f"variant: expected one of {FCN_VARIANTS}, got {variant!r}")
        channels = _check_channels(in_channels, 3)[-3:]
        num_classes = _check_num_classes(num_classes)
        strides = tuple(strides)
        if len(strides) != 3 or any(b % a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"strides: expected three strides, each dividing the next (e.g. (8, 16, 32)), got {strides}")
        self.variant, self.strides = variant, strides
        if hidden:
            self.score = nn.Sequential(
                nn.Conv2d(channels[2], hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_classes, 1)
            )
        else:
            self.score = nn.Conv2d(channels[2], num_classes, 1)
        skips = {"32s": 0, "16s": 1, "8s": 2}[variant]
        # the skip layers, coarse to fine: scores of the stride-16 and stride-8 maps
        self.skip_scores = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in (channels[1], channels[0])[:skips])
        for layer in self.skip_scores:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        ratios = (strides[2] // strides[1], strides[1] // strides[0])[:skips]
        self.skip_ups = nn.ModuleList(bilinear_upsampling(num_classes, r) for r in ratios)
        # the last upsampling stays bilinear, as in the paper
        self.final_up = bilinear_upsampling(num_classes, strides[2 - skips], learnable=False)

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        x = self.score(features[-1])  # (N, K, H/32, W/32)
        skip_maps = (features[-2], features[-3])
        for score, up, skip in zip(self.skip_scores, self.skip_ups, skip_maps):
            s = score(skip)  # (N, K, finer)
            x = _fit_to(up(x), s.shape[-2:]) + s
        return _fit_to(self.final_up(x), size)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module (Zhao et al., 2017): average-pool the map into b x b bins for
    each b in `bins`, reduce each with a 1x1 conv-BN-ReLU, upsample bilinearly and concatenate
    with the input. (N, C, h, w) -> (N, C + len(bins) * branch_channels, h, w)."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), branch_channels: int | None = None):
        super().__init__()
        (in_channels,) = _check_channels(in_channels)
        self.bins = tuple(bins)
        if not self.bins or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.bins):
            raise ValueError(f"bins: expected positive integers, got {bins!r}")
        branch_channels = branch_channels or max(1, in_channels // len(self.bins))
        self.branches = nn.ModuleList(_conv_bn_relu(in_channels, branch_channels) for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False) for b, branch in zip(self.bins, self.branches)]
        return torch.cat([x, *pooled], dim=1)


class PSPHead(nn.Module):
    """PSPNet head: pyramid pooling on the last (ideally dilated, stride-8) map, a 3x3 conv-BN-ReLU,
    dropout, 1x1 class scores, bilinear upsampling to the input size.
    features[-1]: (N, C, h, w) -> (N, K, H, W)."""

    def __init__(self, in_channels: int | Sequence[int], num_classes: int, *, bins: Sequence[int] = (1, 2, 3, 6), hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        channels = _check_channels(in_channels)[-1]
        num_classes = _check_num_classes(num_classes)
        self.pool = PyramidPooling(channels, bins)
        self.classifier = nn.Sequential(_conv_bn_relu(self.pool.out_channels, hidden, 3), nn.Dropout(dropout), nn.Conv2d(hidden, num_classes, 1))

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        logits = self.classifier(self.pool(features[-1]))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class ASPPPooling(nn.Sequential):
    """ASPP's image-level branch: global average, 1x1 conv-BN-ReLU, broadcast back to (h, w)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3, Chen et al., 2017): a 1x1 branch, one 3x3 branch
    per dilation rate (seeing pixels `rate` apart), the image-level branch, concatenated and
    projected by a 1x1 conv-BN-ReLU and dropout. (N, C, h, w) -> (N, out_channels, h, w).
    Laid out like torchvision's ASPP, so its state dict loads into ours."""

    def __init__(self, in_channels: int, rates: Sequence[int] = (12, 24, 36), out_channels: int = 256, dropout: float = 0.5):
        super().__init__()
        (in_channels,) = _check_channels(in_channels)
        rates = tuple(rates)
        if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
            raise ValueError(f"rates: expected positive integer dilation rates, got {rates!r}")
        self.rates = rates
        branches = [_conv_bn_relu(in_channels, out_channels)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out_channels, out_channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class ASPPHead(nn.Module):
    """DeepLabV3 head: ASPP, a 3x3 conv-BN-ReLU, 1x1 class scores, bilinear upsampling to the input
    size. features[-1]: (N, C, h, w) -> (N, K, H, W). Rates (12, 24, 36) suit a stride-8 map of a
    large image; small maps want small rates (a rate beyond the map sees only padding)."""

    def __init__(self, in_channels: int | Sequence[int], num_classes: int, *, rates: Sequence[int] = (12, 24, 36), hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        channels = _check_channels(in_channels)[-1]
        num_classes = _check_num_classes(num_classes)
        self.aspp = ASPP(channels, rates, hidden, dropout)
        self.classifier = nn.Sequential(_conv_bn_relu(hidden, hidden, 3), nn.Conv2d(hidden, num_classes, 1))

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        logits = self.classifier(self.aspp(features[-1]))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def make_head(
    algorithm: str,
    in_channels: Sequence[int],
    num_classes: int,
    *,
    variant: str = "8s",
    hidden: int | None = None,
    rates: Sequence[int] = (12, 24, 36),
    bins: Sequence[int] = (1, 2, 3, 6),
    strides: Sequence[int] = (8, 16, 32),
) -> nn.Module:
    """The decoder SageMaker's `algorithm` names: "fcn" -> FCNHead(variant), "psp" -> PSPHead,
    "deeplab" -> ASPPHead. `in_channels`: the backbone's stage channels, finest first. `hidden`:
    the head's width (default: 0 for FCN, the paper's plain 1x1 scores; 256 for PSP and DeepLab)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "fcn":
        return FCNHead(in_channels, num_classes, variant, hidden=hidden or 0, strides=strides)
    hidden = 256 if hidden is None else hidden
    if algorithm == "psp":
        return PSPHead(in_channels, num_classes, bins=bins, hidden=hidden)
    return ASPPHead(in_channels, num_classes, rates=rates, hidden=hidden)


class SegmentationNet(nn.Module):
    """Backbone + head: images (N, C, H, W) -> logits (N, K, H, W).

    backbone: a module with `features(images)` returning its stage outputs, finest first (e.g.
              helpers.resnet.ResNetBackbone), or whose forward returns that list.
    head:     `head(features, (H, W))` -> logits, e.g. from `make_head`.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        extract = getattr(self.backbone, "features", None)
        features = extract(images) if callable(extract) else self.backbone(images)
        if isinstance(features, torch.Tensor):
            features = [features]
        return self.head(features, images.shape[-2:])


def segmentation_net(algorithm: str, backbone: nn.Module, num_classes: int, **head_args) -> SegmentationNet:
    """SageMaker's network for `algorithm` ("fcn" | "psp" | "deeplab") on `backbone`, a module with
    `out_channels` and `strides` lists (one per stage, finest first) and `features(images)`, such as
    helpers.resnet.ResNetBackbone. FCN uses the last three stages; PSP and DeepLab the last one.
    `head_args` go to `make_head` (variant, hidden, rates, bins)."""
    channels, strides = getattr(backbone, "out_channels", None), getattr(backbone, "strides", None)
    if channels is None or strides is None:
        raise TypeError(f"backbone: expected a module with `out_channels` and `strides` (e.g. helpers.resnet.ResNetBackbone), got {type(backbone).__name__}")
    if algorithm == "fcn" and len(channels) < 3:
        raise ValueError(f"backbone: FCN needs at least three stages for its skips, got {len(channels)}")
    head = make_head(algorithm, list(channels)[-3:], num_classes, strides=list(strides)[-3:], **head_args)
    return SegmentationNet(backbone, head)


def dilate_stage(stage: nn.Module, dilation: int) -> nn.Module:
    """Turn a strided ResNet stage into a dilated ("atrous") one in place, as torchvision's
    `replace_stride_with_dilation` does: stride-2 convolutions get stride 1, the 3x3 convolution
    that had the stride gets dilation `dilation // 2` (the previous stage's), every other 3x3
    convolution dilation `dilation`, paddings alike. The stage then keeps its input's resolution
    and its weights keep their shapes (a pretrained stage loads unchanged). Returns `stage`."""
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation: expected an integer >= 1, got {dilation!r}")
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("stage: has no Conv2d layers to dilate")
    for conv in convs:
        strided = conv.stride != (1, 1)
        conv.stride = (1, 1)
        if conv.kernel_size == (3, 3):
            rate = max(1, dilation // 2) if strided else dilation
            conv.dilation, conv.padding = (rate, rate), (rate, rate)
    return stage


# --------------------------------------------------------------------------------------------
# Training pieces


def random_rescale_crop(
    images: torch.Tensor,
    masks: torch.Tensor,
    base_size: int,
    crop_size: int,
    *,
    generator: torch.Generator | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SageMaker's training augmentation, per image: resize so the short side is a random integer in
    [scale_range[0] * base_size, scale_range[1] * base_size] (bilinear for the image, nearest for the
    mask), pad to at least crop_size (image with 0, mask with `ignore_index`), take a random
    crop_size x crop_size crop.

    images: (N, C, H, W) uint8 or float; masks: (N, H, W) -> (N, C, crop, crop), (N, crop, crop).
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), got shape {tuple(images.shape)}")
    masks = _as_tensor("masks", masks)
    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"masks: expected shape {(images.shape[0], *images.shape[-2:])} to match images, got {tuple(masks.shape)}")
    for name, value in (("base_size", base_size), ("crop_size", crop_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range: expected 0 < low <= high, got {scale_range}")
    short_low, short_high = max(1, int(low * base_size)), max(1, int(high * base_size))
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        h, w = image.shape[-2:]
        short = int(torch.randint(short_low, short_high + 1, (1,), generator=generator))
        size = (short, max(1, round(w * short / h))) if h <= w else (max(1, round(h * short / w)), short)
        img = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        msk = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0]
        pad_h, pad_w = max(0, crop_size - size[0]), max(0, crop_size - size[1])
        if pad_h or pad_w:
            img = F.pad(img, (0, pad_w, 0, pad_h), value=0.0)
            msk = F.pad(msk, (0, pad_w, 0, pad_h), value=float(ignore_index))
        top = int(torch.randint(0, img.shape[-2] - crop_size + 1, (1,), generator=generator))
        left = int(torch.randint(0, img.shape[-1] - crop_size + 1, (1,), generator=generator))
        img = img[:, top : top + crop_size, left : left + crop_size]
        if not images.dtype.is_floating_point:
            img = img.round().clamp(0, 255)
        out_images.append(img.to(images.dtype))
        out_masks.append(msk[top : top + crop_size, left : left + crop_size].to(masks.dtype))
    return torch.stack(out_images), torch.stack(out_masks)


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    *,
    steps_per_epoch: int = 1,
    step_epochs: Sequence[int] = (),
    factor: float = 0.1,
    power: float = 0.9,
) -> torch.optim.lr_scheduler.LRScheduler:
    """SageMaker's `lr_scheduler`, stepped once per batch:
    "poly":   lr * (1 - t / total_steps) ** power (power 0.9, as in GluonCV);
    "cosine": lr * (1 + cos(pi * t / total_steps)) / 2;
    "step":   lr * factor ** (number of `step_epochs` (SageMaker's `lr_scheduler_step`) passed)."""
    if name not in LR_SCHEDULERS:
        raise ValueError(f"lr_scheduler: expected one of {LR_SCHEDULERS}, got {name!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps: expected an integer >= 1, got {total_steps!r}")
    if name == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=power)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    milestones = sorted(int(e) * steps_per_epoch for e in step_epochs)
    if not milestones:
        raise ValueError("step_epochs: the 'step' scheduler needs at least one epoch at which to decay (lr_scheduler_step)")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=factor)


# --------------------------------------------------------------------------------------------
# Inference


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _owners(length: int, starts: list[int], tile: int) -> torch.Tensor:
    """For each coordinate, the index of the tile in which it lies farthest from a cut edge
    (image borders are not cuts)."""
    coords = torch.arange(length)[:, None]
    begin = torch.tensor(starts)[None, :]
    end = begin + min(tile, length)
    inside = (coords >= begin) & (coords < end)
    to_begin = torch.where(begin == 0, length, coords - begin)
    to_end = torch.where(end == length, length, end - 1 - coords)
    depth = torch.where(inside, torch.minimum(to_begin, to_end), -1)
    return depth.argmax(1)  # (length,)


@torch.no_grad()
def sliding_window_inference(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile_size: int,
    overlap: int,
    *,
    batch_size: int = 8,
) -> torch.Tensor:
    """Logits for a large image computed tile by tile (memory bounded by one batch of tiles).

    image: (C, H, W) or (N, C, H, W); model: (B, C, t, t) -> (B, K, t, t) logits.
    Tiles of tile_size x tile_size overlap by `overlap` pixels; each pixel takes its logits from the
    tile in which it lies deepest, so pixels within overlap // 2 of a cut are never used. For a
    model whose output at a pixel depends only on inputs within overlap // 2 of it (and that does
    not depend on absolute position), the result equals whole-image inference exactly; for deep
    strided nets it is a close approximation.
    Returns (K, H, W) or (N, K, H, W) logits on the image's device.
    """
    if image.dim() == 4:
        return torch.stack([sliding_window_inference(model, im, tile_size, overlap, batch_size=batch_size) for im in image])
    if image.dim() != 3:
        raise ValueError(f"image: expected (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    for name, value, low in (("tile_size", tile_size, 1), ("overlap", overlap, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if overlap >= tile_size:
        raise ValueError(f"overlap: expected less than tile_size ({tile_size}), got {overlap}")
    _, height, width = image.shape
    step = tile_size - overlap
    rows, cols = _tile_starts(height, tile_size, step), _tile_starts(width, tile_size, step)
    th, tw = min(tile_size, height), min(tile_size, width)
    row_owner, col_owner = _owners(height, rows, tile_size), _owners(width, cols, tile_size)
    positions = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
    out: torch.Tensor | None = None
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        tiles = torch.stack([image[:, rows[i] : rows[i] + th, cols[j] : cols[j] + tw] for i, j in chunk])
        logits = model(tiles)  # (B, K, th, tw)
        if logits.dim() != 4 or logits.shape[-2:] != (th, tw):
            raise ValueError(f"model: expected logits (B, K, {th}, {tw}) for a tile, got {tuple(logits.shape)}")
        if out is None:
            out = torch.empty(logits.shape[1], height, width, dtype=logits.dtype, device=logits.device)
        for (i, j), tile_logits in zip(chunk, logits):
            ys = (row_owner == i).nonzero().squeeze(1)
            xs = (col_owner == j).nonzero().squeeze(1)
            if len(ys) and len(xs):
                y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
                out[:, y0:y1, x0:x1] = tile_logits[:, y0 - rows[i] : y1 - rows[i], x0 - cols[j] : x1 - cols[j]]
    return out


def color_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (num_colors, 3) uint8: class 0 black, then distinct colours from
    the bits of the class id; index 255 (ignore) is off-white in the 256-entry palette."""
    if isinstance(num_colors, bool) or not isinstance(num_colors, int) or not 1 <= num_colors <= 256:
        raise ValueError(f"num_colors: expected an integer in [1, 256], got {num_colors!r}")
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for shift in range(8):
        for channel in range(3):
            palette[:, channel] |= (((ids >> channel) & 1) << (7 - shift)).astype(np.uint8)
        ids = ids >> 3
    palette[255] = (224, 224, 192)
    return palette[:num_colors]


def encode_png_mask(mask, palette: np.ndarray | None = None) -> bytes:
    """A class map (H, W) as the bytes of an indexed (P-mode) PNG, as SageMaker answers
    `Accept: image/png`: each pixel stores its class id; the palette only colours it for viewers."""
    from PIL import Image

    mask = _as_tensor("mask", mask)
    if mask.dim() != 2:
        raise ValueError(f"mask: expected (H, W), got shape {tuple(mask.shape)}")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool or bool(((mask < 0) | (mask > 255)).any()):
        raise ValueError("mask: expected integer class ids in [0, 255] for an 8-bit indexed PNG")
    pal = color_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= len(pal) <= 256:
        raise ValueError(f"palette: expected (n <= 256, 3) RGB entries, got shape {pal.shape}")
    image = Image.fromarray(mask.cpu().numpy().astype(np.uint8), mode="P")
    image.putpalette(pal.reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png_mask(data: bytes) -> np.ndarray:
    """The class map (H, W) uint8 stored in an indexed PNG's pixel indices (palette ignored)."""
    from PIL import Image

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data: expected PNG bytes, got {type(data).__name__}")
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"data: expected an indexed (P-mode) or greyscale PNG, got mode {image.mode!r}")
        return np.asarray(image, dtype=np.uint8).copy()
