"""Chapter 4's checkers accept the right answers and name the typical mistakes."""
import math

import torch
from torch.distributions import Normal

from ae_course.exercises.kl_checks import (check_gaussian_kl, check_general_gaussian_kl, check_mc_kl,
                                           mc_kl_standard_deviation)


def right_kl(mu, log_var):
    return 0.5 * (mu ** 2 + log_var.exp() - log_var - 1).sum(1)


def test_gaussian_kl_checker():
    assert check_gaussian_kl(right_kl)
    cases = {
        "factor 1/2": lambda m, lv: (m ** 2 + lv.exp() - lv - 1).sum(1),
        "standard deviation": lambda m, lv: 0.5 * (m ** 2 + (0.5 * lv).exp() - lv - 1).sum(1),
        "log sigma": lambda m, lv: 0.5 * (m ** 2 + (2 * lv).exp() - 2 * lv - 1).sum(1),
        "log_var / 2": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 0.5 * lv - 1).sum(1),
        "sign is flipped": lambda m, lv: -right_kl(m, lv),
        "averaged over the latent": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - lv - 1).mean(1),
        "-1 inside": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - lv).sum(1),
        "mu^2 term": lambda m, lv: 0.5 * (lv.exp() - lv - 1).sum(1),
        "one value per latent dimension": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - lv - 1),
        "summed over the batch": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - lv - 1).sum(0),
        "single number": lambda m, lv: right_kl(m, lv).sum(),
        "not finite at log_var = -120": lambda m, lv: 0.5 * (m ** 2 + lv.exp() - torch.log(lv.exp()) - 1).sum(1),
        "raised": lambda m, lv: m @ lv,
        "torch.Tensor": lambda m, lv: None,
        "differ": lambda m, lv: right_kl(m, lv) + 0.1,
    }
    for needle, fn in cases.items():
        feedback = check_gaussian_kl(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)
    both = check_gaussian_kl(lambda m, lv: (m ** 2 + (0.5 * lv).exp() - lv - 1).sum(1))
    assert "standard deviation" in both.message and "1/2" in both.message


def right_general(m1, lv1, m2, lv2):
    return 0.5 * (lv2 - lv1 + (lv1.exp() + (m1 - m2) ** 2) / lv2.exp() - 1).sum(1)


def test_general_kl_checker():
    assert check_general_gaussian_kl(right_general)
    cases = {
        "reverse direction": lambda m1, lv1, m2, lv2: right_general(m2, lv2, m1, lv1),
        "twice too large": lambda m1, lv1, m2, lv2: 2 * right_general(m1, lv1, m2, lv2),
        "divided by 2 s2^2": lambda m1, lv1, m2, lv2: (0.5 * (lv2 - lv1) + lv1.exp() / (2 * lv2.exp())
                                                       + (m1 - m2) ** 2 / 2 - 0.5).sum(1),
        "standard deviations": lambda m1, lv1, m2, lv2: (0.5 * (lv2 - lv1) + ((0.5 * lv1).exp() + (m1 - m2) ** 2)
                                                         / (2 * (0.5 * lv2).exp()) - 0.5).sum(1),
        "sign is flipped": lambda m1, lv1, m2, lv2: -right_general(m1, lv1, m2, lv2),
        "averaged": lambda m1, lv1, m2, lv2: right_general(m1, lv1, m2, lv2) / m1.shape[1],
        "one value per latent dimension": lambda m1, lv1, m2, lv2: 0.5 * (lv2 - lv1 + (lv1.exp() + (m1 - m2) ** 2)
                                                                          / lv2.exp() - 1),
        "torch.Tensor": lambda *a: None,
        "differ": lambda *a: right_general(*a) + 1,
    }
    for needle, fn in cases.items():
        feedback = check_general_gaussian_kl(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def test_mc_kl_checker():
    mu, log_var = torch.tensor([1.0, -0.5, 0.0]), torch.tensor([0.5, -1.0, 0.0])
    n = 10_000
    gen = torch.Generator().manual_seed(0)
    std = torch.exp(0.5 * log_var)
    z = mu + std * torch.randn(n, 3, generator=gen)
    terms = (Normal(mu, std).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1)
    estimate, se = terms.mean(), terms.std() / math.sqrt(n)
    assert abs(terms.std().item() - mc_kl_standard_deviation(mu, log_var)) < 0.05
    assert check_mc_kl(estimate, se, mu, log_var, n)
    for (e, s), needle in [((estimate, terms.std()), "standard deviation of a single term"),
                           ((estimate, terms.std() / n), "divided the standard deviation by S"),
                           ((estimate, terms.var() / n), "square root"),
                           ((estimate, 10 * se), "should be about"),
                           ((estimate, -se), "positive"),
                           ((-estimate, se), "sign is flipped"),
                           ((estimate + 1, se), "standard errors from the closed form"),
                           ((None, se), "number"),
                           ((terms, se), "single number")]:
        feedback = check_mc_kl(e, s, mu, log_var, n)
        assert not feedback and needle in feedback.message, (needle, feedback)


def right_full_kl(mu0, cov0, mu1, cov1):
    diff = (mu1 - mu0)[..., None]
    trace = torch.diagonal(torch.linalg.solve(cov1, cov0), dim1=-2, dim2=-1).sum(-1)
    mahalanobis = (diff.transpose(-2, -1) @ torch.linalg.solve(cov1, diff))[..., 0, 0]
    return 0.5 * (trace + mahalanobis - mu0.shape[1] + torch.logdet(cov1) - torch.logdet(cov0))


def test_full_kl_checker():
    from ae_course.exercises.kl_checks import check_full_gaussian_kl, random_gaussians

    mu0, cov0, mu1, cov1 = random_gaussians()
    assert (torch.linalg.eigvalsh(cov0) > 0).all() and cov0[0, 0, 1].abs() > 0   # SPD, correlated
    assert check_full_gaussian_kl(right_full_kl)
    inv, logdet, solve = torch.linalg.inv, torch.logdet, torch.linalg.solve

    def tr(a):
        return torch.diagonal(a, dim1=-2, dim2=-1).sum(-1)

    def maha(diff, matrix):
        return (diff[..., None, :] @ matrix @ diff[..., None])[..., 0, 0]

    def kl(trace, m, ld, d):
        return 0.5 * (trace + m - d + ld)

    def diag(c):
        return torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1))

    cases = {
        "tr(cov0^{-1} cov1)": lambda m0, c0, m1, c1: kl(tr(inv(c0) @ c1), maha(m1 - m0, inv(c1)),
                                                      logdet(c1) - logdet(c0), m0.shape[1]),
        "ratio is flipped": lambda m0, c0, m1, c1: kl(tr(solve(c1, c0)), maha(m1 - m0, inv(c1)),
                                                      logdet(c0) - logdet(c1), m0.shape[1]),
        "-d is missing": lambda m0, c0, m1, c1: kl(tr(solve(c1, c0)), maha(m1 - m0, inv(c1)),
                                                   logdet(c1) - logdet(c0), 0),
        "uses cov0": lambda m0, c0, m1, c1: kl(tr(solve(c1, c0)), maha(m1 - m0, inv(c0)),
                                               logdet(c1) - logdet(c0), m0.shape[1]),
        "needs the inverse": lambda m0, c0, m1, c1: kl(tr(solve(c1, c0)), maha(m1 - m0, c1),
                                                       logdet(c1) - logdet(c0), m0.shape[1]),
        "reverse direction": lambda m0, c0, m1, c1: right_full_kl(m1, c1, m0, c0),
        "factor 1/2": lambda *a: 2 * right_full_kl(*a),
        "sign is flipped": lambda *a: -right_full_kl(*a),
        "only the diagonals": lambda m0, c0, m1, c1: right_full_kl(m0, diag(c0), m1, diag(c1)),
        "pair of examples": lambda m0, c0, m1, c1: 0.5 * ((m1 - m0) @ (m1 - m0).T),
        "one value per dimension": lambda m0, c0, m1, c1: (m1 - m0) ** 2,
        "single number": lambda *a: right_full_kl(*a).sum(),
        "for d = 12": lambda *a: right_full_kl(*a) + (a[0].shape[1] - 4),     # hard-coded d = 4
        "NotImplementedError": lambda *a: (_ for _ in ()).throw(NotImplementedError()),
        "returned None": lambda *a: None,
        "not finite": lambda *a: right_full_kl(*a) * float("nan"),
        "differ": lambda *a: right_full_kl(*a) + 0.1,
    }
    for needle, fn in cases.items():
        feedback = check_full_gaussian_kl(fn)
        assert not feedback and needle in feedback.message and str(feedback).startswith("Not yet"), (needle, feedback)
