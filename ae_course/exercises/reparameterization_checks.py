"""Checkers for the exercises of chapter 5, the reparameterization trick."""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch

from .feedback import (Feedback, NotYet, as_vector, call_learner, checker, close, max_difference, name_mistake,
                       prefixed)


_close = functools.partial(close, rtol=1e-4, atol=1e-5)


@checker
def check_reparameterize(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``fn(mu, log_var, eps) -> z = mu + exp(log_var / 2) * eps``, all (B, L), differentiable in mu, log_var.

    Diagnoses the variance exp(log_var) or log_var itself used as the scale, the precision exp(-log_var / 2),
    fresh noise instead of the given eps, a missing mu or noise term, a wrong shape, and a z that is cut
    off from the graph (e.g. ``Normal(...).sample()`` or ``.detach()``). Chapter 5, exercise "reparameterize".
    """
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 3, generator=gen)
    log_var = torch.tensor([[-2.0, 0.7, 1.5]]).repeat(6, 1) + 0.3 * torch.randn(6, 3, generator=gen)
    eps = torch.randn(6, 3, generator=gen)
    mu_in, lv_in = mu.clone().requires_grad_(True), log_var.clone().requires_grad_(True)
    z = call_learner(fn, mu_in, lv_in, eps.clone(), copy=False, detach=False, expect="a torch.Tensor z")
    if z.shape != mu.shape:
        return Feedback(False, f"z must have the shape of mu, {tuple(mu.shape)} (one latent vector per example), "
                               f"got {tuple(z.shape)}. Combine mu, sigma and eps elementwise; do not sum or average.")
    zd = z.detach().double()
    mu_d, lv_d, eps_d = mu.double(), log_var.double(), eps.double()
    expected = mu_d + torch.exp(lv_d / 2) * eps_d
    if not torch.isfinite(zd).all():
        return Feedback(False, "z contains NaN or inf: did you take sqrt(log_var)? log_var can be negative; "
                               "the standard deviation is sigma = exp(log_var / 2).")
    name_mistake(zd, [
        (mu_d + torch.exp(lv_d) * eps_d, "you used the variance exp(log_var) as the scale; the noise must be "
                                         "multiplied by the standard deviation sigma = exp(log_var / 2) = "
                                         "sqrt(exp(log_var))."),
        (mu_d + lv_d * eps_d, "you used log_var itself as the scale. log_var = log sigma^2, so "
                              "sigma = exp(log_var / 2)."),
        (mu_d + torch.exp(-lv_d / 2) * eps_d, "you multiplied by 1 / sigma = exp(-log_var / 2); multiply by "
                                              "sigma = exp(log_var / 2)."),
        (mu_d + torch.exp(lv_d) / 2 * eps_d, "you scaled eps by sigma^2 / 2 or similar; use sigma = exp(log_var / 2)."),
        (mu_d, "z has no noise: z = mu is the mode of q, not a sample. Add sigma * eps."),
        (torch.exp(lv_d / 2) * eps_d, "you forgot mu: z = sigma * eps is a sample of N(0, sigma^2), not of "
                                      "N(mu, sigma^2)."),
        (mu_d - torch.exp(lv_d / 2) * eps_d, "the noise has the wrong sign; use z = mu + sigma * eps with the eps you "
                                             "are given."),
    ], rtol=1e-4, atol=1e-5)
    if not _close(zd, expected):
        with prefixed("called a second time with the same inputs, "):
            again = call_learner(fn, mu, log_var, eps, expect="a torch.Tensor z")
        if again.shape == z.shape and not _close(again, zd):
            return Feedback(False, "calling your function twice with the same eps gives different z: you draw fresh "
                                   "noise (torch.randn, Normal(...).sample()) instead of using the eps argument. "
                                   "The noise must come from outside, so that z is a deterministic function of "
                                   "(mu, log_var, eps).")
        return Feedback(False, f"z differs from mu + exp(log_var / 2) * eps by up to {max_difference(zd, expected):.3g}.")
    if not z.requires_grad:
        return Feedback(False, "the values are right, but z is cut off from mu and log_var (z.requires_grad is False): "
                               "did you use .detach(), torch.no_grad() or Normal(...).sample()? The whole point of the "
                               "trick is that gradients flow through z.")
    grads = call_learner(lambda: torch.autograd.grad(z.sum(), [mu_in, lv_in], allow_unused=True), returns=tuple,
                         call="torch.autograd.grad through your z", expect="the gradients")
    if grads[0] is None or grads[1] is None:
        return Feedback(False, "z does not depend on mu and log_var through autograd; build it from them with "
                               "differentiable torch operations.")
    if not (_close(grads[0], torch.ones_like(mu)) and _close(grads[1], torch.exp(log_var / 2) * eps / 2)):
        return Feedback(False, "the values are right but the gradients are not: dz/dmu should be 1 and "
                               "dz/dlog_var = sigma * eps / 2. Avoid in-place tricks or .data.")
    return Feedback(True, "z = mu + exp(log_var / 2) * eps, and gradients reach mu and log_var.")


@checker
def check_toy_gradient(grad_mu, grad_log_var, mu: Sequence[float], log_var: Sequence[float],
                       c: Sequence[float]) -> Feedback:
    """Check the exact gradient of F = E_{N(mu, diag(exp(log_var)))}[ ||z - c||^2 ] = ||mu - c||^2 + sum_d sigma_d^2.

    grad_mu = 2 (mu - c) and grad_log_var = sigma^2 = exp(log_var), each of D entries. Diagnoses a missing
    factor 2, a flipped sign, the derivative with respect to sigma (2 sigma) or to the variance (1) instead
    of the log-variance. Chapter 5, exercise "closed-form gradient".
    """
    mu_t, lv_t, c_t = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (mu, log_var, c))
    D = mu_t.numel()
    g_mu = as_vector(grad_mu, D, "grad_mu", per="latent dimension", flatten=True)
    g_lv = as_vector(grad_log_var, D, "grad_log_var", per="latent dimension", flatten=True)
    sigma = torch.exp(lv_t / 2)
    true_mu, true_lv = 2 * (mu_t - c_t), sigma.square()
    if not close(g_mu, true_mu, rtol=1e-3, atol=1e-4):
        variance_term = ("grad_mu: the variance term sum_d sigma_d^2 does not depend on mu, and the square is of "
                         "(mu - c). Expand E[(z - c)^2] = (mu - c)^2 + sigma^2 first.")
        name_mistake(g_mu, [
            (-true_mu, "grad_mu has the wrong sign: d/dmu ||mu - c||^2 = 2 (mu - c), not 2 (c - mu)."),
            (true_mu / 2, "grad_mu is missing the factor 2: d/dmu (mu - c)^2 = 2 (mu - c)."),
            (true_mu + 2 * sigma, variance_term),
            (2 * mu_t, variance_term),
        ], rtol=1e-3, atol=1e-4)
        return Feedback(False, f"grad_mu is off by up to {max_difference(g_mu, true_mu):.3g}. "
                               "Write E[||z - c||^2] = ||mu - c||^2 + sum_d sigma_d^2, then differentiate.")
    if not close(g_lv, true_lv, rtol=1e-3, atol=1e-4):
        itself = "grad_log_var: d/d log_var of exp(log_var) is exp(log_var) = sigma^2 itself."
        name_mistake(g_lv, [
            (2 * sigma, "grad_log_var: 2 sigma is the derivative with respect to sigma. With sigma^2 = exp(log_var), "
                        "d sigma^2 / d log_var = exp(log_var) = sigma^2."),
            (torch.ones_like(g_lv), "grad_log_var: 1 is the derivative with respect to the variance sigma^2. The chain "
                                    "rule through sigma^2 = exp(log_var) multiplies it by exp(log_var)."),
            (D * true_lv, "grad_log_var: each log_var_j only enters through its own sigma_j^2; there is no factor m "
                          "(the dimension)."),
            (true_lv / 2, itself),
            (sigma, itself),
        ], rtol=1e-3, atol=1e-4)
        return Feedback(False, f"grad_log_var is off by up to {max_difference(g_lv, true_lv):.3g}.")
    return Feedback(True, f"grad_mu = 2 (mu - c) = {[round(v, 4) for v in true_mu.tolist()]}, "
                          f"grad_log_var = sigma^2 = {[round(v, 4) for v in true_lv.tolist()]}.")


def _estimates(fn, f, mu: float, log_var: float, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(f, mu, log_var, eps) as two float64 vectors of the shape of eps, or NotYet saying why it is not."""
    pair = "a pair (grad_mu, grad_log_var) of per-sample estimates, each of shape (n,)"
    result = call_learner(fn, f, mu, log_var, eps, returns=(tuple, list), expect=pair)
    if len(result) != 2:
        raise NotYet(f"return {pair}, not {len(result)} values.")
    return tuple(as_vector(g, len(eps), name, per="eps", finite=False, mistakes=[
        (lambda v: v.numel() == 1, f"{name} is a single number: return the n per-sample estimates, shape (n,), so "
                                   "that their mean and variance can be computed.")])
                 for name, g in zip(("grad_mu", "grad_log_var"), result))


def _reference_1d(f, mu: float, log_var: float, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sigma = math.exp(log_var / 2)
    values = f(mu + sigma * eps)
    return values * eps / sigma, values * (eps.square() - 1) / 2


@checker
def check_score_function_1d(fn: Callable) -> Feedback:
    """Check ``fn(f, mu, log_var, eps) -> (grad_mu, grad_log_var)``, each (n,): the per-sample score-function
    estimates f(z) eps / sigma and f(z) (eps^2 - 1) / 2 at z = mu + sigma * eps, for a 1-D Gaussian.

    Compares with the reference on fixed noise, naming the typical mistakes (the score alone, eps instead
    of eps / sigma, the derivative of f (pathwise) instead of its value, the score with respect to the
    variance, a missing 1/2, an average instead of per-sample estimates). An answer that differs per
    sample but is unbiased (e.g. with a baseline) passes with a note, after a test on 200,000 samples.
    Chapter 5, exercise "score function in 1-D".
    """
    mu, log_var = 0.5, math.log(0.64)  # sigma = 0.8
    sigma = math.exp(log_var / 2)
    f = lambda z: torch.sin(2 * z) + z.square()
    df = lambda z: 2 * torch.cos(2 * z) + 2 * z
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g_mu, g_lv = _estimates(fn, f, mu, log_var, eps)
    z = mu + sigma * eps
    ref_mu, ref_lv = _reference_1d(f, mu, log_var, eps)
    v = f(z)
    mu_ok, lv_ok = close(g_mu, ref_mu, 1e-5, 1e-7), close(g_lv, ref_lv, 1e-5, 1e-7)
    if mu_ok and lv_ok:
        return Feedback(True, "your per-sample estimates are f(z) * d/dphi log q(z): unbiased, and they use only "
                              "values of f.")
    mu_mistakes = {
        "grad_mu is the score eps / sigma alone: multiply it by f(z).": eps / sigma,
        "grad_mu is the derivative of f at z: that is the pathwise estimator. The score-function estimator "
        "uses only the value f(z), times d/dmu log q(z) = (z - mu) / sigma^2.": df(z),
        "grad_mu: d/dmu log q(z) = (z - mu) / sigma^2 = eps / sigma, not eps.": v * eps,
        "grad_mu: d/dmu log q(z) = (z - mu) / sigma^2 = eps / sigma, not eps * sigma.": v * eps * sigma,
        "grad_mu: d/dmu log q(z) = (z - mu) / sigma^2 = eps / sigma, not eps / sigma^2.": v * eps / sigma ** 2,
        "grad_mu has the wrong sign: d/dmu log q(z) = +(z - mu) / sigma^2.": -v * eps / sigma,
    }
    lv_mistakes = {
        "grad_log_var is missing the 1/2: d/dlog_var log q(z) = (eps^2 - 1) / 2.": v * (eps.square() - 1),
        "grad_log_var: d/dlog_var log q(z) = -1/2 + (z - mu)^2 / (2 sigma^2) = (eps^2 - 1) / 2; the -1/2 "
        "comes from the normalizer -log_var / 2 and without it the estimator is biased.": v * eps.square() / 2,
        "grad_log_var is the score with respect to the variance sigma^2, (eps^2 - 1) / (2 sigma^2); "
        "multiply by d sigma^2 / d log_var = sigma^2.": v * (eps.square() - 1) / (2 * sigma ** 2),
        "grad_log_var is the score with respect to sigma, (eps^2 - 1) / sigma; d/dlog_var = (sigma / 2) d/dsigma.":
            v * (eps.square() - 1) / sigma,
        "grad_log_var is the score (eps^2 - 1) / 2 alone: multiply it by f(z).": (eps.square() - 1) / 2,
        "grad_log_var is the pathwise estimate f'(z) sigma eps / 2; use the value f(z) times the score.":
            df(z) * sigma * eps / 2,
    }
    for ok, got, mistakes in ((mu_ok, g_mu, mu_mistakes), (lv_ok, g_lv, lv_mistakes)):
        if not ok:
            name_mistake(got, [(candidate, message) for message, candidate in mistakes.items()], rtol=1e-5, atol=1e-7)
    # Not the plain estimator on this noise: accept it only if it is unbiased (e.g. a baseline was subtracted).
    big = torch.randn(200_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with prefixed("on 200,000 samples: "):
        b_mu, b_lv = _estimates(fn, f, mu, log_var, big)
    # exact gradients of E[sin(2z) + z^2] for z ~ N(mu, sigma^2):
    # E sin(2z) = sin(2 mu) exp(-2 sigma^2), E z^2 = mu^2 + sigma^2
    s2 = sigma ** 2
    true_mu = 2 * math.cos(2 * mu) * math.exp(-2 * s2) + 2 * mu
    true_lv = s2 * (-2 * math.sin(2 * mu) * math.exp(-2 * s2) + 1)  # d/dlog_var = sigma^2 d/d(sigma^2)
    n = big.numel()
    z_mu = (b_mu.mean().item() - true_mu) / (b_mu.std().item() / math.sqrt(n) + 1e-12)
    z_lv = (b_lv.mean().item() - true_lv) / (b_lv.std().item() / math.sqrt(n) + 1e-12)
    if abs(z_mu) < 5 and abs(z_lv) < 5:
        return Feedback(True, "not the plain estimator f(z) * score on the same noise, but unbiased on 200,000 "
                              "samples (did you subtract a baseline?). The exercise's reference has no baseline.")
    which = "grad_mu" if not mu_ok else "grad_log_var"
    return Feedback(False, f"{which} is neither the reference f(z) * d/dphi log q(z) nor unbiased (mean off by "
                           f"{max(abs(z_mu), abs(z_lv)):.0f} standard errors). With z = mu + sigma * eps: "
                           "grad_mu = f(z) eps / sigma, grad_log_var = f(z) (eps^2 - 1) / 2.")


def _per_sample(value, shape: tuple[int, int], name: str, reference: torch.Tensor) -> torch.Tensor:
    """A learner's per-sample estimates as a float64 (S, L) tensor, or NotYet naming the wrong shape."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except Exception:  # not numbers, ragged, or an object that fails on float()
            raise NotYet(f"{name} should be a tensor of shape {shape}, got a {type(value).__name__}.") from None
    value = value.detach().double().cpu()
    if tuple(value.shape) == shape:
        return value
    if tuple(value.shape) == shape[1:]:
        if _close(value, reference.sum(0)):
            raise NotYet(f"{name} is the SUM of the {shape[0]} per-sample estimates, shape {shape[1:]}: autograd "
                         "with respect to a mu (or log_var) of shape (L,) that every sample shares adds their "
                         "gradients up. Return one estimate per sample, shape (S, L): differentiate with respect "
                         "to z (S, L) and apply the chain rule, or give every sample its own copy of mu and log_var "
                         "(expand them to (S, L) before building z).")
        raise NotYet(f"{name} has shape {tuple(value.shape)}, a single estimate (averaged or summed over the samples); "
                     f"return one estimate per sample, shape {shape}, so that its mean and variance can be taken.")
    raise NotYet(f"{name} should have shape (S, L) = {shape}, one estimate per sample and latent dimension; "
                 f"got {tuple(value.shape)}.")


@checker
def check_pathwise_estimator(fn: Callable) -> Feedback:
    r"""Check ``fn(f, mu, log_var, eps) -> (grad_mu, grad_log_var)``, each (S, L): the per-sample pathwise
    (reparameterization) estimates of the gradient of E_{N(mu, diag(exp(log_var)))}[f(z)].

    With z_s = mu + sigma * eps_s and sigma = exp(log_var / 2), the s-th estimates are grad_z f(z_s) and
    grad_z f(z_s) * sigma * eps_s / 2 (Kingma & Welling 2014, §2.4; Mohamed et al. 2020, §5). mu and log_var
    have shape (L,), eps (S, L), and f maps z (S, L) to values (S,). The reference is
    :func:`ae_course.gradients.pathwise_gradient` on the same noise; the checker names the typical mistakes:
    the chain rule through sigma left out (grad_log_var = grad_z f) or half of it (a missing 1/2, a missing
    sigma, the derivative with respect to sigma or to the variance), sigma = exp(log_var) as the scale,
    f differentiated at mu instead of at z, the gradient of the *mean* of f over the samples (1/S too
    small), the estimates summed over the samples, the score-function estimator in place of the pathwise
    one, fresh noise instead of the given eps, and a flipped sign. Chapter 5, exercise "pathwise estimator".
    """
    from ..gradients import pathwise_gradient, score_function_gradient

    S = 200
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    log_var = torch.tensor([-2.0, 0.7, 0.0], dtype=torch.float64)                  # sigma = 0.37, 1.42, 1
    eps = torch.randn(S, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = lambda z: (torch.sin(2 * z) + z.square()).sum(-1) + z[:, 0] * z[:, 1]     # (S, 3) -> (S,)
    shape = (S, 3)
    ref = pathwise_gradient(f, mu, log_var, S, eps=eps)
    pair = "a pair (grad_mu, grad_log_var) of per-sample estimates, each of shape (S, L)"
    result = call_learner(fn, f, mu, log_var, eps, returns=(tuple, list), expect=pair, hint=_autograd_hint)
    if len(result) != 2:
        raise NotYet(f"return {pair}, not {len(result)} values.")
    g_mu = _per_sample(result[0], shape, "grad_mu", ref.mu)
    g_lv = _per_sample(result[1], shape, "grad_log_var", ref.log_var)
    mu_ok, lv_ok = _close(g_mu, ref.mu), _close(g_lv, ref.log_var)
    if mu_ok and lv_ok:
        return Feedback(True, "grad_mu = f'(z) and grad_log_var = f'(z) * sigma * eps / 2 at z = mu + sigma * eps, "
                              "one estimate per sample, the same numbers as ae_course.gradients.pathwise_gradient.")
    sigma = torch.exp(log_var / 2)
    score = score_function_gradient(f, mu, log_var, S, eps=eps)
    as_variance = pathwise_gradient(f, mu, 2 * log_var, S, eps=eps)    # scale exp(log_var): "sigma" = variance
    at_mean = pathwise_gradient(f, mu, torch.full_like(log_var, -80.0), S, eps=eps).mu   # f'(mu), no noise
    grad_z = ref.mu
    if not mu_ok:
        name_mistake(g_mu, [
            (grad_z / S, "grad_mu is 1/S of the per-sample estimate: you differentiated the MEAN of f over the "
                         "samples. Differentiate the SUM, f(z).sum(): since sample s depends only on its own z_s, "
                         "the gradient of the sum with respect to z_s is sample s's own derivative."),
            (score.mu, "that is the score-function estimate f(z) * eps / sigma. The pathwise estimator "
                       "differentiates f: grad_mu = f'(z) at z = mu + sigma * eps."),
            (as_variance.mu, "z was built with the variance exp(log_var) as the scale; the standard deviation is "
                             "sigma = exp(log_var / 2)."),
            (at_mean, "grad_mu is f'(mu), the derivative at the mean: evaluate f' at the samples "
                      "z = mu + sigma * eps."),
            (-grad_z, "grad_mu has the wrong sign: it is +f'(z) (dz/dmu = 1)."),
        ])
    else:
        name_mistake(g_lv, [
            (grad_z, "grad_log_var equals grad_mu = f'(z): the chain rule through sigma is missing. "
                     "dz/dlog_var = sigma * eps / 2, so grad_log_var = f'(z) * sigma * eps / 2."),
            (grad_z * sigma * eps, "grad_log_var is missing the 1/2: sigma = exp(log_var / 2), so "
                                   "dsigma/dlog_var = sigma / 2 and dz/dlog_var = sigma * eps / 2."),
            (grad_z * eps / 2, "grad_log_var is missing the factor sigma: d exp(log_var / 2) / dlog_var = sigma / 2, "
                               "so dz/dlog_var = sigma * eps / 2."),
            (grad_z * eps, "that is the derivative with respect to sigma, f'(z) * eps; multiply by "
                           "dsigma/dlog_var = sigma / 2."),
            (grad_z * eps / (2 * sigma), "that is the derivative with respect to the variance sigma^2; multiply by "
                                         "dsigma^2/dlog_var = sigma^2."),
            (grad_z.sum(0) * sigma * eps / 2, "grad_log_var used the SUM of f'(z) over the samples; each sample has "
                                              "its own f'(z_s) * sigma * eps_s / 2."),
            (ref.log_var / S, "grad_log_var is 1/S of the per-sample estimate: differentiate the SUM of f over the "
                              "samples, not its mean."),
            (score.log_var, "that is the score-function estimate f(z) * (eps^2 - 1) / 2; the pathwise estimator is "
                            "f'(z) * sigma * eps / 2."),
            (-ref.log_var, "grad_log_var has the wrong sign."),
        ])
    with prefixed("called a second time with the same eps, "):
        again = call_learner(fn, f, mu, log_var, eps, returns=(tuple, list), expect=pair)
    if len(again) == 2 and isinstance(again[0], torch.Tensor) and not _close(again[0].double(), g_mu):
        return Feedback(False, "calling your function twice with the same eps gives different estimates: you draw "
                               "fresh noise instead of using the eps argument. z = mu + sigma * eps with the eps "
                               "you are given.")
    which, got, want = ("grad_mu", g_mu, ref.mu) if not mu_ok else ("grad_log_var", g_lv, ref.log_var)
    return Feedback(False, f"{which} differs from the pathwise estimate by up to {max_difference(got, want):.3g}. "
                           "With z = mu + sigma * eps: grad_mu = f'(z), grad_log_var = f'(z) * sigma * eps / 2.")


def _autograd_hint(err: Exception) -> str:
    if "does not require grad" in str(err):
        return (" (autograd needs a graph from mu and log_var, or z, to f: call requires_grad_() on the tensors you "
                "differentiate with respect to before computing z and f(z).)")
    return ""
