"""One seeded training loop for every model of the course, and checkpoints.

A training step is what one minibatch does to a model: :func:`loss_step` (the default) minimizes the mean
of ``model.loss(x[, y]) -> (B,)`` with one optimizer; a model with several players (the adversarial
autoencoders) brings its own ``training_step`` and ``make_optimizers``. The loop (:func:`train`) does the
rest, the same for every model: seeding, the device, shuffling, minibatches, an optional ``transform`` of
each batch, the tqdm bar, the :class:`History` of named per-epoch losses, validation, and refusing to go on
past a NaN or infinite loss.

Every step updates through :func:`update`, the one place where a loss becomes a parameter update:

    check that the loss is finite  ->  zero all gradients of the model  ->  backward  ->  optimizer.step().
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .files import atomic_write
from .models import check_finite

__all__ = ["get_device", "minibatch_budget", "History", "evaluate", "update", "loss_step", "adam",
           "make_optimizers", "train", "save_checkpoint", "load_checkpoint"]


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


def _whole(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def minibatch_budget(n: int, batch_size: int, epochs: int | None, steps: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps) for n examples in minibatches of batch_size, trained for `epochs`
    passes or `steps` minibatches (exactly one of the two).

    Raises ValueError unless exactly one of epochs and steps is given, a whole number >= 1, for a
    batch_size that is not a whole number >= 1, or n = 0.
    """
    epochs, steps, batch_size = _whole(epochs, "epochs"), _whole(steps, "steps"), _whole(batch_size, "batch_size")
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs and steps, got epochs={epochs}, steps={steps}")
    if (epochs if steps is None else steps) < 1 or batch_size is None or batch_size < 1:
        raise ValueError(f"epochs, steps and batch_size must be >= 1, got epochs={epochs}, steps={steps}, "
                         f"batch_size={batch_size}")
    if n == 0:
        raise ValueError("no training data: x is empty")
    steps_per_epoch = math.ceil(n / batch_size)
    return steps_per_epoch, (steps if steps is not None else epochs * steps_per_epoch)


@dataclass
class History:
    """What a training run measured.

    losses: per named loss (``"loss"`` for :func:`loss_step`; ``"reconstruction"``, ``"discriminator"``, ...
        for the adversarial models), its mean per example over each epoch, in the model's loss units.
    val_loss: per epoch, the mean ``model.loss`` on the validation data (if given).
    seconds: training wall time; steps: gradient steps taken; epochs: epochs finished; device: where.
    """

    losses: dict[str, list[float]] = field(default_factory=dict)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    epochs: int = 0
    device: str = "cpu"

    @property
    def train_loss(self) -> list[float]:
        """The per-epoch training loss of a single-loss model (``losses["loss"]``)."""
        if "loss" not in self.losses and self.losses:
            raise AttributeError(f"this run recorded the losses {sorted(self.losses)}; read history.losses[name]")
        return self.losses.get("loss", [])

    def to_dict(self) -> dict:
        """Plain Python values (for a checkpoint)."""
        return asdict(self)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, batch_size: int = 1000,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             y: torch.Tensor | None = None) -> float:
    """Mean of ``model.loss(x[, y])`` over the rows of x (N, D), in the model's loss units, in eval mode.

    y: optional (N,) labels (conditional models). Raises ValueError for empty x or a length mismatch.
    """
    if len(x) == 0:
        raise ValueError("x is empty: nothing to evaluate")
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    try:
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device)
            if transform is not None:
                batch = transform(batch)
            labels = None if y is None else y[start:start + batch_size].to(device)
            total += _loss(model, batch, labels).sum().item()
    finally:
        model.train(was_training)
    return total / len(x)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model.loss(x) if y is None else model.loss(x, y)


def update(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
           name: str = "loss") -> torch.Tensor:
    """One parameter update: refuse a NaN or infinite loss, zero every gradient of the model, backpropagate,
    step the optimizer. Returns the loss, detached.

    Zeroing the whole model (not only the optimizer's parameters) matters when several optimizers share a
    model: a phase must not see gradients that an earlier phase left on parameters it does not own.
    Raises FloatingPointError (naming the loss) before touching the parameters.
    """
    if not torch.isfinite(loss):
        what = "the loss" if name == "loss" else f"the {name} loss"
        raise FloatingPointError(f"{what} is {loss.item()}; the parameters were not updated with it. "
                                 "Lower the learning rate or check the inputs.")
    model.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def loss_step(model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], x: torch.Tensor,
              y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The training step of a model with one loss: minimize the minibatch mean of ``model.loss(x[, y])``.

    x: (B, D) minibatch; y: optional (B,) labels. Returns ``{"loss": mean loss}`` (detached, per example).
    """
    return {"loss": update(model, optimizers["loss"], _loss(model, x, y).mean())}


def adam(parameters, lr: float = 1e-3, **options) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) over `parameters`, each tensor updated by one fused kernel (``fused=True``).

    torch's default on CPU is a Python loop over the parameters with one small kernel per operation and
    tensor (six passes over memory, and a slow elementwise square root); the fused kernel does the same
    arithmetic in one vectorized pass: the same parameters up to float rounding (tests/test_training.py
    compares 50 steps) at about 0.4 times the optimizer's time per step for the book's MLPs on CPU
    (benchmarks/README.md, the speed section). `options` (betas, eps, weight_decay, ...) go to
    ``torch.optim.Adam``.
    """
    return torch.optim.Adam(parameters, lr=lr, fused=True, **options)


def make_optimizers(model: nn.Module, lr: float = 1e-3) -> dict[str, torch.optim.Optimizer]:
    """The model's own ``make_optimizers(lr)`` if it has one, else ``{"loss": adam(model.parameters(), lr)}``
    (:func:`adam`)."""
    if hasattr(model, "make_optimizers"):
        return model.make_optimizers(lr=lr)
    return {"loss": adam(model.parameters(), lr=lr)}


class Step(Protocol):
    def __call__(self, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], x: torch.Tensor,
                 y: torch.Tensor | None = None, **extra) -> Mapping[str, torch.Tensor]: ...


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
          epochs: int | None = None, steps: int | None = None, batch_size: int = 128, lr: float = 1e-3,
          seed: int | None = 0, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
          device: str | torch.device | None = None,
          transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
          optimizers: Mapping[str, torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
          step: Step | None = None, labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
          history: History | None = None, schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler] = (),
          progress: bool = True) -> History:
    """Train `model` on minibatches of x: every model of the course, one loop.

    Each minibatch goes through ``step(model, optimizers, batch, labels)``: `step` if given, else the
    model's ``training_step`` if it has one (the adversarial autoencoders), else :func:`loss_step` (the mean
    of ``model.loss``). The step returns its named losses; ``history.losses[name]`` holds, per epoch, their
    mean per example.

    Args:
        model: a module with ``loss(x[, y]) -> (B,)`` (or its own ``training_step``); moved to `device`
            (see :func:`get_device`).
        x: (N, D) training data, kept on its device and moved batch by batch; floating, of the model's dtype.
        y: optional (N,) labels, passed to the step (conditional models, the supervised AAE).
        epochs: passes over x (a whole number), or
        steps: the number of minibatches (gradient steps) to train for, whatever the size of x: the
            same budget on a small and a large data set; the last epoch may be partial. Give exactly one.
        batch_size: examples per step (the last partial batch of an epoch is kept).
        lr: the learning rate of the default optimizers (:func:`make_optimizers`), unless `optimizers` is given.
        seed: seeds torch's global generator (shuffling, and any sampling in the model or `transform`);
            None continues from the generator's current state (as when resuming from a checkpoint).
        x_val: optional (M, D) held-out data, M >= 1, evaluated after every epoch (y_val: its labels).
        device: where to train; the model is moved there, minibatches are moved one at a time.
        transform: applied to each batch on the device before the step (e.g. dynamic binarization
            or a corruption process); also applied to x_val and to the labelled batches.
        optimizers: a dict of optimizers by name (as :func:`make_optimizers` returns), or one optimizer
            (then named ``"loss"``), e.g. to continue training in stages.
        step: a training step of one's own, called as above.
        labelled: (x_l (M, D), y_l (M,)), the labelled examples of the semi-supervised AAE: every step
            draws a minibatch of min(batch_size, M) of them, with replacement, passed as ``labelled=``.
        history: a :class:`History` to continue (e.g. from :func:`load_checkpoint`); a new one if None.
        schedulers: torch learning-rate schedulers of the optimizers, each stepped once after every
            training step (e.g. ``torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / steps))``
            decays the rate tenfold over `steps` steps).
        progress: show a tqdm bar over epochs with the current losses (unless $TQDM_DISABLE is set).
    Returns:
        the :class:`History`.
    Raises:
        ValueError: unless exactly one of epochs and steps is given, a whole number >= 1; for a bad
            batch_size, empty x or x_val, NaN or infinite entries in x or x_val, a length mismatch of x and y,
            x of another dtype than the model (all before the first step).
        FloatingPointError: when a loss is NaN or infinite (naming the epoch and the step); the parameters
            keep the last finite step's values.
        On any exception, KeyboardInterrupt included, the model is left in eval mode, the bar closed, and the
        History of the finished epochs is attached to the exception as ``err.history``.
    """
    steps_per_epoch, total_steps = minibatch_budget(len(x), batch_size, epochs, steps)
    _check_pair(x, y, "x", "y")
    if x_val is not None:
        if len(x_val) == 0:
            raise ValueError("x_val is empty: pass None to train without validation data")
        _check_pair(x_val, y_val, "x_val", "y_val")
    if labelled is not None:
        if len(labelled) != 2 or len(labelled[0]) != len(labelled[1]) or len(labelled[0]) == 0:
            raise ValueError(f"labelled must be (x_l, y_l) with as many (>= 1) labels as images, got "
                             f"{[len(t) for t in labelled]}")
    parameter = next(model.parameters())
    if x.dtype != parameter.dtype:
        raise ValueError(f"x is {x.dtype} but the model's parameters are {parameter.dtype}; "
                         f"convert with x.to({parameter.dtype})")
    dev = get_device(device)
    if seed is not None:
        torch.manual_seed(seed)
    model.to(dev)
    if optimizers is None:
        optimizers = make_optimizers(model, lr)
    elif isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"loss": optimizers}
    step = step if step is not None else getattr(type(model), "training_step", loss_step)
    history = history if history is not None else History()
    history.device = str(dev)
    extra = {}
    start_time, start_steps = time.perf_counter(), history.steps
    # progress=True leaves the bar to tqdm's own settings, so TQDM_DISABLE=1 silences it (the book build does).
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    bar = tqdm(total=n_epochs, desc=type(model).__name__, mininterval=1.0, **({} if progress else {"disable": True}))
    model.train()
    try:
        for epoch in range(history.epochs, history.epochs + n_epochs):
            order = torch.randperm(len(x), device=x.device)
            sums: dict[str, torch.Tensor] = {}
            seen = 0
            for i in range(min(steps_per_epoch, total_steps - (history.steps - start_steps))):
                rows = order[i * batch_size:(i + 1) * batch_size]
                batch = x[rows].to(dev, non_blocking=True)
                if transform is not None:
                    batch = transform(batch)
                labels = None if y is None else y[rows.to(y.device)].to(dev, non_blocking=True)
                if labelled is not None:
                    pick = torch.randint(len(labelled[0]), (min(batch_size, len(labelled[0])),))
                    x_l = labelled[0][pick].to(dev)
                    extra["labelled"] = (x_l if transform is None else transform(x_l), labelled[1][pick].to(dev))
                try:
                    losses = step(model, optimizers, batch, labels, **extra)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err} (epoch {epoch + 1}, step {i + 1}; global step "
                                             f"{history.steps + 1})") from err
                for scheduler in schedulers:
                    scheduler.step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value.detach() * len(batch)
                history.steps += 1
                seen += len(batch)
            for name, total in sums.items():
                history.losses.setdefault(name, []).append(total.item() / seen)
            history.epochs += 1
            if x_val is not None:
                history.val_loss.append(evaluate(model, x_val, transform=transform, y=y_val))
                model.train()
            postfix = {name[:5]: f"{values[-1]:.3f}" for name, values in history.losses.items()}
            if x_val is not None:
                postfix["val"] = f"{history.val_loss[-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
    except BaseException as err:
        err.history = history                      # the finished epochs stay reachable, e.g. after Ctrl-C
        raise
    finally:
        history.seconds += time.perf_counter() - start_time
        bar.close()
        model.eval()
    return history


def _check_pair(x: torch.Tensor, y: torch.Tensor | None, x_name: str, y_name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{x_name} must be a (N, D) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not x.is_floating_point():
        raise ValueError(f"{x_name} must be a floating-point tensor, got {x.dtype}")
    check_finite(x, x_name)
    if y is not None and len(y) != len(x):
        raise ValueError(f"{x_name} has {len(x)} rows but {y_name} has {len(y)} labels")


# ----------------------------------------------------------------------------------------- checkpoints


def _config(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    return {"class": type(model).__name__, **(config if isinstance(config, dict) else {})}


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
                    history: History | None = None) -> Path:
    """Save a training run to `path`: the model's class and configuration, its weights, the optimizers'
    states, the History, and torch's global random state (so that a resumed run continues identically).

    Written atomically: to a temporary file in the same folder, then renamed over `path`, so an interrupted
    save never leaves a truncated checkpoint (and never destroys the previous one). Returns the path.
    Raises ValueError if `optimizers` is neither an optimizer nor a dict of them.
    """
    path = Path(path)
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"loss": optimizers}
    if optimizers is not None and not all(isinstance(o, torch.optim.Optimizer) for o in optimizers.values()):
        raise ValueError("optimizers must be a torch optimizer or a dict of them")
    payload = {"format": 1, "config": _config(model),
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizers": {name: opt.state_dict() for name, opt in (optimizers or {}).items()},
               "history": None if history is None else history.to_dict(),
               "rng_state": torch.get_rng_state()}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> History:
    """Load a checkpoint written by :func:`save_checkpoint` into `model` (and `optimizers`); return its History.

    The file is read with ``torch.load(weights_only=True)`` (no code in a checkpoint is ever run). The model
    must be of the checkpoint's class and configuration: a checkpoint of another architecture is refused
    before anything is changed. With `restore_rng`, torch's global random state is set to the saved one, so
    that ``train(model, x, ..., seed=None, optimizers=optimizers, history=history)`` continues the saved
    run exactly as if it had not stopped (at an epoch boundary, on the same device).

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: for a file that is not a readable checkpoint (corrupt, truncated, another format), a
            model of another class or configuration, weights of other names or shapes, or optimizers that
            the checkpoint does not hold.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != 1:
        raise ValueError(f"{path} is not an ae_course checkpoint (format 1)")
    saved, ours = payload["config"], _config(model)
    if saved != ours:
        diff = {k: (saved.get(k), ours.get(k)) for k in sorted(set(saved) | set(ours)) if saved.get(k) != ours.get(k)}
        raise ValueError(f"{path} holds another architecture: " + ", ".join(
            f"{k} = {a!r} in the checkpoint, {b!r} in the model" for k, (a, b) in diff.items()))
    state, expected = payload["model"], model.state_dict()
    mismatched = sorted(k for k in set(state) | set(expected)
                        if k not in state or k not in expected or state[k].shape != expected[k].shape)
    if mismatched:
        raise ValueError(f"{path} holds weights of other names or shapes than the model: {mismatched[:5]}")
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"loss": optimizers}
    missing = sorted(set(optimizers or {}) - set(payload["optimizers"]))
    if missing:
        raise ValueError(f"{path} holds no state for the optimizers {missing} (it has {sorted(payload['optimizers'])})")
    model.load_state_dict(state)
    for name, opt in (optimizers or {}).items():
        opt.load_state_dict(payload["optimizers"][name])
    if restore_rng:
        torch.set_rng_state(payload["rng_state"])
    return History(**payload["history"]) if payload["history"] is not None else History()
