"""The importance-weighted autoencoder: the bound L_k, the IWAE model, and the gradient signal-to-noise ratio."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from ae_course import VAE, ConditionalVAE, train
from ae_course.data import binarize_dynamic
from ae_course.evaluation import _log_weights, importance_sampled_log_likelihood
from ae_course.iwae import IWAE, gradient_snr, iwae_bound
from ae_course.linear_gaussian import LinearGaussian

from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def independent_bound(model, x, eps):
    """L_k from torch.distributions alone: Normal for q and p(z), Bernoulli for p(x|z)."""
    mu, log_var = model.encode(x)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    z = mu + torch.exp(0.5 * log_var) * eps                                      # (k, B, L)
    logits = model.decoder(z)
    log_w = (Independent(Bernoulli(logits=logits), 1).log_prob(x) + Independent(Normal(0.0, torch.ones_like(z)), 1)
             .log_prob(z) - q.log_prob(z))
    return torch.logsumexp(log_w, 0) - math.log(len(eps))


@pytest.mark.parametrize("k", [1, 5])
def test_iwae_bound_matches_an_independent_computation_and_its_gradients(k):
    model = VAE(latent_dim=3, hidden=(16,)).double()
    x, eps = binary_data(4).double(), torch.randn(k, 4, 3, dtype=torch.float64)
    ours, theirs = iwae_bound(model, x, k, eps=eps), independent_bound(model, x, eps)
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, theirs)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(ours.sum(), params), torch.autograd.grad(theirs.sum(), params)):
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0                                                 # every parameter gets a gradient


def test_l1_is_the_monte_carlo_elbo_and_unbiased_for_the_closed_form_elbo():
    model = VAE(latent_dim=4, hidden=(16,)).double()
    x = binary_data(6).double()
    eps = torch.randn(1, 6, 4, dtype=torch.float64)
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * eps[0]
    by_hand = (model.log_likelihood(x, model.decode(z)) + model.prior.log_prob(z)
               - Independent(Normal(mu, torch.exp(0.5 * log_var)), 1).log_prob(z))
    torch.testing.assert_close(iwae_bound(model, x, 1, eps=eps), by_hand)
    with torch.no_grad():                              # 4,000 draws per image, as one batch of copies
        draws = iwae_bound(model, x.repeat(4000, 1), 1).reshape(4000, 6)
        closed = model.elbo(x.repeat(4000, 1)).reshape(4000, 6)
    se = (draws.var(0) / 4000 + closed.var(0) / 4000).sqrt()
    assert ((draws.mean(0) - closed.mean(0)).abs() < 4 * se).all()


def test_bounds_increase_with_k_and_stay_below_the_exact_log_likelihood():
    """Burda et al. 2016, Theorem 1, on a linear-Gaussian model whose log p(x) is exact, with a poor encoder."""
    gen = torch.Generator().manual_seed(0)
    model = LinearGaussian(torch.randn(10, 2, generator=gen, dtype=torch.float64), torch.zeros(10, dtype=torch.float64),
                           0.5)
    x = model.sample(20, generator=gen)
    loose = model.with_encoder(lambda x: (0.5 * model.encode(x)[0], model.encode(x)[1] + 1.5))
    with torch.no_grad():
        means = [torch.stack([iwae_bound(loose, x, k, generator=gen).mean() for _ in range(200)]).mean().item()
                 for k in (1, 5, 50)]
    exact = model.log_marginal(x).mean().item()
    assert means[0] + 0.5 < means[1] < means[2] < exact
    assert exact - means[2] < 0.5 * (exact - means[0])


def test_log_weights_with_given_noise_are_those_of_the_generator():
    model = VAE(latent_dim=3, hidden=(8,))
    x = binary_data(5)
    mu, log_var = model.encode(x)
    drawn = _log_weights(model, x, None, mu, log_var, 4, torch.Generator().manual_seed(1))
    eps = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_log_weights(model, x, None, mu, log_var, 4, None, eps), drawn)


def test_iwae_bound_of_a_conditional_model_and_bad_arguments():
    model = ConditionalVAE(n_classes=3, latent_dim=2, hidden=(8,))
    x, y = binary_data(4), torch.tensor([0, 1, 2, 0])
    assert iwae_bound(model, x, 3, y=y).shape == (4,)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            iwae_bound(VAE(latent_dim=2, hidden=(8,)), x, k)
    with pytest.raises(ValueError, match="eps must have the shape"):
        iwae_bound(VAE(latent_dim=2, hidden=(8,)), x, 3, eps=torch.randn(2, 4, 2))


def test_iwae_model_loss_config_training_and_evaluation():
    model = IWAE(latent_dim=3, hidden=(16,), k=4)
    x = binary_data(8)
    assert model.config["k"] == 4 and model.config["latent_dim"] == 3
    torch.manual_seed(3)
    loss = model.loss(x)
    torch.manual_seed(3)
    torch.testing.assert_close(loss, -iwae_bound(model, x, 4))
    assert model.bound(x, k=2).shape == (8,)
    history = train(model, binary_data(64), steps=3, batch_size=16, transform=binarize_dynamic, progress=False)
    assert history.steps == 3 and all(math.isfinite(v) for v in history.train_loss)
    assert importance_sampled_log_likelihood(model, x, k=10).shape == (8,)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        IWAE(k=0)


def test_gradient_snr_matches_moments_of_stored_draws():
    model = VAE(latent_dim=2, hidden=(4,), input_dim=6).double()
    x = binary_data(3, 6).double()
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    torch.manual_seed(7)
    snr = gradient_snr(model, x, 3, n_draws=50)
    torch.manual_seed(7)
    draws = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(iwae_bound(model, x, 3).mean(), params)])
                         for _ in range(50)])
    expected = draws.mean(0).abs() / draws.std(0, correction=0)
    n_encoder = sum(p.numel() for p in model.encoder.parameters())
    assert snr.encoder.shape == (n_encoder,) and snr.decoder.shape == (len(expected) - n_encoder,)
    torch.testing.assert_close(torch.cat([snr.encoder, snr.decoder]), expected, equal_nan=True)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="n_draws"):
        gradient_snr(model, x, 3, n_draws=1)


def test_decoder_snr_rises_and_encoder_snr_falls_with_k():
    """Rainforth et al. 2018, Theorem 1, on a small model near its optimum: a linear-Gaussian-like VAE."""
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=(16,), input_dim=20).double()
    data = binary_data(256, 20).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        model.loss(data).mean().backward()
        optimizer.step()
    x = data[:8]
    snr = {k: gradient_snr(model, x, k, n_draws=60) for k in (1, 100)}
    assert snr[100].decoder.nanmedian() > 3 * snr[1].decoder.nanmedian()
    assert snr[100].encoder.nanmedian() < snr[1].encoder.nanmedian()
