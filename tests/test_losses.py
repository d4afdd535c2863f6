"""The closed-form KL and the likelihoods of ae_course.losses, checked against torch.distributions."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from ae_course.losses import (bernoulli_log_likelihood, binary_cross_entropy, gaussian_kl, gaussian_log_likelihood,
                              squared_error)
from ae_course.models import log_likelihood


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@st.composite
def mu_log_var(draw, max_abs_mu=10.0, max_abs_log_var=10.0):
    """A (B, L) pair of float64 tensors with B in 1..6 and L in 1..8."""
    b, l = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    floats = lambda bound: st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    mu = draw(st.lists(floats(max_abs_mu), min_size=b * l, max_size=b * l))
    log_var = draw(st.lists(floats(max_abs_log_var), min_size=b * l, max_size=b * l))
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64).reshape(b, l)
    return as_tensor(mu), as_tensor(log_var)


def diagonal_normal(mu, log_var):
    return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)


@settings(max_examples=200, deadline=None)
@given(mu_log_var())
def test_gaussian_kl_matches_torch_distributions(pair):
    mu, log_var = pair
    prior = diagonal_normal(torch.zeros_like(mu), torch.zeros_like(log_var))
    expected = kl_divergence(diagonal_normal(mu, log_var), prior)
    kl = gaussian_kl(mu, log_var)
    assert kl.shape == (mu.shape[0],)
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mu, log_var", [
    ([0.5, -1.0, 2.0], [0.0, -1.0, 0.7]),
    ([0.0, 0.0], [-2.0, 1.5]),
    ([3.0], [-4.0]),
])
def test_gaussian_kl_matches_monte_carlo(mu, log_var):
    """KL = E_q[log q(z) - log p(z)]: the Monte Carlo mean agrees within 4 standard errors."""
    mu = torch.tensor([mu], dtype=torch.float64)
    log_var = torch.tensor([log_var], dtype=torch.float64)
    q = diagonal_normal(mu, log_var)
    p = diagonal_normal(torch.zeros_like(mu), torch.zeros_like(log_var))
    z = q.sample(torch.Size([200_000]))  # (S, 1, L)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).squeeze(1)
    estimate, standard_error = log_ratio.mean(), log_ratio.std() / math.sqrt(len(log_ratio))
    assert abs(gaussian_kl(mu, log_var).item() - estimate.item()) < 4 * standard_error.item()


@settings(max_examples=200, deadline=None)
@given(mu_log_var())
def test_gaussian_kl_is_nonnegative_and_zero_only_at_the_prior(pair):
    mu, log_var = pair
    kl = gaussian_kl(mu, log_var)
    assert (kl >= 0).all()
    at_prior = (mu.abs().amax(1) == 0) & (log_var.abs().amax(1) == 0)
    # away from the prior by at least 1e-3 in some coordinate, KL >= (1e-3)^2 / 4 > 0 exactly representable
    far = (mu.abs().amax(1) >= 1e-3) | (log_var.abs().amax(1) >= 1e-3)
    assert (kl[at_prior] == 0).all()
    assert (kl[far] > 0).all()


def test_gaussian_kl_is_zero_exactly_at_the_prior_and_positive_next_to_it():
    zeros = torch.zeros(3, 4)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(3))
    nudged = zeros.clone()
    nudged[1, 2] = 0.01
    kl_mu, kl_log_var = gaussian_kl(nudged, zeros), gaussian_kl(zeros, nudged)
    assert kl_mu[1] > 0 and kl_log_var[1] > 0
    assert kl_mu[0] == 0 and kl_mu[2] == 0
    torch.testing.assert_close(kl_mu[1], torch.tensor(0.5 * 0.01**2))


@pytest.mark.parametrize("mu_shape, log_var_shape", [((4,), (4,)), ((2, 3), (2, 4)), ((2, 3), (3, 2)), ((1, 2, 3), (1, 2, 3))])
def test_gaussian_kl_rejects_bad_shapes(mu_shape, log_var_shape):
    with pytest.raises(ValueError, match="shape"):
        gaussian_kl(torch.zeros(mu_shape), torch.zeros(log_var_shape))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_bernoulli_log_likelihood_matches_torch_distributions(b, d, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.rand(b, d, generator=gen, dtype=torch.float64) - 0.5) * 60
    x = torch.bernoulli(torch.full((b, d), 0.5, dtype=torch.float64), generator=gen)
    expected = Bernoulli(logits=logits).log_prob(x).sum(1)
    # F.softplus returns l itself for l > 20 (its default threshold), an error below log(1 + e^-20) < e^-20 per pixel
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), expected, rtol=1e-12, atol=d * math.exp(-20))


def test_bernoulli_log_likelihood_is_finite_and_exact_for_extreme_logits():
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    per_pixel = torch.stack([bernoulli_log_likelihood(x[:, i:i + 1], logits[:, i:i + 1]) for i in range(4)], 1)
    # exact values: log sigmoid(100) = log(1 - sigmoid(-100)) = -log(1 + e^-100) ~ -3.7e-44, and
    # log sigmoid(-100) = log(1 - sigmoid(100)) = -100 - log(1 + e^-100), which rounds to -100 in float32
    tiny = -math.log1p(math.exp(-100))
    exact = torch.tensor([[tiny, tiny, -100.0 + tiny, -100.0 + tiny]], dtype=torch.float64)
    assert torch.isfinite(per_pixel).all()
    assert (per_pixel.double() - exact).abs().max() < 1e-40  # exact up to float32's smallest subnormals
    assert torch.equal(per_pixel[:, 2:], torch.tensor([[-100.0, -100.0]]))
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), Bernoulli(logits=logits).log_prob(x).sum(1), rtol=0, atol=0)
    assert torch.isfinite(bernoulli_log_likelihood(x, torch.tensor([[1e4, -1e4, 1e4, -1e4]]))).all()


def test_gaussian_log_likelihood_matches_torch_normal():
    gen = torch.Generator().manual_seed(1)
    x, mean = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen, dtype=torch.float64)
    log_var = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    expected = Normal(mean, torch.exp(0.5 * log_var)).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, log_var), expected, rtol=1e-12, atol=1e-12)
    unit = Normal(mean, torch.ones_like(mean)).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean), unit, rtol=1e-12, atol=1e-12)
    shared = Normal(mean, torch.full_like(mean, math.exp(0.5 * -1.3))).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, -1.3), shared, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [bernoulli_log_likelihood, gaussian_log_likelihood])
def test_likelihoods_reject_bad_shapes(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        fn(torch.zeros(6), torch.zeros(6))


@pytest.mark.parametrize("x, match", [
    (torch.tensor([[0.0, 255.0, 17.0]]), r"x must lie in \[0, 1\] for a Bernoulli likelihood, got values in \[0, 255\] "
                                        r"\(raw pixel values\? divide by 255\)"),
    (torch.tensor([[0.5, 1.5, 0.0]]), r"got values in \[0, 1\.5\].*divide by 255"),
    (torch.tensor([[-0.1, 0.5, 1.0]]), r"got values in \[-0\.1, 1\]$"),
    (torch.tensor([[0.5, float("nan"), 1.0]]), r"got values in \[0\.5, 1\], with NaN or infinite entries$"),
])
def test_bernoulli_log_likelihood_refuses_x_outside_the_unit_interval(x, match):
    logits = torch.zeros_like(x)
    with pytest.raises(ValueError, match=match):
        bernoulli_log_likelihood(x, logits)
    with pytest.raises(ValueError, match=match):
        binary_cross_entropy(x, logits)
    with pytest.raises(ValueError, match=match):
        log_likelihood(x, logits, "bernoulli")


def test_the_endpoints_and_grey_levels_are_accepted():
    x = torch.tensor([[0.0, 1.0, 0.3]])
    logits = torch.tensor([[-2.0, 3.0, 0.5]])
    expected = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    torch.testing.assert_close(binary_cross_entropy(x, logits), expected)
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), -expected)


def test_squared_error_and_the_gaussian_decoder_likelihood():
    gen = torch.Generator().manual_seed(2)
    x, logits = torch.randn(4, 9, generator=gen, dtype=torch.float64), torch.randn(4, 9, generator=gen, dtype=torch.float64)
    x_hat = torch.sigmoid(logits)
    torch.testing.assert_close(squared_error(x, x_hat), F.mse_loss(x_hat, x, reduction="none").sum(1))
    expected = Normal(x_hat, 1.0).log_prob(x).sum(1)
    torch.testing.assert_close(log_likelihood(x, logits, "gaussian"), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(-expected, 0.5 * squared_error(x, x_hat) + 4.5 * math.log(2 * math.pi))
    binary = torch.bernoulli(torch.full((4, 9), 0.5, dtype=torch.float64), generator=gen)
    torch.testing.assert_close(log_likelihood(binary, logits, "bernoulli"),
                               Independent(Bernoulli(logits=logits), 1).log_prob(binary), rtol=1e-12, atol=1e-12)
