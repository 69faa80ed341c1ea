"""helpers.run: the papermill runner refuses unknown parameters, keeps failed notebooks, collects metrics."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from helpers import run

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path: Path, body: str) -> Path:
    meta = {"slideshow": {"slide_type": "slide"}}
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        cells=[
            nbformat.v4.new_code_cell("seed = 0  # seed\nscale = 2.0  # factor", metadata={"tags": ["parameters"], **meta}),
            nbformat.v4.new_code_cell(body, metadata=meta),
        ],
    )
    nbformat.write(nb, path)
    return path


def test_notebook_parameters_reads_the_parameters_cell():
    params = run.notebook_parameters(ROOT / "notebooks" / "00_start_here.ipynb")
    assert {"seed", "device", "profile"} <= set(params)
    assert params["device"] == "auto"


@pytest.mark.parametrize("text, value", [("50", 50), ("0.1", 0.1), ("True", True), ("[1, 2]", [1, 2]), ("sgd", "sgd")])
def test_values_are_read_as_python_literals_when_they_are_one(text, value):
    assert run.parse_value(text) == value


def test_unknown_parameter_fails_with_the_valid_names(tmp_path, capsys):
    nb = _notebook(tmp_path / "01_demo.ipynb", "pass")
    code = run.main([str(nb), "-p", "sead", "1", "--build", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2
    assert "01_demo.ipynb has no parameter 'sead'; valid names: seed, scale" in err
    assert not (tmp_path / "build" / "notebooks").exists(), "nothing may run when a name is wrong"


def test_unknown_notebook_fails_listing_the_available_ones(capsys):
    assert run.main(["99_nope", "--no-html", "--no-slides"]) == 2
    assert "00_start_here" in capsys.readouterr().err


def test_runner_executes_records_and_writes_the_results_table(tmp_path):
    body = "from helpers.results import record\nrecord('01_demo', {'score': scale * 2}, {'baseline score': 1.0}, profile='cpu')"
    nb = _notebook(tmp_path / "01_demo.ipynb", body)
    build = tmp_path / "build"
    assert run.main([str(nb), "-p", "scale", "3", "--build", str(build), "--no-html", "--no-slides"]) == 0
    results = json.loads((build / "results.json").read_text())
    assert results[0]["status"] == "ok" and results[0]["metrics"] == {"score": 6.0}
    table = (build / "RESULTS.md").read_text()
    assert "| 01_demo | ok | score = 6 | baseline score = 1 | cpu |" in table
    executed = nbformat.read(build / "notebooks" / "01_demo.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_a_failing_cell_is_reported_the_notebook_kept_and_the_exit_code_nonzero(tmp_path, capsys):
    nb = _notebook(tmp_path / "02_broken.ipynb", "raise RuntimeError('boom in cell')")
    build = tmp_path / "build"
    assert run.main([str(nb), "--build", str(build), "--no-html", "--no-slides"]) == 1
    out = capsys.readouterr().out
    assert "FAILED  02_broken: cell" in out and "RuntimeError: boom in cell" in out
    kept = nbformat.read(build / "notebooks" / "02_broken.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
    assert "**failed**" in (build / "RESULTS.md").read_text()
