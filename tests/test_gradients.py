"""The score-function and pathwise gradient estimators of ae_course.gradients."""
import math

import pytest
import torch
from torch.distributions import Normal

from ae_course.gradients import GradientEstimates, pathwise_gradient, score_function_gradient


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are small; on a shared CPU spinning OpenMP threads cost more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy(c):
    """f(z) = ||z - c||^2 per sample; E f = ||mu - c||^2 + sum_d sigma_d^2."""
    return lambda z: (z - c).square().sum(-1)


def z_scores(estimates: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    n = estimates.shape[0]
    return (estimates.mean(0) - truth) / (estimates.std(0) / math.sqrt(n))


@pytest.mark.parametrize("estimator", ["pathwise", "score", "score_loo", "score_const"])
def test_unbiased_on_closed_form_toy(estimator):
    mu = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    log_var = torch.tensor([0.0, math.log(4.0), -math.log(4.0), 0.3], dtype=torch.float64)
    c = torch.ones(4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    if estimator == "pathwise":
        est = pathwise_gradient(toy(c), mu, log_var, n, generator=gen)
    elif estimator == "score":
        est = score_function_gradient(toy(c), mu, log_var, n, generator=gen)
    elif estimator == "score_loo":
        est = score_function_gradient(toy(c), mu, log_var, n, baseline="leave_one_out", generator=gen)
    else:
        est = score_function_gradient(toy(c), mu, log_var, n, baseline=7.0, generator=gen)
    assert isinstance(est, GradientEstimates)
    assert est.mu.shape == est.log_var.shape == (n, 4) and est.values.shape == (n,)
    # the values are f at z = mu + sigma eps, and their mean estimates E f = ||mu - c||^2 + sum sigma^2
    assert z_scores(est.values[:, None], ((mu - c) ** 2).sum() + log_var.exp().sum()).abs().item() < 4
    # 8 comparisons at a 4-standard-error tolerance: a false alarm has probability < 1e-3
    assert z_scores(est.mu, 2 * (mu - c)).abs().max() < 4
    assert z_scores(est.log_var, log_var.exp()).abs().max() < 4


def test_pathwise_variance_is_exact_on_toy():
    """grad_mu = 2 (z - c) = 2 (mu - c + sigma eps) has variance 4 sigma^2 whatever the dimension."""
    D = 50
    mu, log_var, c = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    est = pathwise_gradient(toy(c), mu, log_var, 20_000, generator=torch.Generator().manual_seed(1))
    assert est.mu.var(0).mean().item() == pytest.approx(4.0, rel=0.02)
    score = score_function_gradient(toy(c), mu, log_var, 20_000, generator=torch.Generator().manual_seed(1))
    # the score-function variance of one coordinate: 4 (D-1)^2 + 22 (D-1) + 30 for mu = 0, c = 1, sigma = 1
    assert score.mu.var(0).mean().item() == pytest.approx(4 * 49 ** 2 + 22 * 49 + 30, rel=0.05)


def test_pathwise_agrees_with_autograd_through_rsample():
    torch.manual_seed(0)
    mu = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    log_var = (0.5 * torch.randn(3, 5, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(5, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ weights) + z.square().sum(-1)  # (S, 3, 5) -> (S, 3)
    q = Normal(mu, torch.exp(0.5 * log_var))
    S = 4
    z = q.rsample((S,))
    eps = ((z - mu) / torch.exp(0.5 * log_var)).detach()
    est = pathwise_gradient(f, mu, log_var, S, eps=eps)
    for s in range(S):
        g_mu, g_lv = torch.autograd.grad(f(z[s:s + 1]).sum(), [mu, log_var], retain_graph=True)
        assert torch.allclose(est.mu[s], g_mu) and torch.allclose(est.log_var[s], g_lv)
    assert torch.allclose(est.values, f(z).detach())


def test_score_function_uses_each_examples_own_value():
    """With values (S, B), the score of z[:, b] is weighted by f[:, b] only."""
    mu, log_var = torch.zeros(2, 3), torch.zeros(2, 3)
    eps = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    f = lambda z: torch.stack([torch.ones(len(z)), 3 * torch.ones(len(z))], dim=1)
    est = score_function_gradient(f, mu, log_var, 7, eps=eps)
    assert torch.allclose(est.mu[:, 0], eps[:, 0]) and torch.allclose(est.mu[:, 1], 3 * eps[:, 1])
    assert torch.allclose(est.log_var[:, 1], 3 * (eps[:, 1] ** 2 - 1) / 2)


def test_leave_one_out_baseline_is_the_mean_of_the_others():
    mu, log_var = torch.zeros(1), torch.zeros(1)
    eps = torch.tensor([[1.0], [2.0], [-1.0]])
    est = score_function_gradient(lambda z: z[:, 0], mu, log_var, 3, baseline="leave_one_out", eps=eps)
    others = torch.tensor([0.5, 0.0, 1.5])
    assert torch.allclose(est.mu[:, 0], (eps[:, 0] - others) * eps[:, 0])


def test_generator_makes_estimates_reproducible():
    f = lambda z: z.sum(-1).sin()
    a = score_function_gradient(f, torch.zeros(3), torch.zeros(3), 5, generator=torch.Generator().manual_seed(3))
    b = score_function_gradient(f, torch.zeros(3), torch.zeros(3), 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.mu, b.mu)


def test_pathwise_runs_inside_no_grad():
    """f(z) = ||z||^2 at z = mu + sigma eps: per sample, d/dmu = 2 z and d/dlog_var = 2 z * sigma eps / 2."""
    mu, log_var = torch.ones(2), torch.tensor([0.0, math.log(4.0)])
    eps = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        est = pathwise_gradient(lambda z: z.square().sum(-1), mu, log_var, 3, eps=eps)
    z = mu + torch.tensor([1.0, 2.0]) * eps
    assert est.mu.shape == est.log_var.shape == (3, 2) and est.values.shape == (3,)
    torch.testing.assert_close(est.mu, 2 * z)
    torch.testing.assert_close(est.log_var, z * torch.tensor([1.0, 2.0]) * eps)
    torch.testing.assert_close(est.values, z.square().sum(-1))
    assert not est.mu.requires_grad


def test_score_function_per_sample_values_in_closed_form():
    """f(z) = sum(z) at z = mu + sigma eps: per sample, f * eps / sigma and f * (eps^2 - 1) / 2, minus a baseline."""
    mu, log_var = torch.tensor([0.5, -1.0]), torch.tensor([0.0, math.log(0.25)])
    sigma = torch.tensor([1.0, 0.5])
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    f = (mu + sigma * eps).sum(-1, keepdim=True)
    est = score_function_gradient(lambda z: z.sum(-1), mu, log_var, 4, eps=eps)
    torch.testing.assert_close(est.mu, f * eps / sigma)
    torch.testing.assert_close(est.log_var, f * (eps ** 2 - 1) / 2)
    torch.testing.assert_close(est.values, f[:, 0])
    est = score_function_gradient(lambda z: z.sum(-1), mu, log_var, 4, baseline=2.0, eps=eps)
    torch.testing.assert_close(est.mu, (f - 2.0) * eps / sigma)
    torch.testing.assert_close(est.values, f[:, 0])  # the values stay uncentred


@pytest.mark.parametrize("estimator", [pathwise_gradient, score_function_gradient])
def test_bad_inputs_raise_value_error(estimator):
    f = lambda z: z.sum(-1)
    with pytest.raises(ValueError, match="shape"):
        estimator(f, torch.zeros(3), torch.zeros(4), 10)
    with pytest.raises(ValueError, match="n_samples"):
        estimator(f, torch.zeros(3), torch.zeros(3), 0)
    with pytest.raises(ValueError, match="n_samples"):
        estimator(f, torch.zeros(3), torch.zeros(3), 2.5)
    with pytest.raises(ValueError, match="floating"):
        estimator(f, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="finite"):
        estimator(f, torch.tensor([0.0, float("nan")]), torch.zeros(2), 10)
    with pytest.raises(ValueError, match="0-d"):
        estimator(f, torch.tensor(0.0), torch.tensor(0.0), 10)
    with pytest.raises(ValueError, match="eps"):
        estimator(f, torch.zeros(3), torch.zeros(3), 10, eps=torch.zeros(9, 3))
    with pytest.raises(ValueError, match="one value per sample"):
        estimator(lambda z: z, torch.zeros(3), torch.zeros(3), 10)
    with pytest.raises(ValueError, match="tensor"):
        estimator(lambda z: 1.0, torch.zeros(3), torch.zeros(3), 10)


def test_pathwise_needs_a_differentiable_f():
    with pytest.raises(ValueError, match="score_function_gradient"):
        pathwise_gradient(lambda z: (z > 0).float().sum(-1), torch.zeros(3), torch.zeros(3), 10)
    # the score-function estimator is fine with it
    est = score_function_gradient(lambda z: (z > 0).float().sum(-1), torch.zeros(3), torch.zeros(3), 10)
    assert torch.isfinite(est.mu).all()


def test_score_function_baseline_errors():
    f = lambda z: z.sum(-1)
    with pytest.raises(ValueError, match="baseline"):
        score_function_gradient(f, torch.zeros(3), torch.zeros(3), 10, baseline="mean")
    with pytest.raises(ValueError, match="n_samples >= 2"):
        score_function_gradient(f, torch.zeros(3), torch.zeros(3), 1, baseline="leave_one_out")
    with pytest.raises(ValueError, match="broadcast"):
        score_function_gradient(f, torch.zeros(3), torch.zeros(3), 10, baseline=torch.zeros(10, 4))
