"""Checkers for the exercises of chapter 3, latent variable models and the ELBO."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from ..linear_gaussian import LinearGaussian
from ..losses import gaussian_kl
from .feedback import (Feedback, as_vector, call_learner, checker, close, max_difference, mean_of, name_mistake,
                       prefixed)


def _toy_problem() -> tuple[LinearGaussian, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    kw = dict(generator=gen, dtype=torch.float64)
    model = LinearGaussian(torch.randn(7, 3, **kw), torch.randn(7, **kw), 0.6)
    x = model.sample(5, generator=gen)
    mu = torch.randn(5, 3, **kw)
    log_var = 3 * torch.rand(5, 3, **kw) - 1.5
    return model, x, mu, log_var


@checker
def check_linear_gaussian_elbo(fn: Callable[..., torch.Tensor]) -> Feedback:
    r"""Check ``fn(model, x, mu, log_var) -> (B,)``, the closed-form ELBO of q = N(mu, diag(exp(log_var)))
    under a :class:`~ae_course.linear_gaussian.LinearGaussian` model, in nats (Kingma & Welling 2014, eq. 3).

    Diagnoses: a missing variance (trace) term, sigma_j in place of sigma_j^2 in it, a missing or added KL,
    a missing normalizing constant, no sum over pixels, a Monte Carlo answer, returning log p(x).
    Chapter 3, exercise "The ELBO of probabilistic PCA in closed form".
    """
    model, x, mu, log_var = _toy_problem()
    got = as_vector(call_learner(fn, model, x, mu, log_var), len(x), "your ELBO", mistakes=[
        (x.shape, "you returned one value per pixel, shape (B, D); sum over the pixels (dim=1)."),
        (mu.shape, "you returned one value per latent dimension, shape (B, d); sum over dim=1."),
    ])
    with prefixed("called a second time with the same inputs, "):
        again = call_learner(fn, model, x, mu, log_var)
    if not close(got, again, rtol=0, atol=1e-10):
        return Feedback(False, "two calls with the same inputs gave different values: that is a Monte Carlo "
                               "estimate. Compute E_q[log p(x|z)] exactly: E||x - Wz - b||^2 = ||x - W mu - b||^2 "
                               "+ sum_j exp(log_var_j) sum_i W_ij^2.")
    expected = model.elbo(x, mu, log_var)
    var, dim = model.sigma ** 2, x.shape[1]
    column_norms = (model.W ** 2).sum(0)
    spread = (log_var.exp() * column_norms).sum(1)
    kl = gaussian_kl(mu, log_var)
    const = 0.5 * dim * torch.log(2 * math.pi * var)

    if close(got, expected, rtol=1e-6, atol=1e-6):
        return Feedback(True, "matches the closed-form ELBO E_q[log p(x|z)] - KL(q || p(z)).")
    name_mistake(got, [
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
    ], rtol=1e-6, atol=1e-6)
    worst = max_difference(got, expected)
    return Feedback(False, f"values differ from E_q[log p(x|z)] - KL(q || p(z)) by up to {worst:.4g} nats.")


@checker
def check_elbo_gap(gap, model: LinearGaussian, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> Feedback:
    r"""Check ``gap`` = log p(x) - ELBO(q), (B,) in nats, for q = N(mu, diag(exp(log_var))) under ``model``.

    By Kingma & Welling (2014, eq. 1) it equals KL(q || p(z|x)). Diagnoses: a single number, the reversed
    KL(p(z|x) || q), the KL to the prior, a flipped sign, the ELBO or log p(x) themselves. Chapter 3.
    """
    expected = (model.log_marginal(x) - model.elbo(x, mu, log_var)).double()
    got = as_vector(gap, len(x), "the gap", mistakes=[
        (mean_of(expected), f"that is the mean over the images; return the gap of each image, shape ({len(x)},)."),
    ])
    if close(got, expected, rtol=1e-4, atol=1e-4):
        return Feedback(True, f"the gap is {expected.mean():.4f} nats per image (= KL(q || p(z|x))).")
    mean, covariance = model.posterior(x)
    q = MultivariateNormal(mu.double(), scale_tril=torch.diag_embed(torch.exp(0.5 * log_var.double())))
    reverse = kl_divergence(MultivariateNormal(mean, covariance_matrix=covariance), q)
    name_mistake(got, [
        (reverse, "that is KL(p(z|x) || q), the KL in the wrong direction; the gap is KL(q || p(z|x)) = "
                  "E_q[log q - log p(z|x)]."),
        (gaussian_kl(mu, log_var), "that is KL(q || p(z)), the divergence from the *prior*, a term of the ELBO; "
                                   "the gap is the divergence from the *posterior* p(z|x)."),
        (-expected, "the sign is flipped: the gap log p(x) - ELBO is >= 0."),
        (model.elbo(x, mu, log_var), "that is the ELBO itself; subtract it from log p(x)."),
        (model.log_marginal(x), "that is log p(x) itself; subtract the ELBO of q from it."),
    ], rtol=1e-4, atol=1e-4)
    return Feedback(False, f"values differ from log p(x) - ELBO by up to {max_difference(got, expected):.4g} nats.")


@checker
def check_k1_estimate(samples, model: LinearGaussian, x: torch.Tensor, mu: torch.Tensor,
                      log_var: torch.Tensor) -> Feedback:
    r"""Check that ``samples`` (R,), R >= 100 independent importance-sampled estimates with k = 1 for the single
    image x (1, D) and proposal q = N(mu, diag(exp(log_var))), average to the closed-form ELBO within 4
    standard errors (Burda et al. 2016: E[L_1] = ELBO). Diagnoses: a single number, identical values (the
    exact posterior as proposal), a mean above the ELBO (k > 1). Chapter 3.
    """
    if x.dim() != 2 or len(x) != 1:
        raise ValueError(f"x must be one image of shape (1, D), got {tuple(x.shape)}")
    samples = as_vector(samples, None, "samples", per="estimate", flatten=True, mistakes=[
        (lambda v: v.numel() == 1, "that is a single number; pass all the single-sample estimates, shape (R,)."),
    ], none="samples is None: draw the estimates and store them in the variable.")
    if len(samples) < 100:
        return Feedback(False, f"only {len(samples)} estimates; draw at least 100 so the average is informative.")
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
