"""The ResNet family behind SageMaker's Image Classification algorithm, built from its blocks.

Taught in notebooks/04_image_classification.ipynb. Two reuse points for the other vision notebooks
(05 object detection, 06 semantic segmentation):

- `resnet_backbone(num_layers, ...)`: a ResNet without its classifier. Its `features(x)` returns every
  stage's map (for feature pyramids, FCN skips, SSD heads), `forward(x)` the last one; `out_channels`
  and `strides` describe them. It takes images in [0, 1] and standardises them itself (`mean`, `std`
  buffers), so callers never need to know how it was trained.
- `pretrained_digit_backbone(num_layers, ...)`: the same backbone with the weights notebook 04 learns on
  printed digits, loaded from `data/cache/` (git-ignored), or trained on the spot when the cache is
  missing (with a progress bar; one to three minutes on 2 CPU cores for the default `num_layers=20` on the
  "cpu" profile), so notebooks 05 and 06 run on a fresh clone.

Layer and parameter names follow torchvision's `ResNet` (`conv1`, `bn1`, `layer1.0.conv1`, ...,
`downsample.0`, `fc`), so torchvision's state dicts load as they are and regular expressions over
parameter names (SageMaker's `freeze_layer_pattern`) read the same in both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# SageMaker's num_layers for large images (ImageNet-style stem: 7x7 stride-2 convolution + max pool,
# four stages, output stride 32) and the blocks per stage of each.
IMAGENET_LAYERS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# SageMaker's suggested num_layers for small images (CIFAR-style: 3x3 stem, no pooling, three stages,
# output stride 4). Any 6n+2 below 164 (basic blocks) or 9n+2 from 164 on (bottlenecks) is valid.
CIFAR_LAYERS: tuple[int, ...] = (20, 32, 44, 56, 110)
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)
STYLES = ("auto", "imagenet", "cifar")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size at stride 1 (padding = dilation), no bias (BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 1x1 convolution, no bias (BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    # Identity when shapes agree; otherwise a strided 1x1 projection (He et al.'s option B, as in
    # torchvision and SageMaker's MXNet network).
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a skip connection: y = relu(x' + bn(conv(relu(bn(conv(x)))))).

    x: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride); x' is x, or its 1x1
    projection when the shape changes.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1, first_dilation: int | None = None):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.conv1 = conv3x3(in_channels, channels, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = _shortcut(in_channels, channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: one tensor fewer per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided here, "ResNet v1.5" as torchvision), 1x1 expand by 4, plus the skip.

    x: (N, in_channels, H, W) -> (N, 4 * channels, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1, first_dilation: int | None = None):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride, first_dilation)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Stem, stages of residual blocks, global average pooling and a linear classifier.

    block:  "basic" or "bottleneck".   layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    stem:   "imagenet" (7x7/2 conv + 3x3/2 max pool, widths 64..512) or "cifar" (3x3/1 conv, no pool,
            widths 16, 32, 64).
    replace_stride_with_dilation: one flag per stage after the first; a flagged stage keeps the
            resolution and dilates its convolutions instead (for dense prediction, notebook 06).
    forward: (N, in_channels, H, W) float -> (N, num_classes) logits. `features(x)` -> the stage maps.
    Parameter names match torchvision's `ResNet`, so `load_state_dict(torchvision_model.state_dict())`
    works for the same depth.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        stem: str = "imagenet",
        widths: Sequence[int] | None = None,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block: expected one of {sorted(BLOCKS)}, got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem: expected 'imagenet' or 'cifar', got {stem!r}")
        widths = tuple(widths if widths is not None else (IMAGENET_WIDTHS if stem == "imagenet" else CIFAR_WIDTHS))
        layers = tuple(int(n) for n in layers)
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(f"layers: expected {len(widths)} positive block counts (one per width), got {layers}")
        flags = tuple(replace_stride_with_dilation or (False,) * (len(layers) - 1))
        if len(flags) != len(layers) - 1:
            raise ValueError(f"replace_stride_with_dilation: expected {len(layers) - 1} flags, got {flags}")
        block_type = BLOCKS[block]
        self.block = block

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
            stride = 4
        else:
            self.conv1 = conv3x3(in_channels, widths[0])
            self.maxpool = nn.Identity()
            stride = 1
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)

        channels, dilation = widths[0], 1
        self.stage_channels: list[int] = []
        self.stage_strides: list[int] = []
        for i, (width, count) in enumerate(zip(widths, layers)):
            step = 1 if i == 0 else 2
            first_dilation = dilation
            if i > 0 and flags[i - 1]:
                dilation *= step
                step = 1
            blocks = [block_type(channels, width, step, dilation, first_dilation)]
            channels = width * block_type.expansion
            blocks += [block_type(channels, width, 1, dilation) for _ in range(count - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            stride *= step
            self.stage_channels.append(channels)
            self.stage_strides.append(stride)
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self, zero_init_residual)

    def stages(self) -> list[nn.Sequential]:
        """layer1, layer2, ... in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def features(self, x: Tensor) -> list[Tensor]:
        """Every stage's output: [(N, stage_channels[i], H / stage_strides[i], W / stage_strides[i])]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for stage in self.stages():
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.flatten(self.avgpool(self.features(x)[-1]), 1)  # (N, channels)
        return self.fc(pooled)  # (N, num_classes)


def _init_weights(module: nn.Module, zero_init_residual: bool = False) -> None:
    # He initialisation for convolutions (fan-out, as torchvision), BN as identity.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        # Each block then starts as the identity (Goyal et al. 2017).
        for m in module.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


def parse_image_shape(image_shape: str | Sequence[int]) -> tuple[int, int, int]:
    """SageMaker's `image_shape` ("3,224,224" or (3, 224, 224)) as (channels, height, width)."""
    if isinstance(image_shape, str):
        parts = [p.strip() for p in image_shape.split(",")]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"image_shape: expected 'channels,height,width' such as '3,224,224', got {image_shape!r}") from None
    elif isinstance(image_shape, Sequence):
        values = tuple(image_shape)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"image_shape: expected three integers (channels, height, width), got {image_shape!r}")
    else:
        raise TypeError(f"image_shape: expected a 'C,H,W' string or a (C, H, W) tuple, got {type(image_shape).__name__}")
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"image_shape: expected three positive integers (channels, height, width), got {image_shape!r}")
    return values  # type: ignore[return-value]


def architecture(num_layers: int, image_shape: str | Sequence[int] = (3, 224, 224), style: str = "auto") -> dict[str, Any]:
    """How SageMaker's `num_layers` becomes a network: {"style", "block", "layers", "widths"}.

    style "auto" follows SageMaker: depths only one family has pick it (18, 34, 101 ImageNet-style;
    20, 32, 44, 56, 110 CIFAR-style); 50, 152 and 200 exist in both and go CIFAR-style for images of
    height <= 28, as SageMaker's network does. Raises ValueError for unknown depths and for images too
    small for the chosen style (ImageNet-style needs height and width >= 32, CIFAR-style >= 4).
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int):
        raise TypeError(f"num_layers: expected an integer such as 18 or 20, got {num_layers!r}")
    if style not in STYLES:
        raise ValueError(f"style: expected one of {STYLES}, got {style!r}")
    channels, height, width = parse_image_shape(image_shape)
    imagenet_ok = num_layers in IMAGENET_LAYERS
    cifar_ok = (num_layers - 2) % 6 == 0 and 8 <= num_layers < 164 or (num_layers - 2) % 9 == 0 and num_layers >= 164
    if not (imagenet_ok or cifar_ok):
        raise ValueError(
            f"num_layers: {num_layers} is not a ResNet depth; expected one of {sorted(IMAGENET_LAYERS)} (ImageNet-style) "
            f"or {list(CIFAR_LAYERS)} (CIFAR-style; any 6n+2 below 164, 9n+2 from 164)"
        )
    if style == "auto":
        style = "imagenet" if imagenet_ok and (not cifar_ok or height > 28) else "cifar"
    if style == "imagenet" and not imagenet_ok:
        raise ValueError(f"num_layers: {num_layers} has no ImageNet-style ResNet; expected one of {sorted(IMAGENET_LAYERS)}")
    if style == "cifar" and not cifar_ok:
        raise ValueError(f"num_layers: {num_layers} has no CIFAR-style ResNet; expected 6n+2 below 164 or 9n+2 from 164, e.g. {list(CIFAR_LAYERS)}")
    if style == "imagenet":
        if min(height, width) < 32:
            raise ValueError(
                f"image_shape: ImageNet-style ResNet-{num_layers} downsamples by 32 and needs height and width >= 32, "
                f"got {(channels, height, width)}; resize the images or use a CIFAR-style depth such as {list(CIFAR_LAYERS)}"
            )
        block, layers = IMAGENET_LAYERS[num_layers]
        return {"style": style, "block": block, "layers": layers, "widths": IMAGENET_WIDTHS}
    if min(height, width) < 4:
        raise ValueError(f"image_shape: CIFAR-style ResNet-{num_layers} downsamples by 4 and needs height and width >= 4, got {(channels, height, width)}")
    if num_layers < 164:
        return {"style": style, "block": "basic", "layers": ((num_layers - 2) // 6,) * 3, "widths": CIFAR_WIDTHS}
    return {"style": style, "block": "bottleneck", "layers": ((num_layers - 2) // 9,) * 3, "widths": CIFAR_WIDTHS}


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2 (SageMaker's minimum), got {num_classes}")
    return num_classes


def resnet(
    num_layers: int,
    num_classes: int = 1000,
    image_shape: str | Sequence[int] = (3, 224, 224),
    *,
    style: str = "auto",
    replace_stride_with_dilation: Sequence[bool] | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """The ResNet SageMaker builds for `num_layers`, `num_classes` and `image_shape` (C, H, W).

    ImageNet-style 18/34/50/101/152/200 or CIFAR-style 20/32/44/56/110 (see `architecture`). Randomly
    initialised; (N, C, H, W) -> (N, num_classes) logits.
    """
    num_classes = _check_num_classes(num_classes)
    arch = architecture(num_layers, image_shape, style)
    return ResNet(
        arch["block"],
        arch["layers"],
        num_classes,
        in_channels=parse_image_shape(image_shape)[0],
        stem=arch["style"],
        widths=arch["widths"],
        replace_stride_with_dilation=replace_stride_with_dilation,
        zero_init_residual=zero_init_residual,
    )


class ResNetBackbone(nn.Module):
    """A ResNet without its classifier: input standardisation, stem and stages.

    Takes images in [0, 1], (N, C, H, W) float, standardises them with its `mean` and `std` buffers
    (those of the data it was trained on), and returns
    - `features(x)`: every stage's map, [(N, out_channels[i], H / strides[i], W / strides[i])];
    - `forward(x)`: the last of them.
    Its modules are the ResNet's own (shared, not copied), with the same names (`conv1`, `layer1`, ...).
    """

    def __init__(self, network: ResNet, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        if not isinstance(network, ResNet):
            raise TypeError(f"network: expected a helpers.resnet.ResNet, got {type(network).__name__}")
        channels = network.conv1.in_channels
        mean = (0.5,) * channels if mean is None else tuple(float(m) for m in mean)
        std = (0.25,) * channels if std is None else tuple(float(s) for s in std)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"mean, std: expected {channels} values each (std > 0), got {mean} and {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1))
        self.conv1, self.bn1, self.relu, self.maxpool = network.conv1, network.bn1, network.relu, network.maxpool
        self.num_stages = network.num_stages
        for i, stage in enumerate(network.stages()):
            self.add_module(f"layer{i + 1}", stage)
        self.out_channels: list[int] = list(network.stage_channels)
        self.strides: list[int] = list(network.stage_strides)
        self.in_channels = channels
        self.block = network.block

    def features(self, x: Tensor) -> list[Tensor]:
        """[(N, out_channels[i], H / strides[i], W / strides[i]) for each stage]."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            maps.append(x)
        return maps

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[-1]


def resnet_backbone(
    num_layers: int,
    image_shape: str | Sequence[int] = (3, 32, 32),
    *,
    style: str = "auto",
    replace_stride_with_dilation: Sequence[bool] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ResNetBackbone:
    """A randomly initialised backbone of SageMaker's `num_layers` for images of `image_shape`."""
    network = resnet(num_layers, 2, image_shape, style=style, replace_stride_with_dilation=replace_stride_with_dilation)
    return ResNetBackbone(network, mean, std)


class ImageClassifier(nn.Module):
    """A backbone, global average pooling and a new linear layer: what SageMaker trains when
    `use_pretrained_model=1` (the pretrained network with its last layer replaced for `num_classes`).

    (N, C, H, W) images in [0, 1] -> (N, num_classes) logits.
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int):
        super().__init__()
        if not isinstance(backbone, ResNetBackbone):
            raise TypeError(f"backbone: expected a ResNetBackbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.fc = nn.Linear(backbone.out_channels[-1], _check_num_classes(num_classes))

    def embed(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, out_channels[-1]) pooled features, the input of `fc`."""
        return self.backbone(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def freeze(module: nn.Module, pattern: str = ".*") -> list[str]:
    """Stop training every parameter whose name matches the regex `pattern` (SageMaker's
    `freeze_layer_pattern`; `re.match`, i.e. anchored at the start); returns the frozen names.

    A batch-norm layer whose weight and bias both match is replaced by torchvision's
    `FrozenBatchNorm2d` (same statistics, now fixed buffers), so that `train()` no longer updates
    its running mean and variance: a frozen backbone stays exactly the backbone it was. Build the
    optimizer after freezing.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as err:
        raise ValueError(f"pattern: expected a regular expression, got {pattern!r} ({err})") from None
    frozen = [name for name, _ in module.named_parameters() if regex.match(name)]
    for name, parameter in module.named_parameters():
        if regex.match(name):
            parameter.requires_grad_(False)
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.BatchNorm2d) and child.affine and child.track_running_stats:
            if regex.match(f"{name}.weight") and regex.match(f"{name}.bias"):
                _replace_module(module, name, _frozen_batchnorm(child))
    return frozen


def _frozen_batchnorm(bn: nn.BatchNorm2d) -> nn.Module:
    from torchvision.ops import FrozenBatchNorm2d

    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    for key in ("weight", "bias", "running_mean", "running_var"):
        getattr(frozen, key).copy_(getattr(bn, key).detach())
    return frozen.to(bn.weight.device)


def _replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child_name, new)


def torchvision_backbone(
    num_layers: int,
    weights: str = "IMAGENET1K_V1",
    *,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    progress: bool = True,
) -> ResNetBackbone:
    """Our backbone carrying torchvision's pretrained ImageNet weights for ResNet-18/34/50/101/152.

    `weights` names a member of torchvision's weights enum ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT").
    The file is downloaded once into torch's hub cache (`torch.hub.get_dir()`); without internet and
    without that file this raises ConnectionError saying what to download and where to put it (notebook
    04 then falls back to `pretrained_digit_backbone`). The backbone standardises with ImageNet's mean
    and std, so it too takes images in [0, 1].
    """
    from urllib.error import URLError

    from torchvision.models import get_model_weights

    if num_layers not in (18, 34, 50, 101, 152):
        raise ValueError(f"num_layers: torchvision has ImageNet weights for ResNet-18, 34, 50, 101 and 152, got {num_layers!r}")
    enum = get_model_weights(f"resnet{num_layers}")
    if not isinstance(weights, str) or weights not in enum.__members__:
        raise ValueError(f"weights: expected one of {list(enum.__members__)} for resnet{num_layers}, got {weights!r}")
    chosen = enum[weights]
    try:
        state = torch.hub.load_state_dict_from_url(chosen.url, progress=progress, check_hash=True)
    except (URLError, ConnectionError, TimeoutError, OSError) as err:
        target = Path(torch.hub.get_dir()) / "checkpoints" / chosen.url.rsplit("/", 1)[-1]
        raise ConnectionError(
            f"weights: could not download torchvision's {chosen} ({err.__class__.__name__}: {err}). "
            f"Offline? Download {chosen.url} on a connected machine and put it at {target}, "
            "or use the printed-digit backbone: helpers.resnet.pretrained_digit_backbone(...)"
        ) from err
    network = resnet(num_layers, len(chosen.meta["categories"]), (3, 224, 224), style="imagenet", replace_stride_with_dilation=replace_stride_with_dilation)
    network.load_state_dict(state)
    preset = chosen.transforms()
    return ResNetBackbone(network, preset.mean, preset.std)


# --- augmentation: SageMaker's augmentation_type, per image, for a whole batch at once --------------
# torchvision.transforms.v2 draws one set of random parameters per call, so random crops that differ
# per image cost one call per image (0.2 ms for a crop, 1.7 ms with colour jitter on one CPU core:
# more than a training step of a small ResNet on that image). These batched versions draw
# parameters per image and run as a few tensor operations on whatever device holds the batch (the
# GPU-resident pipeline of notebook 04); the tests check them against v2's functionals and colorsys.

AUGMENTATION_TYPES = ("none", "crop", "crop_color", "crop_color_transform")


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a float tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images: expected a float tensor (N, C, H, W) in [0, 1], got {images.dtype} of shape {tuple(images.shape)}")


def shift_images(images: Tensor, offsets: Tensor, padding: int, mode: str = "constant") -> Tensor:
    """Pad by `padding` pixels, then cut each image's window back out at its own offset.

    images: (N, C, H, W) float; offsets: (N, 2) integer (dx, dy) in [0, 2 * padding] (padding,
    padding is the unshifted image); mode: "constant" (zeros) or "reflect". Equals
    `v2.RandomCrop(size=(H, W), padding=padding, padding_mode=mode)` with those crop corners.
    """
    _check_images(images)
    if padding == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode=mode)
    offsets = offsets.to(images.device).long()
    rows = offsets[:, 1, None] + torch.arange(h, device=images.device)  # (N, H)
    cols = offsets[:, 0, None] + torch.arange(w, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def affine_images(images: Tensor, matrices: Tensor) -> Tensor:
    """Warp each image by its own 2x2 linear map about the image centre (bilinear, zeros outside).

    images: (N, C, H, W) float; matrices: (N, 2, 2) acting on pixel offsets (x right, y down) from
    the centre: output pixel p shows input pixel centre + A^-1 (p - centre).
    """
    _check_images(images)
    n, _, h, w = images.shape
    inverse = torch.linalg.inv(matrices.to(images.device, torch.float32))
    # affine_grid works in coordinates normalised to [-1, 1] per axis: rescale the pixel map into them
    to_pixels = torch.diag(torch.tensor([w / 2.0, h / 2.0], device=images.device))
    to_unit = torch.diag(torch.tensor([2.0 / w, 2.0 / h], device=images.device))
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, :, :2] = to_unit @ inverse @ to_pixels
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def rgb_to_hls(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) hue, lightness, saturation in [0, 1] (colorsys's HLS)."""
    r, g, b = images.unbind(1)
    high, _ = images.max(1)
    low, _ = images.min(1)
    lightness = (high + low) / 2
    chroma = high - low
    flat = chroma <= 1e-12
    safe = torch.where(flat, torch.ones_like(chroma), chroma)
    denom = torch.where(lightness <= 0.5, high + low, 2.0 - high - low)
    saturation = torch.where(flat, torch.zeros_like(chroma), chroma / torch.where(flat, torch.ones_like(denom), denom))
    rc, gc, bc = (high - r) / safe, (high - g) / safe, (high - b) / safe
    hue = torch.where(r == high, bc - gc, torch.where(g == high, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(flat, torch.zeros_like(hue), (hue / 6.0) % 1.0)
    return torch.stack([hue, lightness, saturation], 1)


def hls_to_rgb(hls: Tensor) -> Tensor:
    """Inverse of `rgb_to_hls`: (N, 3, H, W) hue, lightness, saturation -> RGB in [0, 1]."""
    hue, lightness, saturation = hls.unbind(1)
    # the closed form of colorsys.hls_to_rgb: each channel is a clipped triangle wave of the hue
    chroma = (1 - (2 * lightness - 1).abs()) * saturation
    channels = []
    for shift in (0.0, 8.0, 4.0):  # red, green, blue
        k = (shift + hue * 12) % 12
        channels.append(lightness - chroma / 2 * torch.clamp(torch.minimum(k - 3, 9 - k), -1, 1))
    return torch.stack(channels, 1)


def adjust_hls(images: Tensor, hue: Tensor, lightness: Tensor, saturation: Tensor) -> Tensor:
    """Add per-image offsets to hue (fraction of the colour circle), lightness and saturation.

    images: (N, 3, H, W) RGB in [0, 1]; offsets (N,) each. Lightness and saturation are clipped to [0, 1].
    """
    _check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images: colour augmentation needs RGB images (N, 3, H, W), got {images.shape[1]} channels")
    hls = rgb_to_hls(images)
    offsets = torch.stack([hue, lightness, saturation], 1).to(images)[:, :, None, None]
    hls = hls + offsets
    hls = torch.stack([hls[:, 0] % 1.0, hls[:, 1].clamp(0, 1), hls[:, 2].clamp(0, 1)], 1)
    return hls_to_rgb(hls)


def augment(
    images: Tensor,
    augmentation_type: str = "crop",
    *,
    flip: bool = True,
    padding: int | None = None,
    padding_mode: str = "constant",
    grayscale: float = 0.0,
    invert: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SageMaker's `augmentation_type`, with random parameters drawn per image.

    images: (N, C, H, W) float in [0, 1], on any device -> the same shape, in [0, 1].
    - "crop": a random crop of the image padded by `padding` (default H // 8) pixels, and a random
      horizontal mirror when `flip` (leave it off for digits: a mirrored 3 is no digit);
    - "crop_color": also hue, saturation and lightness offsets drawn from +-36 degrees, +-50/255 and
      +-50/255, SageMaker's ranges;
    - "crop_color_transform": also a rotation of up to 10 degrees, shear up to 0.1 and aspect-ratio
      change up to 0.25;
    - "none": nothing of the above.
    `grayscale` and `invert` are probabilities of turning an image grey / negative (the printed-digit
    pretraining uses them so the backbone stops relying on colour). `generator` (CPU) makes it repeatable.
    """
    _check_images(images)
    if augmentation_type not in AUGMENTATION_TYPES:
        raise ValueError(f"augmentation_type: expected one of {AUGMENTATION_TYPES}, got {augmentation_type!r}")
    n, c, h, w = images.shape
    device = images.device

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return (low + (high - low) * torch.rand(*shape, generator=generator)).to(device)

    out = images
    if augmentation_type != "none":
        pad = max(1, h // 8) if padding is None else int(padding)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
        out = shift_images(out, offsets, pad, padding_mode)
        if flip:
            mirror = uniform(n) < 0.5
            out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    if augmentation_type in ("crop_color", "crop_color_transform") and c == 3:
        out = adjust_hls(out, uniform(n, low=-0.1, high=0.1), uniform(n, low=-50 / 255, high=50 / 255), uniform(n, low=-50 / 255, high=50 / 255))
    elif augmentation_type in ("crop_color", "crop_color_transform"):
        out = (out + uniform(n, low=-50 / 255, high=50 / 255)[:, None, None, None]).clamp(0, 1)
    if augmentation_type == "crop_color_transform":
        angle = uniform(n, low=-math.radians(10), high=math.radians(10))
        shear = uniform(n, low=-0.1, high=0.1)
        aspect = uniform(n, low=1 - 0.25, high=1 + 0.25).sqrt()
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
        shearing = torch.eye(2, device=device).repeat(n, 1, 1)
        shearing[:, 0, 1] = shear
        stretching = torch.diag_embed(torch.stack([aspect, 1 / aspect], -1))
        out = affine_images(out, rotation @ shearing @ stretching)
    if grayscale > 0 and c == 3:
        grey = (out * torch.tensor([0.299, 0.587, 0.114], device=device)[:, None, None]).sum(1, keepdim=True).expand_as(out)
        out = torch.where((uniform(n) < grayscale)[:, None, None, None], grey, out)
    if invert > 0:
        out = torch.where((uniform(n) < invert)[:, None, None, None], 1 - out, out)
    return out.clamp(0, 1)


# --- SageMaker's training knobs ----------------------------------------------------------------------

OPTIMIZERS = ("sgd", "nag", "adam", "rmsprop")


def make_optimizer(
    parameters: Any,
    optimizer: str = "sgd",
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
) -> torch.optim.Optimizer:
    """SageMaker's `optimizer` choice: "sgd" (with momentum), "nag" (Nesterov momentum), "adam",
    "rmsprop"; `weight_decay` is L2 regularisation as SageMaker's `weight_decay` (coupled, as in MXNet).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("parameters: nothing to train (every parameter is frozen)")
    if optimizer in ("sgd", "nag"):
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, nesterov=optimizer == "nag" and momentum > 0, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.RMSprop(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)


def parse_lr_steps(lr_scheduler_step: str | Sequence[int] | None) -> list[int]:
    """SageMaker's `lr_scheduler_step` ("10,20": the epochs after which the rate drops) as a sorted list."""
    if lr_scheduler_step is None or lr_scheduler_step == "":
        return []
    if isinstance(lr_scheduler_step, str):
        try:
            steps = [int(s) for s in lr_scheduler_step.split(",")]
        except ValueError:
            raise ValueError(f"lr_scheduler_step: expected comma-separated epochs such as '10,20', got {lr_scheduler_step!r}") from None
    else:
        steps = list(lr_scheduler_step)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps) or steps != sorted(set(steps)):
        raise ValueError(f"lr_scheduler_step: expected increasing positive epochs, got {lr_scheduler_step!r}")
    return steps


def step_schedule(optimizer: torch.optim.Optimizer, lr_scheduler_step: str | Sequence[int] | None, lr_scheduler_factor: float = 0.1):
    """The learning rate times `lr_scheduler_factor` after each epoch in `lr_scheduler_step` (step it per epoch)."""
    if not 0 < lr_scheduler_factor <= 1:
        raise ValueError(f"lr_scheduler_factor: expected a number in (0, 1], got {lr_scheduler_factor!r}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, parse_lr_steps(lr_scheduler_step), gamma=lr_scheduler_factor)


def top_k_accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> float:
    """The fraction of rows whose label is among the k highest scores (SageMaker's `top_k` metric).

    logits: (N, num_classes); labels: (N,) int. Ties are broken by `torch.topk` (lowest index first).
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits, labels: expected (N, num_classes) and (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("logits: expected at least one row")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k: expected an integer in [1, {logits.shape[1]}], got {k!r}")
    top = logits.topk(k, dim=1).indices  # (N, k)
    return float((top == labels.to(top.device)[:, None]).any(1).float().mean())


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 512, device: torch.device | str | None = None) -> Tensor:
    """Logits (N, num_classes) of `model` (put in eval mode) for images (N, C, H, W), in batches, on the CPU."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = [model(images[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


# --- the printed-digit backbone: our stand-in for ImageNet pretraining --------------------------------

RECIPE_VERSION = 1
# The large "pretraining" set: printed digits rendered from matplotlib's fonts. Clearer than the
# generator's defaults (strong contrast, fewer photo backgrounds, half of them blurred down to 10 px
# like the 8x8 handwritten digits) so that a minute of training learns digit shapes.
PRINTED_VARIATION: dict[str, Any] = {
    "digit_size": (0.6, 0.9),
    "rotation": 10.0,
    "contrast": 0.5,
    "photo_fraction": 0.3,
    "lowres_fraction": 0.5,
    "lowres_size": 10,
}
# Sizes per profile (the recipe is the same): Adam with a one-cycle schedule, crop augmentation
# without mirroring, and half of the images turned grey, 30% inverted, so colour cannot be the cue.
DIGIT_PRETRAINING: dict[str, dict[str, Any]] = {
    "cpu": {"num_images": 12_000, "validation_images": 1_000, "image_size": 16, "epochs": 3, "mini_batch_size": 64, "learning_rate": 3e-3},
    "gpu": {"num_images": 100_000, "validation_images": 5_000, "image_size": 32, "epochs": 10, "mini_batch_size": 256, "learning_rate": 4e-3},
}


def _default_cache_dir() -> Path:
    from helpers.data.images import data_dir

    return data_dir() / "cache"


def digit_backbone_path(num_layers: int, profile: str = "cpu", seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Where the printed-digit backbone for this depth, profile and seed is cached
    (`<cache_dir>/digit_backbone/resnet20-cpu-seed0-v1.pt`; cache_dir defaults to data/cache)."""
    root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    return root / "digit_backbone" / f"resnet{num_layers}-{profile}-seed{seed}-v{RECIPE_VERSION}.pt"


def pretrain_digit_backbone(
    num_layers: int = 20,
    *,
    profile: str = "cpu",
    seed: int = 0,
    device: str | torch.device = "auto",
    cache_data: bool | str | Path = True,
    progress: bool = True,
) -> tuple[ImageClassifier, Any, dict[str, Any]]:
    """Train a ResNet of `num_layers` to read printed digits (the recipe notebook 04 teaches).

    Returns (classifier: the backbone plus its 10-digit head, history: helpers.train.History with
    "printed_accuracy" per epoch, meta: the recipe, sizes and final validation accuracy). The same
    seed on the CPU gives the same weights. `cache_data` caches the generated printed digits (False, True
    for data/cache, or a folder).
    """
    from helpers.data.images import printed_digits
    from helpers.device import get_device, resolve_profile, seed_everything
    from helpers.train import fit

    dev = get_device(device)
    profile = resolve_profile(profile, dev)
    sizes = dict(DIGIT_PRETRAINING[profile])
    arch = architecture(num_layers, (3, 32, 32))  # validates num_layers
    image_size = sizes["image_size"] if arch["style"] == "cifar" else max(32, sizes["image_size"])
    total = sizes["num_images"] + sizes["validation_images"]
    images, labels = printed_digits(total, image_size, seed, **PRINTED_VARIATION, cache=cache_data)
    images, labels = images.to(dev), labels.to(dev)  # uint8 (N, 3, S, S), int64 (N,)
    train_x, train_y = images[: sizes["num_images"]], labels[: sizes["num_images"]]
    val_x, val_y = images[sizes["num_images"] :], labels[sizes["num_images"] :]
    mean = (train_x[:2000].float() / 255).mean((0, 2, 3)).tolist()
    std = (train_x[:2000].float() / 255).std((0, 2, 3)).tolist()

    generator = seed_everything(seed)
    model = ImageClassifier(resnet_backbone(num_layers, (3, image_size, image_size), style=arch["style"], mean=mean, std=std), 10).to(dev)
    batch = sizes["mini_batch_size"]
    steps_per_epoch = math.ceil(sizes["num_images"] / batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=sizes["learning_rate"], weight_decay=5e-5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, sizes["learning_rate"], total_steps=sizes["epochs"] * steps_per_epoch, pct_start=0.2)

    def batches(epoch: int):
        order = torch.randperm(sizes["num_images"], generator=generator).to(dev)
        for start in range(0, sizes["num_images"], batch):
            rows = order[start : start + batch]
            x = augment(train_x[rows].float() / 255, "crop", flip=False, grayscale=0.5, invert=0.3, generator=generator)
            yield x, train_y[rows]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"printed_accuracy": top_k_accuracy(predict(model, val_x.float() / 255), val_y.cpu(), 1)}

    history = fit(model, batches, loss_fn, optimizer, sizes["epochs"], device=dev, scheduler=schedule, scheduler_step="batch",
                  evaluate=evaluate, progress=progress, desc=f"pretrain ResNet-{num_layers} on printed digits")
    meta = {
        "num_layers": num_layers,
        "style": arch["style"],
        "image_shape": (3, image_size, image_size),
        "profile": profile,
        "seed": seed,
        "recipe_version": RECIPE_VERSION,
        "printed_variation": {k: list(v) if isinstance(v, tuple) else v for k, v in PRINTED_VARIATION.items()},
        **sizes,
        "printed_accuracy": history.metrics[-1]["printed_accuracy"],
        "train_loss": history.train_loss,
        "printed_accuracy_per_epoch": history.metric("printed_accuracy"),
        "seconds": sum(history.epoch_seconds),
        "device": str(dev),
    }
    return model, history, meta


def save_digit_backbone(classifier: ImageClassifier, meta: dict[str, Any], path: str | Path) -> Path:
    """Write the pretrained backbone, its digit head and `meta` to `path` (atomically)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"meta": meta, "backbone": {k: v.cpu() for k, v in classifier.backbone.state_dict().items()},
             "head": {k: v.cpu() for k, v in classifier.fc.state_dict().items()}}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def pretrained_digit_classifier(
    num_layers: int = 20,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    train_if_missing: bool = True,
    profile: str = "cpu",
    replace_stride_with_dilation: Sequence[bool] | None = None,
    progress: bool = True,
) -> ImageClassifier:
    """The printed-digit ResNet with its 10-digit head (see `pretrained_digit_backbone`)."""
    from helpers.device import get_device, resolve_profile

    dev = get_device(device)
    profile = resolve_profile(profile, dev)
    path = digit_backbone_path(num_layers, profile, seed, cache_dir)
    state = None
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file is retrained, never trusted
            state = None
    if state is None:
        if not train_if_missing:
            raise FileNotFoundError(
                f"no printed-digit backbone at {path}: run notebooks/04_image_classification.ipynb with num_layers={num_layers}, "
                f"profile={profile!r}, seed={seed}, or call pretrained_digit_backbone(..., train_if_missing=True)"
            )
        classifier, _, meta = pretrain_digit_backbone(num_layers, profile=profile, seed=seed, device=dev, progress=progress,
                                                      cache_data=True if cache_dir is None else cache_dir)
        save_digit_backbone(classifier, meta, path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    meta = state["meta"]
    network = resnet(num_layers, 2, tuple(meta["image_shape"]), style=meta["style"], replace_stride_with_dilation=replace_stride_with_dilation)
    channels = meta["image_shape"][0]
    backbone = ResNetBackbone(network, [0.0] * channels, [1.0] * channels)
    backbone.load_state_dict(state["backbone"])
    classifier = ImageClassifier(backbone, 10)
    classifier.fc.load_state_dict(state["head"])
    backbone.pretraining = dict(meta, path=str(path))
    return classifier.to(dev)


def pretrained_digit_backbone(
    num_layers: int = 20,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    train_if_missing: bool = True,
    profile: str = "cpu",
    replace_stride_with_dilation: Sequence[bool] | None = None,
    progress: bool = True,
) -> ResNetBackbone:
    """The ResNet backbone notebook 04 pretrains on printed digits, ready for a new head.

    Loaded from `digit_backbone_path(num_layers, profile, seed, cache_dir)` (data/cache/digit_backbone/,
    written by notebook 04); when that file is missing it is trained here first (a progress bar; one to three
    minutes on 2 CPU cores for ResNet-20 on the "cpu" profile) and cached, unless
    `train_if_missing=False`, which raises FileNotFoundError instead.

    The backbone takes RGB images in [0, 1] (N, 3, H, W) of any size; it saw digits about 10-14 px
    tall on 16x16 images ("cpu" profile; twice that on "gpu"). `features(x)` gives the stage maps
    (channels `out_channels`, strides `strides`), `forward(x)` the last. Its `pretraining` attribute
    holds the recipe and the printed-digit validation accuracy. `replace_stride_with_dilation`
    dilates later stages (same weights; notebook 06).
    """
    return pretrained_digit_classifier(
        num_layers, device=device, seed=seed, cache_dir=cache_dir, train_if_missing=train_if_missing, profile=profile,
        replace_stride_with_dilation=replace_stride_with_dilation, progress=progress,
    ).backbone
