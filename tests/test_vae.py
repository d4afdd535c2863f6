"""The VAE, and the evaluators of ae_course.evaluation (ELBO, importance-sampled log-likelihood, active units)."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from ae_course import VAE, evaluate, train
from ae_course.evaluation import (active_units, estimate_elbo, importance_sampled_log_likelihood,
                                  posterior_mean_variance)
from ae_course.linear_gaussian import LinearGaussian
from ae_course.losses import bernoulli_log_likelihood, gaussian_kl, reparameterize, standard_normal
from ae_course.vae import LOG_VAR_MAX, LOG_VAR_MIN


from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")



def linear_sizes(module):
    return [(m.in_features, m.out_features) for m in module if isinstance(m, nn.Linear)]


# --------------------------------------------------------------------------------------------- the model

def test_shapes_of_encode_reparameterize_decode_sample_and_prior():
    model = VAE(input_dim=784, latent_dim=8, hidden=(32,))
    x = binary_data(5)
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (5, 8)
    torch.testing.assert_close(torch.cat([mu, log_var], 1), model.encoder(x))  # inside the clamp: the identity
    z = model.reparameterize(mu, log_var)
    assert z.shape == (5, 8)
    logits = model.decode(z)
    torch.testing.assert_close(logits, model.decoder(z))
    torch.testing.assert_close(model.log_likelihood(x, logits), Independent(Bernoulli(logits=logits), 1).log_prob(x))
    assert model.elbo(x).shape == model.loss(x).shape == (5,)
    images = model.sample(7, generator=torch.Generator().manual_seed(3))
    z_prior = torch.randn(7, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(images, torch.sigmoid(model.decoder(z_prior)).detach())
    assert images.shape == (7, 784) and (images >= 0).all() and (images <= 1).all()
    assert torch.equal(images, model.sample(7, generator=torch.Generator().manual_seed(3)))
    assert model.prior.event_shape == (8,) and model.prior.batch_shape == ()
    torch.testing.assert_close(model.prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(1))


def test_reparameterize_is_mu_plus_sigma_eps():
    mu, log_var, eps = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(VAE.reparameterize(mu, log_var, eps), mu + torch.exp(log_var / 2) * eps)
    assert VAE.reparameterize is reparameterize


@pytest.mark.parametrize("n_samples", [None, 1, 5])
def test_reparameterize_matches_normal_rsample_with_the_same_noise(n_samples):
    """z = mu + exp(log_var / 2) eps is Normal(mu, sigma).rsample(): same values from the same noise, and
    gradients d z / d mu = 1, d z / d log_var = sigma eps / 2."""
    mu = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    log_var = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    q = Normal(mu, torch.exp(0.5 * log_var))
    shape = (4, 3) if n_samples is None else (n_samples, 4, 3)
    torch.manual_seed(11)
    z_library = q.rsample(() if n_samples is None else (n_samples,))
    torch.manual_seed(11)
    z = reparameterize(mu, log_var, n_samples=n_samples)   # draws its own noise, from the same global stream
    assert z.shape == z_library.shape == shape
    torch.testing.assert_close(z, z_library)
    eps = ((z_library - mu) / torch.exp(0.5 * log_var)).detach()
    torch.testing.assert_close(reparameterize(mu, log_var, eps=eps), z_library)
    # with a generator: eps = torch.randn(shape, generator) of the same seed
    drawn = reparameterize(mu, log_var, n_samples=n_samples, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(drawn, mu + torch.exp(0.5 * log_var) * noise)
    g_mu, g_log_var = torch.autograd.grad(drawn.sum(), [mu, log_var])
    sigma_eps = (torch.exp(0.5 * log_var) * noise).detach()
    count = 1 if n_samples is None else n_samples
    torch.testing.assert_close(g_mu, torch.full_like(mu, count))
    torch.testing.assert_close(g_log_var, (sigma_eps / 2).reshape(-1, 4, 3).sum(0))


def test_reparameterize_eps_of_s_samples_and_bad_arguments():
    mu, log_var = torch.randn(2, 3), torch.randn(2, 3)
    eps = torch.randn(6, 2, 3)
    z = reparameterize(mu, log_var, eps=eps)                       # S = 6 inferred from eps
    torch.testing.assert_close(z, mu + torch.exp(0.5 * log_var) * eps)
    torch.testing.assert_close(reparameterize(mu, log_var, eps=eps, n_samples=6), z)
    for bad in (dict(eps=torch.randn(6, 2, 3), n_samples=5), dict(eps=torch.randn(3, 2)), dict(eps=torch.randn(2, 3, 1))):
        with pytest.raises(ValueError, match="eps must have the shape of mu"):
            reparameterize(mu, log_var, **bad)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        reparameterize(mu, log_var, n_samples=0)
    with pytest.raises(ValueError, match="they must match"):
        reparameterize(mu, log_var[:, :2])


def test_standard_normal_is_the_torch_distributions_prior():
    prior = standard_normal(4)
    assert isinstance(prior, Independent) and prior.event_shape == (4,) and prior.batch_shape == ()
    z = torch.randn(2, 5, 4)
    torch.testing.assert_close(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    torch.testing.assert_close(prior.log_prob(z), -0.5 * z.pow(2).sum(-1) - 2 * math.log(2 * math.pi))
    torch.testing.assert_close(prior.mean, torch.zeros(4))
    torch.testing.assert_close(prior.variance, torch.ones(4))
    like = torch.zeros(1, dtype=torch.float64)
    assert standard_normal(3, like=like).mean.dtype == torch.float64
    # the KL of a diagonal Gaussian to it is the closed form of ae_course.losses.gaussian_kl
    mu, log_var = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    torch.testing.assert_close(kl_divergence(q, standard_normal(4, like=mu)), gaussian_kl(mu, log_var))
    # VAE.prior is it, on the model's dtype
    model = VAE(input_dim=6, latent_dim=4, hidden=()).double()
    assert model.prior.mean.dtype == torch.float64
    torch.testing.assert_close(model.prior.log_prob(z.double()), prior.log_prob(z).double())
    with pytest.raises(ValueError, match="dim must be >= 1"):
        standard_normal(0)


def test_elbo_is_log_likelihood_minus_closed_form_kl():
    """elbo(x) = log p(x|z) - KL(q(z|x) || p(z)) with z = mu + sigma * eps (Kingma & Welling 2014, eq. 10)."""
    model = VAE(input_dim=20, latent_dim=3, hidden=(16,), activation="tanh")
    x = binary_data(6, 20)
    torch.manual_seed(5)
    elbo = model.elbo(x)
    torch.manual_seed(5)
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    expected = bernoulli_log_likelihood(x, model.decode(z)) - kl_divergence(q, model.prior)
    torch.testing.assert_close(elbo, expected)


def test_loss_weights_the_kl_by_beta():
    x = binary_data(6, 20)
    torch.manual_seed(0)
    model = VAE(input_dim=20, latent_dim=3, hidden=(16,), beta=4.0)
    torch.manual_seed(1)
    log_px_z, kl = model.elbo_terms(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model.loss(x), -(log_px_z - 4.0 * kl))
    model.beta = 1.0
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    torch.testing.assert_close(loss, -model.elbo(x))


def test_gaussian_decoder_is_unit_variance_normal_on_the_sigmoid_mean():
    model = VAE(input_dim=10, latent_dim=2, hidden=(8,), likelihood="gaussian")
    x, logits = torch.rand(4, 10), torch.randn(4, 10)
    expected = Normal(torch.sigmoid(logits), 1.0).log_prob(x).sum(1)
    torch.testing.assert_close(model.log_likelihood(x, logits), expected)
    half_squared_error = 0.5 * (x - torch.sigmoid(logits)).pow(2).sum(1)
    torch.testing.assert_close(-model.log_likelihood(x, logits), half_squared_error + 5 * math.log(2 * math.pi))


def test_log_var_is_clamped_to_the_documented_range():
    model = VAE(input_dim=6, latent_dim=2, hidden=())
    with torch.no_grad():
        model.encoder[0].weight.zero_()
        model.encoder[0].bias.copy_(torch.tensor([0.0, 0.0, 1e4, -1e4]))  # (mu_1, mu_2, log_var_1, log_var_2)
    mu, log_var = model.encode(torch.ones(3, 6))
    assert torch.equal(log_var, torch.tensor([[LOG_VAR_MAX, LOG_VAR_MIN]]).expand(3, 2))
    assert torch.isfinite(model.loss(torch.ones(3, 6))).all()


def test_gradients_reach_encoder_and_decoder():
    model = VAE(input_dim=784, latent_dim=4, hidden=(16, 8), activation="elu")
    model.loss(binary_data(8)).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_reference_architectures_build_with_the_expected_layer_sizes():
    kingma_welling = VAE(hidden=(500,), latent_dim=2, activation="tanh")  # 784-500-(2x2), Kingma & Welling 2014
    assert linear_sizes(kingma_welling.encoder) == [(784, 500), (500, 4)]
    assert linear_sizes(kingma_welling.decoder) == [(2, 500), (500, 784)]
    assert [type(m) for m in kingma_welling.encoder] == [nn.Linear, nn.Tanh, nn.Linear]
    keras = VAE(hidden=(150, 100), latent_dim=10, activation="gelu")  # 784-150-100-10 GELU, the Keras example
    assert linear_sizes(keras.encoder) == [(784, 150), (150, 100), (100, 20)]
    assert linear_sizes(keras.decoder) == [(10, 100), (100, 150), (150, 784)]
    assert sum(isinstance(m, nn.GELU) for m in keras.modules()) == 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(likelihood="poisson"), "likelihood"),
    (dict(activation="swish"), "activation"),
    (dict(latent_dim=0), "latent_dim"),
    (dict(hidden=(0,)), "positive"),
    (dict(beta=-1.0), "beta"),
])
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(**kwargs)


def test_wrong_shapes_raise_value_error():
    model = VAE(input_dim=12, latent_dim=3, hidden=(8,))
    for bad in (torch.zeros(4, 13), torch.zeros(12), torch.zeros(0, 12), torch.zeros(2, 3, 12)):
        with pytest.raises(ValueError, match="shape"):
            model.loss(bad)
    with pytest.raises(ValueError, match="floating"):
        model.encode(torch.zeros(2, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        model.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="eps"):
        model.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3), eps=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="shape"):
        model.log_likelihood(torch.zeros(2, 12), torch.zeros(2, 11))
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0)


# ------------------------------------------------------------------------------------------ training

def test_seeded_training_is_reproducible_bit_for_bit():
    x = binary_data(96, 50)

    def run():
        torch.manual_seed(7)
        model = VAE(input_dim=50, latent_dim=4, hidden=(16,))
        history = train(model, x, epochs=3, batch_size=32, seed=11, progress=False,
                        transform=torch.bernoulli, x_val=x[:32])
        return history, model.state_dict()

    (h1, s1), (h2, s2) = run(), run()
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    assert all(torch.equal(s1[name], s2[name]) for name in s1)
    assert h1.train_loss[-1] < h1.train_loss[0]


class _PoisonedVAE(VAE):
    """A VAE whose loss is NaN for the examples marked by a pixel of 0.5 (the data are 0/1 otherwise)."""

    def loss(self, x, y=None):
        poison = torch.where(x[:, 3] == 0.5, torch.tensor(float("nan")), torch.tensor(0.0))
        return super().loss(x, y) + poison


def test_nan_loss_raises_naming_the_step_and_leaves_parameters_finite():
    x = binary_data(40, 20)
    x[17, 3] = 0.5
    model = _PoisonedVAE(input_dim=20, latent_dim=2, hidden=(8,))
    with pytest.raises(FloatingPointError, match=r"loss is nan.*\(epoch 1, step [1-5]; global step [1-5]\)"):
        train(model, x, epochs=2, batch_size=8, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_train_refuses_nan_x_before_any_step():
    x = binary_data(40, 20)
    x[17, 3] = float("nan")
    model = VAE(input_dim=20, latent_dim=2, hidden=(8,))
    before = {name: t.clone() for name, t in model.state_dict().items()}
    with pytest.raises(ValueError, match="^x has 1 NaN or infinite entries"):
        train(model, x, epochs=2, batch_size=8, progress=False)
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


def test_train_evaluate_of_a_vae_is_the_mean_negative_elbo():
    model = VAE(input_dim=30, latent_dim=3, hidden=(16,))
    x = binary_data(25, 30)
    torch.manual_seed(2)
    value = evaluate(model, x, batch_size=10)
    torch.manual_seed(2)
    per_batch = [-model.elbo(x[i:i + 10]) for i in range(0, 25, 10)]
    assert value == pytest.approx(torch.cat(per_batch).sum().item() / 25, rel=1e-6)


# ------------------------------------------------------------------- importance-sampled log-likelihood

def linear_gaussian(d=5, latent_dim=2, sigma=0.5, mean_shift=0.0, std_scale=1.0, seed=0):
    """p(z) = N(0, I), p(x|z) = N(W z + b, sigma^2 I) with W = Q diag(s) (orthogonal columns), so the exact
    posterior is diagonal and `encode` returns it; `mean_shift` and `std_scale` make q deliberately wrong."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, latent_dim, generator=gen, dtype=torch.float64))
    W = q * torch.tensor([2.0, 0.7], dtype=torch.float64)[:latent_dim]
    model = LinearGaussian(W, torch.randn(d, generator=gen, dtype=torch.float64), sigma)
    if mean_shift == 0.0 and std_scale == 1.0:
        return model

    def wrong_posterior(x):
        mu, log_var = model.encode(x)
        return mu + mean_shift, log_var + 2 * math.log(std_scale)
    return model.with_encoder(wrong_posterior)


def exact_elbo(model, x):
    return model.elbo(x, *model.encode(x))


def mean_and_standard_error(values):
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


@pytest.mark.parametrize("k, chunk", [(1, 1), (7, 3), (50, 50), (200, 64)])
def test_with_the_exact_posterior_the_is_estimate_and_the_elbo_equal_log_px(k, chunk):
    model = linear_gaussian()
    x = model.sample(30, torch.Generator().manual_seed(1))
    exact = model.log_marginal(x)
    # every importance weight p(x, z) / q*(z|x) equals p(x), so the estimate is exact for any k and chunking
    torch.testing.assert_close(importance_sampled_log_likelihood(model, x, k=k, batch_size=8, chunk=chunk), exact,
                               rtol=1e-10, atol=1e-10)
    # KL(q* || p(z|x)) = 0: the ELBO is log p(x) exactly
    torch.testing.assert_close(exact_elbo(model, x), exact, rtol=1e-10, atol=1e-10)


def test_estimate_elbo_is_unbiased_for_the_closed_form_elbo():
    model = linear_gaussian(mean_shift=0.2, std_scale=1.2)
    x = model.sample(30, torch.Generator().manual_seed(1))
    n_samples = 2000
    estimate = estimate_elbo(model, x, n_samples=n_samples, batch_size=8, generator=torch.Generator().manual_seed(2))
    # the standard error of the mean of n_samples draws of log p(x|z), z ~ q(z|x), per example
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn((500, *mu.shape), generator=torch.Generator().manual_seed(3), dtype=mu.dtype)
    log_px_z = model.log_likelihood(x.repeat(500, 1), model.decode(z.reshape(-1, 2))).reshape(500, len(x))
    standard_error = log_px_z.std(0) / math.sqrt(n_samples)
    assert ((estimate - exact_elbo(model, x)).abs() < 4 * standard_error).all()
    assert (exact_elbo(model, x) < model.log_marginal(x)).all()


def test_with_a_wrong_posterior_the_is_estimate_converges_to_log_px():
    model = linear_gaussian(mean_shift=0.2, std_scale=1.2)
    x = model.sample(300, torch.Generator().manual_seed(2))
    exact = model.log_marginal(x)
    gen = torch.Generator().manual_seed(3)
    gap = {k: exact - importance_sampled_log_likelihood(model, x, k=k, chunk=100, generator=gen) for k in (1, 10, 1000)}
    # k = 1: an unbiased single-sample estimate of the ELBO, whose gap is E_x KL(q || p(z|x))
    kl_gap = (exact - exact_elbo(model, x)).mean().item()
    mean, standard_error = mean_and_standard_error(gap[1] - (exact - exact_elbo(model, x)))
    assert abs(mean) < 4 * standard_error
    assert kl_gap > 0.3
    # the gap shrinks toward 0 as k grows (Burda et al. 2016, Thm. 1): here 0.47 -> ~0.05 (k = 10) -> ~0.003
    # (k = 1000, standard error 0.0015), within 0.01 nats of the exact log p(x) on average
    assert gap[10].mean().item() < kl_gap / 2
    assert abs(gap[1000].mean().item()) < 0.01


def test_vae_elbo_below_is_estimate_which_grows_with_k():
    # binary data from a 2-D latent-variable model, and a VAE trained briefly, so that q(z|x) is still poor
    gen = torch.Generator().manual_seed(4)
    loadings, z = torch.randn(32, 2, generator=gen) * 3, torch.randn(2000, 2, generator=gen)
    x = torch.bernoulli(torch.sigmoid(z @ loadings.T), generator=gen)
    model = VAE(input_dim=32, latent_dim=2, hidden=(32,), activation="tanh")
    train(model, x, epochs=6, batch_size=50, lr=3e-3, progress=False)
    gen = torch.Generator().manual_seed(5)
    elbo = estimate_elbo(model, x, n_samples=100, generator=gen)
    is_k = {k: importance_sampled_log_likelihood(model, x, k=k, generator=gen) for k in (1, 10, 100)}
    # k = 1 is an unbiased single-sample ELBO estimate
    mean, standard_error = mean_and_standard_error(is_k[1] - elbo)
    assert abs(mean) < 4 * standard_error
    # paired over the 2,000 examples, each increase ELBO < L_10 and L_1 < L_10 < L_100 exceeds 4 standard errors
    for lower, higher in ((elbo, is_k[10]), (is_k[1], is_k[10]), (is_k[10], is_k[100])):
        mean, standard_error = mean_and_standard_error(higher - lower)
        assert mean > 4 * standard_error, (mean, standard_error)


@pytest.mark.parametrize("kwargs", [dict(k=0), dict(batch_size=0), dict(chunk=0)])
def test_is_estimate_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="must be >= 1"):
        importance_sampled_log_likelihood(VAE(input_dim=8, latent_dim=2, hidden=()), binary_data(3, 8), **kwargs)


def test_evaluators_reject_bad_x_and_restore_training_mode():
    model = VAE(input_dim=8, latent_dim=2, hidden=(4,))
    for fn in (importance_sampled_log_likelihood, estimate_elbo, active_units, posterior_mean_variance):
        with pytest.raises(ValueError, match="shape"):
            fn(model, torch.zeros(3, 9))
        with pytest.raises(ValueError):
            fn(model, torch.zeros(8))
        for bad in (float("nan"), float("inf")):
            x = binary_data(3, 8)
            x[1, 2] = bad
            with pytest.raises(ValueError, match="^x has 1 NaN or infinite entries"):
                fn(model, x)
    model.train()
    importance_sampled_log_likelihood(model, binary_data(3, 8), k=4)
    assert model.training


# ------------------------------------------------------------------------------------------ active units

def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    """Burda et al. 2016, §5.2: unit u is active when Var_x(E_q[z_u]) > 0.01."""
    model = VAE(input_dim=3, latent_dim=4, hidden=())
    with torch.no_grad():
        weight = torch.zeros(8, 3)
        # mu_1 = x_1 (variance 1), mu_2 = 0.2 x_2 (variance 0.04), mu_3 = 0.05 x_3 (variance 0.0025), mu_4 = const
        weight[0, 0], weight[1, 1], weight[2, 2] = 1.0, 0.2, 0.05
        model.encoder[0].weight.copy_(weight)
        model.encoder[0].bias.fill_(0.3)
    x = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]).repeat(50, 1)  # each column has variance 1
    torch.testing.assert_close(posterior_mean_variance(model, x), torch.tensor([1.0, 0.04, 0.0025, 0.0]))
    assert active_units(model, x) == 2
    assert active_units(model, x, threshold=0.001) == 3
    assert active_units(model, x, threshold=2.0) == 0
    for threshold in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            active_units(model, x, threshold=threshold)
    # a NaN variance is not "inactive": NaN posterior means (here from a NaN weight) are refused, not counted as 0
    with torch.no_grad():
        model.encoder[0].weight[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite posterior means"):
        active_units(model, x)


def test_reconstruct_decodes_the_posterior_mean():
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden=(16,))
    x = torch.rand(4, 784)
    mu, _ = model.encode(x)
    assert torch.equal(model.reconstruct(x), torch.sigmoid(model.decode(mu)))
    assert not model.reconstruct(x).requires_grad


def test_off_data_fraction_counts_codes_far_from_the_data():
    from ae_course.evaluation import off_data_fraction
    z_data = torch.stack(torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
    near, far = z_data[:30] + 0.1, torch.full((10, 2), 50.0)   # grid spacing 1: radius 1
    assert off_data_fraction(z_data, torch.cat([near, far])) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        off_data_fraction(z_data, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="quantile"):
        off_data_fraction(z_data, near, quantile=0)


# ------------------------------------------------------------------------------ inputs that cannot go wrong

def test_vae_refuses_non_finite_float64_and_out_of_range_x():
    model = VAE(input_dim=12, latent_dim=3, hidden=(8,))
    x = binary_data(4, 12)
    bad = x.clone()
    bad[2, 7] = float("nan")
    for call in (model.encode, model.loss, model.elbo, model.reconstruct, model):
        with pytest.raises(ValueError, match="^x has 1 NaN or infinite entries"):
            call(bad)
    with pytest.raises(ValueError, match=r"x is torch\.float64 but the model's parameters are torch\.float32; "
                                         r"convert with x\.to\(torch\.float32\)"):
        model.loss(x.double())
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] for a Bernoulli likelihood.*divide by 255"):
        model.loss(x * 255)
    gaussian = VAE(input_dim=12, latent_dim=3, hidden=(8,), likelihood="gaussian")
    assert torch.isfinite(gaussian.loss(x * 255)).all()   # a Gaussian decoder takes any real x


def test_conditional_vae_requires_y_and_an_unconditional_one_refuses_it():
    x, y = binary_data(4, 12), torch.tensor([0, 2, 1, 2])
    cvae = VAE(input_dim=12, latent_dim=3, hidden=(8,), n_classes=3)
    for call in (cvae.encode, cvae.loss, cvae.elbo, cvae.reconstruct):
        with pytest.raises(ValueError, match=r"conditioned on a label \(n_classes=3\): pass y"):
            call(x)
    with pytest.raises(ValueError, match="pass y"):
        cvae.sample(4)
    with pytest.raises(ValueError, match="pass y"):
        estimate_elbo(cvae, x)
    assert cvae.loss(x, y).shape == (4,)
    # the label is a one-hot vector appended to the encoder's input and the decoder's code
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    mu, log_var = cvae.encode(x, y)
    torch.testing.assert_close(torch.cat([mu, log_var], 1), cvae.encoder(torch.cat([x, one_hot], 1)))
    torch.testing.assert_close(cvae.decode(mu, y), cvae.decoder(torch.cat([mu, one_hot], 1)))
    with pytest.raises(ValueError, match="class labels must lie in 0..2"):
        cvae.loss(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="got 3 labels for 4 inputs"):
        cvae.loss(x, y[:3])
    vae = VAE(input_dim=12, latent_dim=3, hidden=(8,))
    for call in (vae.encode, vae.loss, vae.elbo, vae.reconstruct):
        with pytest.raises(ValueError, match=r"not conditioned on a label \(n_classes=0\): call it without y"):
            call(x, y)
    with pytest.raises(ValueError, match="without y"):
        vae.sample(4, y=y)
    with pytest.raises(ValueError, match="without y"):
        importance_sampled_log_likelihood(vae, x, k=2, y=y)


class ShiftedPriorVAE(VAE):
    """A VAE whose prior is N(1, 2^2 I): the estimators must take log p(z) from model.prior."""

    @property
    def prior(self):
        return Independent(Normal(torch.ones(self.latent_dim), 2 * torch.ones(self.latent_dim)), 1)


@pytest.mark.parametrize("model_class, prior", [(VAE, Normal(0.0, 1.0)), (ShiftedPriorVAE, Normal(1.0, 2.0))])
def test_is_estimate_uses_torch_distributions_log_densities_and_the_models_own_prior(model_class, prior):
    """With k = 1 and a shared generator, the log-weight is log p(x|z) + log p(z) - log q(z|x) from
    torch.distributions, with log p(z) from the model's prior (not a hard-coded N(0, I))."""
    model = model_class(input_dim=16, latent_dim=3, hidden=(8,))
    x = binary_data(5, 16)
    estimate = importance_sampled_log_likelihood(model, x, k=1, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        mu, log_var = model.encode(x)
        q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn((1, *mu.shape), generator=torch.Generator().manual_seed(9))[0]
        log_px_z = model.log_likelihood(x, model.decode(z))
        expected = log_px_z + prior.log_prob(z).sum(1) - q.log_prob(z)
        standard = log_px_z + Normal(0.0, 1.0).log_prob(z).sum(1) - q.log_prob(z)
    torch.testing.assert_close(estimate, expected)
    if model_class is ShiftedPriorVAE:
        assert (estimate - standard).abs().min() > 1e-3
