"""environment.yml (conda users) and pyproject.toml (pip users) install the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _conda_pip_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    return {_name(r): r.replace(" ", "") for r in pip_sections[0] if not r.startswith("-e")}


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return {_name(r): r.replace(" ", "") for r in reqs}


def test_environment_yml_is_conda_forge_python_311_and_installs_the_project():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(r.startswith("-e ..") for r in pip_section), "the pip section must install the project"


def test_environment_yml_and_pyproject_list_the_same_packages_and_ranges():
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_every_environment_yml_dependency_says_what_uses_it():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    bare = [line for line in lines if line.strip().startswith("- ") and "==" not in line and ">=" in line and "#" not in line]
    assert bare == [], f"dependencies without a comment: {bare}"


def test_dependencies_are_ranges_not_pins():
    pinned = [r for r in _pyproject_requirements().values() if "==" in r]
    assert pinned == []
