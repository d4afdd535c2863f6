"""Checkers for the exercises of chapter 4, the KL divergence between Gaussians in closed form."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from ..losses import gaussian_kl
from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, max_difference,
                       name_mistake, prefixed)


def _inputs(seed: int = 0, batch: int = 6, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=gen, dtype=torch.float64), 4 * torch.rand(batch, dim, generator=gen, dtype=torch.float64) - 2


def _kl_vector(got: torch.Tensor, batch: int, dim: int) -> torch.Tensor:
    """The learner's KLs as a float64 (B,) vector, or NotYet naming the wrong reduction."""
    return as_vector(got, batch, "your result", per="example", finite=False, mistakes=[
        ((batch, dim), "you returned one value per latent dimension, shape (B, d); sum over the latent dimensions "
                       "(dim=1): the KL of independent coordinates is the sum of their KLs."),
        ((dim,), "you summed over the batch (dim=0); sum over the latent dimensions (dim=1) and return one value "
                 "per example, shape (B,)."),
        ((), "you returned a single number; return one KL per example, shape (B,)."),
    ])


@checker
def check_gaussian_kl(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check ``fn(mu, log_var) -> (B,)``: KL(N(mu, diag(exp(log_var))) || N(0, I)) in nats,
    = 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1) (Kingma & Welling 2014, App. B).

    Diagnoses: no sum over dimensions, summing over the batch, a missing 1/2, sigma in place of sigma^2,
    log_var read as log sigma, a flipped sign, a mean over dimensions, a missing -1 or mu^2, and a KL that
    overflows to inf at log_var = -120 (log(exp(log_var)) in single precision). Chapter 4.
    """
    mu, log_var = _inputs()
    batch, dim = mu.shape
    got = _kl_vector(call_learner(fn, mu, log_var), batch, dim)
    expected = gaussian_kl(mu, log_var)
    terms = lambda m, v, lv: 0.5 * (m ** 2 + v - lv - 1).sum(1)  # noqa: E731
    diagnoses = [
        (2 * expected, "the values are twice too large: the factor 1/2 in front of the sum is missing."),
        (terms(mu, torch.exp(0.5 * log_var), log_var),
         "you used the standard deviation sigma = exp(log_var / 2) where the formula has the variance "
         "sigma^2 = exp(log_var)."),
        (terms(mu, torch.exp(2 * log_var), 2 * log_var),
         "you treated log_var as log sigma (so sigma^2 = exp(2 log_var)); log_var is already log sigma^2: "
         "sigma^2 = exp(log_var)."),
        (terms(mu, torch.exp(log_var), 0.5 * log_var),
         "the log term should be log sigma^2 = log_var, not log sigma = log_var / 2."),
        (-expected, "the sign is flipped: a KL divergence is >= 0."),
        (expected / dim, "you averaged over the latent dimensions; sum over them."),
        (expected + 0.5 * dim, "the -1 inside the sum is missing (the KL must be 0 at mu = 0, log_var = 0)."),
        (expected - 0.5 * (mu ** 2).sum(1), "the mu^2 term is missing: moving the mean away from 0 must cost."),
    ]
    if not close(got, expected, rtol=1e-5, atol=1e-6):
        name_mistake(got, diagnoses, rtol=1e-5, atol=1e-6)
        name_mistake(got, [(2 * value, message + " And the factor 1/2 in front of the sum is missing.")
                           for value, message in diagnoses[1:]], rtol=1e-5, atol=1e-6)
        return Feedback(False, "values differ from 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1) by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    with prefixed("right for moderate inputs, but at log_var = -120 in float32: "):
        extreme = call_learner(fn, torch.zeros(2, 3), torch.tensor([[-120.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
    if not torch.isfinite(extreme).all():
        return Feedback(False, "right for moderate inputs, but not finite at log_var = -120 in float32: exp(-120) "
                               "underflows to 0 and log(0) = -inf. Use log_var itself for log sigma^2, never "
                               "log(exp(log_var)) or log(sigma**2).")
    return Feedback(True, "matches 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1) and stays finite for "
                          "extreme log-variances.")


@checker
def check_general_gaussian_kl(fn: Callable[..., torch.Tensor]) -> Feedback:
    r"""Check ``fn(mu1, log_var1, mu2, log_var2) -> (B,)``: KL(N(mu1, diag s1^2) || N(mu2, diag s2^2)) in nats,
    = sum_j [ log(s2_j / s1_j) + (s1_j^2 + (mu1_j - mu2_j)^2) / (2 s2_j^2) - 1/2 ], against
    ``torch.distributions.kl_divergence``. Diagnoses: the reversed direction, a missing 1/2, (mu1 - mu2)^2 not
    divided by s2^2, standard deviations in place of variances, no sum, sum over the batch, a flipped sign.
    Chapter 4.
    """
    mu1, log_var1 = _inputs(1)
    mu2, log_var2 = _inputs(2)
    batch, dim = mu1.shape
    got = _kl_vector(call_learner(fn, mu1, log_var1, mu2, log_var2), batch, dim)

    def kl(m1, lv1, m2, lv2):
        return kl_divergence(Normal(m1, torch.exp(0.5 * lv1)), Normal(m2, torch.exp(0.5 * lv2))).sum(1)

    expected = kl(mu1, log_var1, mu2, log_var2)
    if close(got, expected, rtol=1e-5, atol=1e-6):
        return Feedback(True, "matches torch.distributions.kl_divergence summed over dimensions.")
    v1, v2 = log_var1.exp(), log_var2.exp()
    log_ratio = 0.5 * (log_var2 - log_var1)
    name_mistake(got, [
        (kl(mu2, log_var2, mu1, log_var1), "that is KL(N2 || N1), the reverse direction: the expectation is under "
                                           "the first distribution, q = N(mu1, s1^2)."),
        (2 * expected, "the values are twice too large: a factor 1/2 is missing."),
        ((log_ratio + v1 / (2 * v2) + (mu1 - mu2) ** 2 / 2 - 0.5).sum(1),
         "the squared mean difference (mu1 - mu2)^2 must be divided by 2 s2^2 too."),
        ((log_ratio + (v1.sqrt() + (mu1 - mu2) ** 2) / (2 * v2.sqrt()) - 0.5).sum(1),
         "you used standard deviations where the formula has variances: (s1^2 + (mu1 - mu2)^2) / (2 s2^2)."),
        (-expected, "the sign is flipped: a KL divergence is >= 0."),
        (expected / dim, "you averaged over the latent dimensions; sum over them."),
    ], rtol=1e-5, atol=1e-6)
    return Feedback(False, f"values differ from torch.distributions.kl_divergence by up to "
                           f"{max_difference(got, expected):.4g} nats. "
                           "Start from E_q[log q(z) - log p(z)] with q = N(mu1, s1^2), p = N(mu2, s2^2).")


def mc_kl_standard_deviation(mu: torch.Tensor, log_var: torch.Tensor) -> float:
    r"""Standard deviation of one Monte Carlo term log q(z) - log p(z), z ~ q = N(mu, diag(exp(log_var))), p = N(0, I).

    With z_j = mu_j + s_j eps_j the term is const + sum_j [mu_j s_j eps_j + (s_j^2 - 1) eps_j^2 / 2], so its
    variance is sum_j [mu_j^2 s_j^2 + (s_j^2 - 1)^2 / 2] (Var eps^2 = 2, Cov(eps, eps^2) = 0). mu, log_var: (d,).
    """
    var = torch.exp(log_var.double())
    return math.sqrt((mu.double() ** 2 * var + (var - 1) ** 2 / 2).sum().item())


@checker
def check_mc_kl(estimate, standard_error, mu: torch.Tensor, log_var: torch.Tensor, n_samples: int) -> Feedback:
    r"""Check a Monte Carlo estimate of KL(N(mu, diag(exp(log_var))) || N(0, I)) from ``n_samples`` draws, and its
    standard error (the sample standard deviation of log q(z) - log p(z) divided by sqrt(n_samples)).

    mu, log_var: (d,), one example. The estimate must be within 4 standard errors of the closed form; the
    standard error within 20 % of the true one, :func:`mc_kl_standard_deviation` / sqrt(S), S = n_samples.
    Diagnoses: a standard deviation reported as the error, division by S instead of sqrt(S), a variance instead
    of a standard deviation, a flipped sign. Chapter 4.
    """
    estimate = as_number(estimate, "the estimate")
    standard_error = as_number(standard_error, "the standard error")
    exact = gaussian_kl(mu.double()[None], log_var.double()[None]).item()
    sd = mc_kl_standard_deviation(mu, log_var)
    n = int(n_samples)
    expected_se = sd / math.sqrt(n)
    if not standard_error > 0:
        return Feedback(False, f"the standard error should be positive, got {standard_error:.4g}.")
    ratio = lambda a, b: 0.8 <= a / b <= 1.25  # noqa: E731
    if not ratio(standard_error, expected_se):
        if ratio(standard_error, sd):
            return Feedback(False, "your standard error is the standard deviation of a single term; the standard "
                                   "error of the mean of S terms is that divided by sqrt(S).")
        if ratio(standard_error, sd / n):
            return Feedback(False, "you divided the standard deviation by S; the standard error is sd / sqrt(S).")
        if ratio(standard_error, sd ** 2 / n):
            return Feedback(False, "that is the variance of the mean (sd^2 / n); take its square root.")
        return Feedback(False, f"the standard error should be about {expected_se:.3g} nats for S = {n}, "
                               f"got {standard_error:.3g}: sd of log q(z) - log p(z) over the samples / sqrt(S).")
    if abs(estimate - exact) <= 4 * expected_se:
        return Feedback(True, f"{estimate:.4f} +- {standard_error:.4f} nats; the closed form is {exact:.4f}, "
                              f"{abs(estimate - exact) / standard_error:.1f} standard errors away.")
    if abs(estimate + exact) <= 4 * expected_se:
        return Feedback(False, "the sign is flipped: average log q(z) - log p(z), not log p(z) - log q(z).")
    return Feedback(False, f"your estimate {estimate:.4f} is {abs(estimate - exact) / expected_se:.1f} standard errors "
                           "from the closed form: average log q(z) - log p(z) over z drawn from q (not from p).")


# ------------------------------------------------------------------------------------ full covariance


def random_gaussians(batch: int = 6, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two batches of random Gaussians in float64: (mu0 (B, d), cov0 (B, d, d), mu1, cov1), the covariances
    A A^T / d + 0.3 I with A standard normal: symmetric positive definite, with correlated coordinates."""
    gen = torch.Generator().manual_seed(seed)
    kw = dict(generator=gen, dtype=torch.float64)

    def spd():
        a = torch.randn(batch, dim, dim, **kw)
        return a @ a.transpose(1, 2) / dim + 0.3 * torch.eye(dim, dtype=torch.float64)

    return torch.randn(batch, dim, **kw), spd(), 2 * torch.randn(batch, dim, **kw), spd()


def _full_kl_terms(mu0, cov0, mu1, cov1) -> dict[str, torch.Tensor]:
    """The four terms of KL(N(mu0, cov0) || N(mu1, cov1)) (each (B,)), and their wrong variants."""
    diff = (mu1 - mu0)[..., None]
    solve = torch.linalg.solve
    return {
        "trace": torch.diagonal(solve(cov1, cov0), dim1=-2, dim2=-1).sum(-1),
        "trace_flipped": torch.diagonal(solve(cov0, cov1), dim1=-2, dim2=-1).sum(-1),
        "mahalanobis": (diff.transpose(-2, -1) @ solve(cov1, diff))[..., 0, 0],
        "mahalanobis_cov0": (diff.transpose(-2, -1) @ solve(cov0, diff))[..., 0, 0],
        "mahalanobis_no_inverse": (diff.transpose(-2, -1) @ cov1 @ diff)[..., 0, 0],
        "logdet": torch.logdet(cov1) - torch.logdet(cov0),
    }


@checker
def check_full_gaussian_kl(fn: Callable[..., torch.Tensor]) -> Feedback:
    r"""Check ``fn(mu0, cov0, mu1, cov1) -> (B,)``: KL(N(mu0, cov0) || N(mu1, cov1)) in nats for full covariance
    matrices, mu (B, d), cov (B, d, d),

        1/2 [ tr(cov1^{-1} cov0) + (mu1 - mu0)^T cov1^{-1} (mu1 - mu0) - d + log det cov1 - log det cov0 ],

    against ``torch.distributions.kl_divergence`` between two ``MultivariateNormal``, on random symmetric
    positive definite matrices with d = 4 and then d = 12. Diagnoses: tr(cov0^{-1} cov1) in place of
    tr(cov1^{-1} cov0), the log-determinant ratio flipped, a missing -d, the Mahalanobis term with cov0 or without
    the inverse, the reversed direction, a missing 1/2, a flipped sign, only the diagonals used (correlations
    ignored), a wrong reduction (per dimension, pairwise (B, B)). Chapter 4.
    """
    for dim, seed in [(4, 0), (12, 1)]:
        with prefixed("" if dim == 4 else f"right for d = 4, but for d = {dim}: "):
            _check_full_kl_once(fn, *random_gaussians(6, dim, seed))
    return Feedback(True, "matches torch.distributions.kl_divergence between two MultivariateNormals "
                          "(d = 4 and d = 12).")


def _check_full_kl_once(fn, mu0, cov0, mu1, cov1) -> None:
    """NotYet unless fn(mu0, cov0, mu1, cov1) is the KL, naming the mistake."""
    batch, dim = mu0.shape
    got = as_vector(call_learner(fn, mu0, cov0, mu1, cov1), batch, "your result", per="pair of Gaussians",
                    finite=False, mistakes=[
        ((batch, batch), f"you returned shape (B, B) = {(batch, batch)}: the Mahalanobis term was formed between "
                         "every pair of examples. Compute (mu1 - mu0)^T cov1^{-1} (mu1 - mu0) per example, e.g. "
                         "with torch.linalg.solve(cov1, diff[..., None])."),
        ((batch, dim), "you returned one value per dimension, shape (B, d); the trace and the quadratic form are "
                       "sums over the dimensions: return one KL per example, shape (B,)."),
        ((), "you returned a single number; return one KL per pair of Gaussians, shape (B,)."),
    ])
    expected = kl_divergence(MultivariateNormal(mu0, covariance_matrix=cov0),
                             MultivariateNormal(mu1, covariance_matrix=cov1))
    if close(got, expected, rtol=1e-6, atol=1e-8):
        return
    if not torch.isfinite(got).all():
        raise NotYet("your result has entries that are not finite (NaN or inf).")
    t = _full_kl_terms(mu0, cov0, mu1, cov1)
    half = lambda trace, maha, logdet, minus_d=dim: 0.5 * (trace + maha - minus_d + logdet)  # noqa: E731
    diagonal = lambda c: torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1))  # noqa: E731
    reverse = kl_divergence(MultivariateNormal(mu1, covariance_matrix=cov1),
                            MultivariateNormal(mu0, covariance_matrix=cov0))
    diag_only = kl_divergence(MultivariateNormal(mu0, covariance_matrix=diagonal(cov0)),
                              MultivariateNormal(mu1, covariance_matrix=diagonal(cov1)))
    name_mistake(got, [
        (half(t["trace_flipped"], t["mahalanobis"], t["logdet"]),
         "the trace term is tr(cov0^{-1} cov1); it is tr(cov1^{-1} cov0): E_q[(z - mu1)^T cov1^{-1} (z - mu1)] "
         "averages over z ~ N(mu0, cov0)."),
        (half(t["trace"], t["mahalanobis"], -t["logdet"]),
         "the log-determinant ratio is flipped: + log det cov1 - log det cov0 (the log-normalizer of p minus "
         "that of q)."),
        (half(t["trace"], t["mahalanobis"], t["logdet"], 0), "the -d is missing (the KL of a Gaussian from "
                                                             "itself must be 0)."),
        (half(t["trace"], t["mahalanobis_cov0"], t["logdet"]),
         "the Mahalanobis term uses cov0; it is (mu1 - mu0)^T cov1^{-1} (mu1 - mu0), with the covariance of the "
         "second Gaussian, p = N(mu1, cov1)."),
        (half(t["trace"], t["mahalanobis_no_inverse"], t["logdet"]),
         "the Mahalanobis term needs the inverse: (mu1 - mu0)^T cov1^{-1} (mu1 - mu0), not (mu1 - mu0)^T cov1 "
         "(mu1 - mu0)."),
        (reverse, "that is KL(N(mu1, cov1) || N(mu0, cov0)), the reverse direction: the expectation is under the "
                  "first Gaussian, q = N(mu0, cov0)."),
        (2 * expected, "the values are twice too large: the factor 1/2 is missing."),
        (-expected, "the sign is flipped: a KL divergence is >= 0."),
        (diag_only, "you used only the diagonals of the covariances (the KL of independent coordinates); with "
                    "correlations you need the matrix inverse (torch.linalg.solve) and log-determinants."),
    ], rtol=1e-6, atol=1e-8)
    raise NotYet(f"values differ from torch.distributions.kl_divergence by up to {max_difference(got, expected):.4g} "
                 "nats. Start from E_q[log q(z) - log p(z)] with q = N(mu0, cov0), p = N(mu1, cov1).")
