"""Checkers for the exercises of the chapter "What the KL term does".

* :func:`check_elbo_surgery`: the two parts of the average KL, I_q(n; z) and KL(q(z) || p(z)), estimated from
  codes z[s, n] ~ q(z|x_n) (Hoffman & Johnson 2016, eq. 2), against :func:`ae_course.kl_term.elbo_surgery`'s
  estimator on the same codes;
* :func:`check_free_bits`: the free-bits KL term sum_j max(lambda, minibatch mean of KL_j) (Kingma et al.
  2016, eq. 15), values and gradients, against :func:`ae_course.kl_term.free_bits_kl`;
* :func:`check_information_estimates`: the lower estimate of I_q(n; z) for N = 50, 100, 200, 500 images.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Independent, Normal

from ..kl_term import aggregate_log_density, elbo_surgery, free_bits_kl, gaussian_kl_per_dimension
from ..losses import reparameterize
from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, max_difference,
                       name_mistake, prefixed)

__all__ = ["check_elbo_surgery", "check_free_bits", "check_information_estimates", "SURGERY_SIZES"]

SURGERY_SIZES = (50, 100, 200, 500)
"""The numbers of images N of :func:`check_information_estimates`, in order."""


def _log_normal(z: torch.Tensor, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return Independent(Normal(mu, std), 1).log_prob(z)


def _surgery_case(n: int, latent: int, samples: int, scale: float, log_var_range: tuple[float, float], seed: int):
    gen = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn(n, latent, generator=gen)
    low, high = log_var_range
    log_var = low + (high - low) * torch.rand(n, latent, generator=gen)
    z = reparameterize(mu, log_var, n_samples=samples, generator=gen)
    return mu, log_var, z


def _parts(mu, log_var, z, log_q_z, log_var_is_log_sigma: bool = False):
    """(I, marginal KL) in float64 from the codes z (S, N, L), given log q(z) (S, N)."""
    mu, log_var, z = mu.double(), log_var.double(), z.double()
    std = log_var.exp() if log_var_is_log_sigma else torch.exp(0.5 * log_var)
    log_own = _log_normal(z, mu, std)
    log_p = _log_normal(z, torch.zeros_like(mu), torch.ones_like(mu))
    return (log_own - log_q_z).mean().item(), (log_q_z - log_p).mean().item()


def _two_numbers(result) -> tuple[float, float]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise NotYet(f"return two numbers, (mutual_information, marginal_kl); got a {type(result).__name__}"
                     + (f" of {len(result)} items" if isinstance(result, (tuple, list)) else "") + ".")
    numbers = []
    for value, what in zip(result, ("the mutual information", "the marginal KL")):
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            raise NotYet(f"{what} is a tensor of shape {tuple(value.shape)}: average it over all S x N codes, "
                         "one number.")
        numbers.append(as_number(value, what, finite=False))
    return numbers[0], numbers[1]


@checker
def check_elbo_surgery(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]) -> Feedback:
    r"""Check `fn(mu, log_var, z) -> (mutual_information, marginal_kl)`, nats, averaged over the codes.

    mu, log_var: (N, L) posteriors q(z|x_n) = N(mu_n, diag(exp(log_var_n))); z: (S, N, L), z[s, n] ~ q(z|x_n);
    the prior is N(0, I). The reference, in float64 on the same codes, averages log q(z|x_n) - log q(z) and
    log q(z) - log p(z), with log q(z) = logsumexp_m log q(z|x_m) - log N (Hoffman & Johnson 2016, eq. 2).
    Tried on (1) six 3-D posteriors, 50 codes each, then (2) 16-D posteriors with sigma ~ 1e-4, whose
    densities overflow and underflow float32's exp. Diagnoses: a missing -log N, the own posterior alone
    (I = 0), the mean of the log-densities instead of the log of the mean density, the leave-one-out mixture,
    the log-sum-exp over the codes instead of the posteriors, the two parts swapped, sums instead of means,
    log_var read as log sigma, a missing log p(z), results that are not finite.
    """
    mu, log_var, z = _surgery_case(6, 3, 50, 1.5, (-2.0, 0.0), seed=0)
    n, samples = len(mu), len(z)
    log_q_z = aggregate_log_density(z, mu, log_var)
    mi, marginal = _parts(mu, log_var, z, log_q_z)
    got_mi, got_marginal = _two_numbers(call_learner(fn, mu, log_var, z, returns=(tuple, list),
                                                     expect="a tuple (mutual_information, marginal_kl)"))
    tolerance = dict(rtol=1e-4, atol=1e-4)
    if not (close(got_mi, mi, **tolerance) and close(got_marginal, marginal, **tolerance)):
        got = torch.tensor([got_mi, got_marginal], dtype=torch.float64)
        std = torch.exp(0.5 * log_var.double())
        log_all = _log_normal(z.double().unsqueeze(2), mu.double(), std)              # (S, N, N): code n, posterior m
        own = _log_normal(z.double(), mu.double(), std)
        log_p = _log_normal(z.double(), torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
        average = (own - log_p).mean().item()
        wrong_axis = (torch.logsumexp(log_all, dim=1) - math.log(n))                  # indexed by m, not n
        mistakes = [
            ([mi - math.log(n), marginal + math.log(n)],
             "log q(z) is log N too large: the aggregate posterior is the MEAN of the N posteriors, so subtract "
             "log N from the log-sum-exp (the sum of the two parts hides it: it is still the average KL)."),
            ([0.0, average], "the mutual information is 0: you used each code's own posterior q(z|x_n) as q(z). "
                             "q(z) is the mixture of ALL N posteriors, 1/N sum_m q(z|x_m), at every code."),
            (_parts(mu, log_var, z, log_all.mean(dim=2)),
             "you averaged the log-densities, mean_m log q(z|x_m); q(z) is the mean of the densities, "
             "log q(z) = logsumexp_m log q(z|x_m) - log N."),
            (_parts(mu, log_var, z, aggregate_log_density(z, mu, log_var, "leave_one_out")),
             "you left each code's own posterior out of the mixture: that is the leave-one-out estimate (an upper "
             "bound on the population's I). The exercise asks for q(z) = 1/N sum over all N posteriors."),
            (_parts(mu, log_var, z, wrong_axis),
             "the log-sum-exp runs over the wrong axis: for the code z[s, n], sum over the N POSTERIORS m of "
             "q(z[s, n] | x_m), not over the codes n of one posterior."),
            ([marginal, mi], "the two parts are swapped: return (mutual_information, marginal_kl)."),
            ([mi * samples * n, marginal * samples * n],
             f"you summed over the {samples} x {n} codes; average them (.mean())."),
            ([mi * samples, marginal * samples], f"you summed over the {samples} samples per image; average them."),
            (_parts(mu, log_var, z, aggregate_log_density(z, mu, 2 * log_var), log_var_is_log_sigma=True),
             "your densities read log_var as log sigma; log_var is log sigma^2, so sigma = exp(log_var / 2)."),
            ([mi, (log_q_z.mean()).item()], "the marginal KL is missing log p(z): it is E[log q(z) - log p(z)], "
                                            "with p(z) = N(0, I)."),
        ]
        name_mistake(got, [(torch.tensor(v, dtype=torch.float64), m) for v, m in mistakes], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"expected I = {mi:.4f} and KL(q(z) || p(z)) = {marginal:.4f} nats on these codes, got "
                               f"{got_mi:.4f} and {got_marginal:.4f}. Average log q(z|x_n) - log q(z) and "
                               "log q(z) - log p(z) over all codes, log q(z) = logsumexp_m log q(z|x_m) - log N.")

    mu, log_var, z = _surgery_case(5, 16, 4, 3.0, (-18.5, -18.0), seed=1)          # sigma ~ 1e-4 in 16-D
    mi, marginal = _parts(mu, log_var, z, aggregate_log_density(z, mu, log_var))
    with prefixed("right on 3-D posteriors, but on narrow 16-D ones (densities beyond float32's exp): "):
        got_mi, got_marginal = _two_numbers(call_learner(fn, mu, log_var, z, returns=(tuple, list),
                                                         expect="a tuple (mutual_information, marginal_kl)"))
    if not (math.isfinite(got_mi) and math.isfinite(got_marginal)):
        return Feedback(False, "right on 3-D posteriors, but not finite on narrow 16-D posteriors: exp of their "
                               "log-densities overflows (own posterior) and underflows (the others). Take the "
                               "log of the mixture with torch.logsumexp, never exp then log.")
    if not (close(got_mi, mi, rtol=1e-3, atol=1e-2) and close(got_marginal, marginal, rtol=1e-3, atol=1e-2)):
        return Feedback(False, f"right on 3-D posteriors, but on narrow 16-D ones expected I = {mi:.3f} (= log 5 "
                               f"= {math.log(5):.3f}: each code identifies its image) and KL = {marginal:.2f}, got "
                               f"{got_mi:.3f} and {got_marginal:.2f}.")
    return Feedback(True, "log q(z) is the log-sum-exp over all N posteriors minus log N, stable for narrow "
                          "posteriors; the two parts are averaged over all codes and add up to the average KL.")


def _free_bits_case(seed: int):
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.05, 0.1, 0.4, 1.0, 1.5, 0.02])
    mu = torch.randn(32, 6, generator=gen) * scales
    log_var = -0.05 - 0.6 * torch.rand(32, 6, generator=gen) * (scales > 0.3)       # narrow only where mu varies
    return mu, log_var


@checker
def check_free_bits(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> Feedback:
    r"""Check `fn(mu, log_var, lam) -> scalar`, sum_j max(lam, 1/B sum_b KL(q(z_j|x_b) || N(0, 1))), nats.

    Kingma et al. 2016, eq. 15, per dimension; the reference is :func:`ae_course.kl_term.free_bits_kl`. Tried on
    a minibatch of 32 with 6 units, some below the floor lam = 0.3 and some above, for the value and for the
    gradients with respect to mu and log_var (none for the units below the floor). Diagnoses: the floor on
    each image's total KL, on the whole code's mean KL, on each image's KL per unit (before the minibatch mean),
    min instead of max, a mean over the units, the hinge max(0, KL_j - lam), no floor, a vector instead of one
    number, log_var read as log sigma, a result cut from the autograd graph.
    """
    lam = 0.3
    mu, log_var = _free_bits_case(0)
    per_image_dim = gaussian_kl_per_dimension(mu, log_var).double()                    # (B, L)
    per_dim = per_image_dim.mean(0)
    expected = free_bits_kl(mu.double(), log_var.double(), lam).item()
    if not (per_dim < lam).any() or not (per_dim > lam).any():
        raise AssertionError("the free-bits case must have units on both sides of the floor")  # the checker's bug
    result = call_learner(fn, mu, log_var, lam)
    if result.numel() != 1:
        if tuple(result.shape) == (mu.shape[1],):
            return Feedback(False, "you returned one value per latent dimension: sum the floored values over the "
                                   "dimensions, one number for the minibatch.")
        if tuple(result.shape) == (len(mu),):
            return Feedback(False, "you returned one value per image: free bits averages each dimension's KL over "
                                   "the minibatch first, then floors and sums; one number.")
        return Feedback(False, f"return one number for the minibatch, got shape {tuple(result.shape)}.")
    got = as_number(result, "your free-bits KL")
    if not close(got, expected, rtol=1e-4, atol=1e-4):
        kl_image = per_image_dim.sum(1)
        if close(got, per_dim.sum().item(), rtol=1e-4, atol=1e-4):   # no floor, or one on the whole code's mean
            with prefixed("with lam = 5: "):
                high = as_number(call_learner(fn, mu, log_var, 5.0), "your free-bits KL")
            if close(high, 5.0, rtol=1e-4, atol=1e-4):
                return Feedback(False, "you floored the whole code's KL at lam: the floor is per dimension, "
                                       "sum_j max(lam, mean_b KL_bj), so the code's floor is d * lam.")
        as_log_sigma = 0.5 * (mu.double()**2 + (2 * log_var.double()).exp() - 2 * log_var.double() - 1)
        name_mistake(got, [
            (kl_image.clamp(min=lam).mean().item(),
             "you floored each image's TOTAL KL (summed over the units): free bits floors each DIMENSION's KL, "
             "averaged over the minibatch, so that no unit can be pushed to the prior: sum_j max(lam, mean_b KL_bj)."),
            (per_image_dim.clamp(min=lam).sum(1).mean().item(),
             "you floored each image's KL of each unit before averaging over the minibatch; eq. 15 of Kingma et al. "
             "averages over the minibatch FIRST: sum_j max(lam, mean_b KL_bj)."),
            (per_dim.clamp(max=lam).sum().item(), "that is min(lam, KL_j): the floor is max(lam, KL_j)."),
            (per_dim.clamp(min=lam).mean().item(), "you averaged over the latent dimensions; SUM the floored values "
                                                   "(the KL of a diagonal Gaussian is a sum over dimensions)."),
            ((per_dim - lam).clamp(min=0).sum().item(),
             "that is the hinge max(0, KL_j - lam): the same gradients, but not the value of eq. 15; write "
             "max(lam, KL_j), which adds lam for every unit below the floor."),
            (per_dim.sum().item(), "there is no floor: that is the plain minibatch-mean KL. Clamp each dimension's "
                                   "minibatch-mean KL at lam from below."),
            (as_log_sigma.mean(0).clamp(min=lam).sum().item(),
             "your KL reads log_var as log sigma; log_var is log sigma^2: 1/2 (mu^2 + exp(log_var) - log_var - 1)."),
        ], rtol=1e-4, atol=1e-4)
        return Feedback(False, f"expected {expected:.4f} nats (sum_j max({lam}, mean_b KL_bj)), got {got:.4f}.")

    mu_g, log_var_g = mu.clone().requires_grad_(), log_var.clone().requires_grad_()
    value = call_learner(fn, mu_g, log_var_g, lam, copy=False, detach=False)
    if not value.requires_grad:
        return Feedback(False, "the value is right but it is cut from the autograd graph (.item(), torch.tensor(...) "
                               "or a Python max?): use torch.clamp(kl_per_dim, min=lam), which keeps the gradient.")
    grads = torch.autograd.grad(value.sum(), [mu_g, log_var_g], allow_unused=True)
    mu_r, log_var_r = mu.clone().requires_grad_(), log_var.clone().requires_grad_()
    reference = torch.autograd.grad(free_bits_kl(mu_r, log_var_r, lam), [mu_r, log_var_r])
    for got_grad, ref_grad, name in zip(grads, reference, ("mu", "log_var")):
        if got_grad is None or not close(got_grad, ref_grad, rtol=1e-4, atol=1e-6):
            difference = "none" if got_grad is None else f"{max_difference(got_grad, ref_grad):.3g}"
            return Feedback(False, f"the value is right but the gradient with respect to {name} is not (largest "
                                   f"difference {difference}): the units below the floor must get none, the others "
                                   "the gradient of their KL.")
    return Feedback(True, "each unit's KL averaged over the minibatch, floored at lambda and summed; the units "
                          "below the floor get no gradient from the KL.")


@checker
def check_information_estimates(values, model, x: torch.Tensor) -> Feedback:
    """Check `values`: the lower estimates of I_q(n; z) (:func:`ae_course.kl_term.elbo_surgery`, mixture "all")
    of `model` on x[:N] for N in :data:`SURGERY_SIZES`, in that order, in nats.

    The reference uses 10 codes per image; a learner's estimate with other codes may differ by its Monte Carlo
    error, so 0.25 nats are allowed. Diagnoses: log N itself, the leave-one-out estimates, the order reversed,
    the marginal KL or the average KL instead of the mutual information. Raises ValueError if x has fewer than
    500 rows (a wrong call, not a wrong answer).
    """
    if len(x) < max(SURGERY_SIZES):
        raise ValueError(f"x must have at least {max(SURGERY_SIZES)} rows, got {len(x)}")
    got = as_vector(values, len(SURGERY_SIZES), "your estimates", per="N",
                    none="`lower` is None: store the four estimates, one per N, in a list.")
    reference = [elbo_surgery(model, x[:n], n_samples=10, generator=torch.Generator().manual_seed(0))
                 for n in SURGERY_SIZES]
    expected = torch.tensor([r.mutual_information for r in reference], dtype=torch.float64)
    if close(got, expected, rtol=0, atol=0.25):
        return Feedback(True, "the lower estimate follows log N: " + ", ".join(
            f"N = {n}: {v:.2f} (log N = {math.log(n):.2f})" for n, v in zip(SURGERY_SIZES, got.tolist())) + ".")
    upper = [elbo_surgery(model, x[:n], n_samples=10, mixture="leave_one_out",
                          generator=torch.Generator().manual_seed(0)).mutual_information for n in SURGERY_SIZES]
    name_mistake(got, [
        (torch.tensor([math.log(n) for n in SURGERY_SIZES], dtype=torch.float64),
         "those are the caps log N themselves; estimate the mutual information with elbo_surgery(vae, x_eval[:N])."),
        (torch.tensor(upper, dtype=torch.float64), "those are the leave-one-out (upper) estimates; `lower` holds the "
                                                   "estimates of the default mixture over all N posteriors."),
        (expected.flip(0), f"the order is reversed: N = {', '.join(map(str, SURGERY_SIZES))}."),
        (torch.tensor([r.marginal_kl for r in reference], dtype=torch.float64),
         "those are the marginal KLs; take .mutual_information."),
        (torch.tensor([r.average_kl for r in reference], dtype=torch.float64),
         "those are the average KLs; take .mutual_information."),
    ], rtol=0, atol=0.25)
    return Feedback(False, "expected about " + ", ".join(f"{v:.2f}" for v in expected.tolist())
                    + f" nats for N = {', '.join(map(str, SURGERY_SIZES))}, got "
                    + ", ".join(f"{v:.2f}" for v in got.tolist()) + ".")
