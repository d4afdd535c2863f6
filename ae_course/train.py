"""A small, seeded training loop shared by every model in the course.

A model only has to provide ``loss(x) -> (B,)`` per-example losses; the loop minimizes their mean with
Adam, records the history, shows a tqdm progress bar and refuses to continue past a NaN or infinite loss.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: `device` if given, else $AE_COURSE_DEVICE, else CUDA when available, else CPU.

    Raises ValueError if the requested device string is not understood by torch, and RuntimeError if
    CUDA is requested but not available.
    """
    name = device if device is not None else os.environ.get("AE_COURSE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r} (from AE_COURSE_DEVICE or the device argument)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def minibatch_budget(n: int, batch_size: int, epochs: int | None, steps: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps) for n examples in minibatches of batch_size, trained for `epochs`
    passes or `steps` minibatches (exactly one of the two).

    Raises ValueError unless exactly one of epochs and steps is given and >= 1, for batch_size < 1, or n = 0.
    """
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs and steps, got epochs={epochs}, steps={steps}")
    if (epochs if steps is None else steps) < 1 or batch_size < 1:
        raise ValueError(f"epochs, steps and batch_size must be >= 1, got epochs={epochs}, steps={steps}, "
                         f"batch_size={batch_size}")
    if n == 0:
        raise ValueError("no training data: x is empty")
    steps_per_epoch = math.ceil(n / batch_size)
    return steps_per_epoch, (steps if steps is not None else epochs * steps_per_epoch)


@dataclass
class History:
    """What a training run measured: per-epoch mean train loss (and validation loss if given), per example."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, batch_size: int = 1000,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             y: torch.Tensor | None = None) -> float:
    """Mean of ``model.loss`` over the rows of x (N, D), in the model's loss units, in eval mode.

    y: optional (N,) labels, passed as ``model.loss(x, y)`` (conditional models)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].to(device)
        if transform is not None:
            batch = transform(batch)
        extra = () if y is None else (y[start:start + batch_size].to(device),)
        total += model.loss(batch, *extra).sum().item()
    model.train(was_training)
    return total / len(x)


def train(model: nn.Module, x: torch.Tensor, *, y: torch.Tensor | None = None,
          epochs: int | None = None, steps: int | None = None,
          batch_size: int = 128, lr: float = 1e-3,
          seed: int = 0, x_val: torch.Tensor | None = None, device: str | torch.device | None = None,
          transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
          optimizer: torch.optim.Optimizer | None = None, progress: bool = True,
          y_val: torch.Tensor | None = None) -> History:
    """Minimize the mean of ``model.loss(batch)`` over minibatches of x with Adam.

    ``history.train_loss`` holds, per epoch, the mean loss per example over the batches of that epoch.

    Args:
        model: a module with ``loss(x) -> (B,)``; moved to `device` (see :func:`get_device`).
        x: (N, D) training data, kept on its device and moved batch by batch.
        y: optional (N,) labels; then the loss is ``model.loss(batch, labels)`` (conditional models).
        epochs: passes over x, or
        steps: the number of minibatches (gradient steps) to train for, whatever the size of x: the
            same budget on a small and a large data set; the last epoch may be partial. Give exactly one.
        batch_size: examples per step (the last partial batch of an epoch is kept).
        lr: Adam's learning rate (Kingma & Ba 2015) unless `optimizer` is given.
        seed: seeds torch's global generator (shuffling, and any sampling in the model or `transform`).
        x_val: optional (M, D) held-out data, evaluated after every epoch (y_val: its labels).
        optimizer: an optimizer over the model's parameters, e.g. to continue training in stages.
        transform: applied to each batch on the device before the loss (e.g. dynamic binarization
            or a corruption process); also applied to x_val.
        progress: show a tqdm bar over epochs with the current losses (unless $TQDM_DISABLE is set).
    Returns:
        a :class:`History`.
    Raises:
        ValueError: unless exactly one of epochs and steps is given and >= 1; for batch_size < 1 or empty x.
        FloatingPointError: when a loss is NaN or infinite; the parameters keep the last finite step's values.
    """
    steps_per_epoch, total_steps = minibatch_budget(len(x), batch_size, epochs, steps)
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
    dev = get_device(device)
    torch.manual_seed(seed)
    model.to(dev)
    model.train()
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    history = History(device=str(dev))
    start_time = time.perf_counter()
    # progress=True leaves the bar to tqdm's own settings, so TQDM_DISABLE=1 silences it (the book build does).
    bar = tqdm(range(math.ceil(total_steps / steps_per_epoch)), desc=type(model).__name__, mininterval=1.0,
               **({} if progress else {"disable": True}))
    for epoch in bar:
        order = torch.randperm(len(x), device=x.device)
        running, seen = torch.zeros((), device=dev), 0
        for i in range(min(steps_per_epoch, total_steps - history.steps)):
            rows = order[i * batch_size:(i + 1) * batch_size]
            batch = x[rows].to(dev, non_blocking=True)
            if transform is not None:
                batch = transform(batch)
            extra = () if y is None else (y[rows.to(y.device)].to(dev, non_blocking=True),)
            loss = model.loss(batch, *extra).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch + 1}, step {i + 1} (global step {history.steps + 1}); "
                    "the parameters were not updated with it. Lower the learning rate or check the inputs.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.steps += 1
            running += loss.detach() * len(batch)
            seen += len(batch)
        history.train_loss.append(running.item() / seen)
        postfix = {"train": f"{history.train_loss[-1]:.2f}"}
        if x_val is not None:
            history.val_loss.append(evaluate(model, x_val, transform=transform, y=y_val))
            postfix["val"] = f"{history.val_loss[-1]:.2f}"
        bar.set_postfix(postfix)
    history.seconds = time.perf_counter() - start_time
    model.eval()
    return history
