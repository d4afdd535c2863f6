"""ELBO surgery, the inference gaps, KL warm-up and free bits (ae_course.kl_term)."""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

import ae_course
from ae_course.data import binarize_dynamic
from ae_course.kl_term import (ElboSurgery, aggregate_log_density, elbo_surgery, free_bits_kl, gaussian_elbo,
                               gaussian_kl_per_dimension, inference_gaps, kl_step, kl_warmup, optimize_posterior)
from ae_course.linear_gaussian import LinearGaussian
from ae_course.losses import gaussian_kl
from ae_course.training import loss_step


def posteriors(n=7, latent=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent, generator=gen), -1.0 + torch.rand(n, latent, generator=gen)


class Fixed:
    """A stand-in model: encode(x) looks up the posterior of row x[:, 0]; prior N(0, I)."""

    def __init__(self, mu, log_var):
        self.mu, self.log_var = mu, log_var
        self.prior = ae_course.standard_normal(mu.shape[1])

    def encode(self, x):
        return self.mu[x[:, 0].long()], self.log_var[x[:, 0].long()]


def test_per_dimension_kl_sums_to_gaussian_kl_and_matches_torch():
    mu, log_var = posteriors()
    per = gaussian_kl_per_dimension(mu, log_var)
    assert per.shape == mu.shape
    assert torch.allclose(per.sum(1), gaussian_kl(mu, log_var), rtol=1e-6)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0))
    assert torch.allclose(per, reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        gaussian_kl_per_dimension(mu, log_var[:, :2])


def test_aggregate_log_density_is_the_mixture():
    mu, log_var = posteriors()
    z = torch.randn(4, 11, 3, generator=torch.Generator().manual_seed(1))
    mixture = MixtureSameFamily(Categorical(torch.ones(len(mu), dtype=torch.float64)),
                                Independent(Normal(mu.double(), torch.exp(0.5 * log_var.double())), 1))
    got = aggregate_log_density(z, mu, log_var, chunk=5)
    assert got.shape == (4, 11) and got.dtype == torch.float64
    assert torch.allclose(got, mixture.log_prob(z.double()), rtol=1e-9, atol=1e-9)


def test_leave_one_out_drops_the_own_component():
    mu, log_var = posteriors(n=5)
    z = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(2))
    got = aggregate_log_density(z, mu, log_var, "leave_one_out", chunk=4)
    for n in range(5):
        others = [m for m in range(5) if m != n]
        mixture = MixtureSameFamily(Categorical(torch.ones(4, dtype=torch.float64)), Independent(
            Normal(mu[others].double(), torch.exp(0.5 * log_var[others].double())), 1))
        assert torch.allclose(got[:, n], mixture.log_prob(z[:, n].double()), rtol=1e-9, atol=1e-9)


def test_aggregate_log_density_refuses_bad_input():
    mu, log_var = posteriors(n=4)
    with pytest.raises(ValueError, match="latent dimensions"):
        aggregate_log_density(torch.zeros(2, 5), mu, log_var)
    with pytest.raises(ValueError, match="leave_one_out needs"):
        aggregate_log_density(torch.zeros(6, 3), mu, log_var, "leave_one_out")
    with pytest.raises(ValueError, match="mixture"):
        aggregate_log_density(torch.zeros(6, 3), mu, log_var, "some")
    with pytest.raises(ValueError, match="must match"):
        aggregate_log_density(torch.zeros(6, 3), mu, log_var[:, :2])


def test_elbo_surgery_matches_quadrature_in_one_dimension():
    mu = torch.tensor([[-1.0], [0.5], [2.0]])
    log_var = 2 * torch.log(torch.tensor([[0.4], [0.7], [0.3]]))
    grid = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    dz = (grid[1] - grid[0]).item()
    log_q_n = Normal(mu.double(), torch.exp(0.5 * log_var.double())).log_prob(grid)
    log_q = torch.logsumexp(log_q_n, 0) - math.log(3)
    mi = ((log_q_n.exp() * (log_q_n - log_q)).sum(1) * dz).mean().item()
    marginal = ((log_q.exp() * (log_q - Normal(0.0, 1.0).log_prob(grid))).sum() * dz).item()
    got = elbo_surgery(Fixed(mu, log_var), torch.arange(3.0).unsqueeze(1), n_samples=20000,
                       generator=torch.Generator().manual_seed(0))
    assert isinstance(got, ElboSurgery) and all(isinstance(v, float) for v in got)
    assert abs(got.mutual_information - mi) < 0.02 and abs(got.marginal_kl - marginal) < 0.02
    assert abs(got.average_kl - gaussian_kl(mu, log_var).mean().item()) < 1e-6
    assert abs(mi + marginal - got.average_kl) < 1e-5                 # the identity itself


def test_elbo_surgery_on_a_vae_adds_up_and_respects_the_cap():
    torch.manual_seed(0)
    model = ae_course.VAE(latent_dim=4, hidden=(16,))
    x = torch.rand(40, 784).round()
    gen = torch.Generator().manual_seed(0)
    parts = elbo_surgery(model, x, n_samples=20, generator=gen, batch_size=16)
    upper = elbo_surgery(model, x, n_samples=20, mixture="leave_one_out", generator=torch.Generator().manual_seed(0))
    assert abs(parts.mutual_information + parts.marginal_kl - parts.average_kl) < 4 * parts.standard_error + 1e-6
    assert 0 <= parts.mutual_information <= math.log(40)
    assert upper.mutual_information >= parts.mutual_information - math.log(40 / 39)
    with torch.no_grad():
        assert abs(parts.average_kl - gaussian_kl(*model.encode(x)).mean().item()) < 1e-4


def test_elbo_surgery_of_identical_posteriors_has_no_information():
    mu, log_var = torch.full((6, 2), 0.3), torch.full((6, 2), -0.5)
    parts = elbo_surgery(Fixed(mu, log_var), torch.arange(6.0).unsqueeze(1), n_samples=50,
                         generator=torch.Generator().manual_seed(0))
    assert abs(parts.mutual_information) < 1e-6
    assert abs(parts.marginal_kl - parts.average_kl) < 4 * parts.standard_error + 1e-6


def test_elbo_surgery_refuses_bad_input():
    model = Fixed(*posteriors(n=3))
    with pytest.raises(ValueError):
        elbo_surgery(model, torch.zeros(0, 1))
    with pytest.raises(ValueError, match="n_samples"):
        elbo_surgery(model, torch.zeros(3, 1), n_samples=0)
    with pytest.raises(ValueError):
        elbo_surgery(model, torch.tensor([[float("nan")]]))


def orthogonal_linear_gaussian(seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(12, 3, generator=gen, dtype=torch.float64))
    return LinearGaussian(q * torch.tensor([2.0, 1.5, 0.8], dtype=torch.float64), torch.zeros(12, dtype=torch.float64), 0.5)


def correlated_linear_gaussian(seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(12, 3, generator=gen, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 0.7]], dtype=torch.float64)
    return LinearGaussian(W, torch.zeros(12, dtype=torch.float64), 1.0)


def test_gaussian_elbo_is_unbiased_and_differentiable():
    model = correlated_linear_gaussian()
    x = model.sample(6, generator=torch.Generator().manual_seed(1))
    mu, log_var = model.encode(x)
    mu = mu.clone().requires_grad_()
    got = gaussian_elbo(model, x, mu, log_var, n_samples=40000, generator=torch.Generator().manual_seed(0))
    assert got.shape == (6,)
    assert torch.allclose(got, model.elbo(x, mu, log_var), atol=0.06)
    grad, = torch.autograd.grad(got.sum(), mu)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError):
        gaussian_elbo(model, x[:3], mu, log_var)


def test_optimize_posterior_finds_the_best_diagonal_gaussian():
    model = correlated_linear_gaussian()
    x = model.sample(20, generator=torch.Generator().manual_seed(1))
    best = optimize_posterior(model, x, steps=600, lr=0.03, n_samples=32, init="prior",
                              generator=torch.Generator().manual_seed(0))
    assert best.mu.shape == (20, 3) and not best.mu.requires_grad
    optimum = model.elbo(x, *model.encode(x))                    # closed-form mean-field optimum
    assert (optimum - model.elbo(x, best.mu, best.log_var)).mean() < 0.05
    start = model.elbo(x, torch.zeros(20, 3, dtype=torch.float64), torch.zeros(20, 3, dtype=torch.float64))
    assert (optimum - start).mean() > 1.0                       # it had a long way to go


def test_optimize_posterior_leaves_the_model_alone():
    torch.manual_seed(0)
    model = ae_course.VAE(latent_dim=3, hidden=(8,))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 784).round()
    same = optimize_posterior(model, x, steps=0)
    with torch.no_grad():
        mu, log_var = model.encode(x)
    assert torch.equal(same.mu, mu) and torch.equal(same.log_var, log_var)
    moved = optimize_posterior(model, x, steps=5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(moved.mu, mu)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters()) and model.training


@pytest.mark.parametrize("kwargs", [dict(steps=-1), dict(n_samples=0), dict(lr=0.0), dict(init="random")])
def test_optimize_posterior_refuses_bad_options(kwargs):
    model = correlated_linear_gaussian()
    with pytest.raises(ValueError):
        optimize_posterior(model, model.sample(2), **kwargs)


def test_inference_gaps_with_an_exact_diagonal_posterior():
    """Orthogonal columns: the posterior is a diagonal Gaussian, so the approximation gap vanishes and importance
    sampling from it is exact; a shrunk encoder leaves exactly the closed-form amortization gap."""
    model = orthogonal_linear_gaussian()
    x = model.sample(10, generator=torch.Generator().manual_seed(1))
    shrunk = model.with_encoder(lambda xb: (0.5 * model.encode(xb)[0], model.encode(xb)[1]))
    gaps = inference_gaps(shrunk, x, steps=300, lr=0.02, n_samples=16, elbo_samples=2000, k=500,
                          generator=torch.Generator().manual_seed(0))
    assert all(t.shape == (10,) for t in gaps)
    assert torch.allclose(gaps.log_likelihood, model.log_marginal(x), atol=0.05)
    assert gaps.approximation_gap.abs().max() < 0.1
    exact = model.elbo(x, *model.encode(x)) - model.elbo(x, *shrunk.encode(x))
    assert torch.allclose(gaps.amortization_gap, exact, atol=0.15)
    assert torch.allclose(gaps.approximation_gap + gaps.amortization_gap, gaps.log_likelihood - gaps.amortized_elbo)


def test_inference_gaps_refuses_bad_options():
    model = correlated_linear_gaussian()
    with pytest.raises(ValueError):
        inference_gaps(model, model.sample(2), k=0)
    with pytest.raises(ValueError):
        inference_gaps(model, model.sample(2), elbo_samples=0)


def test_kl_warmup_schedule():
    assert [kl_warmup(t, 4) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert kl_warmup(0, 0) == 1.0
    for bad in [(-1, 3), (2, -1), (1.5, 3)]:
        with pytest.raises(ValueError):
            kl_warmup(*bad)


def test_free_bits_floors_each_dimension_after_the_minibatch_mean():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(50, 4, generator=gen) * torch.tensor([0.05, 0.1, 1.5, 2.0])
    log_var = torch.zeros(50, 4)
    per_dim = gaussian_kl_per_dimension(mu, log_var).mean(0)
    assert torch.allclose(free_bits_kl(mu, log_var, 0.0), gaussian_kl(mu, log_var).mean())
    assert torch.allclose(free_bits_kl(mu, log_var, 0.5), torch.maximum(per_dim, torch.tensor(0.5)).sum())
    mu.requires_grad_(True)
    grad, = torch.autograd.grad(free_bits_kl(mu, log_var, 0.5), mu)
    plain, = torch.autograd.grad(gaussian_kl(mu, log_var).mean(), mu)
    below = per_dim < 0.5
    assert below.tolist() == [True, True, False, False]
    assert grad[:, below].abs().max() == 0 and torch.allclose(grad[:, ~below], plain[:, ~below])
    with pytest.raises(ValueError, match="free_bits"):
        free_bits_kl(mu, log_var, -0.1)


def test_kl_step_with_defaults_is_the_vae_loss_step():
    x = torch.rand(64, 784)
    models = []
    for step in (loss_step, kl_step()):
        torch.manual_seed(0)
        model = ae_course.VAE(latent_dim=3, hidden=(16,), beta=2.0)
        ae_course.train(model, x, steps=3, batch_size=32, seed=0, transform=binarize_dynamic, step=step,
                        progress=False)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_kl_step_reports_the_warmup_weight_and_trains_with_free_bits():
    torch.manual_seed(0)
    model = ae_course.VAE(latent_dim=3, hidden=(16,), beta=2.0)
    x = torch.rand(64, 784)
    history = ae_course.train(model, x, steps=4, batch_size=32, seed=0, transform=binarize_dynamic,
                              step=kl_step(warmup_steps=4, free_bits=0.2), progress=False)
    # epoch means of the weight 2 * t / 4 over the steps t = 0, 1 and t = 2, 3
    assert history.losses["weight"] == pytest.approx([0.25, 1.25])
    assert set(history.losses) == {"loss", "kl", "weight"}
    with pytest.raises(ValueError):
        kl_step(warmup_steps=-1)
    with pytest.raises(ValueError):
        kl_step(free_bits=-1.0)
