"""Learned priors for the VAE: the learned mixture of Gaussians and the VampPrior (Tomczak & Welling 2018)."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from ae_course import VAE, ConditionalVAE, load_checkpoint, save_checkpoint, train
from ae_course.data import binarize_dynamic
from ae_course.evaluation import importance_sampled_log_likelihood
from ae_course.iwae import IWAE
from ae_course.learned_priors import GaussianMixturePrior, LearnedMixturePrior, VampPrior
from ae_course.losses import gaussian_kl

from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def mixture_log_prob(z, logits, mu, log_var):
    """log sum_k pi_k N(z; mu_k, diag exp(log_var_k)) by hand, for z (N, L)."""
    comps = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1).log_prob(z.unsqueeze(1))      # (N, K)
    return torch.logsumexp(comps + torch.log_softmax(logits, 0), dim=1)


def test_learned_mixture_log_prob_shapes_and_gradients():
    prior = LearnedMixturePrior(latent_dim=3, n_components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.log_var.copy_(0.3 * torch.randn(4, 3))
    dist = prior.distribution()
    z = torch.randn(7, 3)
    torch.testing.assert_close(dist.log_prob(z), mixture_log_prob(z, prior.logits, prior.mu, prior.log_var))
    assert dist.event_shape == (3,) and dist.log_prob(torch.randn(2, 5, 3)).shape == (2, 5)
    grads = torch.autograd.grad(dist.log_prob(z).sum(), list(prior.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_mixture_samples_are_reproducible_and_have_the_mixture_moments():
    prior = LearnedMixturePrior(latent_dim=2, n_components=3)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        prior.mu.copy_(torch.tensor([[-4.0, 0.0], [4.0, 1.0], [0.0, -3.0]]))
    a = prior.sample(None, 20000, generator=torch.Generator().manual_seed(0))
    assert a.shape == (20000, 2)
    assert torch.equal(a, prior.sample(None, 20000, generator=torch.Generator().manual_seed(0)))
    pi = torch.softmax(prior.logits, 0)
    torch.testing.assert_close(a.mean(0), pi @ prior.mu.detach(), atol=0.06, rtol=0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            prior.sample(None, bad)


def test_vamp_prior_is_the_aggregate_posterior_of_its_pseudo_inputs():
    model = VAE(latent_dim=3, hidden=(16,))
    x = binary_data(5)
    prior = VampPrior(5, init=x)
    z = torch.randn(9, 3)
    mu, log_var = model.encode(x)
    by_hand = torch.logsumexp(Independent(Normal(mu, torch.exp(0.5 * log_var)), 1).log_prob(z.unsqueeze(1)), 1)
    torch.testing.assert_close(prior.distribution(model).log_prob(z), by_hand - math.log(5))
    logits, c_mu, c_log_var = prior.components(model)
    torch.testing.assert_close(torch.softmax(logits, 0), torch.full((5,), 0.2))
    torch.testing.assert_close(c_mu, mu)


def test_vae_with_a_learned_prior_uses_it_everywhere():
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden=(16,), prior=VampPrior(4))
    assert "learned_prior.pseudo_inputs" in model.state_dict()
    assert model.config["prior"] == {"class": "VampPrior", "n_components": 4, "input_dim": 784}
    x = binary_data(6)
    loss = model.loss(x)
    loss.mean().backward()
    assert model.learned_prior.pseudo_inputs.grad.abs().sum() > 0 and model.encoder[0].weight.grad.abs().sum() > 0
    images = model.sample(5, generator=torch.Generator().manual_seed(2))
    z = model.learned_prior.sample(model, 5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(images, torch.sigmoid(model.decode(z)).detach())
    assert importance_sampled_log_likelihood(model, x, k=20).shape == (6,)


def test_monte_carlo_kl_is_log_q_minus_log_prior_at_the_sample():
    model = VAE(latent_dim=3, hidden=(16,), prior=LearnedMixturePrior(3, 2))
    x = binary_data(4)
    torch.manual_seed(5)
    log_px_z, kl = model.elbo_terms(x)
    torch.manual_seed(5)
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    torch.testing.assert_close(kl, q.log_prob(z) - model.prior.log_prob(z))
    torch.testing.assert_close(log_px_z, model.log_likelihood(x, model.decode(z)))


def test_a_standard_normal_mixture_prior_reproduces_the_plain_vae():
    """One component with mean 0 and variance 1 is N(0, I): same IS estimate, MC KL unbiased for the closed form."""
    torch.manual_seed(0)
    plain = VAE(latent_dim=3, hidden=(16,))
    prior = LearnedMixturePrior(3, 1, init_scale=0.0)
    mixed = VAE(latent_dim=3, hidden=(16,), prior=prior)
    mixed.load_state_dict({**plain.state_dict(), **{f"learned_prior.{k}": v for k, v in prior.state_dict().items()}})
    x = binary_data(5)
    a = importance_sampled_log_likelihood(plain, x, k=50, generator=torch.Generator().manual_seed(1))
    b = importance_sampled_log_likelihood(mixed, x, k=50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        kl = mixed.elbo_terms(x.repeat(4000, 1))[1].reshape(4000, 5)
    closed = gaussian_kl(*plain.encode(x))
    assert ((kl.mean(0) - closed).abs() < 4 * kl.std(0) / math.sqrt(4000)).all()


def test_training_and_checkpoints_with_learned_priors(tmp_path):
    for prior in (LearnedMixturePrior(3, 3), VampPrior(4, init=binary_data(4))):
        torch.manual_seed(0)
        model = IWAE(latent_dim=3, hidden=(16,), k=2, prior=prior)
        before = [p.detach().clone() for p in model.learned_prior.parameters()]
        history = train(model, binary_data(64), steps=3, batch_size=16, transform=binarize_dynamic, progress=False)
        assert all(math.isfinite(v) for v in history.train_loss)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.learned_prior.parameters()))
        path = save_checkpoint(tmp_path / "m.pt", model)
        torch.manual_seed(1)
        again = IWAE(latent_dim=3, hidden=(16,), k=2, prior=type(prior)(**{k: v for k, v in prior.config.items()
                                                                           if k != "class"}))
        load_checkpoint(path, again)
        for a, b in zip(model.state_dict().values(), again.state_dict().values()):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("build, match", [
    (lambda: VAE(latent_dim=3, prior=LearnedMixturePrior(4)), "the prior is over 4 dimensions"),
    (lambda: VAE(latent_dim=3, prior="vamp"), "GaussianMixturePrior"),
    (lambda: VAE(latent_dim=3, prior=torch.nn.Linear(2, 2)), "GaussianMixturePrior"),
    (lambda: VAE(input_dim=20, latent_dim=3, prior=VampPrior(4)), "VampPrior needs"),
    (lambda: ConditionalVAE(prior=VampPrior(4)), "VampPrior needs"),
    (lambda: VampPrior(3).distribution(), "give the model"),
    (lambda: LearnedMixturePrior(0), "latent_dim >= 1"),
    (lambda: LearnedMixturePrior(2, 0), "n_components >= 1"),
    (lambda: VampPrior(0), "n_components >= 1"),
    (lambda: VampPrior(3, init=torch.zeros(2, 784)), "init must be a finite"),
    (lambda: VampPrior(2, init=torch.full((2, 784), math.nan)), "init must be a finite"),
])
def test_bad_priors_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_conditional_vae_with_a_learned_mixture_prior():
    model = ConditionalVAE(n_classes=3, latent_dim=2, hidden=(8,), prior=LearnedMixturePrior(2, 3))
    x, y = binary_data(4), torch.tensor([0, 1, 2, 1])
    assert model.loss(x, y).shape == (4,) and model.sample(3, y=torch.tensor([0, 1, 2])).shape == (3, 784)
    assert importance_sampled_log_likelihood(model, x, k=5, y=y).shape == (4,)


def test_the_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        GaussianMixturePrior().components(None)
