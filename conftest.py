"""Shared pytest set-up: a per-notebook wall-time table at the end of every run."""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

# Unit tests draw figures headless; notebooks run in their own kernels and are untouched by this.
matplotlib.use("Agg")

_notebook_seconds: dict[str, float] = defaultdict(float)
_notebook_failed: set[str] = set()


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration
        if report.failed:
            _notebook_failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook wall time (nbval)")
    for path, seconds in sorted(_notebook_seconds.items()):
        status = "FAILED" if path in _notebook_failed else "ok"
        terminalreporter.write_line(f"{os.path.basename(path):40s} {seconds:7.1f} s  {status}")
    terminalreporter.write_line(f"{'total':40s} {sum(_notebook_seconds.values()):7.1f} s")
