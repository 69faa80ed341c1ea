"""SSD training throughput: our SSD (helpers.ssd + helpers.boxes) against torchvision's SSD
implementation wrapped around the very same base network and extra layers, with anchors of the same
sizes and aspect ratios (torchvision leaves them unclipped at the border; ours clips them), on the same
scenes, batch size and device. Reports images per second (medians over timing windows) and the
ratio ours / torchvision (> 1: ours trains faster). torchvision's SSD matches anchors image by image
in Python; ours matches the whole batch at once.

With `--time-to-map`, also trains our SSD on fresh scenes every epoch (the notebook's GPU profile
settings unless overridden) and reports the seconds until validation mAP@0.5 reaches the target.

    python benchmarks/object_detection.py                        # CPU profile sizes, CPU (and GPU if present)
    python benchmarks/object_detection.py --profile gpu --device cuda --time-to-map 0.9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import boxes as B  # noqa: E402
from helpers import ssd as S  # noqa: E402
from helpers.data.scenes import make_scenes  # noqa: E402

# The notebook's sizes per profile (image side, base widths, extra channels, batch).
PROFILES = {
    "cpu": {"image_size": 64, "widths": (32, 64, 128), "extras": (128, 128), "batch": 16},
    "gpu": {"image_size": 128, "widths": (64, 128, 256, 256), "extras": (256, 256), "batch": 128},
}


class _Features(torch.nn.Module):
    """Our SSD's base and extras as a torchvision-style backbone: an OrderedDict of maps."""

    def __init__(self, model: S.SSD):
        super().__init__()
        self.model = model

    def forward(self, x):
        from collections import OrderedDict

        return OrderedDict((str(i), f) for i, f in enumerate(self.model._feature_maps(x)))


def torchvision_ssd(model: S.SSD):
    """torchvision's SSD around a copy of `model`'s base and extras, with new heads and anchors of the same sizes and ratios."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    twin = copy.deepcopy(model)
    if any(r != (1.0, 2.0, 0.5) for r in twin.aspect_ratios):
        raise ValueError("model: the torchvision twin supports aspect ratios (1, 2, 1/2) only")
    scales = [s[0] for s in twin.sizes] + [twin.sizes[-1][1] ** 2 / twin.sizes[-1][0]]
    generator = DefaultBoxGenerator([[2]] * len(twin.sizes), scales=scales)
    with torch.no_grad():
        channels = [m.shape[1] for m in twin.eval()._feature_maps(torch.zeros(1, 3, *twin.image_size))]
    twin.train()
    head = SSDHead(channels, [4] * len(channels), twin.num_classes + 1)
    # Our backbone standardises its input itself: torchvision's transform must leave pixels alone.
    return SSD(_Features(twin), generator, twin.image_size, twin.num_classes + 1, image_mean=[0.0] * 3, image_std=[1.0] * 3, head=head)


def throughput(step, batches, windows: int, device: torch.device) -> float:
    """Median images/s over `windows` passes through `batches` (after one warm-up pass)."""
    rates = []
    for w in range(windows + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        count = 0
        for images, boxes, labels in batches:
            step(images, boxes, labels)
            count += images.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        if w:
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(device: torch.device, profile: str, steps: int, windows: int) -> tuple[float, float, int]:
    cfg = PROFILES[profile]
    size, batch = cfg["image_size"], cfg["batch"]
    scenes = make_scenes(batch * steps, size, seed=0)
    batches = []
    for start in range(0, batch * steps, batch):
        part = scenes[start : start + batch]
        batches.append(
            (part.images.to(device).float() / 255, [b.to(device) for b in part.boxes], [lab.to(device) for lab in part.labels])
        )
    torch.manual_seed(0)
    ours = S.SSD(S.small_resnet_backbone(cfg["widths"]), 10, size, source_stages=tuple(range(len(cfg["widths"]))), extra_channels=cfg["extras"]).to(device)
    theirs = torchvision_ssd(ours).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3)

    def step_ours(images, boxes, labels):
        opt_ours.zero_grad(set_to_none=True)
        with autocast:
            cls, loc = S.ssd_loss(ours, images, boxes, labels)
        (cls + loc).backward()
        opt_ours.step()

    def step_theirs(images, boxes, labels):
        opt_theirs.zero_grad(set_to_none=True)
        targets = [{"boxes": b, "labels": lab + 1} for b, lab in zip(boxes, labels)]
        with autocast:
            losses = theirs(list(images), targets)
        sum(losses.values()).backward()
        opt_theirs.step()

    ours.train()
    theirs.train()
    return throughput(step_ours, batches, windows, device), throughput(step_theirs, batches, windows, device), batch


def time_to_map(device: torch.device, profile: str, target: float, max_epochs: int, scenes_per_epoch: int) -> tuple[float | None, float, int]:
    """Seconds of training (fresh scenes each epoch, evaluation excluded) until validation mAP >= target."""
    cfg = PROFILES[profile]
    size, batch = cfg["image_size"], cfg["batch"]
    val = make_scenes(1000, size, seed=10_000, device=device)
    torch.manual_seed(0)
    model = S.SSD(S.small_resnet_backbone(cfg["widths"]), 10, size, source_stages=tuple(range(len(cfg["widths"]))), extra_channels=cfg["extras"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    elapsed, best = 0.0, 0.0
    for epoch in range(max_epochs):
        scenes = make_scenes(scenes_per_epoch, size, seed=0, stream=epoch, device=device)
        order = torch.randperm(scenes_per_epoch, generator=torch.Generator().manual_seed(epoch))
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, scenes_per_epoch - batch + 1, batch):
            part = scenes[order[i : i + batch].tolist()]
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                cls, loc = S.ssd_loss(model, part.images.float() / 255, part.boxes, part.labels)
            (cls + loc).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        found = S.predict(model, val.images)
        best = max(best, B.mean_average_precision(
            [d["boxes"] * size for d in found], [d["scores"] for d in found], [d["labels"] for d in found],
            val.boxes, val.labels, num_classes=10).map)
        print(f"  epoch {epoch + 1}: {elapsed:.1f} s of training, validation mAP {best:.3f}", flush=True)
        if best >= target:
            return elapsed, best, epoch + 1
    return None, best, max_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus CUDA when available")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None, help="model and image sizes (default: cpu on CPU, gpu on CUDA)")
    parser.add_argument("--steps", type=int, default=8, help="batches per timing window")
    parser.add_argument("--windows", type=int, default=3, help="timing windows (the median is reported)")
    parser.add_argument("--time-to-map", type=float, default=None, help="also train until this validation mAP@0.5")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--scenes-per-epoch", type=int, default=20000)
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))

    rows = []
    for device in devices:
        profile = args.profile or ("gpu" if device.type == "cuda" else "cpu")
        ours, theirs, batch = measure(device, profile, args.steps, args.windows)
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        rows.append((name, profile, batch, ours, theirs))
    ttm = None
    if args.time_to_map is not None:
        device = devices[-1]
        ttm = time_to_map(device, args.profile or ("gpu" if device.type == "cuda" else "cpu"), args.time_to_map, args.max_epochs, args.scenes_per_epoch)

    print(f"torch {torch.__version__}; training images/s, medians of {args.windows} windows of {args.steps} batches")
    header = f"{'device':28s} {'profile':7s} {'batch':>5s} {'ours img/s':>11s} {'torchvision img/s':>18s} {'ours/tv':>8s}"
    print(header)
    print("-" * len(header))
    for name, profile, batch, ours, theirs in rows:
        print(f"{name:28s} {profile:7s} {batch:5d} {ours:11.1f} {theirs:18.1f} {ours / theirs:8.2f}")
    if ttm is not None:
        seconds, best, epochs = ttm
        reached = f"{seconds:.1f} s ({epochs} epochs)" if seconds is not None else f"not reached in {epochs} epochs (best {best:.3f})"
        print(f"time to validation mAP@0.5 >= {args.time_to_map}: {reached}")
    name, profile, batch, ours, theirs = rows[-1]
    print(f"headline: our SSD trains at {ours / theirs:.2f}x the images/s of torchvision's SSD on {name} ({profile} profile)")


if __name__ == "__main__":
    main()
