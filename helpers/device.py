"""Device choice, seeding and profile resolution shared by every notebook.

Taught in notebooks/00_start_here.ipynb ("Your machine").
"""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib import metadata

import numpy as np
import torch

DEVICE_ENV = "SCRATCHMAKER_DEVICE"
PROFILES = ("cpu", "gpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to compute on.

    `"auto"` picks CUDA, then Apple's MPS, then the CPU; the environment variable
    `SCRATCHMAKER_DEVICE` (e.g. `cpu`) overrides `"auto"`. An explicit name is checked
    for availability and returned as is.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'auto', 'cpu' or 'cuda', got {type(device).__name__}")
    name = device.strip().lower()
    if name == "auto":
        override = os.environ.get(DEVICE_ENV, "").strip().lower()
        if override and override != "auto":
            return get_device(override)
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was requested but CUDA is not available here; use 'auto' or 'cpu'")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device: {device!r} was requested but MPS is not available here; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    return dev


def resolve_profile(profile: str = "auto", device: str | torch.device | None = None) -> str:
    """The size profile a notebook runs at: `"gpu"` (full size) or `"cpu"` (laptop/CI size).

    `"auto"` is `"gpu"` when the compute device is CUDA, else `"cpu"`; `device` defaults to
    `get_device("auto")`.
    """
    if not isinstance(profile, str):
        raise TypeError(f"profile: expected 'auto', 'cpu' or 'gpu', got {type(profile).__name__}")
    name = profile.strip().lower()
    if name == "auto":
        dev = get_device("auto" if device is None else device)
        return "gpu" if dev.type == "cuda" else "cpu"
    if name not in PROFILES:
        raise ValueError(f"profile: expected 'auto', 'cpu' or 'gpu', got {profile!r}")
    return name


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch CPU generator seeded alike.

    With `deterministic=True`, torch is also asked for deterministic kernels (slower on the GPU;
    the CPU is deterministic already for what we use).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed: expected 0 <= seed < 2**32, got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS too
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_report(packages: tuple[str, ...] = ("torch", "torchvision", "numpy", "scikit-learn", "matplotlib")) -> dict[str, str]:
    """Python, platform, package versions and the devices torch can see, as a flat dict."""
    report = {"python": sys.version.split()[0], "platform": platform.platform()}
    report.update({name: _version(name) for name in packages})
    report["cuda available"] = str(torch.cuda.is_available())
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    report["mps available"] = str(_mps_available())
    report["cpu threads"] = str(torch.get_num_threads())
    report["device (auto)"] = str(get_device("auto"))
    report["profile (auto)"] = resolve_profile("auto")
    return report
