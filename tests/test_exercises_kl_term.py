"""The checkers of the chapter "What the KL term does" accept right answers and name each typical mistake."""
import math

import pytest
import torch
from torch.distributions import Normal

import ae_course
from ae_course.exercises.kl_term_checks import check_elbo_surgery, check_free_bits, check_information_estimates
from ae_course.kl_term import aggregate_log_density, elbo_surgery


# ------------------------------------------------------------------------------------------- ELBO surgery

def _log_all(mu, log_var, z, sigma=None):
    std = torch.exp(0.5 * log_var) if sigma is None else sigma
    return Normal(mu, std).log_prob(z.unsqueeze(2)).sum(-1)                 # (S, N, N): code n, posterior m


def _own(mu, log_var, z, sigma=None):
    std = torch.exp(0.5 * log_var) if sigma is None else sigma
    return Normal(mu, std).log_prob(z).sum(-1)


def _log_p(z):
    return Normal(0.0, 1.0).log_prob(z).sum(-1)


def surgery_right(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=2) - math.log(len(mu))
    return (_own(mu, log_var, z) - log_q_z).mean(), (log_q_z - _log_p(z)).mean()


def surgery_package(mu, log_var, z):
    log_q_z = aggregate_log_density(z, mu, log_var)
    own, log_p = _own(mu.double(), log_var.double(), z.double()), _log_p(z.double())
    return float((own - log_q_z).mean()), float((log_q_z - log_p).mean())


def test_elbo_surgery_accepts_right_answers():
    assert check_elbo_surgery(surgery_right)
    assert check_elbo_surgery(surgery_package)
    assert check_elbo_surgery(lambda mu, lv, z: list(surgery_right(mu, lv, z)))


def _with_log_q(make_log_q, sigma_from_log_var=None):
    def fn(mu, log_var, z):
        sigma = None if sigma_from_log_var is None else sigma_from_log_var(log_var)
        log_q_z = make_log_q(mu, log_var, z, sigma)
        return (_own(mu, log_var, z, sigma) - log_q_z).mean(), (log_q_z - _log_p(z)).mean()
    return fn


def _naive(mu, log_var, z):
    q_z = _log_all(mu, log_var, z).exp().mean(dim=2)
    log_q_z = q_z.log()
    return (_own(mu, log_var, z) - log_q_z).mean(), (log_q_z - _log_p(z)).mean()


def _wrong_axis(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=1) - math.log(len(mu))
    return (_own(mu, log_var, z) - log_q_z).mean(), (log_q_z - _log_p(z)).mean()


def _summed(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=2) - math.log(len(mu))
    return (_own(mu, log_var, z) - log_q_z).sum(), (log_q_z - _log_p(z)).sum()


def _summed_samples(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=2) - math.log(len(mu))
    return (_own(mu, log_var, z) - log_q_z).sum(0).mean(), (log_q_z - _log_p(z)).sum(0).mean()


def _no_prior(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=2) - math.log(len(mu))
    return (_own(mu, log_var, z) - log_q_z).mean(), log_q_z.mean()


def _not_averaged(mu, log_var, z):
    log_q_z = torch.logsumexp(_log_all(mu, log_var, z), dim=2) - math.log(len(mu))
    return _own(mu, log_var, z) - log_q_z, log_q_z - _log_p(z)


def _leave_one_out(mu, log_var, z):
    log_all = _log_all(mu, log_var, z)
    n = len(mu)
    log_all = log_all.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf)
    log_q_z = torch.logsumexp(log_all, dim=2) - math.log(n - 1)
    return (_own(mu, log_var, z) - log_q_z).mean(), (log_q_z - _log_p(z)).mean()


@pytest.mark.parametrize("needle, fn", [
    ("subtract log N", _with_log_q(lambda mu, lv, z, s: torch.logsumexp(_log_all(mu, lv, z), dim=2))),
    ("own posterior", _with_log_q(lambda mu, lv, z, s: _own(mu, lv, z))),
    ("averaged the log-densities", _with_log_q(lambda mu, lv, z, s: _log_all(mu, lv, z).mean(dim=2))),
    ("leave-one-out", _leave_one_out),
    ("wrong axis", _wrong_axis),
    ("swapped", lambda mu, lv, z: tuple(reversed(surgery_right(mu, lv, z)))),
    ("summed over the", _summed),
    ("samples per image", _summed_samples),
    ("log_var as log sigma", _with_log_q(lambda mu, lv, z, s: torch.logsumexp(_log_all(mu, lv, z, s), dim=2)
                                         - math.log(len(mu)), sigma_from_log_var=torch.exp)),
    ("missing log p(z)", _no_prior),
    ("not finite", _naive),
    ("average it over all", _not_averaged),
    ("return a tuple", lambda mu, lv, z: surgery_right(mu, lv, z)[0]),
    ("raised ZeroDivisionError", lambda mu, lv, z: 1 / 0),
    ("expected I =", lambda mu, lv, z: (surgery_right(mu, lv, z)[0] + 0.3, surgery_right(mu, lv, z)[1])),
])
def test_elbo_surgery_diagnoses(needle, fn):
    feedback = check_elbo_surgery(fn)
    assert not feedback and needle in feedback.message, (needle, feedback.message)


# ------------------------------------------------------------------------------------------- free bits

def _kl_dims(mu, log_var):
    return 0.5 * (mu**2 + log_var.exp() - log_var - 1)


def free_bits_right(mu, log_var, lam):
    return torch.clamp(_kl_dims(mu, log_var).mean(0), min=lam).sum()


def test_free_bits_accepts_right_answers():
    assert check_free_bits(free_bits_right)
    assert check_free_bits(lambda mu, lv, lam: torch.maximum(_kl_dims(mu, lv).mean(0), torch.tensor(lam)).sum())


@pytest.mark.parametrize("needle, fn", [
    ("TOTAL KL", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).sum(1), min=lam).mean()),
    ("whole code's KL", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).sum(1).mean(), min=lam)),
    ("before averaging", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv), min=lam).sum(1).mean()),
    ("min(lam, KL_j)", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).mean(0), max=lam).sum()),
    ("averaged over the latent", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).mean(0), min=lam).mean()),
    ("hinge", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).mean(0) - lam, min=0).sum()),
    ("there is no floor", lambda mu, lv, lam: _kl_dims(mu, lv).mean(0).sum()),
    ("log sigma", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, 2 * lv).mean(0), min=lam).sum()),
    ("one value per latent", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv).mean(0), min=lam)),
    ("one value per image", lambda mu, lv, lam: torch.clamp(_kl_dims(mu, lv), min=lam).sum(1)),
    ("cut from the autograd graph", lambda mu, lv, lam: torch.tensor(free_bits_right(mu, lv, lam).item())),
    ("gradient with respect to mu", lambda mu, lv, lam: free_bits_right(mu.detach(), lv, lam)),
    ("return a torch.Tensor", lambda mu, lv, lam: free_bits_right(mu, lv, lam).item()),
    ("expected", lambda mu, lv, lam: free_bits_right(mu, lv, lam) + 0.5),
])
def test_free_bits_diagnoses(needle, fn):
    feedback = check_free_bits(fn)
    assert not feedback and needle in feedback.message, (needle, feedback.message)


# ------------------------------------------------------------------------------------------- estimates versus N

class Projection:
    """q(z|x) = N(x A, e^-2 I) in 4 dimensions, A fixed: several nats of information about x, so that for
    N = 50..500 the lower estimate, the leave-one-out estimate and log N are all apart."""

    def __init__(self):
        self.A = torch.randn(784, 4, generator=torch.Generator().manual_seed(1)) / 14
        self.prior = ae_course.standard_normal(4)

    def encode(self, x):
        mu = x @ self.A
        return mu - mu.mean(0), torch.full_like(mu, -2.0)


@pytest.fixture(scope="module")
def model_and_data():
    x = torch.rand(500, 784, generator=torch.Generator().manual_seed(0)).round()
    return Projection(), x


def _estimates(model, x, mixture="all"):
    return [elbo_surgery(model, x[:n], n_samples=10, mixture=mixture, generator=torch.Generator().manual_seed(0))
            for n in (50, 100, 200, 500)]


def test_information_estimates_checker(model_and_data):
    model, x = model_and_data
    right = [r.mutual_information for r in _estimates(model, x)]
    upper = [r.mutual_information for r in _estimates(model, x, "leave_one_out")]
    caps = [math.log(n) for n in (50, 100, 200, 500)]
    assert all(u - r > 0.3 and c - r > 0.3 for r, u, c in zip(right, upper, caps))   # the case separates them
    assert check_information_estimates(right, model, x)
    assert check_information_estimates(torch.tensor(right), model, x)
    cases = {
        "caps log N": [math.log(n) for n in (50, 100, 200, 500)],
        "leave-one-out": [r.mutual_information for r in _estimates(model, x, "leave_one_out")],
        "reversed": right[::-1],
        "marginal KLs": [r.marginal_kl for r in _estimates(model, x)],
        "average KLs": [r.average_kl for r in _estimates(model, x)],
        "is None": None,
        "expected about": [v + 1 for v in right],
        "got (3,)": right[:3],
    }
    for needle, value in cases.items():
        feedback = check_information_estimates(value, model, x)
        assert not feedback and needle in feedback.message, (needle, feedback.message)
    with pytest.raises(ValueError):
        check_information_estimates(right, model, x[:100])
