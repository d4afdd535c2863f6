"""Chapter 3's checkers accept the right answers and name the typical mistakes."""
import math

import torch

from ae_course.evaluation import importance_sampled_log_likelihood
from ae_course.exercises.elbo_checks import check_elbo_gap, check_k1_estimate, check_linear_gaussian_elbo
from ae_course.linear_gaussian import LinearGaussian
from ae_course.losses import gaussian_kl


def _parts(model, x, mu, log_var, std_in_spread=False):
    var = model.sigma ** 2
    residual = ((x - mu @ model.W.T - model.b) ** 2).sum(1)
    spread_scale = (0.5 * log_var).exp() if std_in_spread else log_var.exp()
    spread = (spread_scale * (model.W ** 2).sum(0)).sum(1)
    const = 0.5 * x.shape[1] * torch.log(2 * math.pi * var)
    return residual, spread, var, const, gaussian_kl(mu, log_var)


def right_elbo(model, x, mu, log_var):
    residual, spread, var, const, kl = _parts(model, x, mu, log_var)
    return -(residual + spread) / (2 * var) - const - kl


def test_elbo_checker():
    assert check_linear_gaussian_elbo(right_elbo)

    def no_spread(m, x, mu, lv):
        r, s, v, c, kl = _parts(m, x, mu, lv)
        return -r / (2 * v) - c - kl

    def std_spread(m, x, mu, lv):
        r, s, v, c, kl = _parts(m, x, mu, lv, std_in_spread=True)
        return -(r + s) / (2 * v) - c - kl

    def monte_carlo(m, x, mu, lv):
        return m.elbo(x, mu, lv, n_samples=1)

    cases = {
        "left out the variance": no_spread,
        "standard deviation": std_spread,
        "forgot to subtract KL": lambda m, x, mu, lv: right_elbo(m, x, mu, lv) + gaussian_kl(mu, lv),
        "wrong sign": lambda m, x, mu, lv: right_elbo(m, x, mu, lv) + 2 * gaussian_kl(mu, lv),
        "normalizing constant": lambda m, x, mu, lv: right_elbo(m, x, mu, lv) + _parts(m, x, mu, lv)[3],
        "log p(x) itself": lambda m, x, mu, lv: m.log_marginal(x),
        "sign is flipped": lambda m, x, mu, lv: -right_elbo(m, x, mu, lv),
        "Monte Carlo": monte_carlo,
        "one value per pixel": lambda m, x, mu, lv: torch.zeros_like(x),
        "single number": lambda m, x, mu, lv: right_elbo(m, x, mu, lv).sum(),
        "raised ZeroDivisionError": lambda m, x, mu, lv: 1 / 0,
        "torch.Tensor": lambda m, x, mu, lv: 1.0,
        "differ": lambda m, x, mu, lv: right_elbo(m, x, mu, lv) + 1.0,
    }
    for needle, fn in cases.items():
        feedback = check_linear_gaussian_elbo(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def _setup():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(9, 3, generator=gen, dtype=torch.float64))
    model = LinearGaussian(Q * torch.tensor([2.0, 1.5, 1.0], dtype=torch.float64), torch.zeros(9, dtype=torch.float64), 0.4)
    x = model.sample(6, generator=gen)
    mu, log_var = model.encode(x)
    return model, x, mu + 0.3, log_var - math.log(3)


def test_gap_checker():
    from torch.distributions import MultivariateNormal, kl_divergence
    model, x, mu, log_var = _setup()
    gap = model.log_marginal(x) - model.elbo(x, mu, log_var)
    assert check_elbo_gap(gap, model, x, mu, log_var)
    assert check_elbo_gap(model.posterior_kl(x, mu, log_var), model, x, mu, log_var)
    mean, cov = model.posterior(x)
    reverse = kl_divergence(MultivariateNormal(mean, cov), MultivariateNormal(mu, torch.diag_embed(log_var.exp())))
    for value, needle in [(reverse, "wrong direction"), (gaussian_kl(mu, log_var), "prior"), (-gap, "sign"),
                          (model.elbo(x, mu, log_var), "ELBO itself"), (gap.mean(), "mean over the images"),
                          (None, "None"), (gap[:3], "shape"), (gap + 1, "differ")]:
        feedback = check_elbo_gap(value, model, x, mu, log_var)
        assert not feedback and needle in feedback.message, (needle, feedback)


def test_k1_checker():
    model, x, mu, log_var = _setup()
    x1, mu1, lv1 = x[:1], mu[:1], log_var[:1]
    proposal = model.with_encoder(lambda xb: (mu1.expand(len(xb), -1), lv1.expand(len(xb), -1)))
    gen = torch.Generator().manual_seed(1)
    samples = importance_sampled_log_likelihood(proposal, x1.expand(2000, -1), k=1, generator=gen)
    assert check_k1_estimate(samples, model, x1, mu1, lv1)
    exact = importance_sampled_log_likelihood(model, x1.expand(500, -1), k=1, generator=gen)
    assert "exact posterior" in check_k1_estimate(exact, model, x1, mu1, lv1).message
    many = importance_sampled_log_likelihood(proposal, x1.expand(500, -1), k=200, generator=gen)
    assert "above the ELBO" in check_k1_estimate(many, model, x1, mu1, lv1).message
    assert "single number" in check_k1_estimate(samples.mean(), model, x1, mu1, lv1).message
    assert "at least 100" in check_k1_estimate(samples[:10], model, x1, mu1, lv1).message
    assert "None" in check_k1_estimate(None, model, x1, mu1, lv1).message
    assert "standard errors" in check_k1_estimate(samples - 5, model, x1, mu1, lv1).message
