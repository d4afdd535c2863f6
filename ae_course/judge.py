r"""The book's one independent judge of generated digits: a small convolutional classifier trained on real ones.

Generated images are scored by what a classifier of *real* digits makes of them: the fraction that it
assigns to the requested class (conditional models), its confidence and the class balance
(:mod:`ae_course.sample_quality`). Such a score is only as good as the judge. Its error rate on real test
digits, e = 1 - accuracy, is printed beside every score because it says how far the score can be from
what a perfect judge would give: on images that look like real digits the judge is wrong about a
fraction e of them, so a measured generation accuracy g means a true one within about g +- e; on
images unlike real digits (blurs, blends) its errors can be larger, and a rejected sample is then not
necessarily a bad one.

The network (a LeNet-style classifier, LeCun et al. 1998, with max pooling and dropout):

    x (B, 784) -> 1x28x28 -> conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (32) -> ReLU -> max-pool 2
               -> dropout -> linear (32*7*7 -> 10) = logits of p(y | x),

trained by :func:`ae_course.train` (the course's one loop; Adam, the cross-entropy ``-log p(y|x)`` is the
judge's ``loss``), the last quarter of the steps at a tenth of the learning rate. :func:`digit_judge` trains it once per training set and keeps the weights in the user
cache folder, so every chapter of a book build uses the same judge without training it again.
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import platformdirs
from filelock import FileLock
import torch
import torch.nn.functional as F
from torch import nn

from .files import atomic_write
from .models import check_input

__all__ = ["DigitJudge", "digit_judge", "default_cache_dir"]


class DigitJudge(nn.Module):
    """A small convolutional classifier of 28x28 grey-level images (see the module docstring).

    Args:
        n_classes: C, the number of classes (10 digits).
        channels: the output channels of the two 3x3 convolutions.
        dropout: the probability of dropping a feature before the last layer (training only).
    Raises:
        ValueError: for n_classes < 2, channels that are not two whole numbers >= 1, or dropout outside [0, 1).
    """

    def __init__(self, n_classes: int = 10, channels: Sequence[int] = (16, 32), dropout: float = 0.25):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if int(n_classes) < 2 or len(channels) != 2 or min(channels) < 1 or not 0 <= dropout < 1:
            raise ValueError(f"need n_classes >= 2, two channel counts >= 1 and 0 <= dropout < 1, got "
                             f"{n_classes}, {channels}, {dropout}")
        self.n_classes, self.channels, self.dropout = int(n_classes), channels, float(dropout)
        self.network = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, channels[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[1] * 7 * 7, n_classes))

    @property
    def config(self) -> dict:
        """The constructor's arguments (what the cache key and a checkpoint record)."""
        return {"n_classes": self.n_classes, "channels": list(self.channels), "dropout": self.dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 784) grey levels in [0, 1] -> logits (B, C) of p(y | x). Raises ValueError for bad x."""
        weight = self.network[1].weight
        check_input(x, 784, like=weight)
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"images must be grey levels in [0, 1], got values in [{x.min():.3g}, {x.max():.3g}]")
        return self.network(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The cross-entropy -log p(y | x) of the true classes y (B,), per image (B,), in nats."""
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"y must be ({len(x)},) class indices in [0, {self.n_classes}), got {tuple(y.shape)} "
                             f"{y.dtype}")
        return F.cross_entropy(self(x), y.to(x.device), reduction="none")

    @torch.no_grad()
    def predict_proba(self, images, batch_size: int = 1000) -> np.ndarray:
        """p(y | x) for images (N, 784) in [0, 1] (a tensor or array): (N, C) float64 NumPy array, rows summing
        to 1 (the input of :func:`ae_course.sample_quality.classifier_scores`). Eval mode, no gradient."""
        x = torch.as_tensor(images)
        weight = self.network[1].weight
        x = x.to(device=weight.device, dtype=weight.dtype)
        was_training = self.training
        self.eval()
        try:
            p = torch.cat([self(x[i:i + batch_size]).double().softmax(dim=1).cpu()
                           for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0, self.n_classes)
        finally:
            self.train(was_training)
        return p.numpy()

    def predict(self, images, batch_size: int = 1000) -> torch.Tensor:
        """The most probable class argmax_y p(y | x) of each image: (N,) int64 tensor."""
        return torch.from_numpy(self.predict_proba(images, batch_size).argmax(axis=1))

    def accuracy(self, images, labels) -> float:
        """The fraction of images (N, 784) whose predicted class equals labels (N,)."""
        labels = torch.as_tensor(labels)
        if labels.shape != (len(images),):
            raise ValueError(f"need one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")
        return (self.predict(images) == labels.cpu()).double().mean().item()


def default_cache_dir() -> Path:
    """Where :func:`digit_judge` keeps trained judges: $AE_COURSE_CACHE, else the user cache folder, + /judges."""
    return Path(os.environ.get("AE_COURSE_CACHE") or platformdirs.user_cache_dir("ae_course")).expanduser() / "judges"


def _key(x: torch.Tensor, y: torch.Tensor, settings: dict) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(sorted(settings.items())).encode())
    digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    digest.update(y.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def digit_judge(x: torch.Tensor, y: torch.Tensor, *, steps: int = 1200, batch_size: int = 128, lr: float = 2e-3,
                seed: int = 0, channels: Sequence[int] = (16, 32), dropout: float = 0.25,
                cache_dir: str | os.PathLike | None | bool = None, device: str | torch.device | None = None,
                ) -> DigitJudge:
    """The judge trained on real digits x (N, 784) in [0, 1] with classes y (N,): a :class:`DigitJudge`
    trained by :func:`ae_course.train` for `steps` minibatches (Adam at `lr`, the last quarter of the steps at
    lr / 10; seeded), returned in eval mode, on the CPU. The defaults reach 98.7 % on the 10,000 MNIST test
    digits after training on the 60,000 training digits, 96.8 % after training on the 4,000 embedded ones.

    The trained weights are stored in `cache_dir` (default :func:`default_cache_dir`; ``False``: no cache)
    under a key of the training data and every setting, written atomically and read back with
    ``torch.load(weights_only=True)``; a later call with the same data and settings loads them instead of
    training again (the same weights: training is seeded). A cache file that cannot be read is replaced. Processes
    that ask for the same judge at once (chapters executed side by side) train it once: a lock file beside the
    weights (``filelock``) makes the others wait and load them.

    Raises:
        ValueError: for x that is not (N, 784) in [0, 1], labels that are not N class indices, or bad settings
            (as :class:`DigitJudge` and :func:`ae_course.train`).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    check_input(x, 784)
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must be grey levels in [0, 1], got values in [{x.min():.3g}, {x.max():.3g}]")
    if y.shape != (len(x),) or y.is_floating_point():
        raise ValueError(f"y must hold one class index per image, shape ({len(x)},), got {tuple(y.shape)} {y.dtype}")
    judge = DigitJudge(n_classes=max(10, int(y.max()) + 1), channels=channels, dropout=dropout).to(x.dtype)
    settings = {**judge.config, "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
                "dtype": str(x.dtype), "torch": torch.__version__.split("+")[0]}
    train_judge = functools.partial(_train_judge, x, y.long(), judge.n_classes, steps=steps, batch_size=batch_size,
                                    lr=lr, seed=seed, channels=channels, dropout=dropout, device=device)
    if cache_dir is False:
        return train_judge()
    path = Path(default_cache_dir() if cache_dir in (None, True) else cache_dir) / f"{_key(x, y, settings)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Chapters executed side by side (the book build) ask for the same judge at once: the first trains it, the
    # others wait for the lock and load its weights.
    with FileLock(f"{path}.lock"):
        if path.is_file():
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
                if payload.get("settings") != settings:
                    raise ValueError("other settings")
                judge.load_state_dict(payload["state"])
                return judge.eval()
            except Exception as err:          # a truncated or foreign file: train again and replace it
                warnings.warn(f"ignoring the unreadable judge cache {path} ({type(err).__name__}: {err}); training anew",
                              stacklevel=2)
        judge = train_judge()
        payload = {"settings": settings, "state": {k: v.detach().cpu() for k, v in judge.state_dict().items()}}
        atomic_write(path, lambda f: torch.save(payload, f))
    return judge


def _train_judge(x, y, n_classes, *, steps, batch_size, lr, seed, channels, dropout, device) -> DigitJudge:
    """A new :class:`DigitJudge` trained as :func:`digit_judge` says, in eval mode, on the CPU."""
    from .training import adam, train     # training imports models; importing here keeps this module light

    torch.manual_seed(seed)
    judge = DigitJudge(n_classes=n_classes, channels=channels, dropout=dropout).to(x.dtype)
    optimizer = adam(judge.parameters(), lr=lr)
    decay_at = max(1, round(0.75 * steps))
    train(judge, x, y, steps=decay_at, batch_size=batch_size, seed=seed, device=device, optimizers=optimizer,
          progress=False)
    if steps > decay_at:
        for group in optimizer.param_groups:
            group["lr"] = lr / 10
        train(judge, x, y, steps=steps - decay_at, batch_size=batch_size, seed=None, device=device,
              optimizers=optimizer, progress=False)
    return judge.cpu().eval()
