"""The notebook anatomy of CONVENTIONS.md as checkable rules (used by test_notebook_structure.py).

`notebook_problems(nb, name)` lists every rule a notebook breaks; an empty list means it conforms.
"""

from __future__ import annotations

import ast
import re
from typing import Any

SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
REQUIRED_PARAMETERS = ("seed", "device", "profile")
MAPPING_HEADING = re.compile(r"^#+ .*How this maps to SageMaker", re.MULTILINE)


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: Any) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def parameter_names(source: str) -> tuple[list[str], list[str]]:
    """(names assigned in a parameters cell, problems with it): literals only, one comment each."""
    problems: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [], [f"parameters cell does not parse: {err}"]
    lines = source.splitlines()
    names: list[str] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            problems.append(f"parameters cell line {node.lineno}: only `name = literal` assignments belong here")
            continue
        name = node.targets[0].id
        try:
            ast.literal_eval(node.value)
        except ValueError:
            problems.append(f"parameter {name!r} is not a literal (derived values belong in the next cell)")
        if "#" not in lines[node.end_lineno - 1]:
            problems.append(f"parameter {name!r} has no comment saying what it is")
        names.append(name)
    return names, problems


def notebook_problems(nb: Any, name: str) -> list[str]:
    """Every way `nb` (an nbformat v4 notebook, named `name`) departs from the course anatomy."""
    problems: list[str] = []
    cells = nb.get("cells", [])
    if not cells:
        return ["notebook has no cells"]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name should be 'python3', got {kernel!r}")

    for i, cell in enumerate(cells):
        slide_type = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        if slide_type not in SLIDE_TYPES:
            problems.append(f"cell {i}: slideshow.slide_type missing or invalid ({slide_type!r})")
        if cell.get("cell_type") == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i}: stored outputs (commit notebooks stripped)")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i}: stored execution count")

    first = cells[0]
    if first.get("cell_type") != "markdown" or not _source(first).lstrip().startswith("# "):
        problems.append("cell 0: the title cell must be markdown starting with '# '")

    code_cells = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    tagged = [i for i in code_cells if "parameters" in _tags(cells[i])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one code cell tagged 'parameters', found {len(tagged)}")
    else:
        names, param_problems = parameter_names(_source(cells[tagged[0]]))
        problems += param_problems
        for required in REQUIRED_PARAMETERS:
            if required not in names:
                problems.append(f"parameters cell lacks {required!r}")
        later = [i for i in code_cells if i > tagged[0]]
        if not later:
            problems.append("no validation cell after the parameters cell")
        else:
            validation = _source(cells[later[0]])
            unchecked = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", validation)]
            if unchecked:
                problems.append(f"validation cell after the parameters cell does not check {unchecked}")

    solutions = [i for i, c in enumerate(cells) if "solution" in _tags(c)]
    if not solutions:
        problems.append("no exercise: expected a cell tagged 'solution' (with an 'exercise' stub before it and a 'check' after it)")
    for i in solutions:
        if not any("exercise" in _tags(c) for c in cells[:i]):
            problems.append(f"cell {i}: solution without an 'exercise' stub cell before it")
        following = [j for j in range(i + 1, len(cells)) if "check" in _tags(cells[j])]
        if not following or cells[following[0]].get("cell_type") != "code":
            problems.append(f"cell {i}: solution without a code cell tagged 'check' after it")

    if not name.startswith("00_"):
        if not any(c.get("cell_type") == "markdown" and MAPPING_HEADING.search(_source(c)) for c in cells):
            problems.append("no '## How this maps to SageMaker' section")
        if not any(c.get("cell_type") == "code" and "record(" in _source(c) for c in cells):
            problems.append("no helpers.results.record(...) call for the runner")
    return problems
