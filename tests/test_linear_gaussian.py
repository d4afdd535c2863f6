"""LinearGaussian (probabilistic PCA): exact marginal and posterior, the ELBO identity, the ML fit."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from ae_course.evaluation import estimate_elbo, importance_sampled_log_likelihood
from ae_course.linear_gaussian import LinearGaussian

F64 = torch.float64


def _model(D=6, d=3, seed=0, sigma=0.7):
    gen = torch.Generator().manual_seed(seed)
    return LinearGaussian(torch.randn(D, d, generator=gen, dtype=F64), torch.randn(D, generator=gen, dtype=F64), sigma)


def test_log_marginal_matches_numerical_integral_in_1d():
    model = LinearGaussian(torch.tensor([[1.3], [-0.4]], dtype=F64), torch.tensor([0.2, -0.1], dtype=F64), 0.5)
    x = torch.tensor([[0.9, 0.3], [-1.5, 0.0]], dtype=F64)
    z = torch.linspace(-12, 12, 20001, dtype=F64)
    for i in range(len(x)):
        joint = model.log_likelihood(x[i:i + 1].expand(len(z), 2), model.decode(z[:, None])) + Normal(0.0, 1.0).log_prob(z)
        integral = torch.trapezoid(joint.exp(), z)
        assert model.log_marginal(x[i:i + 1]).item() == pytest.approx(math.log(integral.item()), abs=1e-8)


def test_log_marginal_matches_hand_built_gaussian():
    model = _model()
    x = model.sample(5, generator=torch.Generator().manual_seed(1))
    C = model.W @ model.W.T + 0.49 * torch.eye(6, dtype=F64)
    diff = x - model.b
    by_hand = -0.5 * (diff @ torch.linalg.inv(C) * diff).sum(1) - 0.5 * torch.logdet(C) - 3 * math.log(2 * math.pi)
    assert torch.allclose(model.log_marginal(x), by_hand, atol=1e-10)


def test_posterior_satisfies_bayes_rule():
    model = _model()
    gen = torch.Generator().manual_seed(2)
    x = model.sample(4, generator=gen)
    mean, covariance = model.posterior(x)
    for _ in range(3):
        z = 2 * torch.randn(4, 3, generator=gen, dtype=F64)
        bayes = model.log_likelihood(x, model.decode(z)) + model.prior.log_prob(z) - model.log_marginal(x)
        assert torch.allclose(MultivariateNormal(mean, covariance).log_prob(z), bayes, atol=1e-10)


def test_elbo_identity_and_bound_with_correlated_posterior():
    model = _model()
    gen = torch.Generator().manual_seed(3)
    x = model.sample(8, generator=gen)
    log_px = model.log_marginal(x)
    mu, log_var = model.encode(x)  # best diagonal q; the posterior is correlated here
    for shift, scale in [(0.0, 0.0), (0.3, 0.5), (-1.0, -1.0)]:
        m, v = mu + shift, log_var + scale
        elbo = model.elbo(x, m, v)
        assert torch.allclose(elbo + model.posterior_kl(x, m, v), log_px, atol=1e-10)
        assert (elbo < log_px).all()
    # the mean-field optimum: perturbing the variances in either direction lowers the ELBO
    best = model.elbo(x, mu, log_var)
    assert (model.elbo(x, mu, log_var + 0.05) < best).all() and (model.elbo(x, mu, log_var - 0.05) < best).all()


def test_elbo_is_exact_at_a_diagonal_posterior_and_mc_agrees():
    gen = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(10, 3, generator=gen, dtype=F64))
    model = LinearGaussian(Q * torch.tensor([3.0, 2.0, 0.5], dtype=F64), torch.zeros(10, dtype=F64), 0.3)
    x = model.sample(6, generator=gen)
    mu, log_var = model.encode(x)
    mean, covariance = model.posterior(x)
    assert torch.allclose(mu, mean) and torch.allclose(torch.diag_embed(log_var.exp()), covariance.expand(6, 3, 3))
    assert torch.allclose(model.elbo(x, mu, log_var), model.log_marginal(x), atol=1e-10)
    wrong = log_var + 1.0
    closed = model.elbo(x, mu + 0.5, wrong)
    mc = model.elbo(x, mu + 0.5, wrong, n_samples=20000, generator=gen)
    assert torch.allclose(mc, closed, atol=0.15)


def test_evaluation_protocol_applies():
    gen = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(8, 2, generator=gen, dtype=F64))
    model = LinearGaussian(Q * torch.tensor([2.0, 1.0], dtype=F64), torch.zeros(8, dtype=F64), 0.5)
    x = model.sample(5, generator=gen)
    exact = model.log_marginal(x)
    assert torch.allclose(importance_sampled_log_likelihood(model, x, k=7, generator=gen), exact, atol=1e-10)
    assert torch.allclose(estimate_elbo(model, x, n_samples=20000, generator=gen), exact, atol=0.05)
    wide = model.with_encoder(lambda xb: (model.encode(xb)[0], model.encode(xb)[1] + math.log(3)))
    elbo_wide = model.elbo(x, *wide.encode(x))
    assert (elbo_wide < exact - 0.1).all()
    is_est = importance_sampled_log_likelihood(wide, x, k=5000, generator=gen)
    assert (is_est > elbo_wide).all() and torch.allclose(is_est, exact, atol=0.1)


def test_fit_recovers_parameters():
    gen = torch.Generator().manual_seed(6)
    Q, _ = torch.linalg.qr(torch.randn(12, 3, generator=gen, dtype=F64))
    W = Q * torch.tensor([3.0, 2.0, 1.0], dtype=F64)
    truth = LinearGaussian(W, torch.linspace(-1, 1, 12, dtype=F64), 0.4)
    x = truth.sample(40000, generator=gen).float()
    fitted = LinearGaussian.fit(x, 3)
    assert fitted.sigma.item() == pytest.approx(0.4, rel=0.03)
    assert torch.allclose(fitted.b, truth.b, atol=0.05)
    assert torch.allclose(fitted.W @ fitted.W.T, W @ W.T, atol=0.15)
    M = fitted.W.T @ fitted.W
    assert torch.allclose(M, torch.diag(torch.diagonal(M)), atol=1e-10)  # orthogonal columns
    many = LinearGaussian.fit_many(x, [1, 3])
    assert torch.allclose(many[3].W.abs(), fitted.W.abs()) and many[1].sigma > many[3].sigma


def test_bad_shapes_and_values_raise():
    model = _model()
    with pytest.raises(ValueError):
        LinearGaussian(torch.randn(5, dtype=F64), torch.zeros(5, dtype=F64), 1.0)
    with pytest.raises(ValueError):
        LinearGaussian(torch.randn(5, 2, dtype=F64), torch.zeros(4, dtype=F64), 1.0)
    for sigma in [0.0, -1.0, float("nan")]:
        with pytest.raises(ValueError):
            LinearGaussian(torch.randn(5, 2, dtype=F64), torch.zeros(5, dtype=F64), sigma)
    with pytest.raises(ValueError):
        model.log_marginal(torch.zeros(2, 5, dtype=F64))
    with pytest.raises(ValueError):
        model.decode(torch.zeros(2, 4, dtype=F64))
    x = torch.zeros(2, 6, dtype=F64)
    with pytest.raises(ValueError):
        model.elbo(x, torch.zeros(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError):
        model.elbo(x, torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64), n_samples=0)
    with pytest.raises(ValueError):
        model.log_likelihood(x, torch.zeros(3, 6, dtype=F64))
    with pytest.raises(ValueError):
        LinearGaussian.fit(torch.randn(100, 4), 4)
    with pytest.raises(ValueError):
        LinearGaussian.fit(torch.randn(100, 4)[:, :1].expand(100, 4).clone(), 1)  # rank 1: sigma would be 0
    with pytest.raises(ValueError):
        model.sample(0)


def test_posterior_kl_matches_torch_distributions():
    from torch.distributions import kl_divergence
    model = _model(D=7, d=4, seed=7)
    gen = torch.Generator().manual_seed(8)
    x = model.sample(5, generator=gen)
    mu, log_var = torch.randn(5, 4, generator=gen, dtype=F64), torch.randn(5, 4, generator=gen, dtype=F64)
    mean, covariance = model.posterior(x)
    library = kl_divergence(MultivariateNormal(mu, torch.diag_embed(log_var.exp())), MultivariateNormal(mean, covariance))
    assert torch.allclose(model.posterior_kl(x, mu, log_var), library, atol=1e-10)
