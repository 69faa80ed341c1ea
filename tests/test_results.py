"""helpers.results: one record per notebook, read back by the runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers.results import RESULTS_DIR_ENV, load_records, record


def test_record_writes_a_json_the_runner_can_load(tmp_path):
    entry = record("01_random_cut_forest", {"test:f1": np.float64(0.9), "roc_auc": torch.tensor(0.97)},
                   {"IsolationForest roc_auc": 0.95}, profile="cpu", device="cpu", directory=tmp_path)
    on_disk = json.loads((tmp_path / "01_random_cut_forest.json").read_text())
    assert on_disk == entry
    assert on_disk["metrics"] == {"test:f1": 0.9, "roc_auc": pytest.approx(0.97)}
    assert load_records(tmp_path)["01_random_cut_forest"]["baselines"] == {"IsolationForest roc_auc": 0.95}


def test_record_uses_the_runners_directory_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path / "r"))
    record("02_x", {"m": 1})
    assert (tmp_path / "r" / "02_x.json").is_file()


@pytest.mark.parametrize(
    "metrics, error, message",
    [
        ({}, ValueError, "at least one"),
        ({"m": math.nan}, ValueError, r"metrics\['m'\]: expected a finite number"),
        ({"m": "high"}, TypeError, r"metrics\['m'\]: expected a number"),
        ({"m": True}, TypeError, r"metrics\['m'\]: expected a number"),
        ([("m", 1.0)], TypeError, "metrics: expected a mapping"),
    ],
)
def test_record_refuses_metrics_that_are_not_finite_numbers(tmp_path, metrics, error, message):
    with pytest.raises(error, match=message):
        record("03_x", metrics, directory=tmp_path)


def test_record_refuses_a_bad_notebook_name(tmp_path):
    with pytest.raises(ValueError, match="notebook"):
        record("../escape", {"m": 1.0}, directory=tmp_path)


def test_load_records_of_a_missing_directory_is_empty(tmp_path):
    assert load_records(tmp_path / "none") == {}
