"""The conditional VAE (ae_course.VAE with n_classes = K > 0, alias ae_course.ConditionalVAE): architecture,
label validation, conditioning, the ELBO, sampling, and the estimators of log p(x|y)."""
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from ae_course import (VAE, ConditionalVAE, active_units, estimate_elbo, importance_sampled_log_likelihood,
                       posterior_mean_variance, train)
from ae_course.data import binarize_dynamic
from ae_course.models import one_hot

from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def labels(n=16, k=10, seed=0):
    return torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))


def linear_sizes(module):
    return [(m.in_features, m.out_features) for m in module if isinstance(m, nn.Linear)]


def test_conditional_vae_is_the_vae_with_n_classes():
    torch.manual_seed(5)
    cvae = ConditionalVAE(input_dim=784, n_classes=10, latent_dim=3, hidden=(32, 16))
    torch.manual_seed(5)
    vae = VAE(input_dim=784, latent_dim=3, hidden=(32, 16), n_classes=10)
    assert type(cvae).__mro__[1] is VAE and cvae.config == vae.config
    assert cvae.n_classes == 10 and cvae.config["n_classes"] == 10
    # the same networks, built from the same random numbers: nothing else is constructed first
    for (name, a), (_, b) in zip(cvae.state_dict().items(), vae.state_dict().items()):
        assert torch.equal(a, b), name
    assert linear_sizes(cvae.encoder) == [(794, 32), (32, 16), (16, 6)]
    assert linear_sizes(cvae.decoder) == [(13, 16), (16, 32), (32, 784)]
    defaults = ConditionalVAE()
    assert (defaults.n_classes, defaults.latent_dim) == (10, 2)


def test_shapes():
    model = ConditionalVAE(input_dim=784, n_classes=10, latent_dim=3, hidden=(32, 16))
    x, y = binary_data(5), labels(5)
    mu, log_var = model.encode(x, y)
    assert mu.shape == log_var.shape == (5, 3)
    assert model.decode(mu, y).shape == (5, 784)
    assert model.elbo(x, y).shape == model.loss(x, y).shape == (5,)
    log_px, kl = model.elbo_terms(x, y)
    assert log_px.shape == kl.shape == (5,) and (kl >= 0).all()
    assert model.reconstruct(x, y).shape == (5, 784)


def test_one_hot_values():
    assert one_hot(torch.tensor([2, 0]), 10).tolist() == [[0, 0, 1] + [0] * 7, [1] + [0] * 9]
    assert one_hot([1, 2], 10).dtype == torch.float32  # a list of ints works too
    like = torch.zeros(1, dtype=torch.float64)
    assert one_hot(torch.tensor([1]), 3, like=like).dtype == torch.float64


def test_sample_decodes_prior_draws_with_the_requested_labels():
    """sample(n, generator, y) = sigmoid(decode(z, y)) with z the generator's first n x L standard normals."""
    model = ConditionalVAE(latent_dim=3, hidden=(16,))
    y = torch.tensor([0, 1, 2, 9])
    images = model.sample(len(y), generator=torch.Generator().manual_seed(0), y=y)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(z, y))
    assert torch.equal(images, expected)
    assert images.shape == (4, 784) and not images.requires_grad


def test_soft_labels_are_the_concatenated_probabilities():
    """A (B, K) row of class probabilities is concatenated to the input as it is; a one-hot row is the
    integer label exactly."""
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    x, y, z = binary_data(4), labels(4), torch.randn(4, 2)
    assert torch.equal(model.decode(z, y), model.decode(z, nn.functional.one_hot(y, 10).float()))
    assert torch.equal(model.encode(x, y)[0], model.encode(x, nn.functional.one_hot(y, 10).float())[0])
    soft = torch.softmax(torch.randn(4, 10), dim=1)
    torch.testing.assert_close(model.decode(z, soft), model.decoder(torch.cat([z, soft], dim=1)))
    mu, log_var = model.encode(x, soft)
    by_hand_mu, by_hand_log_var = model.encoder(torch.cat([x, soft], dim=1)).chunk(2, dim=1)
    torch.testing.assert_close(mu, by_hand_mu)
    torch.testing.assert_close(log_var, by_hand_log_var)  # well inside the clamp


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
        one_hot(bad, 10)
    with pytest.raises(ValueError, match=needle):
        model.encode(binary_data(3), bad)
    with pytest.raises(ValueError, match=needle):
        model.sample(3, y=bad)


def test_label_count_must_match_the_batch():
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="4 labels for 5 inputs"):
        model.encode(binary_data(5), labels(4))
    with pytest.raises(ValueError, match="6 labels for 5 inputs"):
        model.decode(torch.zeros(5, 2), labels(6))
    with pytest.raises(ValueError, match="labels for"):
        model.loss(binary_data(5), labels(3))
    with pytest.raises(ValueError, match="3 labels for 2 inputs"):
        model.sample(2, y=labels(3))
    with pytest.raises(ValueError, match="n_classes"):
        ConditionalVAE(n_classes=0)
    with pytest.raises(ValueError, match="n_classes"):
        VAE(n_classes=-1)


def test_a_conditional_vae_refuses_a_missing_label():
    model = VAE(latent_dim=2, hidden=(8,), n_classes=3)
    x, z = binary_data(4), torch.zeros(4, 2)
    calls = [lambda: model.encode(x), lambda: model.decode(z), lambda: model(x), lambda: model.elbo(x),
             lambda: model.loss(x), lambda: model.reconstruct(x), lambda: model.sample(4)]
    for call in calls:
        with pytest.raises(ValueError, match="n_classes=3.*pass y"):
            call()


def test_an_unconditional_vae_refuses_a_label():
    model = VAE(latent_dim=2, hidden=(8,))
    x, y, z = binary_data(4), labels(4, k=3), torch.zeros(4, 2)
    calls = [lambda: model.encode(x, y), lambda: model.decode(z, y), lambda: model(x, y), lambda: model.elbo(x, y),
             lambda: model.loss(x, y), lambda: model.reconstruct(x, y), lambda: model.sample(4, y=y)]
    for call in calls:
        with pytest.raises(ValueError, match="not conditioned on a label"):
            call()


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
        return model.elbo(x, y), model.sample(len(y), generator=torch.Generator().manual_seed(1), y=y)
    (e1, s1), (e2, s2) = run(), run()
    assert torch.equal(e1, e2) and torch.equal(s1, s2)


def test_reconstruct_decodes_the_posterior_mean():
    model = ConditionalVAE(latent_dim=2, hidden=(16,))
    x, y = binary_data(4), labels(4)
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(model.encode(x, y)[0], y))
    torch.testing.assert_close(model.reconstruct(x, y), expected)


# ------------------------------------------------------------------ estimating log p(x|y)

class GivenLabel:
    """The old way to evaluate a CVAE (before the estimators took y): the model with its label fixed,
    seen through the unconditional protocol."""

    def __init__(self, cvae, label):
        self.cvae, self.label, self.prior = cvae, label, cvae.prior

    def _labels(self, n):
        return torch.full((n,), self.label, dtype=torch.long)

    def encode(self, x):
        return self.cvae.encode(x, self._labels(len(x)))

    def decode(self, z):
        return self.cvae.decode(z, self._labels(len(z)))

    def log_likelihood(self, x, logits):
        return self.cvae.log_likelihood(x, logits)


def small_cvae(seed=0):
    torch.manual_seed(seed)
    return ConditionalVAE(n_classes=4, latent_dim=3, hidden=(16,)).eval()


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("label", [0, 3])
def test_estimates_given_y_equal_the_per_class_evaluation(label):
    model, x = small_cvae(), binary_data(7)
    y = torch.full((7,), label)
    for kwargs in ({"k": 50, "batch_size": 3, "chunk": 20}, {"k": 1}):
        with_y = importance_sampled_log_likelihood(model, x, generator=gen(1), y=y, **kwargs)
        fixed = importance_sampled_log_likelihood(GivenLabel(model, label), x, generator=gen(1), **kwargs)
        torch.testing.assert_close(with_y, fixed, rtol=1e-6, atol=1e-5)
    elbo_y = estimate_elbo(model, x, n_samples=5, batch_size=3, generator=gen(2), y=y)
    elbo_fixed = estimate_elbo(GivenLabel(model, label), x, n_samples=5, batch_size=3, generator=gen(2))
    torch.testing.assert_close(elbo_y, elbo_fixed, rtol=1e-6, atol=1e-5)


def test_the_label_changes_the_estimate_row_by_row():
    """Mixed labels: row i's estimate is the one of its own label (k = 1 draws one eps per row, so the
    streams agree with a per-label evaluation of the whole batch)."""
    model, x = small_cvae(), binary_data(6)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    mixed = importance_sampled_log_likelihood(model, x, k=1, generator=gen(3), y=y)
    for label in range(4):
        same = importance_sampled_log_likelihood(model, x, k=1, generator=gen(3), y=torch.full((6,), label))
        rows = y == label
        torch.testing.assert_close(mixed[rows], same[rows], rtol=1e-6, atol=1e-5)


def test_a_proposal_equal_to_the_encoder_gives_the_default_estimate():
    model, x, y = small_cvae(), binary_data(5), labels(5, k=4)
    default = importance_sampled_log_likelihood(model, x, k=30, chunk=7, generator=gen(4), y=y)
    given = importance_sampled_log_likelihood(model, x, k=30, chunk=7, generator=gen(4), y=y,
                                              proposal=lambda xb, yb: model.encode(xb, yb))
    assert torch.equal(default, given)
    vae = VAE(latent_dim=3, hidden=(16,)).eval()
    default = importance_sampled_log_likelihood(vae, x, k=30, generator=gen(4))
    given = importance_sampled_log_likelihood(vae, x, k=30, generator=gen(4), proposal=lambda xb, yb: vae.encode(xb))
    assert torch.equal(default, given)


def test_the_estimate_with_k_one_is_the_elbo_of_the_proposal():
    """k = 1: the estimate is the single importance weight log p(x|z, y) + log p(z) - log q(z|x, y) at
    z = mu(x, y) + sigma(x, y) eps, with eps the generator's first (1, B, L) standard normals."""
    model, x, y = small_cvae(), binary_data(4), labels(4, k=4)
    estimate = importance_sampled_log_likelihood(model, x, k=1, generator=gen(5), y=y)
    mu, log_var = model.encode(x, y)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(1, 4, 3, generator=gen(5))[0]
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    with torch.no_grad():
        by_hand = (Independent(Bernoulli(logits=model.decode(z, y)), 1).log_prob(x) + model.prior.log_prob(z)
                   - q.log_prob(z))
    torch.testing.assert_close(estimate, by_hand, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n_labels", [4, 6])
def test_estimates_refuse_a_wrong_number_of_labels(n_labels):
    model, x = small_cvae(), binary_data(5)
    y = labels(n_labels, k=4)
    with pytest.raises(ValueError, match=f"5 rows but y has {n_labels} labels"):
        importance_sampled_log_likelihood(model, x, k=2, y=y)
    with pytest.raises(ValueError, match=f"5 rows but y has {n_labels} labels"):
        estimate_elbo(model, x, y=y)


def test_estimates_of_a_conditional_model_need_y():
    model, x = small_cvae(), binary_data(3)
    with pytest.raises(ValueError, match="pass y"):
        importance_sampled_log_likelihood(model, x, k=2)
    with pytest.raises(ValueError, match="pass y"):
        estimate_elbo(model, x)


def test_a_few_training_steps_reduce_the_loss():
    gen_ = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (256,), generator=gen_)
    prototypes = torch.rand(3, 64, generator=gen_)
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


def test_active_units_of_a_conditional_model_read_the_labels():
    torch.manual_seed(0)
    cvae = ConditionalVAE(input_dim=12, n_classes=3, latent_dim=4, hidden=(16,))
    x, y = torch.rand(30, 12), torch.randint(3, (30,))
    expected = cvae.encode(x, y)[0].detach().var(dim=0, correction=0)
    assert torch.allclose(posterior_mean_variance(cvae, x, y=y), expected)
    assert active_units(cvae, x, threshold=0.0, y=y) == int((expected > 0).sum())
    with pytest.raises(ValueError, match="pass y"):
        active_units(cvae, x)
