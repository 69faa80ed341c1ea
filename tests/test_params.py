"""helpers.params: papermill parameter checks name the parameter and what was expected."""

from __future__ import annotations

import math

import pytest

from helpers.params import check_bool, check_choice, check_float, check_int, check_path


def test_check_int_accepts_in_range_and_names_the_parameter_otherwise():
    assert check_int("num_trees", 100, minimum=1) == 100
    with pytest.raises(ValueError, match="num_trees: expected an integer >= 1, got 0"):
        check_int("num_trees", 0, minimum=1)
    with pytest.raises(ValueError, match="epochs: expected an integer <= 5"):
        check_int("epochs", 6, maximum=5)
    for bad in (1.0, "3", True, None):
        with pytest.raises(TypeError, match="num_trees: expected an integer"):
            check_int("num_trees", bad)


def test_check_float_rejects_nan_inf_and_out_of_range():
    assert check_float("learning_rate", 1, minimum=0) == 1.0
    with pytest.raises(ValueError, match="learning_rate: expected a finite number"):
        check_float("learning_rate", math.nan)
    with pytest.raises(ValueError, match="learning_rate: expected a finite number"):
        check_float("learning_rate", math.inf)
    with pytest.raises(ValueError, match="learning_rate: expected a number > 0"):
        check_float("learning_rate", 0.0, minimum=0, strict_minimum=True)
    with pytest.raises(ValueError, match="momentum: expected a number <= 1"):
        check_float("momentum", 1.5, maximum=1)
    with pytest.raises(TypeError, match="momentum: expected a number"):
        check_float("momentum", "0.9")


def test_check_bool_takes_sagemaker_strings():
    assert check_bool("batch_norm", True) is True
    assert check_bool("batch_norm", "False") is False
    with pytest.raises(TypeError, match="batch_norm: expected True or False"):
        check_bool("batch_norm", 1)


def test_check_choice_is_case_insensitive_for_strings_and_lists_the_options():
    assert check_choice("optimizer", "SGD", ["sgd", "adam"]) == "sgd"
    assert check_choice("num_layers", 18, [18, 34]) == 18
    with pytest.raises(ValueError, match=r"optimizer: expected one of \['sgd', 'adam'\], got 'lbfgs'"):
        check_choice("optimizer", "lbfgs", ["sgd", "adam"])


def test_check_path_allows_none_and_requires_existing_paths(tmp_path):
    assert check_path("data_dir", None) is None
    assert check_path("data_dir", str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="data_dir: .* does not exist"):
        check_path("data_dir", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="data_dir: a path is required"):
        check_path("data_dir", "", allow_none=False)
