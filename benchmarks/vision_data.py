"""Scene generation speed: helpers.data.scenes.make_scenes against a plain PIL loop, same sizes and counts.

The reference draws each scene the obvious way (crop a photo, render each digit with PIL, rotate,
paste, track an instance map in NumPy, boxes from it): the loop a course would write first. Both
make 64x64 scenes with 1-6 digits from the bundled fonts on crops of the bundled photos, with
instance masks, semantic masks and tight boxes.

    .venv/bin/python benchmarks/vision_data.py [--num-scenes 10000] [--repeats 3] [--image-size 64]

Prints medians of the repeats (scenes per second, wall and CPU seconds; repeats interleaved) and a
table whose last line is the headline ratio (ours, one process, against the PIL loop, one process).
Timings on a shared machine are pessimistic for both; the ratio and the CPU seconds carry over.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np
import torch

WARMUP = 8


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pil_scenes(num_scenes: int, image_size: int, seed: int):
    """The reference: one scene at a time with PIL and NumPy."""
    from PIL import Image, ImageDraw, ImageFont

    from helpers.data.images import _font_paths, _photo_arrays

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(p) for p in _photo_arrays()]
    fonts = _font_paths()
    font_cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    s = image_size
    out_images = np.empty((num_scenes, s, s, 3), dtype=np.uint8)
    out_semantic = np.empty((num_scenes, s, s), dtype=np.uint8)
    out_boxes, out_labels = [], []
    for i in range(num_scenes):
        photo = photos[rng.integers(len(photos))]
        side = int(min(photo.size) * rng.uniform(0.15, 0.6))
        x0 = rng.integers(0, photo.size[0] - side + 1)
        y0 = rng.integers(0, photo.size[1] - side + 1)
        canvas = photo.crop((x0, y0, x0 + side, y0 + side)).resize((s, s), Image.Resampling.BILINEAR)
        ids = np.zeros((s, s), dtype=np.uint8)
        labels = []
        for j in range(rng.integers(1, 7)):
            digit = int(rng.integers(10))
            height = int(s * math.exp(rng.uniform(math.log(0.1), math.log(0.5))))
            key = (int(rng.integers(len(fonts))), max(height, 4))
            if key not in font_cache:
                font_cache[key] = ImageFont.truetype(fonts[key[0]], key[1])
            font = font_cache[key]
            left, top, right, bottom = font.getbbox(str(digit))
            glyph = Image.new("L", (right - left + 2, bottom - top + 2), 0)
            ImageDraw.Draw(glyph).text((1 - left, 1 - top), str(digit), font=font, fill=255)
            glyph = glyph.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, expand=True)
            px = int(rng.integers(0, max(1, s - glyph.width)))
            py = int(rng.integers(0, max(1, s - glyph.height)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            canvas.paste(Image.new("RGB", glyph.size, colour), (px, py), glyph)
            solid = np.zeros((s, s), dtype=bool)
            g = np.asarray(glyph)[: s - py, : s - px] > 127
            solid[py:py + g.shape[0], px:px + g.shape[1]] = g
            ids[solid] = j + 1
            labels.append(digit)
        boxes, kept = [], []
        for j, digit in enumerate(labels):
            ys, xs = np.nonzero(ids == j + 1)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                kept.append(digit)
        lut = np.zeros(len(labels) + 1, dtype=np.uint8)
        lut[1:] = np.asarray(labels) + 1
        out_semantic[i] = lut[ids]
        out_images[i] = np.asarray(canvas)
        out_boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        out_labels.append(np.asarray(kept))
    return out_images, out_boxes, out_labels, out_semantic


def timed(run) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and finished children) of one run."""
    import resource

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall, start = time.perf_counter(), cpu()
    run()
    return time.perf_counter() - wall, cpu() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-scenes", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from helpers.data.scenes import make_scenes

    n, s, r = args.num_scenes, args.image_size, args.repeats
    torch.set_num_threads(1)
    make_scenes(WARMUP, s)  # glyph banks and photo pyramids, built once per process
    pil_scenes(4, s, 0)
    cores = os.cpu_count()
    print(f"device: {cpu_name()}, {cores} CPU cores visible, "
          f"torch {torch.__version__}; {n} scenes of {s}x{s}, median of {r} runs")

    runs = {"make_scenes, 1 process, 1 thread": lambda: make_scenes(n, s, seed=1)}
    workers = min(2, cores or 1)
    if workers > 1:
        runs[f"make_scenes, {workers} processes"] = lambda: make_scenes(n, s, seed=1, workers=workers)
    runs["plain PIL loop, 1 process (reference)"] = lambda: pil_scenes(n, s, seed=1)
    # interleave the repeats, so that a busy moment on a shared machine hits every generator alike
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(r):
        for name, run in runs.items():
            samples[name].append(timed(run))
    rows = [(name, statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
            for name, times in samples.items()]
    if torch.cuda.is_available():
        make_scenes(WARMUP, s, device="cuda")

        def on_gpu():
            make_scenes(n, s, seed=1, device="cuda")
            torch.cuda.synchronize()

        gpu = [timed(on_gpu) for _ in range(r)]
        rows.insert(-1, (f"make_scenes on {torch.cuda.get_device_name(0)}", statistics.median(w for w, _ in gpu),
                         statistics.median(c for _, c in gpu)))
    else:
        rows.insert(-1, ("make_scenes on CUDA", float("nan"), float("nan")))
    ours_1, pil_1 = rows[0], rows[-1]

    width = max(len(name) for name, _, _ in rows)
    print(f"{'generator':{width}s}  scenes/s  wall s  CPU s   (for {n} scenes)")
    for name, wall, cpu in rows:
        if math.isnan(wall):
            print(f"{name:{width}s}  not measured (no GPU here)")
        else:
            print(f"{name:{width}s}  {n / wall:8.0f}  {wall:6.1f}  {cpu:6.1f}")
    print(f"headline: make_scenes / PIL loop, one process each: {pil_1[1] / ours_1[1]:.2f}x faster "
          f"(CPU time: {pil_1[2] / ours_1[2]:.2f}x less)")


if __name__ == "__main__":
    main()
