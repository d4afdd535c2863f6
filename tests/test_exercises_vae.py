"""The checkers of the VAE-training chapter accept the right answers and name each typical mistake."""
import math

import pytest
import torch
import torch.nn.functional as F

from ae_course.exercises.vae_checks import check_active_units, check_log_likelihood_bound, check_negative_elbo


def bce_sum(x, logits):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)


def kl_sum(mu, log_var):
    return 0.5 * (mu**2 + log_var.exp() - log_var - 1).sum(dim=1)


def test_negative_elbo_accepts_right_answers():
    assert check_negative_elbo(lambda x, l, mu, lv: bce_sum(x, l) + kl_sum(mu, lv))
    # the tutorial form of the KL, and the softplus form of the cross-entropy
    assert check_negative_elbo(lambda x, l, mu, lv: (F.softplus(l) - x * l).sum(1)
                               - 0.5 * (1 + lv - mu**2 - lv.exp()).sum(1))


@pytest.mark.parametrize("needle, fn", [
    ("averaged over the 784 pixels", lambda x, l, mu, lv: F.binary_cross_entropy_with_logits(
        l, x, reduction="none").mean(1) + kl_sum(mu, lv)),
    ("KL term is missing", lambda x, l, mu, lv: bce_sum(x, l)),
    ("wrong sign", lambda x, l, mu, lv: bce_sum(x, l) - kl_sum(mu, lv)),
    ("averaged over the latent dimensions", lambda x, l, mu, lv: bce_sum(x, l)
     + 0.5 * (mu**2 + lv.exp() - lv - 1).mean(1)),
    ("expects probabilities", lambda x, l, mu, lv: F.binary_cross_entropy(l, x, reduction="none").sum(1)
     + kl_sum(mu, lv)),
    ("clamps log p", lambda x, l, mu, lv: F.binary_cross_entropy(torch.sigmoid(l), x, reduction="none").sum(1)
     + kl_sum(mu, lv)),
    ("sigmoid twice", lambda x, l, mu, lv: bce_sum(x, torch.sigmoid(l)) + kl_sum(mu, lv)),
    ("squared error", lambda x, l, mu, lv: ((x - torch.sigmoid(l)) ** 2).sum(1) + kl_sum(mu, lv)),
    ("sign is flipped", lambda x, l, mu, lv: -(bce_sum(x, l) + kl_sum(mu, lv))),
    ("log_var as log sigma", lambda x, l, mu, lv: bce_sum(x, l)
     + 0.5 * (mu**2 + (2 * lv).exp() - 2 * lv - 1).sum(1)),
    ("twice too large", lambda x, l, mu, lv: bce_sum(x, l) + 2 * kl_sum(mu, lv)),
    ("single number", lambda x, l, mu, lv: (bce_sum(x, l) + kl_sum(mu, lv)).mean()),
    ("one value per pixel", lambda x, l, mu, lv: F.binary_cross_entropy_with_logits(l, x, reduction="none")),
    ("KL is averaged over the batch", lambda x, l, mu, lv: bce_sum(x, l) + kl_sum(mu, lv).mean()),
    ("not finite", lambda x, l, mu, lv: -(x * torch.log(torch.sigmoid(l))
                                          + (1 - x) * torch.log(1 - torch.sigmoid(l))).sum(1) + kl_sum(mu, lv)),
    ("return a torch.Tensor", lambda x, l, mu, lv: 1.0),
    ("raised ZeroDivisionError", lambda x, l, mu, lv: 1 / 0),
    ("KL term differs", lambda x, l, mu, lv: bce_sum(x, l) + kl_sum(mu, lv) + (mu**2).sum(1)),
    ("reconstruction term alone", lambda x, l, mu, lv: bce_sum(x, l) * 1.5 + kl_sum(mu, lv)),
])
def test_negative_elbo_diagnoses(needle, fn):
    feedback = check_negative_elbo(fn)
    assert not feedback and needle in feedback.message, (needle, feedback.message)


def _means():
    """Posterior means of 500 images in 10 dimensions: variances 1, 0.5, 0.2, 0.05, 0.02, 0.012 (active),
    0.005, 5e-5, 0, 0 (inactive); dimension 8 has mean 3 (constant but far from 0)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(500, 10, generator=gen)
    base = (base - base.mean(0)) / base.std(0, correction=0)
    scales = torch.tensor([1, 0.5, 0.2, 0.05, 0.02, 0.012, 0.005, 5e-5, 0, 0]).sqrt()
    mu = base * scales
    mu[:, 8] = 3.0
    return mu


def test_active_units_checker():
    mu = _means()
    right = int((mu.var(0, correction=0) > 0.01).sum())
    assert right == 6
    assert check_active_units(right, mu) and check_active_units(torch.tensor(right), mu)
    assert check_active_units(int((mu.var(0) > 0.01).sum()), mu)  # sample variance is fine too
    cases = {
        "INACTIVE": 10 - right,
        "fraction": right / 10,
        "variance over the images": int((mu.var(1) > 0.01).sum()),
        "standard deviation": int((mu.std(0) > 0.01).sum()),
        "mean of mu_u": int((mu.mean(0).abs() > 0.01).sum()),
        "number": None,
        "whole number": 4.5,
        "expected 6": 3,
    }
    for needle, value in cases.items():
        feedback = check_active_units(value, mu)
        assert not feedback and needle in feedback.message, (needle, value, feedback.message)


def test_log_likelihood_bound_checker():
    assert check_log_likelihood_bound(lambda w: torch.logsumexp(w, 0) - math.log(w.shape[0]))
    cases = {
        "not finite": lambda w: torch.log(torch.exp(w).mean(0)),
        "mean of the log-weights": lambda w: w.mean(0),
        "divide by k": lambda w: torch.logsumexp(w, 0),
        "largest log-weight": lambda w: w.max(0).values,
        "reduced over the images": lambda w: torch.logsumexp(w, 1) - math.log(w.shape[1]),
        "single number": lambda w: torch.logsumexp(w.flatten(), 0),
        "differ": lambda w: torch.logsumexp(w, 0) - math.log(w.shape[0]) + 0.5,
        "raised": lambda w: w.nonexistent(),
    }
    for needle, fn in cases.items():
        feedback = check_log_likelihood_bound(fn)
        assert not feedback and needle in feedback.message, (needle, feedback.message)


def test_log_likelihood_bound_naive_double_precision_fails_only_far_out():
    # exp in float64 is fine at -120 but underflows at -800: the second case catches it
    feedback = check_log_likelihood_bound(lambda w: torch.log(torch.exp(w.double()).mean(0)))
    assert not feedback and "float64" in feedback.message and "not finite" in feedback.message
