"""Semantic segmentation: our networks against torchvision's, and our confusion-matrix metric against
torchmetrics'.

Measured in one run, on the same device, input size and batch:
- training throughput (images/s: forward, cross-entropy with ignore_index=255, backward, SGD step) and
  inference throughput (images/s, no grad, eval mode) of
    torchvision fcn_resnet50(weights=None, weights_backbone=None)    dilated ResNet-50, output stride 8
    ours: FCN on our dilated ResNet-50, 3x3-512 head                  the same network class
    ours: FCN-8s on our plain ResNet-50 (skips from strides 8/16)     what notebook 06 teaches
    torchvision deeplabv3_resnet50 vs our ASPP head on the dilated ResNet-50
- the metric: helpers.segmentation.confusion_matrix (+ mean_iou) vs torchmetrics'
  MulticlassConfusionMatrix and MulticlassJaccardIndex on the same masks: equal results, median time.

Medians over `--repeats` timed runs after warm-up. On CUDA the networks run in bf16 autocast with
channels_last (both sides alike); on the CPU in float32. The last line is the headline ratio: our
FCN's training throughput over torchvision's fcn_resnet50 (same architecture class and size).

    python benchmarks/semantic_segmentation.py                  # CPU-sized defaults (about a minute on 1 thread)
    python benchmarks/semantic_segmentation.py --size 512 --batch 16 --repeats 20   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import segmentation as seg  # noqa: E402
from helpers.device import get_device  # noqa: E402
from helpers.resnet import resnet_backbone  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(step, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class TorchvisionLogits(torch.nn.Module):
    """torchvision's segmentation models return {"out": logits}; the benchmark wants the logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


def networks(num_classes: int, size: int) -> dict[str, torch.nn.Module]:
    from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50

    shape = (3, size, size)
    dilated = dict(replace_stride_with_dilation=(False, True, True))
    return {
        "torchvision fcn_resnet50": TorchvisionLogits(fcn_resnet50(weights=None, weights_backbone=None, num_classes=num_classes)),
        "ours fcn, dilated ResNet-50": seg.segmentation_net("fcn", resnet_backbone(50, shape, **dilated), num_classes, hidden=512),
        "ours fcn-8s, ResNet-50": seg.segmentation_net("fcn", resnet_backbone(50, shape), num_classes, variant="8s"),
        "torchvision deeplabv3_resnet50": TorchvisionLogits(deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes)),
        "ours deeplab, dilated ResNet-50": seg.segmentation_net("deeplab", resnet_backbone(50, shape, **dilated), num_classes),
    }


def time_network(model, images, masks, device, repeats, warmup) -> tuple[float, float]:
    """(training images/s, inference images/s)."""
    model = model.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        with autocast:
            loss = F.cross_entropy(model(images), masks, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.no_grad(), autocast:
            model(images).argmax(1)

    model.train()
    train = median_seconds(train_step, repeats, warmup, device)
    model.eval()
    infer = median_seconds(infer_step, repeats, warmup, device)
    return len(images) / train, len(images) / infer


def time_metrics(device, num_classes: int, count: int, size: int, repeats: int) -> dict[str, float]:
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (count, size, size), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.05] = 255
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target % num_classes, torch.randint(0, num_classes, target.shape, generator=g))
    pred, target = pred.to(device), target.to(device)
    cm_oracle = MulticlassConfusionMatrix(num_classes, ignore_index=255).to(device)
    iou_oracle = MulticlassJaccardIndex(num_classes, ignore_index=255, average="macro").to(device)

    ours = seg.confusion_matrix(pred, target, num_classes)
    theirs = cm_oracle(pred, target)
    if not torch.equal(ours.cpu(), theirs.long().cpu()):
        raise AssertionError("confusion_matrix differs from torchmetrics' MulticlassConfusionMatrix")
    miou_gap = abs(seg.mean_iou(ours) - float(iou_oracle(pred, target)))
    if miou_gap > 1e-5:
        raise AssertionError(f"mean_iou differs from torchmetrics' MulticlassJaccardIndex by {miou_gap}")

    def ours_step():
        seg.mean_iou(seg.confusion_matrix(pred, target, num_classes))

    def theirs_step():
        iou_oracle.reset()
        iou_oracle(pred, target)

    def theirs_cm_step():
        cm_oracle.reset()
        cm_oracle(pred, target)

    return {
        "ours": median_seconds(ours_step, repeats, 2, device),
        "torchmetrics jaccard": median_seconds(theirs_step, repeats, 2, device),
        "torchmetrics confusion": median_seconds(theirs_cm_step, repeats, 2, device),
        "pixels": float(pred.numel()),
        "miou_gap": miou_gap,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--size", type=int, default=None, help="input side (default 64 on CPU, 512 on GPU)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 4 on CPU, 16 on GPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes (21: VOC)")
    parser.add_argument("--skip-networks", action="store_true", help="time only the metric")
    args = parser.parse_args(argv)

    device = get_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (512 if gpu else 64)
    batch = args.batch or (16 if gpu else 4)
    repeats = args.repeats or (20 if gpu else 3)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; input {batch} x 3 x {size} x {size}; {args.num_classes} classes; medians of {repeats} repeats")

    rows: list[tuple[str, float, float]] = []
    if not args.skip_networks:
        images = torch.rand(batch, 3, size, size, device=device)
        masks = torch.randint(0, args.num_classes, (batch, size, size), device=device)
        masks[:, :4] = 255
        for label, model in networks(args.num_classes, size).items():
            train, infer = time_network(model, images, masks, device, repeats, warmup=1 if not gpu else 5)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            rows.append((label, train, infer))
            print(f"  {label:34s} {params:6.1f} M params  train {train:8.2f} img/s  infer {infer:8.2f} img/s", flush=True)
            del model

    metric = time_metrics(device, args.num_classes, count=16 if not gpu else 64, size=size, repeats=max(repeats, 5))
    print()
    print("| what | ours | reference | ours / reference |")
    print("|---|---|---|---|")
    reference = {label: (train, infer) for label, train, infer in rows}
    pairs = [
        ("fcn, dilated ResNet-50", "ours fcn, dilated ResNet-50", "torchvision fcn_resnet50"),
        ("fcn-8s ResNet-50 vs fcn_resnet50", "ours fcn-8s, ResNet-50", "torchvision fcn_resnet50"),
        ("deeplab, dilated ResNet-50", "ours deeplab, dilated ResNet-50", "torchvision deeplabv3_resnet50"),
    ]
    for what, ours, theirs in pairs if rows else []:
        for phase, k in (("train", 0), ("inference", 1)):
            a, b = reference[ours][k], reference[theirs][k]
            print(f"| {what}: {phase} img/s | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    mpix = metric["pixels"] / 1e6
    print(f"| mIoU of {mpix:.1f} Mpixel: ms (vs torchmetrics MulticlassJaccardIndex, equal to {metric['miou_gap']:.1e}) "
          f"| {1e3 * metric['ours']:.1f} | {1e3 * metric['torchmetrics jaccard']:.1f} | {metric['torchmetrics jaccard'] / metric['ours']:.2f}x faster |")
    print(f"| confusion matrix of {mpix:.1f} Mpixel: ms (vs torchmetrics MulticlassConfusionMatrix, identical) "
          f"| {1e3 * metric['ours']:.1f} | {1e3 * metric['torchmetrics confusion']:.1f} | {metric['torchmetrics confusion'] / metric['ours']:.2f}x faster |")
    if rows:
        a, b = reference["ours fcn, dilated ResNet-50"][0], reference["torchvision fcn_resnet50"][0]
        print(f"headline: our FCN (dilated ResNet-50) trains at {a / b:.2f}x torchvision fcn_resnet50's throughput on {name}")
    else:
        print(f"headline: our confusion-matrix mIoU is {metric['torchmetrics jaccard'] / metric['ours']:.2f}x as fast as torchmetrics' on {name}")


if __name__ == "__main__":
    main()
