"""HTML pages and reveal.js slide decks of the notebooks that work offline.

reveal.js, require.js, jQuery and MathJax come from the npm registry at build time (`npm pack`,
cached under build/vendor/) and are unpacked beside the pages, so a deck opened from disk loads
nothing from the network. Cells tagged `setup` (imports, parameter validation) and papermill's
`injected-parameters` cell are left out of decks.

    python -m helpers.slides [NOTEBOOK ...] [--out build/slides]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter, SlidesExporter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILD = ROOT / "build"
VENDOR_CACHE = BUILD / "vendor" / "npm"
VENDOR = BUILD / "vendor"
# The versions nbconvert's reveal template is written against (MathJax 2: nbconvert's config calls
# MathJax.Hub, the version 2 API).
NPM_PACKAGES = {
    "reveal.js": "4.0.2",
    "requirejs": "2.1.10",
    "jquery": "2.2.4",
    "mathjax": "2.7.9",
}
SLIDES_REMOVED_TAGS = {"setup", "injected-parameters"}


def _npm_tarball(package: str, version: str) -> Path:
    VENDOR_CACHE.mkdir(parents=True, exist_ok=True)
    tarball = VENDOR_CACHE / f"{package}-{version}.tgz"
    if tarball.exists():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is needed once to fetch reveal.js, require.js, jQuery and MathJax for offline slides; "
            "install Node.js (https://nodejs.org) or your system's `npm` package"
        )
    result = subprocess.run(
        [npm, "pack", f"{package}@{version}", "--pack-destination", str(VENDOR_CACHE), "--silent"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not tarball.exists():
        raise RuntimeError(f"npm pack {package}@{version} failed: {result.stderr.strip() or result.stdout.strip()}")
    return tarball


def vendor_assets() -> Path:
    """Unpack the slide assets under build/vendor/ (once) and return that folder.

    Layout: reveal.js/ (dist/, plugin/), mathjax/ (MathJax.js, ...), require.js, jquery.min.js.
    """
    marker = VENDOR / ".complete"
    if marker.exists():
        return VENDOR
    for package, version in NPM_PACKAGES.items():
        tarball = _npm_tarball(package, version)
        target = VENDOR / ("mathjax" if package == "mathjax" else package)
        staging = VENDOR / f".unpack-{package}"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        if package == "requirejs":
            shutil.copy(staging / "package" / "require.js", VENDOR / "require.js")
        elif package == "jquery":
            shutil.copy(staging / "package" / "dist" / "jquery.min.js", VENDOR / "jquery.min.js")
        else:
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(str(staging / "package"), str(target))
        shutil.rmtree(staging, ignore_errors=True)
    marker.write_text("\n".join(f"{p}@{v}" for p, v in NPM_PACKAGES.items()) + "\n")
    return VENDOR


def _asset_urls(out_dir: Path) -> dict[str, str]:
    rel = Path(*([".."] * len(out_dir.resolve().relative_to(BUILD.resolve()).parts))) / "vendor"
    prefix = rel.as_posix()
    return {
        "require_js_url": f"{prefix}/require.js",
        "jquery_url": f"{prefix}/jquery.min.js",
        "mathjax_url": f"{prefix}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    }


def _without_tagged_cells(notebook: Path, tags: set[str]) -> nbformat.NotebookNode:
    # Dropped before export, not by an nbconvert preprocessor: the reveal preprocessor puts a
    # slide's closing tags on its last cell, so removing that cell afterwards breaks the nesting.
    nb = nbformat.read(notebook, as_version=4)
    nb.cells = [cell for cell in nb.cells if not tags & set(cell.metadata.get("tags", []))]
    return nb


def _check_inside_build(out_dir: Path) -> None:
    try:
        out_dir.resolve().relative_to(BUILD.resolve())
    except ValueError as err:
        raise ValueError(f"out_dir: pages must be written under {BUILD} so they find build/vendor/, got {out_dir}") from err


def build_deck(notebook: str | Path, out_dir: str | Path = BUILD / "slides") -> Path:
    """Write `<out_dir>/<name>.slides.html`, a reveal.js deck of `notebook`; return its path."""
    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook: {notebook} does not exist")
    _check_inside_build(out_dir)
    vendor_assets()
    out_dir.mkdir(parents=True, exist_ok=True)
    urls = _asset_urls(out_dir)
    exporter = SlidesExporter(
        template_name="offline_reveal",
        reveal_theme="white",  # its fonts ship with reveal.js; "simple" and others import Google Fonts
        extra_template_basedirs=[str(TEMPLATES)],
        reveal_url_prefix=urls["require_js_url"].rsplit("/", 1)[0] + "/reveal.js",
        **urls,
    )
    body, _ = exporter.from_notebook_node(_without_tagged_cells(notebook, SLIDES_REMOVED_TAGS))
    target = out_dir / f"{notebook.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def build_html(notebook: str | Path, out_dir: str | Path = BUILD / "html") -> Path:
    """Write `<out_dir>/<name>.html`, the whole notebook as a page; return its path."""
    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook: {notebook} does not exist")
    _check_inside_build(out_dir)
    vendor_assets()
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="offline_lab", extra_template_basedirs=[str(TEMPLATES)], **_asset_urls(out_dir))
    body, _ = exporter.from_notebook_node(_without_tagged_cells(notebook, {"injected-parameters"}))
    target = out_dir / f"{notebook.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def expected_slide_count(notebook: str | Path) -> int:
    """How many reveal.js sections (slides and sub-slides) a deck of `notebook` has."""
    nb = nbformat.read(Path(notebook), as_version=4)
    count = 0
    for i, cell in enumerate(c for c in nb.cells if not SLIDES_REMOVED_TAGS & set(c.metadata.get("tags", []))):
        kind = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        if i == 0 or kind in ("slide", "subslide"):
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.slides", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks (default: executed copies in build/notebooks/, else notebooks/)")
    parser.add_argument("--out", default=str(BUILD / "slides"), help="output folder (under build/)")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks]
    if not paths:
        executed = sorted((BUILD / "notebooks").glob("*.ipynb"))
        paths = executed or sorted((ROOT / "notebooks").glob("*.ipynb"))
        if not executed:
            print("no executed notebooks in build/notebooks/ (run `make run` for decks with results); using notebooks/")
    for path in paths:
        print(f"slides: {build_deck(path, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
