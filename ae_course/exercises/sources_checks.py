"""Checkers for the exercises of the chapter "The sources, reproduced".

* :func:`check_keras_loss`: a learner's ``keras_loss(x, x_hat, mu, log_var) -> (B,)``, the Keras source's loss,
  the per-pixel mean binary cross-entropy plus KL / 784 (Géron 2019, chapter 17), i.e. -ELBO / 784, checked
  against :func:`torch.nn.functional.binary_cross_entropy` and :func:`ae_course.losses.gaussian_kl`.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import gaussian_kl
from .feedback import Feedback, NotYet, call_learner, checker

__all__ = ["check_keras_loss"]

_B, _D, _L = 5, 784, 10


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Grey-level images x (B, D), decoder probabilities x_hat (B, D), mu and log_var (B, L), float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(_B, _D, generator=gen, dtype=torch.float64)
    x_hat = torch.sigmoid(2 * torch.randn(_B, _D, generator=gen, dtype=torch.float64))
    mu = torch.randn(_B, _L, generator=gen, dtype=torch.float64)
    log_var = torch.randn(_B, _L, generator=gen, dtype=torch.float64) - 1
    return x, x_hat, mu, log_var


def _mistakes(x, x_hat, mu, log_var) -> list[tuple[torch.Tensor, str]]:
    bce = F.binary_cross_entropy(x_hat, x, reduction="none")
    kl = gaussian_kl(mu, log_var)
    return [
        (bce.sum(1) + kl, "that is -ELBO in nats per image: Keras's binary_crossentropy is the MEAN over the 784 "
                          "pixels, and the source divides the KL by 784 too."),
        (bce.mean(1) + kl, "the KL term is not divided by 784: the source adds mean(latent_loss) / 784, so both "
                           "terms are per pixel."),
        (bce.sum(1) + kl / _D, "the cross-entropy is summed over the pixels; Keras's binary_crossentropy averages "
                               "it (divide by 784, or use .mean(dim=1))."),
        (bce.mean(1), "the KL term is missing: add KL / 784."),
        (bce.mean(1) - kl / _D, "the KL term has the wrong sign: the loss ADDS KL(q || p) >= 0."),
        (bce.mean(1) + kl / _L, "the KL is divided by the code's dimension; the source divides by 784, the number "
                                "of pixels, so that it matches the per-pixel mean."),
        (bce.mean(1) + 2 * kl / _D, "the KL is twice too large: it is 1/2 sum(mu^2 + exp(log_var) - log_var - 1)."),
        (F.binary_cross_entropy(x, x_hat, reduction="none").mean(1) + kl / _D,
         "the cross-entropy's arguments are swapped: F.binary_cross_entropy(x_hat, x) takes the prediction first "
         "and the target second."),
    ]


@checker
def check_keras_loss(fn: Callable) -> Feedback:
    """Check ``fn(x, x_hat, mu, log_var) -> (B,)`` against the Keras source's loss,
    mean_d BCE(x_d, x_hat_d) + KL(N(mu, exp(log_var)) || N(0, I)) / 784.

    Diagnoses: -ELBO in nats (no division), the KL not divided, the BCE summed, no KL, its sign, the KL divided
    by the code's dimension or doubled, the BCE's arguments swapped, a scalar instead of (B,).
    """
    x, x_hat, mu, log_var = _inputs()
    out = call_learner(fn, x, x_hat, mu, log_var, call="keras_loss(x, x_hat, mu, log_var)",
                       expect="a (B,) tensor, one loss per image")
    right = F.binary_cross_entropy(x_hat, x, reduction="none").mean(1) + gaussian_kl(mu, log_var) / _D
    if out.dim() == 0:
        if torch.isclose(out.double(), right.mean(), rtol=1e-6):
            raise NotYet("that is the mean over the batch, the number Keras prints; return one loss per image, "
                         f"shape ({_B},): take the means over the pixels (dim=1) only.")
        raise NotYet(f"keras_loss returned a single number; return one loss per image, shape ({_B},).")
    if tuple(out.shape) != (_B,):
        raise NotYet(f"keras_loss should return shape ({_B},), one loss per image; got {tuple(out.shape)}.")
    out = out.double()
    if torch.allclose(out, right, rtol=1e-6, atol=1e-9):
        return Feedback(True, f"the Keras loss: {right.mean().item():.4f} nats per pixel on these inputs, "
                              f"{784 * right.mean().item():.1f} nats per image, which is -ELBO / 784.")
    for value, message in _mistakes(x, x_hat, mu, log_var):
        if torch.allclose(out, value, rtol=1e-6, atol=1e-9):
            raise NotYet(message)
    worst = (out - right).abs().argmax().item()
    return Feedback(False, f"expected mean BCE per pixel + KL / 784; for image {worst} that is "
                           f"{right[worst].item():.5f}, got {out[worst].item():.5f}.")
