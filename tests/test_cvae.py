"""The conditional VAE (ae_course.cvae.ConditionalVAE): shapes, label validation, conditioning, the ELBO."""
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from ae_course import VAE, train
from ae_course.cvae import ConditionalVAE
from ae_course.data import binarize_dynamic


from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")



def labels(n=16, k=10, seed=0):
    return torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))


def linear_sizes(module):
    return [(m.in_features, m.out_features) for m in module if isinstance(m, nn.Linear)]


def test_architecture_and_shapes():
    model = ConditionalVAE(input_dim=784, n_classes=10, latent_dim=3, hidden=(32, 16))
    assert isinstance(model, VAE)
    assert linear_sizes(model.encoder) == [(794, 32), (32, 16), (16, 6)]
    assert linear_sizes(model.decoder) == [(13, 16), (16, 32), (32, 784)]
    x, y = binary_data(5), labels(5)
    mu, log_var = model.encode(x, y)
    assert mu.shape == log_var.shape == (5, 3)
    assert model.decode(mu, y).shape == (5, 784)
    assert model.elbo(x, y).shape == model.loss(x, y).shape == (5,)
    log_px, kl = model.elbo_terms(x, y)
    assert log_px.shape == kl.shape == (5,) and (kl >= 0).all()
    recon = model.reconstruct(x, y)
    images = model.sample(torch.tensor([0, 1, 2, 9]), generator=torch.Generator().manual_seed(0))
    assert recon.shape == (5, 784) and images.shape == (4, 784)
    assert (images >= 0).all() and (images <= 1).all() and not images.requires_grad
    assert model.one_hot(torch.tensor([2, 0])).tolist() == [[0, 0, 1] + [0] * 7, [1] + [0] * 9]
    assert model.one_hot([1, 2]).dtype == torch.float32  # a list of ints works too


def test_one_hot_input_is_accepted_as_class_probabilities():
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    x, y = binary_data(4), labels(4)
    torch.testing.assert_close(model.decode(torch.zeros(4, 2), y),
                               model.decode(torch.zeros(4, 2), nn.functional.one_hot(y, 10).float()))
    soft = torch.full((4, 10), 0.1)
    assert model.encode(x, soft)[0].shape == (4, 2)


@pytest.mark.parametrize("bad, needle", [
    (torch.tensor([0, 10, 3]), "0..9"),
    (torch.tensor([0, -1, 3]), "0..9"),
    (torch.tensor([0.0, 1.0, 3.0]), "integer"),
    (torch.tensor([True, False, True]), "integer"),
    (torch.zeros(3, 9), "n_classes = 10 columns"),
    (torch.zeros(3, 10, dtype=torch.long), "floating"),
    (torch.zeros(3, 10), "probability vectors"),
    (torch.zeros(3, 1, 1, dtype=torch.long), "shape"),
])
def test_invalid_labels_raise_value_error_with_a_clear_message(bad, needle):
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=needle):
        model.one_hot(bad)
    with pytest.raises(ValueError, match=needle):
        model.encode(binary_data(3), bad)
    with pytest.raises(ValueError, match=needle):
        model.sample(bad)


def test_label_count_must_match_the_batch():
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="4 labels for 5 inputs"):
        model.encode(binary_data(5), labels(4))
    with pytest.raises(ValueError, match="6 labels for 5 inputs"):
        model.decode(torch.zeros(5, 2), labels(6))
    with pytest.raises(ValueError, match="labels for"):
        model.loss(binary_data(5), labels(3))
    with pytest.raises(ValueError, match="n_classes"):
        ConditionalVAE(n_classes=0)


def test_conditioning_is_used_by_encoder_and_decoder():
    model = ConditionalVAE(latent_dim=2, hidden=(16,))
    x, z = binary_data(4), torch.randn(4, 2)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(model.decode(z, y0), model.decode(z, y1))
    assert not torch.allclose(model.encode(x, y0)[0], model.encode(x, y1)[0])
    # the label of row i only affects row i
    mixed = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(model.decode(z, mixed)[::2], model.decode(z, y0)[::2])


def test_elbo_is_log_likelihood_minus_kl_computed_by_hand():
    """elbo(x, y) = log p(x|z, y) - KL(q(z|x, y) || N(0, I)), z = mu + sigma eps (Sohn et al. 2015, eq. 4)."""
    model = ConditionalVAE(latent_dim=4, hidden=(32,))
    x, y = binary_data(6), labels(6)
    torch.manual_seed(3)
    elbo = model.elbo(x, y)
    torch.manual_seed(3)
    loss = model.loss(x, y)
    torch.manual_seed(3)
    mu, log_var = model.encode(x, y)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    log_px = Independent(Bernoulli(logits=model.decode(z, y)), 1).log_prob(x)
    kl = kl_divergence(Independent(Normal(mu, torch.exp(0.5 * log_var)), 1),
                       Independent(Normal(torch.zeros(4), torch.ones(4)), 1))
    torch.testing.assert_close(elbo, log_px - kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(loss, -(log_px - kl), rtol=1e-5, atol=1e-4)


def test_beta_weights_the_kl():
    model = ConditionalVAE(latent_dim=4, hidden=(32,), beta=3.0)
    x, y = binary_data(6), labels(6)
    torch.manual_seed(3)
    log_px, kl = model.elbo_terms(x, y)
    torch.manual_seed(3)
    torch.testing.assert_close(model.loss(x, y), -(log_px - 3.0 * kl))


def test_gradients_reach_encoder_and_decoder_including_the_label_weights():
    model = ConditionalVAE(latent_dim=2, hidden=(16,))
    model.loss(binary_data(8), labels(8)).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the columns of the first layers that read the one-hot label get gradient
    assert model.encoder[0].weight.grad[:, 784:].abs().sum() > 0
    assert model.decoder[0].weight.grad[:, 2:].abs().sum() > 0


def test_seeded_reproducibility():
    def run():
        torch.manual_seed(7)
        model = ConditionalVAE(latent_dim=2, hidden=(16,))
        x, y = binary_data(8), labels(8)
        torch.manual_seed(8)
        return model.elbo(x, y), model.sample(y, generator=torch.Generator().manual_seed(1))
    (e1, s1), (e2, s2) = run(), run()
    assert torch.equal(e1, e2) and torch.equal(s1, s2)


def test_reconstruct_decodes_the_posterior_mean():
    model = ConditionalVAE(latent_dim=2, hidden=(16,))
    x, y = binary_data(4), labels(4)
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(model.encode(x, y)[0], y))
    torch.testing.assert_close(model.reconstruct(x, y), expected)


def test_a_few_training_steps_reduce_the_loss():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (256,), generator=gen)
    prototypes = torch.rand(3, 64, generator=gen)
    x = prototypes[y]                                   # three classes of 8x8 "images"
    torch.manual_seed(0)
    model = ConditionalVAE(input_dim=64, n_classes=3, latent_dim=2, hidden=(32,))
    x_eval = binarize_dynamic(x, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(0)
        before = model.loss(x_eval, y).mean().item()
    history = train(model, x, y=y, steps=150, batch_size=32, lr=3e-3, seed=0, transform=binarize_dynamic)
    with torch.no_grad():
        torch.manual_seed(0)
        after = model.loss(x_eval, y).mean().item()
    assert history.steps == 150
    assert after < before - 5
