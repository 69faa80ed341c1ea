"""Slide decks and HTML pages are built offline and a deck really runs in a browser with no network."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from helpers import slides

ROOT = Path(__file__).resolve().parent.parent
START_HERE = ROOT / "notebooks" / "00_start_here.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def deck(tmp_path_factory) -> Path:
    out = ROOT / "build" / "test-slides"
    shutil.rmtree(out, ignore_errors=True)
    return slides.build_deck(START_HERE, out)


def test_deck_loads_every_asset_from_disk_not_a_cdn(deck):
    html = deck.read_text()
    for asset in ("../vendor/reveal.js/dist/reveal.js", "../vendor/require.js", "../vendor/jquery.min.js", "../vendor/mathjax/MathJax.js"):
        assert asset in html
        assert (deck.parent / asset.split("?")[0]).resolve().is_file(), f"{asset} is referenced but missing"
    for cdn in ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net"):
        assert cdn not in html, f"deck still loads from {cdn}"


def test_deck_leaves_out_setup_cells_and_papermill_injections(tmp_path, deck):
    nb = nbformat.read(START_HERE, as_version=4)
    setup_sources = [c.source for c in nb.cells if "setup" in c.metadata.get("tags", [])]
    assert setup_sources, "start-here should have a setup cell to hide"
    html = deck.read_text()
    assert "seed_everything(seed)\nuse_course_style()" not in html
    assert "use_course_style</span><span class=\"p\">()" not in html
    injected = nbformat.v4.new_code_cell("seed = 123456789", metadata={"tags": ["injected-parameters"], "slideshow": {"slide_type": "skip"}})
    nb.cells.insert(2, injected)
    path = tmp_path / "with_injection.ipynb"
    nbformat.write(nb, path)
    out = slides.build_deck(path, ROOT / "build" / "test-slides")
    assert "123456789" not in out.read_text()


def test_expected_slide_count_counts_slides_and_subslides():
    nb = nbformat.v4.new_notebook()
    kinds = ["slide", "-", "subslide", "fragment", "slide", "skip", "notes"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"cell {i}", metadata={"slideshow": {"slide_type": k}}) for i, k in enumerate(kinds)]
    nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["setup"], "slideshow": {"slide_type": "slide"}}))
    path = ROOT / "build" / "test-slides" / "count.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    assert slides.expected_slide_count(path) == 3


def test_html_page_is_written_with_local_assets():
    page = slides.build_html(START_HERE, ROOT / "build" / "test-html")
    html = page.read_text()
    assert "../vendor/require.js" in html and "cdnjs.cloudflare.com" not in html


@pytest.mark.browser
def test_deck_starts_reveal_in_headless_chromium_with_the_network_blocked(deck, tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium is missing: `make browser` installs Debian's chromium and chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Every request that is not a local file goes to a proxy that does not exist: the network is off.
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--allow-file-access-from-files",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        driver.get(deck.resolve().as_uri())
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready:
            ready = driver.execute_script("return !!document.querySelector('.reveal.ready')")
            time.sleep(0.2)
        assert ready, "reveal.js did not start (no .reveal.ready) within 30 s"
        leaf_slides = driver.execute_script(
            "return Array.from(document.querySelectorAll('.reveal .slides section'))"
            ".filter(s => !s.querySelector('section')).length"
        )
        assert leaf_slides == slides.expected_slide_count(START_HERE)
        mathjax_ready = driver.execute_script("return !!(window.MathJax && window.MathJax.Hub)")
        assert mathjax_ready, "MathJax did not load from the local copy"
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        remote = [r for r in resources if not r.startswith("file://")]
        assert remote == [], f"the deck requested network resources: {remote}"
        # Resource timing lists network requests (even failed ones), not file:// loads; so check that
        # require.js fetched reveal.js from the local vendor folder.
        reveal_src = driver.execute_script(
            "const s = document.querySelector('script[src$=\"reveal.js/dist/reveal.js\"]'); return s ? s.src : null"
        )
        assert reveal_src and reveal_src.startswith("file://"), f"reveal.js was not loaded from disk: {reveal_src}"
    finally:
        driver.quit()
