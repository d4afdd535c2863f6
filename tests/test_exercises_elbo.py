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


def _log_w(model, x, z, mu, log_var, prior=True, sign=-1):
    n, batch, dim = z.shape
    x_rep = x.expand(n, batch, x.shape[1]).reshape(n * batch, -1)
    log_px_z = model.log_likelihood(x_rep, model.decode(z.reshape(n * batch, dim))).reshape(n, batch)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(2)
    return log_px_z + (model.prior.log_prob(z) if prior else 0) + sign * log_q


def right_estimate(model, x, mu, log_var, eps):
    log_w = _log_w(model, x, mu + torch.exp(0.5 * log_var) * eps, mu, log_var)
    return torch.logsumexp(log_w, dim=0) - math.log(len(eps))


def _high_density_problem():
    """float32, log p(x) above 100 nats: exp(log w) overflows."""
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 4, generator=gen))
    model = LinearGaussian(Q * torch.tensor([1.0, 0.8, 0.6, 0.4]), torch.zeros(60), 0.02)
    x = model.sample(8, generator=gen)
    mu, log_var = model.encode(x)
    return model, x, mu, log_var + math.log(2)


def test_log_px_estimate_checker():
    from ae_course.exercises.elbo_checks import check_log_px_estimate
    model, x, mu, log_var = _high_density_problem()
    assert model.log_marginal(x).min() > 100
    feedback = check_log_px_estimate(right_estimate, model, x, mu, log_var, K=100)
    assert feedback and "matches importance_sampled_log_likelihood" in feedback.message, feedback

    def z_of(mu, lv, eps):
        return mu + torch.exp(0.5 * lv) * eps

    def lme(log_w):
        return torch.logsumexp(log_w, 0) - math.log(len(log_w))

    cases = {
        "log space": lambda m, x, mu, lv, eps: torch.log(torch.exp(_log_w(m, x, z_of(mu, lv, eps), mu, lv)).mean(0)),
        "-log K is missing": lambda m, x, mu, lv, eps: torch.logsumexp(_log_w(m, x, z_of(mu, lv, eps), mu, lv), 0),
        "averaged the log-weights": lambda m, x, mu, lv, eps: _log_w(m, x, z_of(mu, lv, eps), mu, lv).mean(0),
        "wrong sign": lambda m, x, mu, lv, eps: lme(_log_w(m, x, z_of(mu, lv, eps), mu, lv, sign=1)),
        "left out q": lambda m, x, mu, lv, eps: lme(_log_w(m, x, z_of(mu, lv, eps), mu, lv, sign=0)),
        "prior is missing": lambda m, x, mu, lv, eps: lme(_log_w(m, x, z_of(mu, lv, eps), mu, lv, prior=False)),
        "weighted them as if": lambda m, x, mu, lv, eps: lme(_log_w(m, x, eps, mu, lv)),
        "naive estimator": lambda m, x, mu, lv, eps: lme(_log_w(m, x, eps, mu, lv, prior=False, sign=0)),
        "variance exp(log_var) as the standard deviation":
            lambda m, x, mu, lv, eps: lme(_log_w(m, x, mu + lv.exp() * eps, mu, 2 * lv)),
        "log q uses the wrong scale": lambda m, x, mu, lv, eps: lme(_log_w(m, x, z_of(mu, lv, eps), mu, 2 * lv)),
        "draws its own noise": lambda m, x, mu, lv, eps: right_estimate(m, x, mu, lv, torch.randn_like(eps)),
        "one value per sample": lambda m, x, mu, lv, eps: _log_w(m, x, z_of(mu, lv, eps), mu, lv),
        "over the images": lambda m, x, mu, lv, eps: torch.logsumexp(_log_w(m, x, z_of(mu, lv, eps), mu, lv), 1),
        "single number": lambda m, x, mu, lv, eps: right_estimate(m, x, mu, lv, eps).mean(),
        "NotImplementedError": lambda *args: (_ for _ in ()).throw(NotImplementedError()),
        "returned None": lambda *args: None,
        "differ": lambda m, x, mu, lv, eps: right_estimate(m, x, mu, lv, eps) + 0.5,
    }
    for needle, fn in cases.items():
        feedback = check_log_px_estimate(fn, model, x, mu, log_var, K=100)
        assert not feedback and needle in feedback.message and str(feedback).startswith("Not yet"), (needle, feedback)
    # right on the small model, wrong only on the given one
    feedback = check_log_px_estimate(lambda m, x, mu, lv, eps: right_estimate(m, x, mu, lv, eps) + (len(x) == 8),
                                     model, x, mu, log_var, K=100)
    assert not feedback and "differ from importance_sampled_log_likelihood" in feedback.message, feedback
