"""Box kernels against the libraries: helpers.boxes vs torchvision.ops (IoU, NMS, batched NMS) and vs
torchmetrics' MeanAveragePrecision (mAP at IoU 0.5), on the same inputs and device.

Each row checks that the answers agree (IoU: allclose; NMS: the same kept indices; mAP: within the
COCO-vs-VOC interpolation difference) and reports median times of repeated runs and the ratio
reference time / our time (> 1: ours is faster). torchmetrics computes on the CPU (pycocotools), so
the mAP row always compares against it there.

    python benchmarks/boxes.py                 # CPU, and the GPU too when CUDA is available
    python benchmarks/boxes.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision.ops as tv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import boxes as B  # noqa: E402


def clustered_boxes(n: int, generator: torch.Generator, canvas: float = 1000.0, clusters: int | None = None) -> torch.Tensor:
    """n xyxy boxes jittered around n/10 objects, as a detector's raw output looks: (n, 4)."""
    clusters = clusters or max(1, n // 10)
    centres = torch.rand(clusters, 2, generator=generator) * canvas
    sizes = 10 + torch.rand(clusters, 2, generator=generator) * 90
    owner = torch.randint(0, clusters, (n,), generator=generator)
    centre = centres[owner] + torch.randn(n, 2, generator=generator) * sizes[owner] * 0.15
    size = sizes[owner] * torch.exp(torch.randn(n, 2, generator=generator) * 0.15)
    return torch.cat((centre - size / 2, centre + size / 2), dim=1)


def timed(fn, repeats: int, device: torch.device) -> tuple[float, object]:
    """Median seconds of `repeats` calls (after one warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def detection_set(num_images: int, generator: torch.Generator, num_classes: int = 20):
    """Ground truth (about 8 objects an image) and detections (jittered copies, duplicates, clutter,
    up to 100 an image), as lists of per-image tensors."""
    preds, targets = [], []
    for _ in range(num_images):
        k = int(torch.randint(1, 16, (1,), generator=generator))
        xy = torch.rand(k, 2, generator=generator) * 400
        gt = torch.cat((xy, xy + 20 + torch.rand(k, 2, generator=generator) * 80), dim=1)
        labels = torch.randint(0, num_classes, (k,), generator=generator)
        src = torch.randint(0, k, (60,), generator=generator)
        det = gt[src] + torch.randn(60, 4, generator=generator) * 6
        det = torch.cat((det[:, :2].minimum(det[:, 2:] - 1), det[:, 2:]), dim=1)
        det_labels = labels[src]
        clutter_xy = torch.rand(40, 2, generator=generator) * 400
        det = torch.cat((det, torch.cat((clutter_xy, clutter_xy + 30), dim=1)))
        det_labels = torch.cat((det_labels, torch.randint(0, num_classes, (40,), generator=generator)))
        scores = torch.rand(100, generator=generator)
        preds.append({"boxes": det, "scores": scores, "labels": det_labels})
        targets.append({"boxes": gt, "labels": labels})
    return preds, targets


def run(device: torch.device, quick: bool, rows: list[tuple]) -> None:
    g = torch.Generator().manual_seed(0)
    repeats = 3 if quick else 7
    iou_sizes = [1000] if quick else [1000, 4000]
    nms_sizes = [1000, 5000] if quick else [1000, 5000, 20000]
    if device.type == "cuda":
        iou_sizes.append(10000)

    for n in iou_sizes:
        a, b = clustered_boxes(n, g).to(device), clustered_boxes(n, g).to(device)
        ours_t, ours = timed(lambda: B.box_iou(a, b), repeats, device)
        ref_t, ref = timed(lambda: tv.box_iou(a, b), repeats, device)
        rows.append(("box_iou", f"{n}x{n}", device.type, ours_t, ref_t, "torchvision", bool(torch.allclose(ours, ref, atol=1e-6))))

    for n in nms_sizes:
        boxes = clustered_boxes(n, g).to(device)
        scores = torch.randperm(n, generator=g).float().to(device) / n  # distinct: one right answer
        ours_t, ours = timed(lambda: B.nms(boxes, scores, 0.5), repeats, device)
        ref_t, ref = timed(lambda: tv.nms(boxes, scores, 0.5), repeats, device)
        rows.append(("nms", f"{n} boxes", device.type, ours_t, ref_t, "torchvision", bool(torch.equal(ours, ref))))

        idxs = torch.randint(0, 20, (n,), generator=g).to(device)
        ours_t, ours = timed(lambda: B.batched_nms(boxes, scores, idxs, 0.5), repeats, device)
        ref_t, ref = timed(lambda: tv.batched_nms(boxes, scores, idxs, 0.5), repeats, device)
        rows.append(("batched_nms", f"{n} boxes, 20 classes", device.type, ours_t, ref_t, "torchvision", bool(torch.equal(ours, ref))))

    from torchmetrics.detection import MeanAveragePrecision

    num_images = 200 if quick else 1000
    preds, targets = detection_set(num_images, g)
    dev_preds = [{k: v.to(device) for k, v in p.items()} for p in preds]
    dev_targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

    def ours_map():
        return B.mean_average_precision(
            [p["boxes"] for p in dev_preds], [p["scores"] for p in dev_preds], [p["labels"] for p in dev_preds],
            [t["boxes"] for t in dev_targets], [t["labels"] for t in dev_targets], num_classes=20,
        ).map

    def torchmetrics_map():
        metric = MeanAveragePrecision(iou_thresholds=[0.5])
        metric.update(preds, targets)
        return float(metric.compute()["map"])

    map_repeats = max(1, repeats // 2)
    ours_t, ours = timed(ours_map, map_repeats, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_t, ref = timed(torchmetrics_map, map_repeats, torch.device("cpu"))
    agree = abs(ours - ref) < 0.01
    rows.append(("mAP@0.5", f"{num_images} images ({ours:.4f} vs {ref:.4f})", device.type, ours_t, ref_t, "torchmetrics (cpu)", agree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus CUDA when available")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    names = {"cpu": f"CPU ({torch.get_num_threads()} threads)"}
    if torch.cuda.is_available():
        names["cuda"] = torch.cuda.get_device_name(0)
    rows: list[tuple] = []
    for device in devices:
        run(device, args.quick, rows)

    print(f"devices: {', '.join(names[d.type] for d in devices)}; torch {torch.__version__}; medians of repeated runs")
    header = f"{'kernel':12s} {'input':34s} {'device':6s} {'ours ms':>9s} {'ref ms':>9s} {'ref/ours':>9s}  {'reference':18s} same answer"
    print(header)
    print("-" * len(header))
    for kernel, size, dev, ours_t, ref_t, ref_name, same in rows:
        print(f"{kernel:12s} {size:34s} {dev:6s} {ours_t * 1e3:9.2f} {ref_t * 1e3:9.2f} {ref_t / ours_t:9.2f}  {ref_name:18s} {'yes' if same else 'NO'}")
    if not all(r[-1] for r in rows):
        print("some answers differ: see the rows marked NO")
    nms_rows = [r for r in rows if r[0] == "nms"]
    biggest = max(nms_rows, key=lambda r: (r[2] == "cuda", int(r[1].split()[0])))
    map_row = [r for r in rows if r[0] == "mAP@0.5"][-1]
    print(
        f"headline: mAP {map_row[4] / map_row[3]:.1f}x faster than torchmetrics ({map_row[2]}); "
        f"NMS of {biggest[1]} on {biggest[2]} takes {biggest[3] / biggest[4]:.2f}x torchvision's time"
    )


if __name__ == "__main__":
    main()
