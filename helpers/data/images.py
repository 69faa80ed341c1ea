"""Offline images: handwritten digits, printed digits rendered from bundled fonts, photo backgrounds.

Every pixel here ships inside a package we already depend on, so nothing is downloaded:
scikit-learn's handwritten digits (`load_digits`) and sample photos (china.jpg, flower.jpg),
matplotlib's sample photo (grace_hopper.jpg) and its bundled TrueType fonts (DejaVu, STIX,
Computer Modern). The building blocks (glyph banks, backgrounds, warping, colours) are shared
with the scene generator in `helpers.data.scenes`.

Taught in notebooks/00_start_here.ipynb ("The data") and used by the image classification
notebook (printed digits as the large pretraining set, handwritten digits as the real test).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

GLYPH_FILL = 0.7
"""Height of a glyph as a fraction of its square bank cell (room left for rotation)."""

CHUNK = 256
"""Images drawn per random-number stream; fixed so results do not depend on memory or device."""

_DIGIT_GLYPH_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SHAPES = ("disc", "square", "triangle", "diamond", "star", "cross", "crescent")


# ----------------------------------------------------------------------------- cache

def data_dir() -> Path:
    """The folder for generated caches: `$SCRATCHMAKER_DATA`, else the repository's data/."""
    env = os.environ.get("SCRATCHMAKER_DATA", "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """A hash of the generators' source (this module and scenes.py): part of every cache key, so a
    cache made by other code is never served."""
    here = Path(__file__).resolve().parent
    text = b"".join((here / name).read_bytes() for name in ("images.py", "scenes.py"))
    return hashlib.sha256(text).hexdigest()[:12]


def cache_path(kind: str, params: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """Where a generated data set with these parameters (seed included) is cached:
    `<cache_dir or data/>/<kind>/<hash of the parameters>.pt`, so any change is a new file.
    """
    key = json.dumps(params, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else data_dir()
    return root / kind / f"{digest}.pt"


def cached(kind: str, params: dict[str, Any], make: Callable[[], dict[str, torch.Tensor]],
           cache: bool | str | Path) -> dict[str, torch.Tensor]:
    """`make()` once per parameter set: loaded from the cache when present, else made and saved.

    `cache`: False (no cache), True (under `data_dir()`, i.e. data/<kind>/) or a folder.
    """
    if cache is False or cache is None:
        return make()
    path = cache_path(kind, params, None if cache is True else cache)
    if path.exists():
        try:
            stored = torch.load(path, weights_only=True)
            if stored.get("__params__") == json.dumps(params, sort_keys=True, default=str):
                return {k: v for k, v in stored.items() if k != "__params__"}
        except Exception:  # a truncated or foreign file is remade, never trusted
            pass
    tensors = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({**tensors, "__params__": json.dumps(params, sort_keys=True, default=str)}, tmp)
    os.replace(tmp, path)
    return tensors


def chunk_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for one chunk of one stream, independent of every other (seed, stream)."""
    state = np.random.SeedSequence([int(seed), *map(int, stream)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ----------------------------------------------------------------------------- validation

def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name}: expected an integer {bound}, got {value}")
    return int(value)


def _check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value}")
    return float(value)


def _check_range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name}: expected a (low, high) pair, got {value!r}")
    a, b = (_check_fraction(name, v, low, high) for v in value)
    if a > b:
        raise ValueError(f"{name}: expected low <= high, got {value!r}")
    return a, b


# ----------------------------------------------------------------------------- real pixels

def handwritten_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled handwritten digits (UCI optdigits test set, 1,797 real scans).

    Returns images uint8 (1797, 1, 8, 8) scaled from 0..16 to 0..255 (ink is bright) and
    labels int64 (1797,) in 0..9.
    """
    images, labels = _handwritten_arrays()
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


@lru_cache(maxsize=1)
def _handwritten_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, digits.target.astype(np.int64)


def font_paths() -> list[Path]:
    """matplotlib's bundled TrueType fonts whose '0'..'9' are real digit glyphs (sorted).

    Symbol fonts, old-style figures (cmmi10) and the LastResort placeholder font are left out
    by reading each font's character map.
    """
    return [Path(p) for p in _font_paths()]


@lru_cache(maxsize=1)
def _font_paths() -> tuple[str, ...]:
    import matplotlib
    from fontTools.ttLib import TTFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    keep = []
    for path in sorted(folder.glob("*.ttf")):
        cmap = TTFont(str(path), lazy=True).getBestCmap() or {}
        if tuple(cmap.get(ord(str(d))) for d in range(10)) == _DIGIT_GLYPH_NAMES:
            keep.append(str(path))
    if not keep:
        raise RuntimeError(f"no digit fonts found in {folder}; is matplotlib installed completely?")
    return tuple(keep)


def sample_photos() -> list[torch.Tensor]:
    """The real photos bundled with scikit-learn (china, flower) and matplotlib (grace_hopper).

    Returns a list of uint8 (3, H, W) tensors (sizes differ).
    """
    return [torch.from_numpy(p.copy()).permute(2, 0, 1).contiguous() for p in _photo_arrays()]


PHOTO_NAMES = ("china.jpg", "flower.jpg", "grace_hopper.jpg")


@lru_cache(maxsize=1)
def _photo_arrays() -> tuple[np.ndarray, ...]:
    import matplotlib.cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(np.asarray(Image.open(handle).convert("RGB")))
    return tuple(np.ascontiguousarray(p, dtype=np.uint8) for p in photos)


# ----------------------------------------------------------------------------- glyph banks

def _bank_sizes(max_side: float) -> tuple[int, ...]:
    """Mip levels 16, 32, ... up to the first one >= max_side (at most 256)."""
    sizes = [16]
    while sizes[-1] < min(max_side, 256):
        sizes.append(sizes[-1] * 2)
    return tuple(sizes)


def _mip(top: torch.Tensor, sizes: tuple[int, ...]) -> dict[int, torch.Tensor]:
    levels = {sizes[-1]: top}
    for size in reversed(sizes[:-1]):
        levels[size] = F.interpolate(top, size=(size, size), mode="area")
    return levels


def _center_in_cell(mask: "Image.Image", cell: int) -> np.ndarray:  # noqa: F821
    from PIL import Image

    box = mask.getbbox()
    glyph = mask.crop(box)
    height = GLYPH_FILL * cell
    width = min(glyph.width * height / glyph.height, 0.95 * cell)
    glyph = glyph.resize((max(1, round(width)), max(1, round(height))), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (cell, cell), 0)
    canvas.paste(glyph, ((cell - glyph.width) // 2, (cell - glyph.height) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


@lru_cache(maxsize=4)
def glyph_bank(cell: int = 128, strokes: tuple[float, ...] = (0.0, 0.015, 0.03)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every digit in every bundled font at every stroke width, as coverage masks.

    Each glyph is scaled to a height of `GLYPH_FILL * cell` and centred in a `cell` square.
    `strokes` are outline widths as fractions of the font size (bolder digits).
    Returns alpha float32 (G, 1, cell, cell) in [0, 1], labels int64 (G,), font index int64 (G,).
    """
    from PIL import Image, ImageDraw, ImageFont

    size = 2 * cell
    alphas, labels, fonts = [], [], []
    for f, path in enumerate(_font_paths()):
        font = ImageFont.truetype(path, size)
        for stroke in strokes:
            width = round(stroke * size)
            for digit in range(10):
                text = str(digit)
                left, top, right, bottom = font.getbbox(text, stroke_width=width)
                canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
                ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, font=font, fill=255,
                                            stroke_width=width, stroke_fill=255)
                alphas.append(_center_in_cell(canvas, cell))
                labels.append(digit)
                fonts.append(f)
    alpha = torch.from_numpy(np.stack(alphas))[:, None]
    return alpha, torch.tensor(labels, dtype=torch.int64), torch.tensor(fonts, dtype=torch.int64)


@lru_cache(maxsize=4)
def shape_bank(cell: int = 128) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Filled distractor shapes (disc, square, triangle, ...) drawn like glyphs.

    Returns alpha float32 (S, 1, cell, cell) and the shape names.
    """
    from PIL import Image, ImageDraw

    big = 4 * cell
    c = big / 2
    r = GLYPH_FILL * big / 2
    masks = []
    for name in _SHAPES:
        img = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(img)
        if name == "disc":
            draw.ellipse([c - r, c - r, c + r, c + r], fill=255)
        elif name == "square":
            draw.rectangle([c - 0.8 * r, c - 0.8 * r, c + 0.8 * r, c + 0.8 * r], fill=255)
        elif name == "triangle":
            draw.polygon([(c, c - r), (c + r, c + 0.75 * r), (c - r, c + 0.75 * r)], fill=255)
        elif name == "diamond":
            draw.polygon([(c, c - r), (c + 0.7 * r, c), (c, c + r), (c - 0.7 * r, c)], fill=255)
        elif name == "star":
            pts = [(c + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                    c - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
            draw.polygon(pts, fill=255)
        elif name == "cross":
            w = 0.3 * r
            draw.rectangle([c - w, c - r, c + w, c + r], fill=255)
            draw.rectangle([c - r, c - w, c + r, c + w], fill=255)
        elif name == "crescent":
            draw.ellipse([c - r, c - r, c + r, c + r], fill=255)
            draw.ellipse([c - 0.4 * r, c - r, c + 1.6 * r, c + r], fill=0)
        masks.append(np.asarray(img.resize((cell, cell), Image.Resampling.BOX), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(masks))[:, None], _SHAPES


@lru_cache(maxsize=1)
def handwritten_bank() -> tuple[torch.Tensor, torch.Tensor]:
    """The handwritten digits as coverage masks in 12x12 cells (8 px of glyph, GLYPH_FILL-like).

    Returns alpha float32 (1797, 1, 12, 12) in [0, 1] and labels int64 (1797,).
    """
    images, labels = _handwritten_arrays()
    alpha = torch.from_numpy(images.astype(np.float32) / 255.0)
    return F.pad(alpha, (2, 2, 2, 2)), torch.from_numpy(labels)


HANDWRITTEN_FILL = 8 / 12


def _bank_levels(kind: str, max_side: float, device: torch.device | str = "cpu") -> dict[int, torch.Tensor]:
    """The glyph or shape bank's mip levels up to max_side, cached per device."""
    return _bank_levels_cached(kind, _bank_sizes(max_side), str(torch.device(device)))


@lru_cache(maxsize=16)
def _bank_levels_cached(kind: str, sizes: tuple[int, ...], device: str) -> dict[int, torch.Tensor]:
    if device != "cpu":
        return {k: v.to(device) for k, v in _bank_levels_cached(kind, sizes, "cpu").items()}
    if kind == "handwritten":
        return {12: handwritten_bank()[0]}
    top = glyph_bank(sizes[-1])[0] if kind == "glyph" else shape_bank(sizes[-1])[0]
    return _mip(top, sizes)


# ----------------------------------------------------------------------------- drawing

_WINDOWS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def warp_glyphs(
    levels: dict[int, torch.Tensor],
    index: torch.Tensor,
    center: torch.Tensor,
    height: torch.Tensor,
    angle: torch.Tensor,
    stretch: torch.Tensor,
    image_size: int,
    fill: float = GLYPH_FILL,
) -> torch.Tensor:
    """Place bank glyphs on an image_size square canvas.

    levels: {cell: (G, 1, cell, cell)} the same bank at several resolutions (mip levels).
    index (M,) bank rows; center (M, 2) xy in pixels; height (M,) glyph height in pixels;
    angle (M,) radians, counter-clockwise on screen; stretch (M,) horizontal scale factor.
    Returns alpha float32 (M, image_size, image_size) on the device of `center`.
    The smallest mip level at least as large as each glyph's cell on the canvas is sampled, so
    shrunken glyphs stay anti-aliased; only a window around each glyph is sampled, so small
    glyphs cost little.
    """
    m, s = index.shape[0], image_size
    out = torch.zeros(m, s * s, device=center.device)
    warp_into(out, torch.arange(m, device=center.device), levels, index, center, height, angle, stretch, s, fill)
    return out.view(m, s, s)


def warp_into(out: torch.Tensor, out_rows: torch.Tensor, levels: dict[int, torch.Tensor], index: torch.Tensor,
              center: torch.Tensor, height: torch.Tensor, angle: torch.Tensor, stretch: torch.Tensor,
              image_size: int, fill: float = GLYPH_FILL) -> torch.Tensor:
    """warp_glyphs, adding glyph m into row out_rows[m] of `out` (R, image_size**2) in place.

    Returns int64 (M,): each glyph's pixels on the canvas with coverage > 0.5.
    """
    device = center.device
    m, s = index.shape[0], image_size
    solid = torch.zeros(m, dtype=torch.long, device=device)
    if m == 0:
        return solid
    cell_px = height / fill  # (M,) side of the glyph's cell on the canvas
    scale = 2.0 / cell_px  # canvas pixels -> the cell's normalised [-1, 1] coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    # input = diag(1/stretch, 1) R(-angle) (pixel - center) * scale, with y pointing down
    a11, a12 = cos / stretch * scale, -sin / stretch * scale
    a21, a22 = sin * scale, cos * scale
    # the cell's rotated, stretched square fits in a window of this side (plus a pixel of margin)
    reach = cell_px * torch.sqrt(stretch**2 + 1.0) + 2.0
    windows = torch.tensor([w for w in _WINDOWS if w < s] + [s], device=device)
    window = windows[torch.searchsorted(windows, reach.clamp(max=s))]
    origin = torch.where(window[:, None] >= s, torch.zeros_like(center), torch.floor(center - window[:, None] / 2.0))
    sizes = sorted(levels)
    level = torch.searchsorted(torch.tensor(sizes, device=device, dtype=cell_px.dtype), cell_px).clamp(max=len(sizes) - 1)
    target = out.view(-1)
    for key in torch.unique(level * 100000 + window).tolist():
        lev, win = divmod(int(key), 100000)
        rows = ((level == lev) & (window == win)).nonzero().flatten()
        steps = torch.arange(win, device=device, dtype=torch.float32) + 0.5
        px = origin[rows, 0, None] + steps - center[rows, 0, None]  # (r, win) x offsets from centre
        py = origin[rows, 1, None] + steps - center[rows, 1, None]  # (r, win)
        gx = a11[rows, None, None] * px[:, None, :] + a12[rows, None, None] * py[:, :, None]
        gy = a21[rows, None, None] * px[:, None, :] + a22[rows, None, None] * py[:, :, None]
        bank = levels[sizes[lev]].to(device)
        patch = F.grid_sample(bank[index[rows]], torch.stack([gx, gy], -1), mode="bilinear",
                              padding_mode="zeros", align_corners=False)[:, 0]  # (r, win, win)
        xs = origin[rows, 0, None].long() + torch.arange(win, device=device)  # (r, win)
        ys = origin[rows, 1, None].long() + torch.arange(win, device=device)
        inside = ((ys >= 0) & (ys < s))[:, :, None] & ((xs >= 0) & (xs < s))[:, None, :]
        where = out_rows[rows, None, None] * (s * s) + ys.clamp(0, s - 1)[:, :, None] * s + xs.clamp(0, s - 1)[:, None, :]
        patch = patch * inside
        target.index_add_(0, where.flatten(), patch.flatten())
        solid[rows] = (patch > 0.5).flatten(1).sum(1)
    return solid


def backgrounds(
    num_images: int,
    image_size: int,
    generator: torch.Generator,
    photo_fraction: float = 0.8,
    crop_scale: tuple[float, float] = (0.15, 0.6),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Backgrounds: random crops of the bundled photos, or procedural textures.

    A photo crop is a square whose side is `crop_scale` of the photo's short side, at a random
    place, randomly mirrored, with a little colour jitter. A texture is a random colour with
    three random oriented waves and fine noise. Returns float32 (N, 3, S, S) in [0, 1].
    """
    from torchvision.ops import roi_align

    device = torch.device(device)
    n, s = num_images, image_size
    use_photo = torch.rand(n, generator=generator) < photo_fraction
    which = torch.randint(len(PHOTO_NAMES), (n,), generator=generator)
    side_frac = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * torch.rand(n, generator=generator)
    corner = torch.rand(n, 2, generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    jitter = 0.85 + 0.3 * torch.rand(n, 3, generator=generator)
    # texture parameters
    base = torch.rand(n, 3, generator=generator)
    wave_dir = torch.rand(n, 3, generator=generator) * 2 * math.pi
    wave_freq = 0.5 + 6.0 * torch.rand(n, 3, generator=generator)
    wave_phase = torch.rand(n, 3, generator=generator) * 2 * math.pi
    wave_colour = (torch.rand(n, 3, 3, generator=generator) - 0.5) * 0.35

    out = torch.empty(n, 3, s, s, device=device)
    pyramid = _photo_pyramids(str(device))
    for p, levels in enumerate(pyramid):
        h, w = levels[0].shape[-2:]
        side = side_frac * min(h, w)
        # sample the level where the crop is at most twice the output: one bilinear tap is enough
        level = torch.log2(side / (2 * s)).ceil().clamp(0, len(levels) - 1).long()
        for lev in range(len(levels)):
            rows = (use_photo & (which == p) & (level == lev)).nonzero().flatten()
            if rows.numel() == 0:
                continue
            photo, f = levels[lev], 2.0**lev
            x0 = corner[rows, 0] * (w - side[rows])
            y0 = corner[rows, 1] * (h - side[rows])
            boxes = torch.stack([torch.zeros_like(x0), x0, y0, x0 + side[rows], y0 + side[rows]], 1).to(device)
            crops = roi_align(photo[None], boxes, output_size=(s, s), spatial_scale=1.0 / f,
                              sampling_ratio=1, aligned=True)
            flipped = flip[rows].nonzero().flatten().to(device)
            crops[flipped] = crops[flipped].flip(-1)
            out[rows.to(device)] = crops * jitter[rows].to(device)[:, :, None, None]
    rows = (~use_photo).nonzero().flatten()
    if rows.numel():
        k = rows.numel()
        coords = (torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        d = wave_dir[rows].to(device)
        phase = (xx * torch.cos(d)[..., None, None] + yy * torch.sin(d)[..., None, None]) \
            * (2 * math.pi * wave_freq[rows].to(device))[..., None, None] + wave_phase[rows].to(device)[..., None, None]
        waves = torch.sin(phase)  # (k, 3 waves, s, s)
        texture = base[rows].to(device)[:, :, None, None] + torch.einsum("kwc,kwhx->kchx", wave_colour[rows].to(device), waves)
        noise = torch.randn(k, 3, s, s, generator=generator) * 0.04
        out[rows.to(device)] = texture + noise.to(device)
    return out.clamp_(0.0, 1.0)


@lru_cache(maxsize=4)
def _photo_pyramids(device: str) -> tuple[tuple[torch.Tensor, ...], ...]:
    """Each photo as float (3, H, W) in [0, 1] at full, half, quarter and eighth resolution."""
    pyramids = []
    for photo in sample_photos():
        level = photo.float().div(255.0).to(device)
        levels = [level]
        for _ in range(3):
            level = F.avg_pool2d(level[None], 2, ceil_mode=True)[0]
            levels.append(level)
        pyramids.append(tuple(levels))
    return tuple(pyramids)


_LUMA = torch.tensor([0.299, 0.587, 0.114])


def contrasting_colours(under: torch.Tensor, generator: torch.Generator, contrast: float = 0.25) -> torch.Tensor:
    """Random RGB colours whose luminance differs by at least `contrast` from `under`.

    under: (M, 3) mean background colour under each object, in [0, 1]. A random colour is darkened
    (on light backgrounds) or lightened (on dark ones) just enough. Returns (M, 3) in [0, 1].
    """
    m = under.shape[0]
    colour = torch.rand(m, 3, generator=generator).to(under.device)
    luma = _LUMA.to(under.device)
    bg = under @ luma
    lum = colour @ luma
    dark_target = (bg - contrast).clamp(min=0.0)
    light_target = (bg + contrast).clamp(max=1.0)
    darker = colour * torch.clamp(dark_target / lum.clamp(min=1e-6), max=1.0)[:, None]
    lighter = 1 - (1 - colour) * torch.clamp((1 - light_target) / (1 - lum).clamp(min=1e-6), max=1.0)[:, None]
    return torch.where((bg > 0.5)[:, None], darker, lighter)


# ----------------------------------------------------------------------------- printed digits

def printed_digits(
    num_images: int,
    image_size: int = 32,
    seed: int = 0,
    *,
    digit_size: tuple[float, float] = (0.5, 0.85),
    rotation: float = 20.0,
    stretch: tuple[float, float] = (0.8, 1.25),
    offset: float = 0.12,
    photo_fraction: float = 0.6,
    contrast: float = 0.25,
    lowres_fraction: float = 0.15,
    lowres_size: int = 8,
    noise: float = 0.03,
    device: str | torch.device = "cpu",
    cache: bool | str | Path = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Printed digits rendered from matplotlib's bundled fonts, deterministic per seed.

    Each image shows one digit (balanced classes, random order) in a random font and stroke
    width, with height `digit_size` of the image side, rotated uniformly within +-`rotation`
    degrees, stretched horizontally by `stretch`, shifted up to `offset` of the side, in a random
    colour of at least `contrast` luminance difference, on a crop of a bundled photo (with
    probability `photo_fraction`) or a procedural texture. A `lowres_fraction` of the images
    is shrunk to `lowres_size` pixels and scaled back up, like upscaled 8x8 handwritten digits.

    Returns images uint8 (N, 3, image_size, image_size) and labels int64 (N,) in 0..9, on `device`.
    `cache` (False, True or a folder) stores the result under data/printed_digits/ keyed by every argument.
    """
    num_images = _check_int("num_images", num_images, 0)
    image_size = _check_int("image_size", image_size, 8, 1024)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    lo, hi = _check_range("digit_size", digit_size, 0.05, 1.0)
    rotation = _check_fraction("rotation", rotation, 0.0, 180.0)
    stretch = _check_range("stretch", stretch, 0.1, 10.0)
    offset = _check_fraction("offset", offset, 0.0, 0.5)
    photo_fraction = _check_fraction("photo_fraction", photo_fraction)
    contrast = _check_fraction("contrast", contrast, 0.0, 0.5)
    lowres_fraction = _check_fraction("lowres_fraction", lowres_fraction)
    lowres_size = _check_int("lowres_size", lowres_size, 2)
    noise = _check_fraction("noise", noise, 0.0, 1.0)
    dev = torch.device(device)
    params = dict(num_images=num_images, image_size=image_size, seed=seed, digit_size=(lo, hi),
                  rotation=rotation, stretch=stretch, offset=offset, photo_fraction=photo_fraction,
                  contrast=contrast, lowres_fraction=lowres_fraction, lowres_size=lowres_size,
                  noise=noise, fonts=[Path(p).name for p in _font_paths()], code=generator_digest())

    def make() -> dict[str, torch.Tensor]:
        images, labels = [], []
        for c, start in enumerate(range(0, num_images, CHUNK)):
            n = min(CHUNK, num_images - start)
            img, lab = _printed_chunk(n, image_size, chunk_generator(seed, c), (lo, hi), rotation, stretch,
                                      offset, photo_fraction, contrast, lowres_fraction, lowres_size, noise, dev)
            images.append(img)
            labels.append(lab)
        if not images:
            return {"images": torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8),
                    "labels": torch.zeros(0, dtype=torch.int64)}
        return {"images": torch.cat(images).cpu(), "labels": torch.cat(labels).cpu()}

    out = cached("printed_digits", params, make, cache)
    return out["images"].to(dev), out["labels"].to(dev)


def _printed_chunk(n, s, gen, digit_size, rotation, stretch, offset, photo_fraction, contrast,
                   lowres_fraction, lowres_size, noise, device):
    alpha_bank, bank_labels, _ = glyph_bank(_bank_sizes(s * digit_size[1] / GLYPH_FILL)[-1])
    levels = _bank_levels("glyph", s * digit_size[1] / GLYPH_FILL, device)
    per_class = alpha_bank.shape[0] // 10
    labels = torch.randint(10, (n,), generator=gen)
    # bank rows are ordered (font, stroke, digit): pick any variant of the wanted digit
    variant = torch.randint(per_class, (n,), generator=gen)
    index = variant * 10 + labels
    assert torch.equal(bank_labels[index], labels)
    height = s * (digit_size[0] + (digit_size[1] - digit_size[0]) * torch.rand(n, generator=gen))
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotation)
    log_lo, log_hi = math.log(stretch[0]), math.log(stretch[1])
    stretch_x = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, generator=gen))
    center = s / 2 + (torch.rand(n, 2, generator=gen) * 2 - 1) * offset * s
    lowres = torch.rand(n, generator=gen) < lowres_fraction
    grain = torch.randn(n, 1, s, s, generator=gen) * noise
    bg = backgrounds(n, s, gen, photo_fraction, device=device)
    alpha = warp_glyphs(levels, index.to(device), center.to(device), height.to(device), angle.to(device),
                        stretch_x.to(device), s)[:, None]  # (n, 1, s, s)
    under = (bg * alpha).sum((2, 3)) / alpha.sum((2, 3)).clamp(min=1e-6)
    colour = contrasting_colours(under, gen, contrast)
    img = bg * (1 - alpha) + colour[:, :, None, None] * alpha
    img = img + grain.to(device)
    rows = lowres.nonzero().flatten().to(device)
    if rows.numel():
        small = F.interpolate(img[rows], size=(lowres_size, lowres_size), mode="area")
        img[rows] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels.to(device)
