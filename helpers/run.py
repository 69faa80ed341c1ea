"""The course runner: execute notebooks with papermill and collect their headline metrics.

    python -m helpers.run [NOTEBOOK ...] [-p NAME VALUE ...] [--profile cpu|gpu]

Unlike papermill, which only warns, an unknown parameter name is an error that lists the valid
names. Each executed notebook goes to build/notebooks/ (kept when a cell fails), is rendered to
build/html/ and build/slides/, and its metrics (written by `helpers.results.record`) are gathered
with its run time into build/results.json and the table build/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import papermill
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

from helpers.results import RESULTS_DIR_ENV, load_records

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"


class UnknownParameterError(ValueError):
    """A parameter name that a notebook's parameters cell does not define."""


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The parameters a notebook accepts, name -> default value (as written in its parameters cell)."""
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"notebook: {path} does not exist")
    found = papermill.inspect_notebook(str(path))
    if not found:
        raise ValueError(f"notebook: {path.name} has no cell tagged 'parameters'")
    params: dict[str, Any] = {}
    for name, info in found.items():
        try:
            params[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            params[name] = info["default"]
    return params


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal when it is one (`50`, `0.1`, `True`, `[1, 2]`), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(notebooks: Sequence[Path], parameters: Mapping[str, Any]) -> None:
    """Raise UnknownParameterError naming the valid parameters when a name is unknown to any notebook."""
    problems = []
    for path in notebooks:
        valid = notebook_parameters(path)
        unknown = [name for name in parameters if name not in valid]
        if unknown:
            problems.append(f"{path.name} has no parameter {', '.join(map(repr, unknown))}; valid names: {', '.join(valid)}")
    if problems:
        raise UnknownParameterError("\n".join(problems))


def _resolve_notebooks(names: Sequence[str]) -> list[Path]:
    if not names:
        found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
        if not found:
            raise FileNotFoundError(f"no notebooks in {NOTEBOOKS}")
        return found
    paths = []
    for name in names:
        path = Path(name)
        candidates = [path, NOTEBOOKS / path, NOTEBOOKS / f"{name}.ipynb"]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            available = ", ".join(p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb")))
            raise FileNotFoundError(f"notebook {name!r} not found; available: {available}")
        paths.append(match.resolve())
    return paths


def run_notebook(
    path: Path,
    parameters: Mapping[str, Any],
    out_dir: Path,
    results_dir: Path,
    timeout: int,
) -> dict[str, Any]:
    """Execute one notebook; return its status, run time and, on failure, where it failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{path.stem}.json").unlink(missing_ok=True)
    output = out_dir / path.name
    os.environ[RESULTS_DIR_ENV] = str(results_dir)
    start = time.perf_counter()
    status: dict[str, Any] = {"notebook": path.stem, "output": str(output), "parameters": dict(parameters)}
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=dict(parameters),
            progress_bar={"desc": path.stem, "leave": False},
            execution_timeout=timeout,
            cwd=str(path.parent),
            request_save_on_cell_execute=True,
        )
        status["status"] = "ok"
    except PapermillExecutionError as err:
        status.update(
            status="failed",
            failed_cell=err.cell_index,
            execution_count=err.exec_count,
            error=f"{err.ename}: {err.evalue}",
        )
    status["seconds"] = round(time.perf_counter() - start, 1)
    return status


def _fmt(values: Mapping[str, float]) -> str:
    return "<br>".join(f"{k} = {v:.4g}" for k, v in values.items()) or "—"


def write_results(runs: Sequence[Mapping[str, Any]], results_dir: Path, build: Path) -> tuple[Path, Path]:
    """build/results.json (every run with its metrics) and build/RESULTS.md (the table)."""
    records = load_records(results_dir)
    merged = []
    for run in runs:
        rec = records.get(run["notebook"], {})
        merged.append({**run, "metrics": rec.get("metrics", {}), "baselines": rec.get("baselines", {}),
                       "profile": rec.get("profile"), "device": rec.get("device")})
    json_path = build / "results.json"
    json_path.write_text(json.dumps(merged, indent=2) + "\n")
    lines = [
        "# Results",
        "",
        f"Written by `python -m helpers.run` on {time.strftime('%Y-%m-%d %H:%M')}; every number below comes from the executed notebooks in build/notebooks/.",
        "",
        "| notebook | status | headline metrics | baselines (same run) | profile | device | run time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in merged:
        status = row["status"] if row["status"] == "ok" else f"**failed** (cell {row.get('failed_cell')})"
        lines.append(
            f"| {row['notebook']} | {status} | {_fmt(row['metrics'])} | {_fmt(row['baselines'])} | "
            f"{row.get('profile') or '—'} | {row.get('device') or '—'} | {row['seconds']:.0f} s |"
        )
    md_path = build / "RESULTS.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook paths or names (default: every notebook in notebooks/)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a parameter (repeatable); VALUE is read as a Python literal when it is one")
    parser.add_argument("--profile", choices=["auto", "cpu", "gpu"], help="set every notebook's `profile` parameter")
    parser.add_argument("--build", default=str(BUILD), help="output folder (default: build/)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run (default: 1800)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML pages")
    parser.add_argument("--no-slides", action="store_true", help="skip the reveal.js decks")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    args = parser.parse_args(argv)

    try:
        notebooks = _resolve_notebooks(args.notebooks)
        parameters = {name: parse_value(value) for name, value in args.parameter}
        if args.profile:
            parameters["profile"] = args.profile
        check_parameters(notebooks, parameters)
    except (UnknownParameterError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    build = Path(args.build).resolve()
    results_dir = build / "results"
    runs: list[dict[str, Any]] = []
    bar = tqdm(notebooks, desc="notebooks", unit="nb")
    for path in bar:
        bar.set_postfix_str(path.stem)
        run = run_notebook(path, parameters, build / "notebooks", results_dir, args.timeout)
        runs.append(run)
        if run["status"] == "ok":
            tqdm.write(f"ok      {path.stem}  {run['seconds']:.0f} s")
            if not args.no_html or not args.no_slides:
                from helpers import slides  # nbconvert import is slow; only when rendering

                if not args.no_html:
                    slides.build_html(run["output"], build / "html")
                if not args.no_slides:
                    slides.build_deck(run["output"], build / "slides")
        else:
            tqdm.write(
                f"FAILED  {path.stem}: cell {run['failed_cell']} (execution count {run['execution_count']}): "
                f"{run['error']}\n        the executed notebook, with the error, is kept at {run['output']}"
            )
            if args.fail_fast:
                break
    json_path, md_path = write_results(runs, results_dir, build)
    failed = [r["notebook"] for r in runs if r["status"] != "ok"]
    print(f"results: {md_path} and {json_path}")
    print(f"{len(runs) - len(failed)} notebooks ok, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
