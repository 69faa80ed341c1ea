"""Specifications of helpers.data.images: offline handwritten digits, photos, fonts, printed digits."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from helpers.data import images as im


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the offline test fixture")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for cached_function in (im._handwritten_arrays, im._photo_arrays, im._font_paths):
        cached_function.cache_clear()
    yield
    for cached_function in (im._handwritten_arrays, im._photo_arrays, im._font_paths):
        cached_function.cache_clear()


def test_bundled_digits_photos_and_fonts_load_with_the_network_off(offline):
    images, labels = im.handwritten_digits()
    photos = im.sample_photos()
    fonts = im.font_paths()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert len(photos) == len(im.PHOTO_NAMES) == 3
    assert len(fonts) >= 10
    rendered, _ = im.printed_digits(4, 16, seed=1)
    assert rendered.shape == (4, 3, 16, 16)


def test_handwritten_digits_are_sklearn_digits_scaled_to_bytes():
    from sklearn.datasets import load_digits

    images, labels = im.handwritten_digits()
    reference = load_digits()
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    expected = np.rint(reference.images * 255.0 / 16.0).astype(np.uint8)
    np.testing.assert_array_equal(images[:, 0].numpy(), expected)
    np.testing.assert_array_equal(labels.numpy(), reference.target)
    assert int(images.max()) == 255 and int(images.min()) == 0


def test_handwritten_digits_returns_a_fresh_copy_each_call():
    images, _ = im.handwritten_digits()
    images[0] = 0
    again, _ = im.handwritten_digits()
    assert int(again[0].sum()) > 0


def test_font_paths_keep_real_digit_fonts_and_drop_symbol_fonts():
    names = {p.name for p in im.font_paths()}
    assert {"DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "cmr10.ttf", "STIXGeneral.ttf"} <= names
    assert not names & {"cmsy10.ttf", "cmex10.ttf", "cmmi10.ttf", "LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf"}


def test_sample_photos_are_rgb_bytes_with_real_content():
    for photo in im.sample_photos():
        assert photo.dtype == torch.uint8 and photo.ndim == 3 and photo.shape[0] == 3
        assert photo.shape[1] >= 400 and photo.shape[2] >= 400
        assert float(photo.float().std()) > 20  # not a blank or constant image


def test_glyph_bank_has_every_digit_of_every_font_centred_at_glyph_fill_height():
    alpha, labels, fonts = im.glyph_bank(32)
    assert alpha.shape[1:] == (1, 32, 32)
    assert torch.equal(torch.bincount(labels), torch.full((10,), alpha.shape[0] // 10))
    assert int(fonts.max()) + 1 == len(im.font_paths())
    rows = (alpha[:, 0] > 0.5).any(2)  # (G, 32) rows with ink
    heights = rows.sum(1).float()
    assert torch.all((heights - im.GLYPH_FILL * 32).abs() <= 2)
    # every glyph is a distinct drawing: no font silently rendering placeholders
    flat = alpha.flatten(1)
    same = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist") < 1e-3
    assert int(same.sum()) == alpha.shape[0]


def test_warp_glyphs_places_a_glyph_at_the_requested_centre_and_height():
    levels = {32: im.glyph_bank(32)[0], 16: torch.nn.functional.interpolate(im.glyph_bank(32)[0], size=16, mode="area")}
    index = torch.tensor([1 * 10 + 8, 8])  # an "8" in two fonts
    center = torch.tensor([[20.0, 30.0], [40.0, 24.0]])
    height = torch.tensor([24.0, 12.0])
    alpha = im.warp_glyphs(levels, index, center, height, torch.zeros(2), torch.ones(2), 64)
    assert alpha.shape == (2, 64, 64)
    for a, c, h in zip(alpha, center, height):
        ys, xs = torch.nonzero(a > 0.5, as_tuple=True)
        assert abs(float(ys.float().mean()) + 0.5 - float(c[1])) < 2.0
        assert abs(float(xs.float().mean()) + 0.5 - float(c[0])) < 2.0
        assert abs(int(ys.max() - ys.min() + 1) - float(h)) <= 2


def test_warp_glyphs_of_nothing_is_empty():
    levels = {16: im.glyph_bank(16)[0]}
    out = im.warp_glyphs(levels, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), torch.zeros(0),
                         torch.zeros(0), torch.ones(0), 20)
    assert out.shape == (0, 20, 20)


def test_contrasting_colours_differ_in_luminance_by_at_least_the_contrast():
    gen = torch.Generator().manual_seed(0)
    under = torch.rand(500, 3, generator=gen)
    colour = im.contrasting_colours(under, gen, contrast=0.3)
    luma = torch.tensor([0.299, 0.587, 0.114])
    gap = (colour @ luma - under @ luma).abs()
    assert colour.min() >= 0 and colour.max() <= 1
    assert torch.all(gap >= 0.3 - 1e-5)


def test_backgrounds_mix_photo_crops_and_textures_in_range():
    gen = torch.Generator().manual_seed(3)
    bg = im.backgrounds(40, 24, gen, photo_fraction=0.5)
    assert bg.shape == (40, 3, 24, 24) and bg.dtype == torch.float32
    assert float(bg.min()) >= 0 and float(bg.max()) <= 1
    assert float(bg.std((1, 2, 3)).min()) > 0.0  # no flat image


def test_printed_digits_have_the_documented_shapes_and_ranges():
    images, labels = im.printed_digits(300, 32, seed=0)
    assert images.shape == (300, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (300,) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9
    assert len(torch.unique(labels)) == 10


def test_printed_digits_are_deterministic_per_seed_and_differ_across_seeds():
    a, la = im.printed_digits(40, 16, seed=7)
    b, lb = im.printed_digits(40, 16, seed=7)
    c, _ = im.printed_digits(40, 16, seed=8)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_printed_digits_chunks_do_not_depend_on_how_many_follow():
    """Images come in chunks of CHUNK with their own random stream: a full chunk is the same in any run."""
    short, short_labels = im.printed_digits(im.CHUNK, 12, seed=2)
    long, long_labels = im.printed_digits(im.CHUNK + 5, 12, seed=2)
    assert torch.equal(long[: im.CHUNK], short) and torch.equal(long_labels[: im.CHUNK], short_labels)


def test_printed_digits_lowres_images_are_smooth_upscales():
    sharp, _ = im.printed_digits(30, 32, seed=1, lowres_fraction=0.0, noise=0.0)
    smooth, _ = im.printed_digits(30, 32, seed=1, lowres_fraction=1.0, lowres_size=8, noise=0.0)

    def roughness(x):
        return float((x.float()[..., 1:] - x.float()[..., :-1]).abs().mean())

    assert roughness(smooth) < 0.5 * roughness(sharp)


def test_glyph_bank_digits_match_a_direct_rendering_of_the_font():
    """The oracle: PIL draws each digit of DejaVuSans; the bank's best match has the same label."""
    from PIL import Image, ImageDraw, ImageFont

    cell = 32
    alpha, labels, fonts = im.glyph_bank(cell)
    font_index = [p.name for p in im.font_paths()].index("DejaVuSans.ttf")
    rows = (fonts == font_index).nonzero().flatten()
    font = ImageFont.truetype(str(im.font_paths()[font_index]), 64)
    for digit in range(10):
        canvas = Image.new("L", (80, 80), 0)
        ImageDraw.Draw(canvas).text((8, 0), str(digit), font=font, fill=255)
        drawn = torch.from_numpy(im._center_in_cell(canvas, cell)).flatten()
        distance = (alpha[rows, 0].flatten(1) - drawn).abs().sum(1)
        assert int(labels[rows[distance.argmin()]]) == digit


def test_printed_digit_labels_name_the_glyph_drawn(monkeypatch):
    """On a flat grey background the ink is recoverable; its best-matching bank glyph has the label."""
    monkeypatch.setattr(im, "backgrounds", lambda n, s, gen, *args, **kwargs: torch.full((n, 3, s, s), 0.5))
    size = 32
    images, labels = im.printed_digits(60, size, seed=3, rotation=0.0, stretch=(1.0, 1.0), offset=0.0,
                                       digit_size=(0.7, 0.7), lowres_fraction=0.0, noise=0.0)
    ink = (images.float() / 255 - 0.5).abs().sum(1).flatten(1)  # (N, size*size)
    ink = ink / ink.norm(dim=1, keepdim=True)
    levels = im._bank_levels("glyph", size * 0.7 / im.GLYPH_FILL)
    bank_labels = im.glyph_bank(max(levels))[1]
    g = bank_labels.shape[0]
    templates = im.warp_glyphs(levels, torch.arange(g), torch.full((g, 2), size / 2), torch.full((g,), 0.7 * size),
                               torch.zeros(g), torch.ones(g), size).flatten(1)
    templates = templates / templates.norm(dim=1, keepdim=True)
    predicted = bank_labels[(ink @ templates.T).argmax(1)]
    assert float((predicted == labels).float().mean()) >= 0.95


def test_printed_digits_of_zero_images_is_empty():
    images, labels = im.printed_digits(0, 16)
    assert images.shape == (0, 3, 16, 16) and labels.shape == (0,)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(num_images=-1), ValueError, "num_images"),
        (dict(num_images=2.5), TypeError, "num_images"),
        (dict(num_images=2, image_size=4), ValueError, "image_size"),
        (dict(num_images=2, digit_size=(0.9, 0.5)), ValueError, "digit_size"),
        (dict(num_images=2, lowres_fraction=1.5), ValueError, "lowres_fraction"),
        (dict(num_images=2, rotation="a lot"), TypeError, "rotation"),
    ],
)
def test_printed_digits_rejects_bad_arguments_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        im.printed_digits(**kwargs)


def test_cache_stores_once_and_returns_the_same_tensors(tmp_path):
    first = im.printed_digits(12, 16, seed=4, cache=tmp_path)
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1
    second = im.printed_digits(12, 16, seed=4, cache=tmp_path)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    im.printed_digits(12, 16, seed=5, cache=tmp_path)
    assert len(list(tmp_path.rglob("*.pt"))) == 2


def test_cache_remakes_a_corrupt_file(tmp_path):
    first = im.printed_digits(6, 16, seed=4, cache=tmp_path)
    (path,) = tmp_path.rglob("*.pt")
    path.write_bytes(b"not a tensor file")
    again = im.printed_digits(6, 16, seed=4, cache=tmp_path)
    assert torch.equal(first[0], again[0])


def test_cache_path_depends_on_every_parameter(tmp_path):
    a = im.cache_path("x", {"seed": 0, "size": 32}, tmp_path)
    b = im.cache_path("x", {"size": 32, "seed": 0}, tmp_path)
    c = im.cache_path("x", {"seed": 1, "size": 32}, tmp_path)
    assert a == b and a != c and a.parent == tmp_path / "x"


def test_cache_keys_include_the_generator_source(tmp_path, monkeypatch):
    """A cache written by other generator code is never served: the key holds a hash of the source."""
    im.printed_digits(4, 16, seed=0, cache=tmp_path)
    monkeypatch.setattr(im, "generator_digest", lambda: "other-code")
    im.printed_digits(4, 16, seed=0, cache=tmp_path)
    assert len(list(tmp_path.rglob("*.pt"))) == 2
