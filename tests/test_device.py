"""helpers.device: device choice, profile resolution, seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from helpers.device import DEVICE_ENV, get_device, resolve_profile, seed_everything, version_report


def test_auto_device_is_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("helpers.device._mps_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")
    monkeypatch.setattr("helpers.device._mps_available", lambda: True)
    assert get_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert get_device("auto") == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_explicit_unavailable_or_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device: 'cuda' was requested but CUDA is not available"):
        get_device("cuda")
    with pytest.raises(ValueError, match="device: expected"):
        get_device("tpu")
    with pytest.raises(TypeError, match="device"):
        get_device(3)


def test_profile_auto_is_gpu_only_with_cuda(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_profile("auto", "cpu") == "cpu"
    monkeypatch.setattr("helpers.device.get_device", lambda d="auto": torch.device("cuda"))
    assert resolve_profile("auto") == "gpu"
    monkeypatch.setattr("helpers.device.get_device", lambda d="auto": torch.device("mps"))
    assert resolve_profile("auto") == "cpu"
    assert resolve_profile("GPU") == "gpu"
    with pytest.raises(ValueError, match="profile: expected 'auto', 'cpu' or 'gpu'"):
        resolve_profile("fast")


def test_same_seed_gives_the_same_draws_everywhere():
    def draws(seed):
        gen = seed_everything(seed)
        return random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen)

    a, b, c = draws(7), draws(7), draws(8)
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    assert not torch.equal(a[2], c[2])


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_seed_is_rejected(bad, error):
    with pytest.raises(error, match="seed"):
        seed_everything(bad)


def test_version_report_names_the_essentials():
    report = version_report()
    for key in ("python", "torch", "numpy", "device (auto)", "profile (auto)"):
        assert key in report and report[key]
