"""A small training loop shared by the neural notebooks: progress bar, mixed precision on the
GPU, gradient clipping, early stopping and a learning-curve history.

The loop is deliberately thin: the notebook supplies `loss_fn(model, batch) -> loss` and,
optionally, `evaluate(model) -> {metric: value}`; everything model-specific stays there.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclass
class History:
    """What `fit` saw, one entry per epoch (`train_loss` is the mean over the epoch's batches)."""

    train_loss: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    def metric(self, name: str) -> list[float]:
        """The per-epoch values of one evaluation metric."""
        if not any(name in m for m in self.metrics):
            raise KeyError(f"name: no metric {name!r} in history; have {sorted({k for m in self.metrics for k in m})}")
        return [m.get(name, math.nan) for m in self.metrics]


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """`batch` with every tensor inside (tuples, lists, dicts nested) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None: full float32).

    `"auto"` is bfloat16 on a CUDA GPU that supports it, else float32: mixed precision pays off on
    GPUs, not on CPUs.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if device.type != "cuda":
        raise ValueError(f"precision: {precision!r} mixed precision needs a CUDA device, got {device}")
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


def fit(
    model: torch.nn.Module,
    batches: Iterable[Any] | Callable[[int], Iterable[Any]],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    device: torch.device | str | None = None,
    scheduler: Any | None = None,
    scheduler_step: str = "epoch",
    evaluate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    monitor: str | None = None,
    mode: str = "min",
    patience: int | None = None,
    tolerance: float = 0.0,
    min_epochs: int = 0,
    restore_best: bool = True,
    clip_gradient: float | None = None,
    precision: str = "auto",
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train `model` for up to `epochs` epochs and return its History.

    batches:   an iterable re-iterated every epoch (a DataLoader), or `epoch -> iterable` for data
               drawn fresh each epoch. Tensors in a batch are moved to `device`.
    loss_fn:   `(model, batch) -> scalar loss tensor`.
    evaluate:  `model -> {name: value}`, called after every epoch in eval mode without gradients.
    monitor:   the metric early stopping and `restore_best` watch (`"train_loss"` or a key of
               `evaluate`'s dict); `mode` "min" or "max". Training stops once the monitored value has
               not improved by more than `tolerance` for `patience` epochs (never before `min_epochs`).
    scheduler: stepped per "epoch" or per "batch" (`scheduler_step`).
    precision: "auto" | "float32" | "bfloat16" | "float16" autocast (mixed precision on CUDA only).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(f"scheduler_step: expected 'epoch' or 'batch', got {scheduler_step!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience: expected None or an integer >= 1, got {patience!r}")
    if clip_gradient is not None and not clip_gradient > 0:
        raise ValueError(f"clip_gradient: expected None or a positive number, got {clip_gradient!r}")
    if monitor is not None and monitor != "train_loss" and evaluate is None:
        raise ValueError(f"monitor: {monitor!r} needs an `evaluate` function that returns it")
    if patience is not None and monitor is None:
        raise ValueError("monitor: early stopping (patience) needs a metric to monitor")

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    amp_dtype = autocast_dtype(precision, dev)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    history = History()
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    sign = 1.0 if mode == "min" else -1.0

    epoch_bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in epoch_bar:
        model.train()
        start = time.perf_counter()
        epoch_batches = batches(epoch) if callable(batches) else batches
        total, count = 0.0, 0
        for batch in tqdm(epoch_batches, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
            batch = to_device(batch, dev, non_blocking=dev.type == "cuda")
            optimizer.zero_grad(set_to_none=True)
            context = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            with context:
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate or clip gradients")
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip_gradient is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_gradient)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if clip_gradient is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_gradient)
                optimizer.step()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            total += float(loss.detach())
            count += 1
        if count == 0:
            raise ValueError(f"batches: epoch {epoch + 1} produced no batches")
        history.train_loss.append(total / count)
        history.lr.append(float(optimizer.param_groups[0]["lr"]))
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()

        metrics: dict[str, float] = {}
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in evaluate(model).items()}
        history.metrics.append(metrics)
        history.epoch_seconds.append(time.perf_counter() - start)
        epoch_bar.set_postfix(train_loss=f"{history.train_loss[-1]:.4g}", **{k: f"{v:.4g}" for k, v in metrics.items()})

        if monitor is not None:
            value = history.train_loss[-1] if monitor == "train_loss" else metrics.get(monitor)
            if value is None:
                raise KeyError(f"monitor: evaluate() returned {sorted(metrics)}, not {monitor!r}")
            improved = history.best_value is None or sign * (history.best_value - value) > tolerance
            if improved:
                history.best_value, history.best_epoch, stale = value, epoch, 0
                if restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if patience is not None and stale >= patience and epoch + 1 >= min_epochs:
                history.stopped_early = True
                break
    epoch_bar.close()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history
