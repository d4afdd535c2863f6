"""Checkers for the exercises of chapter 3, latent variable models and the ELBO."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from ..evaluation import importance_sampled_log_likelihood
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


# ------------------------------------------------------------------------------------ importance sampling


def _log_weights(model: LinearGaussian, x: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                 prior: bool = True, proposal: int = -1) -> torch.Tensor:
    """log p(x|z) + [log p(z)] + proposal * log q(z|x) for z (K, B, d): (K, B). The right weight is proposal=-1."""
    n, batch, dim = z.shape
    x_rep = x.expand(n, *x.shape).reshape(n * batch, -1)
    log_px_z = model.log_likelihood(x_rep, model.decode(z.reshape(n * batch, dim))).reshape(n, batch)
    log_q = Normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
    return log_px_z + (model.prior.log_prob(z) if prior else 0) + proposal * log_q


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, dim=0) - math.log(len(log_w))


def _estimator_mistakes(model, x, mu, log_var, eps) -> list[tuple[torch.Tensor, str]]:
    """The typical wrong importance-sampling estimators, computed from the same noise eps (K, B, d)."""
    std = torch.exp(0.5 * log_var)
    z = mu + std * eps
    log_w = _log_weights(model, x, z, mu, log_var)
    lse = "torch.logsumexp(log_w, dim=0) - math.log(K)"
    z_wide = mu + torch.exp(log_var) * eps
    return [
        (torch.logsumexp(log_w, dim=0), f"the -log K is missing: the estimate is the log of the *mean* weight, {lse}."),
        (log_w.mean(0), "you averaged the log-weights: that is the mean of K one-sample ELBO estimates (a lower bound "
                        f"that does not improve with K), not the log of the average weight, {lse}."),
        (_log_mean_exp(_log_weights(model, x, z, mu, log_var, proposal=+1)),
         "log q has the wrong sign: the weight is p(x, z) / q(z|x), so log w = log p(x|z) + log p(z) - log q(z|x)."),
        (_log_mean_exp(_log_weights(model, x, z, mu, log_var, proposal=0)),
         "you left out q: the weight is p(x, z) / q(z|x); subtract log q(z|x) (the density the samples came from)."),
        (_log_mean_exp(_log_weights(model, x, z, mu, log_var, prior=False)),
         "the prior is missing: the weight is p(x|z) p(z) / q(z|x); add model.prior.log_prob(z)."),
        (_log_mean_exp(_log_weights(model, x, eps, mu, log_var)),
         "your z are eps itself, samples from the prior N(0, I), but you weighted them as if they came from q. Draw "
         "from q: z = mu + exp(log_var / 2) * eps."),
        (_log_mean_exp(_log_weights(model, x, eps, mu, log_var, prior=False, proposal=0)),
         "that is the naive estimator: z from the prior and weights p(x|z). It is valid but hopeless (hundreds of "
         "nats short on MNIST); propose from q: z = mu + exp(log_var / 2) * eps, weights p(x, z) / q(z|x)."),
        (_log_mean_exp(_log_weights(model, x, z_wide, mu, 2 * log_var)),
         "you used the variance exp(log_var) as the standard deviation of q; the scale of q is exp(log_var / 2), "
         "both in z = mu + exp(log_var / 2) * eps and in log q."),
        (_log_mean_exp(_log_weights(model, x, z, mu, 2 * log_var)),
         "log q uses the wrong scale: Normal(mu, scale) takes the standard deviation exp(log_var / 2), not the "
         "variance exp(log_var)."),
    ]


def _toy_estimator_problem(n_samples: int = 50):
    model, x, mu, log_var = _toy_problem()
    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(n_samples, *mu.shape, generator=gen, dtype=mu.dtype)
    return model, x, mu, log_var, eps


def _estimate(fn, model, x, mu, log_var, eps, where: str) -> torch.Tensor:
    n_samples, batch, _ = eps.shape
    result = call_learner(fn, model, x, mu, log_var, eps, when=where)
    return as_vector(result, batch, "your estimate", finite=False, mistakes=[
        ((n_samples, batch), f"you returned one value per sample, shape (K, B) = {(n_samples, batch)}; combine the "
                             "K log-weights of each image with torch.logsumexp over dim=0, minus log K."),
        ((n_samples,), "you reduced over the images (dim=1); reduce over the K samples (dim=0) and return one "
                       "estimate per image, shape (B,)."),
        ((), "you returned a single number; return one estimate per image, shape (B,)."),
    ])


@checker
def check_log_px_estimate(fn: Callable[..., torch.Tensor], model: LinearGaussian, x: torch.Tensor, mu: torch.Tensor,
                          log_var: torch.Tensor, K: int = 1000, seed: int = 0) -> Feedback:
    r"""Check ``fn(model, x, mu, log_var, eps) -> (B,)``: the importance-sampled estimate of log p(x) with proposal
    q = N(mu, diag(exp(log_var))) and K samples z_k = mu + exp(log_var / 2) eps_k (eps of shape (K, B, d)),

        log (1/K) sum_k p(x|z_k) p(z) / q(z_k|x)   (Burda, Grosse & Salakhutdinov 2016, eq. 8).

    First on a small model (D = 7, d = 3, float64, K = 50): it must match the same formula computed from the same
    eps to 1e-6 nats, and the typical mistakes are named: the weights averaged in linear space (caught on the
    large problem), a missing -log K, the log-weights averaged (the ELBO), log q with the wrong sign or left out,
    the prior left out, samples from the prior weighted as if from q, the naive prior estimator, the variance
    used as a standard deviation, a sum over the wrong dimension. Then on ``model`` (a
    :class:`~ae_course.linear_gaussian.LinearGaussian`, e.g. fitted to MNIST), ``x`` (B, D), ``mu`` and
    ``log_var`` (B, d), with K samples drawn from ``seed``: the estimate must be finite and match
    :func:`ae_course.evaluation.importance_sampled_log_likelihood` on the same samples (to 1e-6 of its
    magnitude, 1e-4 nats at least); the message compares it with the exact log p(x). Chapter 3.
    """
    toy, x_toy, mu_toy, log_var_toy, eps_toy = _toy_estimator_problem()
    where = " on the small test model"
    got = _estimate(fn, toy, x_toy, mu_toy, log_var_toy, eps_toy, where)
    with prefixed("called a second time with the same inputs, "):
        again = call_learner(fn, toy, x_toy, mu_toy, log_var_toy, eps_toy, when=where)
    if not close(got, again, rtol=0, atol=1e-10):
        return Feedback(False, "two calls with the same eps gave different values: your function draws its own "
                               "noise. Use the eps passed in: z = mu + exp(log_var / 2) * eps.")
    expected = _log_mean_exp(_log_weights(toy, x_toy, mu_toy + torch.exp(0.5 * log_var_toy) * eps_toy, mu_toy,
                                          log_var_toy))
    if not close(got, expected, rtol=0, atol=1e-6):
        if not torch.isfinite(got).all():
            return Feedback(False, f"your estimate is not finite{where} ({got.tolist()}).")
        name_mistake(got, _estimator_mistakes(toy, x_toy, mu_toy, log_var_toy, eps_toy), rtol=0, atol=1e-6)
        return Feedback(False, f"your estimates differ from log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) by up to "
                               f"{max_difference(got, expected):.4g} nats{where}.")

    n_samples, batch = int(K), len(x)
    eps = torch.randn(n_samples, batch, mu.shape[1], generator=torch.Generator().manual_seed(seed), dtype=mu.dtype)
    reference = importance_sampled_log_likelihood(model, x, k=n_samples, batch_size=batch, chunk=n_samples,
                                                  generator=torch.Generator().manual_seed(seed),
                                                  proposal=lambda xb, yb: (mu, log_var)).double()
    where = f" on the {batch} given images"
    got = _estimate(fn, model, x, mu, log_var, eps, where)
    if not torch.isfinite(got).all():
        log_w = _log_weights(model, x.to(mu.dtype), mu + torch.exp(0.5 * log_var) * eps, mu, log_var)
        if torch.isfinite(log_w).all():
            largest = torch.finfo(log_w.dtype).max
            return Feedback(False, f"right on the small test model, but not finite{where}: here the log-weights "
                                   f"range from {log_w.min():.0f} to {log_w.max():.0f} nats, and exp() of them "
                                   f"overflows above log({largest:.3g}) = {math.log(largest):.0f} (or underflows "
                                   f"to 0) in {str(log_w.dtype).replace('torch.', '')}. Average the weights in log "
                                   "space: torch.logsumexp(log_w, dim=0) - math.log(K).")
        return Feedback(False, f"your estimate is not finite{where}.")
    tolerance = max(1e-4, 1e-6 * reference.abs().max().item())
    if not close(got, reference, rtol=0, atol=tolerance):
        return Feedback(False, f"right on the small test model, but{where} your estimates differ from "
                               f"importance_sampled_log_likelihood on the same samples by up to "
                               f"{max_difference(got, reference):.4g} nats. Compute in the dtype of the model.")
    log_px = model.log_marginal(x).double()
    elbo = model.elbo(x, mu, log_var).double()
    return Feedback(True, f"matches importance_sampled_log_likelihood on the same {n_samples} samples. On these "
                          f"{batch} images log p(x) - estimate = {(log_px - got).mean():.3f} nats on average "
                          f"(the ELBO of q is {(log_px - elbo).mean():.2f} short).")
