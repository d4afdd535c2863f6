"""The checkers of chapter 5 accept the right answers and name the typical mistakes."""
import math

import torch
from torch.distributions import Normal

from ae_course.exercises.reparameterization_checks import (check_pathwise_estimator, check_reparameterize,
                                                           check_score_function_1d, check_toy_gradient)


def test_reparameterize_checker():
    assert check_reparameterize(lambda mu, lv, eps: mu + torch.exp(0.5 * lv) * eps)
    assert check_reparameterize(lambda mu, lv, eps: mu + lv.exp().sqrt() * eps)
    cases = {
        "variance exp(log_var)": lambda mu, lv, eps: mu + torch.exp(lv) * eps,
        "log_var itself": lambda mu, lv, eps: mu + lv * eps,
        "1 / sigma": lambda mu, lv, eps: mu + torch.exp(-lv / 2) * eps,
        "no noise": lambda mu, lv, eps: mu * 1.0,
        "forgot mu": lambda mu, lv, eps: torch.exp(lv / 2) * eps,
        "wrong sign": lambda mu, lv, eps: mu - torch.exp(lv / 2) * eps,
        "fresh noise": lambda mu, lv, eps: mu + torch.exp(lv / 2) * torch.randn_like(mu),
        "shape of mu": lambda mu, lv, eps: (mu + torch.exp(lv / 2) * eps).sum(1),
        "NaN": lambda mu, lv, eps: mu + torch.sqrt(lv) * eps,
        "cut off": lambda mu, lv, eps: (mu + torch.exp(lv / 2) * eps).detach(),
        "raised": lambda mu, lv, eps: mu + undefined_name,  # noqa: F821
        "torch.Tensor": lambda mu, lv, eps: 0.0,
        "differs": lambda mu, lv, eps: mu + torch.exp(lv / 2) * eps + 0.1,
    }
    for needle, fn in cases.items():
        feedback = check_reparameterize(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)
    # Normal(...).sample() both ignores eps and cuts the graph: the noise is the first thing to fix
    sample = check_reparameterize(lambda mu, lv, eps: Normal(mu, torch.exp(lv / 2)).sample())
    assert not sample and "fresh noise" in sample.message


def test_toy_gradient_checker():
    mu, log_var, c = [0.5, -1.0, 2.0], [0.0, math.log(4.0), -math.log(4.0)], [1.0, 1.0, 1.0]
    right_mu, right_lv = [-1.0, -4.0, 2.0], [1.0, 4.0, 0.25]
    assert check_toy_gradient(right_mu, right_lv, mu, log_var, c)
    assert check_toy_gradient(torch.tensor(right_mu), torch.tensor(right_lv), mu, log_var, c)
    sigma = [1.0, 2.0, 0.5]
    cases = {
        "wrong sign": ([1.0, 4.0, -2.0], right_lv),
        "factor 2": ([-0.5, -2.0, 1.0], right_lv),
        "derivative with respect to sigma": (right_mu, [2 * s for s in sigma]),
        "respect to the variance": (right_mu, [1.0, 1.0, 1.0]),
        "no factor m": (right_mu, [3.0, 12.0, 0.75]),
        "is None": (None, right_lv),
        "3 entries": (right_mu[:2], right_lv),
        "off by": ([0.0, 0.0, 0.0], right_lv),
    }
    for needle, (g_mu, g_lv) in cases.items():
        feedback = check_toy_gradient(g_mu, g_lv, mu, log_var, c)
        assert not feedback and needle in feedback.message, (needle, feedback)


def reference(f, mu, log_var, eps):
    sigma = math.exp(log_var / 2)
    v = f(mu + sigma * eps)
    return v * eps / sigma, v * (eps ** 2 - 1) / 2


def test_score_function_checker():
    assert check_score_function_1d(reference)

    def with_baseline(f, mu, log_var, eps):
        sigma = math.exp(log_var / 2)
        v = f(mu + sigma * eps) - 1.0
        return v * eps / sigma, v * (eps ** 2 - 1) / 2

    accepted = check_score_function_1d(with_baseline)
    assert accepted and "baseline" in accepted.message

    def variant(mu_term=None, lv_term=None):
        def fn(f, mu, log_var, eps):
            sigma = math.exp(log_var / 2)
            z = mu + sigma * eps
            g_mu, g_lv = reference(f, mu, log_var, eps)
            return (mu_term(f, z, eps, sigma) if mu_term else g_mu), (lv_term(f, z, eps, sigma) if lv_term else g_lv)
        return fn

    z_ = lambda z: z.clone().requires_grad_(True)

    def derivative(f, z):
        zz = z_(z)
        return torch.autograd.grad(f(zz).sum(), zz)[0]

    cases = {
        "score eps / sigma alone": variant(mu_term=lambda f, z, e, s: e / s),
        "pathwise": variant(mu_term=lambda f, z, e, s: derivative(f, z)),
        "not eps.": variant(mu_term=lambda f, z, e, s: f(z) * e),
        "not eps * sigma": variant(mu_term=lambda f, z, e, s: f(z) * e * s),
        "not eps / sigma^2": variant(mu_term=lambda f, z, e, s: f(z) * e / s ** 2),
        "wrong sign": variant(mu_term=lambda f, z, e, s: -f(z) * e / s),
        "missing the 1/2": variant(lv_term=lambda f, z, e, s: f(z) * (e ** 2 - 1)),
        "biased": variant(lv_term=lambda f, z, e, s: f(z) * e ** 2 / 2),
        "respect to the variance": variant(lv_term=lambda f, z, e, s: f(z) * (e ** 2 - 1) / (2 * s ** 2)),
        "respect to sigma": variant(lv_term=lambda f, z, e, s: f(z) * (e ** 2 - 1) / s),
        "(eps^2 - 1) / 2 alone": variant(lv_term=lambda f, z, e, s: (e ** 2 - 1) / 2),
        "pathwise estimate": variant(lv_term=lambda f, z, e, s: derivative(f, z) * s * e / 2),
        "single number": lambda f, mu, lv, eps: tuple(g.mean() for g in reference(f, mu, lv, eps)),
        "pair": lambda f, mu, lv, eps: reference(f, mu, lv, eps)[0],
        "shape": lambda f, mu, lv, eps: tuple(g[:10] for g in reference(f, mu, lv, eps)),
        "raised": lambda f, mu, lv, eps: 1 / 0,
        "neither": variant(mu_term=lambda f, z, e, s: f(z) * e / s + 0.5),
    }
    for needle, fn in cases.items():
        feedback = check_score_function_1d(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def per_sample_copies(f, mu, log_var, eps):
    """A right answer: autograd through z, with one copy of mu and log_var per sample."""
    mu_s = mu.detach().expand(len(eps), -1).clone().requires_grad_(True)
    lv_s = log_var.detach().expand(len(eps), -1).clone().requires_grad_(True)
    return torch.autograd.grad(f(mu_s + torch.exp(0.5 * lv_s) * eps).sum(), [mu_s, lv_s])


def chain_rule(lv_term, scale=lambda lv: torch.exp(0.5 * lv), mean=False):
    """grad_z f at z = mu + scale(log_var) * eps, and grad_log_var = lv_term(grad_z, sigma, eps)."""
    def fn(f, mu, log_var, eps):
        z = (mu + scale(log_var) * eps).requires_grad_(True)
        values = f(z)
        (g,) = torch.autograd.grad(values.mean() if mean else values.sum(), z)
        return g, lv_term(g, torch.exp(0.5 * log_var), eps)
    return fn


def test_pathwise_estimator_checker():
    assert check_pathwise_estimator(per_sample_copies)
    assert check_pathwise_estimator(chain_rule(lambda g, s, e: g * s * e / 2))

    def shared(f, mu, log_var, eps):
        mu, log_var = mu.clone().requires_grad_(True), log_var.clone().requires_grad_(True)
        return torch.autograd.grad(f(mu + torch.exp(0.5 * log_var) * eps).sum(), [mu, log_var])

    def detached(f, mu, log_var, eps):
        return torch.autograd.grad(f(mu + torch.exp(0.5 * log_var) * eps).sum(), [mu, log_var])

    cases = {
        "chain rule through sigma is missing": chain_rule(lambda g, s, e: g),
        "missing the 1/2": chain_rule(lambda g, s, e: g * s * e),
        "missing the factor sigma": chain_rule(lambda g, s, e: g * e / 2),
        "derivative with respect to sigma": chain_rule(lambda g, s, e: g * e),
        "respect to the variance": chain_rule(lambda g, s, e: g * e / (2 * s)),
        "MEAN of f": chain_rule(lambda g, s, e: g * s * e / 2, mean=True),
        "variance exp(log_var) as the scale": chain_rule(lambda g, s, e: g * s * e / 2, scale=torch.exp),
        "derivative at the mean": chain_rule(lambda g, s, e: g * s * e / 2, scale=lambda lv: 0 * lv),
        "SUM of the 200 per-sample estimates": shared,
        "does not require grad": detached,
        "fresh noise": lambda f, mu, lv, eps: per_sample_copies(f, mu, lv, torch.randn_like(eps)),
        "score-function estimate f(z) * eps / sigma": lambda f, mu, lv, eps: (
            f(mu + torch.exp(lv / 2) * eps)[:, None] * eps / torch.exp(lv / 2), eps),
        "score-function estimate f(z) * (eps^2 - 1) / 2": lambda f, mu, lv, eps: (
            per_sample_copies(f, mu, lv, eps)[0], f(mu + torch.exp(lv / 2) * eps)[:, None] * (eps**2 - 1) / 2),
        "wrong sign": chain_rule(lambda g, s, e: -g * s * e / 2),
        "not 1 values": lambda f, mu, lv, eps: (per_sample_copies(f, mu, lv, eps)[0],),
        "returned None": lambda f, mu, lv, eps: None,
        "differs from the pathwise estimate": chain_rule(lambda g, s, e: g * s * e / 2 + 0.1),
    }
    for needle, fn in cases.items():
        feedback = check_pathwise_estimator(fn)
        assert not feedback and needle in feedback.message, (needle, feedback.message)
