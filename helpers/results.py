"""Headline metrics of a notebook run, written where the runner (helpers.run) collects them.

Every notebook ends with one `record(...)` call.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR_ENV = "SCRATCHMAKER_RESULTS_DIR"


def default_results_dir() -> Path:
    """`$SCRATCHMAKER_RESULTS_DIR`, else `build/results` at the repository root."""
    env = os.environ.get(RESULTS_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "build" / "results"


def _clean_metrics(argument: str, values: Mapping[str, Any] | None) -> dict[str, float]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{argument}: expected a mapping of metric name to number, got {type(values).__name__}")
    cleaned: dict[str, float] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{argument}: metric names must be non-empty strings, got {key!r}")
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{argument}[{key!r}]: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"{argument}[{key!r}]: expected a finite number, got {value}")
        cleaned[key] = float(value)
    return cleaned


def record(
    notebook: str,
    metrics: Mapping[str, Any],
    baselines: Mapping[str, Any] | None = None,
    *,
    profile: str | None = None,
    device: str | None = None,
    directory: str | Path | None = None,
) -> dict[str, Any]:
    """Write a notebook's headline metrics (and the baselines measured beside them) to
    `<directory>/<notebook>.json` and return the record.

    metrics:   {"validation:accuracy": 0.97, ...}, SageMaker's metric names where it has them.
    baselines: {"IsolationForest roc_auc": 0.95, ...}, the references measured in the same run.
    """
    if not isinstance(notebook, str) or not notebook.strip() or "/" in notebook:
        raise ValueError(f"notebook: expected a notebook name such as '01_random_cut_forest', got {notebook!r}")
    cleaned = _clean_metrics("metrics", metrics)
    if not cleaned:
        raise ValueError("metrics: expected at least one headline metric")
    entry: dict[str, Any] = {
        "notebook": notebook,
        "metrics": cleaned,
        "baselines": _clean_metrics("baselines", baselines),
        "profile": profile,
        "device": device,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out_dir = Path(directory) if directory is not None else default_results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{notebook}.json").write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def load_records(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every record in `directory`, keyed by notebook name."""
    in_dir = Path(directory) if directory is not None else default_results_dir()
    if not in_dir.is_dir():
        return {}
    return {path.stem: json.loads(path.read_text()) for path in sorted(in_dir.glob("*.json"))}
