"""The source documents' configurations (ae_course.sources) are what the sources wrote, checked piece by piece,
and the chapter's checker accepts the Keras loss and names each typical slip."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ae_course import AdversarialAutoencoder, VAE, sources
from ae_course.exercises.sources_checks import check_keras_loss
from ae_course.losses import gaussian_kl


def linear_layers(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def test_keras_vae_has_the_source_layers_and_keras_initialization():
    torch.manual_seed(0)
    model = sources.keras_vae()
    sizes = [(m.in_features, m.out_features) for m in linear_layers(model.encoder)]
    assert sizes == [(784, 150), (150, 100), (100, 20)]           # the two 10-D heads in one layer
    assert [(m.in_features, m.out_features) for m in linear_layers(model.decoder)] == [(10, 100), (100, 150),
                                                                                      (150, 784)]
    assert isinstance(model.encoder[1], nn.GELU) and model.likelihood == "bernoulli"
    for layer in linear_layers(model):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert torch.all(layer.bias == 0)
        assert layer.weight.abs().max() <= bound
        # a uniform on [-a, a] has standard deviation a / sqrt(3)
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_keras_loss_is_mean_bce_plus_kl_over_784():
    torch.manual_seed(0)
    model = sources.keras_vae()
    x = torch.rand(6, 784)
    torch.manual_seed(3)
    loss = sources.keras_loss(model, x)
    torch.manual_seed(3)                                          # the same z
    mu, log_var = model.encode(x)
    z = model.reparameterize(mu, log_var)
    x_hat = torch.sigmoid(model.decode(z))
    by_hand = F.binary_cross_entropy(x_hat, x, reduction="none").mean(1) + gaussian_kl(mu, log_var) / 784
    assert loss.shape == (6,)
    torch.testing.assert_close(loss, by_hand, rtol=1e-4, atol=1e-6)


def test_keras_step_descends_the_keras_loss():
    torch.manual_seed(0)
    model = sources.keras_vae()
    opt = sources.keras_rmsprop(model.parameters())
    # one binary image, 32 times: a batch the model can learn within a few steps
    x = (torch.rand(1, 784, generator=torch.Generator().manual_seed(1)) > 0.7).float().repeat(32, 1)
    out = sources.keras_step(model, {"loss": opt}, x)
    assert set(out) == {"loss"} and out["loss"].dim() == 0 and not out["loss"].requires_grad
    assert out["loss"].item() == pytest.approx(math.log(2), abs=0.01)   # sigmoid(0) = 1/2 at the start
    for _ in range(20):
        last = sources.keras_step(model, {"loss": opt}, x)["loss"]
    assert last < 0.5 * out["loss"]                               # nats per pixel, on the same batch


def test_keras_rmsprop_is_one_step_of_the_keras_update_with_epsilon_inside_the_root():
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = sources.keras_rmsprop([w])
    g = torch.tensor([0.5, -3.0, 1e-5])                            # the last one is below sqrt(epsilon)
    w.grad = g.clone()
    opt.step()
    v = 0.1 * g ** 2                                              # rho = 0.9, v starts at 0
    expected = torch.tensor([1.0, -2.0, 0.5]) - 1e-3 * g / (v + 1e-7).sqrt()
    torch.testing.assert_close(w.detach(), expected)
    torch_step = 1e-3 * 1e-5 / ((0.1 * 1e-10) ** 0.5 + 1e-7)        # torch: epsilon outside, ~ lr * sqrt(10)
    assert abs(w[2].item() - 0.5) < 0.02 * torch_step                # Keras damps the small gradient


def test_keras_rmsprop_without_epsilon_is_torch_rmsprop():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(20)), nn.Parameter(torch.randn(20))
    b.data.copy_(a.data)
    ours, theirs = sources.KerasRMSprop([a], epsilon=0.0), torch.optim.RMSprop([b], lr=1e-3, alpha=0.9, eps=0.0)
    for step in range(10):
        g = torch.randn(20, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="rho"):
        sources.KerasRMSprop([a], rho=1.0)


def test_bilinear_codings_resizes_like_tf_image_resize():
    # half-pixel centres: a 1 x 2 row [0, 1] resized to 1 x 4 samples at x = -0.25, 0.25, 0.75, 1.25 (clamped)
    out = sources.bilinear_codings(torch.tensor([[0.0], [1.0]]), 1, 2, (1, 4))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    codings = torch.randn(12, 10)
    grid = sources.bilinear_codings(codings, 3, 4, (5, 7))
    assert grid.shape == (35, 10)
    torch.testing.assert_close(grid[[0, 6, 28, 34]], codings[[0, 3, 8, 11]])
    with pytest.raises(ValueError, match="12, L"):
        sources.bilinear_codings(codings[:11], 3, 4, (5, 7))


def test_shark_vae_trains_half_the_squared_error_plus_lambda_kl():
    torch.manual_seed(0)
    model = sources.shark_vae(kl_weight=0.0)
    sizes = [(m.in_features, m.out_features) for m in linear_layers(model)]
    assert sizes == [(784, 500), (500, 600), (300, 500), (500, 784)]
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert params.std().item() == pytest.approx(0.01, rel=0.02)     # variance 1e-4
    assert model.beta == 0.0 and sources.shark_vae().beta == 1.0
    # Shark backpropagates d/dx_hat of the squared loss as (x_hat - x): the Gaussian likelihood's gradient
    x = torch.rand(3, 784)
    logits = torch.randn(3, 784, requires_grad=True)
    (-model.log_likelihood(x, logits)).sum().backward()
    x_hat = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, (x_hat - x) * x_hat * (1 - x_hat))
    with pytest.raises(ValueError, match="beta"):
        sources.shark_vae(kl_weight=-1.0)


def test_theano_vae_reads_log_sigma_and_keeps_the_source_parameters():
    torch.manual_seed(0)
    model = sources.theano_vae()
    assert isinstance(model.encoder[-1], sources.LogSigmaHead)
    assert [(m.in_features, m.out_features) for m in linear_layers(model)] == [(784, 500), (500, 4), (2, 500),
                                                                                (500, 784)]
    x = torch.rand(5, 784)
    raw = model.encoder[0](x)
    mu, log_var = model.encode(x)
    torch.testing.assert_close(mu, raw[:, :2])
    torch.testing.assert_close(log_var, 2 * raw[:, 2:])            # log sigma^2 = 2 log sigma
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert params.std().item() == pytest.approx(0.01, rel=0.02)


def test_theano_sgd_is_the_gradient_of_the_l2_penalty():
    w = nn.Parameter(torch.tensor([0.5, -1.0]))
    opt = sources.theano_sgd([w])
    w.grad = torch.zeros(2)
    opt.step()                                                   # only the penalty 0.01 * sum(w^2) acts
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, -1.0]) * (1 - 1e-3 * 0.02))


def test_theano_bound_offset_is_the_misplaced_constant():
    gen = torch.Generator().manual_seed(0)
    mu, log_sigma = torch.randn(100, 2, generator=gen), torch.randn(100, 2, generator=gen)
    script = 0.5 * (1 + (2 * log_sigma).sum() - (mu ** 2).sum() - (2 * log_sigma).exp().sum()) / 100
    true = -gaussian_kl(mu, 2 * log_sigma).mean()
    assert (true - script).item() == pytest.approx(sources.theano_bound_offset(2, 100), abs=1e-5)
    assert sources.theano_bound_offset(2, 100) == pytest.approx(0.995)
    with pytest.raises(ValueError):
        sources.theano_bound_offset(0, 100)


def test_pytorch_aae_has_the_write_up_networks_prior_and_rates():
    model = sources.pytorch_aae()
    assert isinstance(model, AdversarialAutoencoder) and model.latent_dim == 2
    assert model.prior.scale == 5.0 and model.prior.dim == 2
    widths = [m.out_features for m in linear_layers(model.encoder)]
    assert widths == [1000, 1000, 2]
    assert [m.out_features for m in linear_layers(model.discriminator)] == [1000, 1000, 1]
    assert [m.p for m in model.encoder.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert [m.p for m in model.decoder.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert [m.p for m in model.discriminator.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    opts = sources.pytorch_aae_optimizers(model)
    assert opts["reconstruction"].defaults["lr"] == 6e-4
    assert opts["discriminator"].defaults["lr"] == opts["generator"].defaults["lr"] == 8e-4
    assert opts["generator"].defaults["betas"] == (0.9, 0.999)
    model.eval()                                                 # dropout is off in eval mode: deterministic
    x = torch.rand(4, 784)
    torch.testing.assert_close(model.encode(x), model.encode(x))


def test_normal_init_refuses_a_non_positive_std():
    with pytest.raises(ValueError, match="std"):
        sources.normal_init_(nn.Linear(2, 2), 0.0)


# --------------------------------------------------------------------------------- the checker


def right(x, x_hat, mu, log_var):
    return F.binary_cross_entropy(x_hat, x, reduction="none").mean(1) - 0.5 * (1 + log_var - mu ** 2
                                                                                - log_var.exp()).sum(1) / 784


def test_check_keras_loss_accepts_the_right_answer():
    feedback = check_keras_loss(right)
    assert feedback, feedback


@pytest.mark.parametrize("wrong, says", [
    (lambda x, xh, m, lv: right(x, xh, m, lv) * 784, "ELBO in nats"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(xh, x, reduction="none").mean(1) + gaussian_kl(m, lv), "not divided"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(xh, x, reduction="none").sum(1) + gaussian_kl(m, lv) / 784, "summed"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(xh, x, reduction="none").mean(1), "missing"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(xh, x, reduction="none").mean(1) - gaussian_kl(m, lv) / 784, "sign"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(xh, x, reduction="none").mean(1) + gaussian_kl(m, lv) / 10,
     "dimension"),
    (lambda x, xh, m, lv: F.binary_cross_entropy(x, xh, reduction="none").mean(1) + gaussian_kl(m, lv) / 784,
     "swapped"),
    (lambda x, xh, m, lv: right(x, xh, m, lv).mean(), "mean over the batch"),
    (lambda x, xh, m, lv: right(x, xh, m, lv)[:, None], "shape"),
    (lambda x, xh, m, lv: None, "None"),
    (lambda x, xh, m, lv: right(x, xh, m, lv) + 0.01, "expected"),
])
def test_check_keras_loss_names_each_mistake(wrong, says):
    feedback = check_keras_loss(wrong)
    assert not feedback
    assert says in str(feedback), str(feedback)
