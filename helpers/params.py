"""Validation of papermill parameters: the cell after each notebook's parameters cell uses these.

Each check returns the (normalised) value or raises with the parameter's name and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum]."""
    if not _is_int(value):
        raise TypeError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_minimum: bool = False,
) -> float:
    """`value` as a finite float within the bounds (`strict_minimum` excludes the minimum)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if minimum is not None and (value < minimum or (strict_minimum and value == minimum)):
        relation = ">" if strict_minimum else ">="
        raise ValueError(f"{name}: expected a number {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """`value` as a bool (SageMaker's "true"/"false" strings are accepted too)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError(f"{name}: expected True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices` (strings compared case-insensitively, returned lower-case)."""
    options = list(choices)
    if isinstance(value, str):
        lowered = value.strip().lower()
        for option in options:
            if isinstance(option, str) and option.lower() == lowered:
                return option
    elif value in options:
        return value
    raise ValueError(f"{name}: expected one of {options}, got {value!r}")


def check_path(name: str, value: Any, *, must_exist: bool = True, allow_none: bool = True) -> Path | None:
    """`value` as a Path (or None when allowed); with `must_exist`, the path must exist."""
    if value is None or value == "":
        if allow_none:
            return None
        raise ValueError(f"{name}: a path is required")
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{name}: expected a path string, got {type(value).__name__}")
    path = Path(value).expanduser()
    if must_exist and not path.exists():
        raise FileNotFoundError(f"{name}: {str(path)!r} does not exist")
    return path
