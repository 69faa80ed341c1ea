"""helpers.train.fit: the shared training loop."""

from __future__ import annotations

import pytest
import torch

from helpers.train import autocast_dtype, fit, to_device


def _regression(seed=0, n=256):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=gen)
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    y = X @ w + 0.01 * torch.randn(n, 1, generator=gen)
    return X, y, w


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def test_fit_learns_a_linear_map_and_records_history():
    X, y, w = _regression()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    batches = list(zip(X.split(32), y.split(32)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, batches, _loss, opt, epochs=20, progress=False,
                  evaluate=lambda m: {"val_mse": _loss(m, (X, y)).item()})
    assert history.epochs_run == 20 and len(history.metric("val_mse")) == 20
    assert history.train_loss[-1] < history.train_loss[0] / 100
    torch.testing.assert_close(model.weight.detach().T, w, atol=0.02, rtol=0)


def test_fit_is_deterministic_for_a_seed():
    X, y, _ = _regression()

    def run():
        torch.manual_seed(3)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        fit(model, list(zip(X.split(16), y.split(16))), _loss, opt, epochs=3, progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    X, y, _ = _regression()
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)  # weights move every epoch
    scores = iter([5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 1.0])  # the monitored value: best at epoch 2
    seen_weights = []

    def evaluate(m):
        seen_weights.append(m.weight.detach().clone())
        return {"loss": next(scores)}

    history = fit(model, [(X, y)], _loss, opt, epochs=7, evaluate=evaluate, monitor="loss",
                  patience=3, progress=False)
    assert history.stopped_early and history.epochs_run == 5
    assert history.best_epoch == 1 and history.best_value == 4.0
    assert not torch.equal(seen_weights[1], seen_weights[-1])
    assert torch.equal(model.weight.detach(), seen_weights[1])


def test_early_stopping_respects_tolerance_and_min_epochs():
    X, y, _ = _regression()
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scores = iter([1.0, 0.999, 0.998, 0.997, 0.996, 0.995])
    history = fit(model, [(X, y)], _loss, opt, epochs=6, evaluate=lambda m: {"acc": next(scores)},
                  monitor="acc", mode="min", patience=1, tolerance=0.01, min_epochs=4, progress=False)
    # improvements of 0.001 are below the tolerance: stale from epoch 2 on, but not before min_epochs.
    assert history.stopped_early and history.epochs_run == 4


def test_fit_draws_fresh_batches_each_epoch_when_given_a_function():
    X, y, _ = _regression()
    epochs_seen = []

    def batches(epoch):
        epochs_seen.append(epoch)
        return [(X, y)]

    fit(torch.nn.Linear(3, 1), batches, _loss, torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1), epochs=3, progress=False)
    assert epochs_seen == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs: expected an integer >= 1"),
        ({"epochs": 1, "mode": "up"}, "mode: expected 'min' or 'max'"),
        ({"epochs": 1, "patience": 2}, "monitor: early stopping"),
        ({"epochs": 1, "monitor": "acc"}, "needs an `evaluate`"),
        ({"epochs": 1, "clip_gradient": 0}, "clip_gradient"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, message):
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match=message):
        fit(model, [], _loss, torch.optim.SGD(model.parameters(), lr=0.1), progress=False, **kwargs)


def test_fit_refuses_an_empty_epoch_and_a_diverging_loss():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="produced no batches"):
        fit(model, [], _loss, opt, epochs=1, progress=False)
    X, y, _ = _regression()
    with pytest.raises(FloatingPointError, match="loss became nan"):
        fit(model, [(X, y * float("nan"))], _loss, opt, epochs=1, progress=False)


def test_gradient_clipping_bounds_the_step():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    X, y = torch.ones(4, 1), torch.full((4, 1), 1000.0)
    fit(model, [(X, y)], _loss, torch.optim.SGD(model.parameters(), lr=1.0), epochs=1, clip_gradient=0.5, progress=False)
    assert model.weight.abs().item() == pytest.approx(0.5)


def test_autocast_is_off_on_the_cpu_and_mixed_precision_needs_cuda():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("float32", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("bfloat16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision: expected one of"):
        autocast_dtype("int8", torch.device("cpu"))


def test_to_device_moves_nested_tensors_and_leaves_the_rest():
    batch = {"x": torch.zeros(2), "pair": (torch.ones(1), "label"), "list": [torch.ones(1)]}
    moved = to_device(batch, "cpu")
    assert moved["pair"][1] == "label" and isinstance(moved["list"], list)
    assert moved["x"].device.type == "cpu"
