"""Checkers for the exercises of chapter 2, latent variable models and the ELBO."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from ..linear_gaussian import LinearGaussian
from ..losses import gaussian_kl
from .feedback import Feedback, as_number


def _toy_problem() -> tuple[LinearGaussian, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    kw = dict(generator=gen, dtype=torch.float64)
    model = LinearGaussian(torch.randn(7, 3, **kw), torch.randn(7, **kw), 0.6)
    x = model.sample(5, generator=gen)
    mu = torch.randn(5, 3, **kw)
    log_var = 3 * torch.rand(5, 3, **kw) - 1.5
    return model, x, mu, log_var


def _as_vector(value, batch: int, what: str) -> torch.Tensor | Feedback:
    if value is None:
        return Feedback(False, f"{what} is None: compute it and store it in the variable.")
    try:
        value = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return Feedback(False, f"{what} should be a tensor, got {type(value).__name__}.")
    if value.dim() == 0 or value.numel() == 1 and batch > 1:
        return Feedback(False, f"{what} is a single number; return one value per image, shape ({batch},).")
    if value.shape != (batch,):
        return Feedback(False, f"{what} should have shape ({batch},), one value per image, got {tuple(value.shape)}.")
    if not torch.isfinite(value).all():
        return Feedback(False, f"{what} has non-finite entries.")
    return value


def check_linear_gaussian_elbo(fn: Callable[..., torch.Tensor]) -> Feedback:
    r"""Check ``fn(model, x, mu, log_var) -> (B,)``, the closed-form ELBO of q = N(mu, diag(exp(log_var)))
    under a :class:`~ae_course.linear_gaussian.LinearGaussian` model, in nats (Kingma & Welling 2014, eq. 3).

    Diagnoses: a missing variance (trace) term, sigma_j in place of sigma_j^2 in it, a missing or added KL,
    a missing normalizing constant, no sum over pixels, a Monte Carlo answer, returning log p(x).
    Chapter 2, exercise "The ELBO of probabilistic PCA in closed form".
    """
    model, x, mu, log_var = _toy_problem()
    try:
        got = fn(model, x.clone(), mu.clone(), log_var.clone())
        again = fn(model, x.clone(), mu.clone(), log_var.clone())
    except Exception as err:  # the learner's code may fail in any way; report it
        return Feedback(False, f"calling your function raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor):
        return Feedback(False, f"return a torch.Tensor, got {type(got).__name__}.")
    if got.shape == x.shape:
        return Feedback(False, "you returned one value per pixel, shape (B, D); sum over the pixels (dim=1).")
    if got.shape == mu.shape:
        return Feedback(False, "you returned one value per latent dimension, shape (B, d); sum over dim=1.")
    checked = _as_vector(got.detach(), len(x), "your ELBO")
    if isinstance(checked, Feedback):
        return checked
    got = checked
    if not torch.allclose(got, torch.as_tensor(again, dtype=torch.float64), atol=1e-10):
        return Feedback(False, "two calls with the same inputs gave different values: that is a Monte Carlo "
                               "estimate. Compute E_q[log p(x|z)] exactly: E||x - Wz - b||^2 = ||x - W mu - b||^2 "
                               "+ sum_j exp(log_var_j) sum_i W_ij^2.")
    expected = model.elbo(x, mu, log_var)
    var, dim = model.sigma ** 2, x.shape[1]
    column_norms = (model.W ** 2).sum(0)
    spread = (log_var.exp() * column_norms).sum(1)
    kl = gaussian_kl(mu, log_var)
    const = 0.5 * dim * torch.log(2 * math.pi * var)

    def close(a: torch.Tensor) -> bool:
        return torch.allclose(got, a, rtol=1e-6, atol=1e-6)

    if close(expected):
        return Feedback(True, "matches the closed-form ELBO E_q[log p(x|z)] - KL(q || p(z)).")
    diagnoses = [
        (expected + spread / (2 * var), "you left out the variance of q: E||x - Wz - b||^2 = ||x - W mu - b||^2 + "
                                        "sum_j exp(log_var_j) sum_i W_ij^2, not just the first term."),
        (expected + (spread - (torch.exp(0.5 * log_var) * column_norms).sum(1)) / (2 * var),
         "in the variance term you used the standard deviation exp(log_var / 2); it needs the variance exp(log_var)."),
        (expected + kl, "you forgot to subtract KL(q || p(z)): the ELBO is E_q[log p(x|z)] - KL."),
        (expected + 2 * kl, "the KL has the wrong sign: subtract KL(q || p(z)), do not add it."),
        (expected + const, "the normalizing constant -D/2 log(2 pi sigma^2) of the Gaussian likelihood is missing."),
        (expected + const - 0.5 * dim * torch.log(2 * math.pi * model.sigma),
         "the normalizing constant uses sigma; it is -D/2 log(2 pi sigma^2), with the variance."),
        (model.log_marginal(x), "that is log p(x) itself, which does not depend on q; compute the ELBO of the given q."),
        (-expected, "the sign is flipped: return the ELBO, not the negative ELBO (the loss)."),
    ]
    for value, message in diagnoses:
        if close(value):
            return Feedback(False, message)
    worst = (got - expected).abs().max().item()
    return Feedback(False, f"values differ from E_q[log p(x|z)] - KL(q || p(z)) by up to {worst:.4g} nats.")


def check_elbo_gap(gap, model: LinearGaussian, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> Feedback:
    r"""Check ``gap`` = log p(x) - ELBO(q), (B,) in nats, for q = N(mu, diag(exp(log_var))) under ``model``.

    By Kingma & Welling (2014, eq. 1) it equals KL(q || p(z|x)). Diagnoses: a single number, the reversed
    KL(p(z|x) || q), the KL to the prior, a flipped sign, the ELBO or log p(x) themselves. Chapter 2.
    """
    expected = (model.log_marginal(x) - model.elbo(x, mu, log_var)).double()
    if gap is not None and torch.as_tensor(gap).numel() == 1 and len(x) > 1:
        number = as_number(gap, "the gap")
        if not isinstance(number, Feedback) and math.isclose(number, expected.mean().item(), rel_tol=1e-4):
            return Feedback(False, f"that is the mean over the images; return the gap of each image, shape ({len(x)},).")
    got = _as_vector(gap.detach() if isinstance(gap, torch.Tensor) else gap, len(x), "the gap")
    if isinstance(got, Feedback):
        return got

    def close(a: torch.Tensor) -> bool:
        return torch.allclose(got, a.double(), rtol=1e-4, atol=1e-4)

    if close(expected):
        return Feedback(True, f"the gap is {expected.mean():.4f} nats per image (= KL(q || p(z|x))).")
    mean, covariance = model.posterior(x)
    q = MultivariateNormal(mu.double(), scale_tril=torch.diag_embed(torch.exp(0.5 * log_var.double())))
    reverse = kl_divergence(MultivariateNormal(mean, covariance_matrix=covariance), q)
    diagnoses = [
        (reverse, "that is KL(p(z|x) || q), the KL in the wrong direction; the gap is KL(q || p(z|x)) = "
                  "E_q[log q - log p(z|x)]."),
        (gaussian_kl(mu, log_var), "that is KL(q || p(z)), the divergence from the *prior*, a term of the ELBO; "
                                   "the gap is the divergence from the *posterior* p(z|x)."),
        (-expected, "the sign is flipped: the gap log p(x) - ELBO is >= 0."),
        (model.elbo(x, mu, log_var), "that is the ELBO itself; subtract it from log p(x)."),
        (model.log_marginal(x), "that is log p(x) itself; subtract the ELBO of q from it."),
    ]
    for value, message in diagnoses:
        if close(value):
            return Feedback(False, message)
    worst = (got - expected).abs().max().item()
    return Feedback(False, f"values differ from log p(x) - ELBO by up to {worst:.4g} nats.")


def check_k1_estimate(samples, model: LinearGaussian, x: torch.Tensor, mu: torch.Tensor,
                      log_var: torch.Tensor) -> Feedback:
    r"""Check that ``samples`` (R,), R >= 100 independent importance-sampled estimates with k = 1 for the single
    image x (1, D) and proposal q = N(mu, diag(exp(log_var))), average to the closed-form ELBO within 4
    standard errors (Burda et al. 2016: E[L_1] = ELBO). Diagnoses: a single number, identical values (the
    exact posterior as proposal), a mean above the ELBO (k > 1). Chapter 2.
    """
    if x.dim() != 2 or len(x) != 1:
        raise ValueError(f"x must be one image of shape (1, D), got {tuple(x.shape)}")
    if samples is None:
        return Feedback(False, "samples is None: draw the estimates and store them in the variable.")
    samples = torch.as_tensor(samples.detach() if isinstance(samples, torch.Tensor) else samples, dtype=torch.float64)
    if samples.numel() == 1:
        return Feedback(False, "that is a single number; pass all the single-sample estimates, shape (R,).")
    samples = samples.flatten()
    if len(samples) < 100:
        return Feedback(False, f"only {len(samples)} estimates; draw at least 100 so the average is informative.")
    if not torch.isfinite(samples).all():
        return Feedback(False, "some estimates are not finite.")
    elbo = model.elbo(x, mu, log_var).item()
    log_px = model.log_marginal(x).item()
    mean, se = samples.mean().item(), samples.std().item() / math.sqrt(len(samples))
    if se < 1e-9:
        if math.isclose(mean, log_px, abs_tol=1e-4):
            return Feedback(False, "all estimates equal log p(x): the proposal was the exact posterior "
                                   "(model.encode), for which every weight is p(x). Propose from the given q with "
                                   "model.with_encoder.")
        return Feedback(False, "all estimates are identical: draw an independent z for each one.")
    summary = f"mean {mean:.3f} +- {se:.3f} (SE), ELBO {elbo:.3f}, log p(x) {log_px:.3f}"
    if abs(mean - elbo) <= 4 * se:
        return Feedback(True, f"{summary}: E[L_1] is the ELBO.")
    if mean > elbo and abs(mean - log_px) < abs(mean - elbo):
        return Feedback(False, f"{summary}: the mean is above the ELBO, near log p(x). Use k=1 per estimate, "
                               "and the given q (not the exact posterior) as the proposal.")
    return Feedback(False, f"{summary}: the mean is {abs(mean - elbo) / se:.1f} standard errors from the ELBO. "
                           "Propose from the given (mu, log_var), with k=1 for every estimate.")
