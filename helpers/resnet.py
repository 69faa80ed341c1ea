"""The ResNet family behind SageMaker's Image Classification algorithm, built from its blocks.

Taught in notebooks/04_image_classification.ipynb. Two reuse points for the other vision notebooks
(05 object detection, 06 semantic segmentation):

- `resnet_backbone(num_layers, ...)`: a ResNet without its classifier. Its `features(x)` returns every
  stage's map (for feature pyramids, FCN skips, SSD heads), `forward(x)` the last one; `out_channels`
  and `strides` describe them. It takes images in [0, 1] and standardises them itself (`mean`, `std`
  buffers), so callers never need to know how it was trained.
- `pretrained_digit_backbone(num_layers, ...)`: the same backbone with the weights notebook 04 learns on
  printed digits, loaded from `data/cache/` (git-ignored), or trained on the spot when the cache is
  missing (with a progress bar; about a minute on 2 CPU cores for the default `num_layers=20` on the
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
        return self.relu(out + identity)


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
        return self.relu(out + identity)


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
