"""Checkers for the exercises of the chapter "Training a VAE on MNIST".

* :func:`check_negative_elbo`: the per-image loss -log p(x|z) + KL(q(z|x) || N(0, I)) (Kingma & Welling
  2014, eq. 10) from the decoder's logits and the encoder's (mu, log_var);
* :func:`check_active_units`: the number of latent dimensions whose posterior mean varies across the data
  (Burda, Grosse & Salakhutdinov 2016, §5.2);
* :func:`check_log_likelihood_bound`: the importance-sampled bound L_k = logsumexp_i(log w_i) - log k
  (Burda et al. 2016, eq. 8).

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import gaussian_kl
from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, name_mistake,
                       prefixed)

__all__ = ["check_active_units", "check_log_likelihood_bound", "check_negative_elbo"]


def _bce_hint(err: Exception) -> str:
    if "between 0 and 1" in str(err) or "0 <= input" in str(err) or "input values" in str(err):
        return (" F.binary_cross_entropy expects probabilities in [0, 1], but the decoder returns logits:"
                " use F.binary_cross_entropy_with_logits(logits, x, reduction='none').")
    return ""


def _losses(fn, x, logits, mu, log_var) -> torch.Tensor:
    """fn(x, logits, mu, log_var) as a float64 (B,) vector of losses, or NotYet saying why it is not one."""
    return as_vector(call_learner(fn, x, logits, mu, log_var, hint=_bce_hint), len(x), "your result", finite=False,
                     mistakes=[((), "you returned a single number for the whole batch; return one loss per image, "
                                    "shape (B,) (the training loop takes the mean over the batch)."),
                               (x.shape, "you returned one value per pixel, shape (B, 784); sum the reconstruction "
                                         "term over the pixels (dim=1) and add the KL of each image.")])


_close = functools.partial(close, rtol=1e-4, atol=1e-3)


@checker
def check_negative_elbo(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(x, logits, mu, log_var) -> (B,)`, the negative ELBO of each image in nats.

    The reference is sum_d [softplus(l_d) - x_d l_d] + 1/2 sum_j [mu_j^2 + exp(log_var_j) - log_var_j - 1]
    (Kingma & Welling 2014, eq. 10 with the KL of App. B), for x (B, 784) binary, logits (B, 784),
    mu and log_var (B, L). The checker first calls `fn` with mu = log_var = 0 (KL = 0) to isolate the
    reconstruction term, then with random (mu, log_var) to isolate the KL term, and names the typical
    mistakes: a mean over pixels instead of a sum, probabilities treated as logits (or the reverse),
    a squared error, a missing KL, a KL with the wrong sign, averaged over latent dimensions, missing its
    factor 1/2 or reading log_var as log sigma, the ELBO instead of its negative, one number per batch;
    finally it tries logits of +-150, where a cross-entropy computed from probabilities saturates.
    """
    gen = torch.Generator().manual_seed(0)
    batch, pixels, latent = 6, 784, 8
    x = torch.rand(batch, pixels, generator=gen).round()
    logits = 3 * torch.randn(batch, pixels, generator=gen)
    mu = torch.randn(batch, latent, generator=gen)
    log_var = 0.7 * torch.randn(batch, latent, generator=gen)
    zeros = torch.zeros(batch, latent)

    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").double()
    recon = bce.sum(dim=1)
    kl = gaussian_kl(mu, log_var).double()

    got = _losses(fn, x, logits, mu, log_var)
    if _close(got, recon + kl):
        return _check_extreme_logits(fn)
    if _close(got, -(recon + kl)):
        return Feedback(False, "the sign is flipped: that is the ELBO. The loss to minimize is its negative, "
                               "-log p(x|z) + KL, which is positive.")

    with prefixed("with mu = log_var = 0: "):
        at_prior = _losses(fn, x, logits, zeros, zeros)
    probs = torch.sigmoid(logits)
    if not _close(at_prior, recon):
        name_mistake(at_prior, [
            (bce.mean(dim=1), "the reconstruction term is averaged over the 784 pixels (a mean) instead of summed: "
                              "-log p(x|z) of an image is the SUM over its pixels. With the summed KL this makes the "
                              "KL 784 times too strong (posterior collapse)."),
            (F.binary_cross_entropy_with_logits(probs, x, reduction="none").sum(dim=1),
             "you applied the sigmoid twice: binary_cross_entropy_with_logits expects the logits themselves, "
             "not sigmoid(logits)."),
            (((x - probs) ** 2).sum(dim=1), "that is a squared error: the model has a Bernoulli decoder, so "
                                            "the reconstruction term is the binary cross-entropy summed over pixels."),
            (0.5 * ((x - probs) ** 2).sum(dim=1), "that is half a squared error (a Gaussian decoder with sigma = 1): "
                                                  "the model has a Bernoulli decoder, so use the binary "
                                                  "cross-entropy."),
            (bce.sum(dim=1).mean().expand(batch), "the reconstruction term is averaged over the batch; keep one value "
                                                  "per image."),
        ], rtol=1e-4, atol=1e-3)
        return Feedback(False, "with mu = 0 and log_var = 0 the KL is 0, so your function should return the "
                               "reconstruction term alone, sum_d BCE(x_d, logits_d); it differs by up to "
                               f"{max_difference(at_prior, recon):.4g} nats.")

    kl_part = got - at_prior
    kl_per_dim = 0.5 * (mu**2 + log_var.exp() - log_var - 1).double()
    as_log_sigma = 0.5 * (mu**2 + (2 * log_var).exp() - 2 * log_var - 1).double().sum(dim=1)
    name_mistake(kl_part, [
        (torch.zeros_like(kl), "the KL term is missing: without it the model is a (noisy) autoencoder and "
                               "nothing pulls q(z|x) towards the prior N(0, I)."),
        (-kl, "the KL enters with the wrong sign: the loss is -log p(x|z) + KL, and the KL is >= 0. "
              "Check the sign of -1/2 sum (1 + log_var - mu^2 - exp(log_var))."),
        (kl_per_dim.mean(dim=1), "the KL is averaged over the latent dimensions instead of summed: "
                                 "KL(q || p) of independent dimensions is the SUM of their KLs."),
        (2 * kl, "the KL is twice too large: it is 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1)."),
        (kl / 2, "the KL is half what it should be: 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1)."),
        (as_log_sigma, "your KL treats log_var as log sigma; log_var is log sigma^2, so sigma^2 = exp(log_var)."),
        (kl_per_dim.sum(dim=1).mean().expand(batch), "the KL is averaged over the batch; keep one value per image."),
        (kl / pixels, "the KL is divided by 784; with the reconstruction term summed over pixels, keep the KL summed too."),
    ], rtol=1e-4, atol=1e-3)
    return Feedback(False, "the reconstruction term is right, but the KL term differs from "
                           "1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1) by up to "
                           f"{max_difference(kl_part, kl):.4g} nats.")


def _check_extreme_logits(fn) -> Feedback:
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[-150.0, 150.0, 150.0, -150.0]])
    zeros = torch.zeros(1, 2)
    with prefixed("right for moderate logits, but at logits of +-150: "):
        got = call_learner(fn, x, logits, zeros, zeros, hint=_bce_hint).double()
    if got.numel() != 1 or not torch.isfinite(got).all():
        return Feedback(False, "right for moderate logits, but not finite at logits of +-150: compute the "
                               "cross-entropy from the logits (softplus or binary_cross_entropy_with_logits).")
    if abs(got.item() - 200.0) < 1e-2:
        return Feedback(False, "right for moderate logits, but at logits of +-150 your cross-entropy is 100 nats "
                               "per wrong pixel instead of 150: F.binary_cross_entropy on probabilities clamps log p "
                               "at -100. Use F.binary_cross_entropy_with_logits on the logits.")
    if abs(got.item() - 300.0) > 1e-2:
        return Feedback(False, f"right for moderate logits, but at logits of +-150 (two pixels wrong by 150 nats each) "
                               f"the loss should be 300 nats, got {got.item():.4g}.")
    return Feedback(True, "reconstruction summed over pixels, KL summed over latent dimensions, one value per image, "
                          "stable at extreme logits.")


@checker
def check_active_units(value, mu: torch.Tensor, threshold: float = 0.01) -> Feedback:
    """Check the number of active units of posterior means `mu` (N, L): #{u : Var_n(mu[n, u]) > threshold}.

    Burda et al. (2016, §5.2), threshold 0.01. The variance is over the N examples; the population (divisor N)
    and the sample (divisor N - 1) variance are both accepted. Diagnoses: variance over the latent dimensions,
    a threshold on the standard deviation or on the mean, the number of *inactive* units, a fraction.
    Raises ValueError if `mu` itself is not (N, L) with N >= 2 (a wrong call, not a wrong answer).
    """
    number = as_number(value, "the number of active units")
    mu = torch.as_tensor(mu).detach().double()
    if mu.dim() != 2 or len(mu) < 2:
        raise ValueError(f"mu must be (N, L) with N >= 2, got {tuple(mu.shape)}")  # the chapter's bug, not the learner's
    latent = mu.shape[1]
    expected = {int((mu.var(dim=0, correction=c) > threshold).sum()) for c in (0, 1)}
    if number in expected:
        return Feedback(True, f"{int(number)} of {latent} latent dimensions are active.")
    answer = min(expected)
    if number != int(number):
        if any(math.isclose(number, e / latent, rel_tol=1e-6) for e in expected):
            return Feedback(False, f"that is the fraction of active units; give their number (out of {latent}).")
        return Feedback(False, f"a number of units is a whole number, got {number:g}.")
    number = int(number)
    if number in {latent - e for e in expected}:
        return Feedback(False, "you counted the INACTIVE units: a unit is active when the variance of its "
                               f"posterior mean exceeds {threshold}.")
    if number > latent:
        return Feedback(False, f"there are only {latent} latent dimensions, you counted {number}: take the variance "
                               "over the images (dim=0), one variance per latent dimension.")
    if number == int((mu.std(dim=0) > threshold).sum()):
        return Feedback(False, f"you thresholded the standard deviation; the criterion is the VARIANCE of mu_u "
                               f"over the images > {threshold} (a standard deviation > {math.sqrt(threshold):g}).")
    if number == int((mu.mean(dim=0).abs() > threshold).sum()):
        return Feedback(False, "you thresholded the mean of mu_u; a unit is active when mu_u VARIES across "
                               "images: threshold its variance over the images.")
    return Feedback(False, f"expected {answer} active units, got {number}: count the dimensions u with "
                           f"Var_n(mu[n, u]) > {threshold}, the variance taken over the images (dim=0).")


@checker
def check_log_likelihood_bound(fn: Callable[[torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(log_w) -> (B,)` with log_w (k, B): L_k = log (1/k) sum_i exp(log_w[i]) per column.

    Burda et al. (2016), eq. 8. Tried on float32 log-weights around -120 (exp underflows in float32) and
    float64 log-weights around -800 (exp underflows in float64), and with k = 1 (L_1 = log_w[0]).
    Diagnoses: the mean of the log-weights (the ELBO, not L_k), a missing -log k, the largest weight only,
    the reduction taken over the images instead of the samples, underflow of exp.
    """
    gen = torch.Generator().manual_seed(0)
    k, batch = 50, 4
    cases = [(-120 + 3 * torch.randn(k, batch, generator=gen), "float32 log-weights around -120"),
             (-800 + 3 * torch.randn(k, batch, generator=gen, dtype=torch.float64), "float64 log-weights around -800")]
    for log_w, what in cases:
        wd = log_w.double()
        expected = torch.logsumexp(wd, dim=0) - math.log(k)
        got = as_vector(call_learner(fn, log_w), batch, "your result", finite=False, mistakes=[
            ((k,), "you reduced over the images (dim=1); the k samples are the rows, dim=0: return one value per "
                   "image, shape (B,)."),
        ])
        if _close(got, expected, rtol=1e-6, atol=1e-3):
            continue
        if not torch.isfinite(got).all():
            return Feedback(False, f"with {what} your result is not finite: exp(log_w) underflows to 0 and log(0) = "
                                   "-inf. Use torch.logsumexp(log_w, dim=0), which subtracts the largest log-weight first.")
        name_mistake(got, [
            (wd.mean(dim=0), "that is the mean of the log-weights: the average of k single-sample ELBOs, a looser "
                             "bound. L_k is the log of the MEAN WEIGHT: logsumexp(log_w, dim=0) - log k."),
            (expected + math.log(k), "you forgot to divide by k: subtract log k from the log-sum-exp."),
            (wd.max(dim=0).values, "that is the largest log-weight alone; L_k averages all k weights: "
                                   "logsumexp(log_w, dim=0) - log k."),
        ], rtol=1e-6, atol=1e-3)
        return Feedback(False, f"with {what} the values differ from logsumexp(log_w, dim=0) - log k by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    single = torch.tensor([[-90.0, -110.0, -130.0]])
    with prefixed("with k = 1: "):
        got = call_learner(fn, single)
    if not _close(got, single[0], rtol=1e-6):
        return Feedback(False, f"with k = 1 the bound is the single log-weight itself, {single[0].tolist()}; got {got.tolist()}.")
    return Feedback(True, "logsumexp over the samples minus log k, stable when every weight underflows.")
