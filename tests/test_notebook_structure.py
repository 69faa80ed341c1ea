"""Every notebook in notebooks/ follows the course anatomy (CONVENTIONS.md), and the rules bite."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from tests.notebook_rules import notebook_problems

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_the_first_is_start_here():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    assert NOTEBOOKS[0].name == "00_start_here.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert notebook_problems(nb, path.name) == []


def _minimal_notebook():
    meta = {"slideshow": {"slide_type": "slide"}}
    return nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        cells=[
            nbformat.v4.new_markdown_cell("# Title", metadata=meta),
            nbformat.v4.new_code_cell(
                'seed = 0  # the seed\ndevice = "auto"  # cpu|cuda|auto\nprofile = "auto"  # cpu|gpu|auto',
                metadata={"tags": ["parameters"], **meta},
            ),
            nbformat.v4.new_code_cell("check(seed, device, profile)", metadata=meta),
            nbformat.v4.new_markdown_cell("## How this maps to SageMaker", metadata=meta),
            nbformat.v4.new_code_cell("# your code", metadata={"tags": ["exercise"], **meta}),
            nbformat.v4.new_code_cell("answer = 1", metadata={"tags": ["solution"], **meta}),
            nbformat.v4.new_code_cell("assert answer == 1", metadata={"tags": ["check"], **meta}),
            nbformat.v4.new_code_cell("record('x', {'m': 1.0})", metadata=meta),
        ],
    )


def test_rules_accept_a_minimal_conforming_notebook():
    assert notebook_problems(_minimal_notebook(), "99_minimal.ipynb") == []


def test_rules_reject_stored_outputs_and_execution_counts():
    nb = _minimal_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells[2].execution_count = 3
    problems = notebook_problems(nb, "99_minimal.ipynb")
    assert any("stored outputs" in p for p in problems)
    assert any("execution count" in p for p in problems)


def test_rules_reject_a_missing_parameters_tag():
    nb = _minimal_notebook()
    nb.cells[1].metadata["tags"] = []
    assert any("tagged 'parameters'" in p for p in notebook_problems(nb, "99_minimal.ipynb"))


@pytest.mark.parametrize(
    "source, expected",
    [
        ('seed = 0  # s\ndevice = "auto"  # d\nprofile = "auto"  # p\nsteps = 2 * seed  # derived', "not a literal"),
        ('seed = 0\ndevice = "auto"  # d\nprofile = "auto"  # p', "no comment"),
        ('seed = 0  # s\ndevice = "auto"  # d', "lacks 'profile'"),
        ('import os\nseed = 0  # s\ndevice = "auto"  # d\nprofile = "auto"  # p', "only `name = literal`"),
    ],
)
def test_rules_reject_bad_parameters_cells(source, expected):
    nb = _minimal_notebook()
    nb.cells[1].source = source
    assert any(expected in p for p in notebook_problems(nb, "99_minimal.ipynb"))


def test_rules_reject_an_unvalidated_parameter():
    nb = _minimal_notebook()
    nb.cells[2].source = "check(seed, device)"
    assert any("does not check ['profile']" in p for p in notebook_problems(nb, "99_minimal.ipynb"))


def test_rules_reject_missing_slide_metadata_mapping_and_exercise_check():
    nb = _minimal_notebook()
    del nb.cells[0].metadata["slideshow"]
    nb.cells[3].source = "## Summary"
    del nb.cells[6]
    problems = notebook_problems(copy.deepcopy(nb), "99_minimal.ipynb")
    assert any("slide_type missing" in p for p in problems)
    assert any("How this maps to SageMaker" in p for p in problems)
    assert any("'check'" in p for p in problems)
