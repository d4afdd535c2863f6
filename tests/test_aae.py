"""Adversarial autoencoders: the optimal discriminator, the losses, the phases, training and errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from torch.distributions import Normal

from ae_course.aae import (AdversarialAutoencoder, Discriminator, SemiSupervisedAAE, adversarial_step,
                           discriminator_loss, generator_loss, make_optimizers, optimal_discriminator,
                           train_adversarial)
from ae_course.evaluation import two_sample_accuracy
from ae_course.models import one_hot
from ae_course.priors import GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior

from helpers import binary_data

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")

# Two known 1-D densities: the prior p = N(0, 1) and a "code" density q = N(1, 0.7^2).
P, Q = Normal(0.0, 1.0), Normal(1.0, 0.7)


def test_optimal_discriminator_is_p_over_p_plus_q():
    z = torch.linspace(-4, 5, 101, dtype=torch.float64)
    p, q = P.log_prob(z).exp(), Q.log_prob(z).exp()
    assert torch.allclose(optimal_discriminator(P.log_prob(z), Q.log_prob(z)), p / (p + q), rtol=1e-12)
    # far in the tails the densities underflow but the log-space formula does not
    assert optimal_discriminator(torch.tensor([-800.0]), torch.tensor([-900.0])).item() == 1.0
    with pytest.raises(ValueError, match="shape"):
        optimal_discriminator(torch.zeros(3), torch.zeros(4))


def test_a_trained_discriminator_approaches_the_optimal_one():
    """Goodfellow et al. 2014, Prop. 1, checked numerically: fit D on samples, compare with p / (p + q)."""
    disc = Discriminator(1, hidden=(32, 32))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    for _ in range(1500):
        z_prior, z_code = P.sample((512, 1)), Q.sample((512, 1))
        loss = discriminator_loss(disc(z_prior), disc(z_code)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = torch.linspace(-2.0, 2.5, 91)              # where both densities have mass
    with torch.no_grad():
        learned = torch.sigmoid(disc(z[:, None]))
    exact = optimal_discriminator(P.log_prob(z), Q.log_prob(z))
    error = (learned - exact).abs()
    assert error.mean() < 0.03 and error.max() < 0.08, (error.mean(), error.max())


def test_value_at_the_optimal_discriminator_is_two_js_minus_log_4():
    """E_p[log D*] + E_q[log(1 - D*)] = 2 JS(q || p) - log 4, with JS from scipy (natural log)."""
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    dz = (z[1] - z[0]).item()
    log_p, log_q = P.log_prob(z), Q.log_prob(z)
    log_d_star = F.logsigmoid(log_p - log_q)              # log D*, and log(1 - D*) = logsigmoid(log q - log p)
    assert torch.allclose(log_d_star.exp(), optimal_discriminator(log_p, log_q))
    value = ((log_p.exp() * log_d_star + log_q.exp() * F.logsigmoid(log_q - log_p)) * dz).sum().item()
    js = jensenshannon(log_q.exp().numpy(), log_p.exp().numpy()) ** 2      # scipy returns the JS distance
    assert value == pytest.approx(2 * js - math.log(4), abs=1e-6)
    # q = p: D* = 1/2 everywhere and the value is -log 4, its minimum
    d_half = optimal_discriminator(log_p, log_p)
    assert torch.allclose(d_half, torch.full_like(d_half, 0.5))


def test_the_losses_are_binary_cross_entropies_computed_from_logits():
    prior_logits, code_logits = torch.randn(50) * 3, torch.randn(50) * 3
    expected = (F.binary_cross_entropy_with_logits(prior_logits, torch.ones(50), reduction="none")
                + F.binary_cross_entropy_with_logits(code_logits, torch.zeros(50), reduction="none"))
    assert torch.allclose(discriminator_loss(prior_logits, code_logits), expected, atol=1e-6)
    d = torch.sigmoid(code_logits)
    assert torch.allclose(generator_loss(code_logits), -d.log(), atol=1e-5)
    assert torch.allclose(generator_loss(code_logits, saturating=True), (1 - d).log(), atol=1e-5)
    extreme = torch.tensor([-100.0, 100.0])
    assert torch.isfinite(discriminator_loss(extreme, extreme.flip(0))).all()
    assert generator_loss(torch.tensor([-100.0])).item() == pytest.approx(100.0)
    # the saturating loss's gradient vanishes where D rejects the code; the non-saturating one does not
    logit = torch.tensor([-8.0], requires_grad=True)
    (g_sat,) = torch.autograd.grad(generator_loss(logit, saturating=True).sum(), logit)
    (g_ns,) = torch.autograd.grad(generator_loss(logit).sum(), logit)
    assert abs(g_sat.item()) < 1e-3 and g_ns.item() == pytest.approx(-1.0, abs=1e-3)
    with pytest.raises(ValueError, match="equal length"):
        discriminator_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        generator_loss(torch.zeros(3, 1))


def _snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(module, before):
    groups = set()
    for name, p in module.named_parameters():
        if not torch.equal(p, before[name]):
            groups.add(name.split(".")[0])
    return groups


@pytest.mark.parametrize("make, y", [
    (lambda: AdversarialAutoencoder(64, 2, hidden=(16,), prior=GaussianPrior(2, 5.0)), None),
    (lambda: AdversarialAutoencoder(64, 3, hidden=(16,), n_classes=4), torch.tensor([0, 1, 2, 3] * 4)),
])
def test_each_phase_updates_only_its_parameters(make, y):
    model, x = make(), binary_data(16, 64)
    opts = make_optimizers(model)
    phases = [("reconstruction", lambda: model.reconstruction_loss(x, y)),
              ("discriminator", lambda: model.discriminator_loss(x)),
              ("generator", lambda: model.generator_loss(x))]
    expected = {"reconstruction": {"encoder", "decoder"}, "discriminator": {"discriminator"},
                "generator": {"encoder"}}
    for phase, loss in phases:
        before = _snapshot(model)
        model.zero_grad(set_to_none=True)
        loss().mean().backward()
        opts[phase].step()
        assert _changed(model, before) == expected[phase], phase


def test_semi_supervised_phases_update_only_their_parameters():
    model = SemiSupervisedAAE(64, n_classes=3, style_dim=2, hidden=(16,))
    x, labels = binary_data(12, 64), torch.tensor([0, 1, 2] * 4)
    opts = make_optimizers(model)
    assert set(opts) == {"reconstruction", "discriminator", "generator", "classification"}
    expected = {"reconstruction": ({"encoder", "decoder"}, lambda: model.reconstruction_loss(x)),
                "discriminator": ({"discriminator_y", "discriminator_z"}, lambda: model.discriminator_loss(x)),
                "generator": ({"encoder"}, lambda: model.generator_loss(x)),
                "classification": ({"encoder"}, lambda: model.classification_loss(x, labels))}
    for phase, (groups, loss) in expected.items():
        before = _snapshot(model)
        model.zero_grad(set_to_none=True)
        loss().mean().backward()
        opts[phase].step()
        assert _changed(model, before) == groups, phase


def test_the_discriminator_phase_sends_no_gradient_to_the_encoder():
    model, x = AdversarialAutoencoder(64, 2, hidden=(16,)), binary_data(8, 64)
    model.discriminator_loss(x).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_adversarial_step_returns_each_phase_loss():
    model = SemiSupervisedAAE(64, n_classes=3, style_dim=2, hidden=(16,))
    x, labels = binary_data(12, 64), torch.tensor([0, 1, 2] * 4)
    losses = adversarial_step(model, make_optimizers(model), x, labelled=(x, labels))
    assert set(losses) == {"reconstruction", "discriminator", "generator", "classification"}
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["classification"] == pytest.approx(math.log(3), rel=0.2)     # untrained: near uniform


def _train_toy(seed):
    torch.manual_seed(seed)
    model = AdversarialAutoencoder(64, 2, hidden=(32,), prior=MixtureOfGaussiansPrior(4))
    history = train_adversarial(model, binary_data(200, 64), steps=30, batch_size=50, seed=seed, progress=False)
    return model, history


def test_seeded_runs_reproduce_bit_for_bit():
    (a, ha), (b, hb), (c, _) = _train_toy(1), _train_toy(1), _train_toy(2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ha.losses == hb.losses and ha.steps == 30 and len(ha.losses["generator"]) == 8
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_training_matches_the_codes_to_the_prior():
    """The adversarial phases make the codes hard to tell from prior samples (two-sample accuracy -> 0.5)."""
    x = binary_data(1000, 64, seed=3)
    prior = GaussianPrior(2, 1.0)
    model = AdversarialAutoencoder(64, 2, hidden=(32,), prior=prior)
    with torch.no_grad():
        before = two_sample_accuracy(model.encode(x), prior.sample(len(x)))
    history = train_adversarial(model, x, steps=300, batch_size=100, progress=False)
    with torch.no_grad():
        after = two_sample_accuracy(model.encode(x), prior.sample(len(x)))
    assert before > 0.8 and after < 0.65, (before, after)
    assert history.losses["reconstruction"][-1] < history.losses["reconstruction"][0]


def test_semi_supervised_model_learns_from_a_few_labels():
    """Two classes that differ in which half of the image is on; 4 labels per class suffice."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (400,), generator=gen)
    probs = torch.full((400, 64), 0.05)
    probs[labels == 0, :32] = 0.6
    probs[labels == 1, 32:] = 0.6
    x = torch.bernoulli(probs, generator=gen)
    few = torch.cat([torch.nonzero(labels == k)[:4, 0] for k in (0, 1)])
    model = SemiSupervisedAAE(64, n_classes=2, style_dim=2, hidden=(32,))
    train_adversarial(model, x, labelled=(x[few], labels[few]), steps=200, batch_size=50, progress=False)
    predicted = model.classify(x)
    assert predicted.shape == (400,) and predicted.dtype == torch.int64
    assert (predicted == labels).float().mean() > 0.95


def test_supervised_aae_decodes_with_labels_and_samples_per_class():
    model = AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    assert model.sample(4, y).shape == (4, 64)
    assert model.reconstruct(binary_data(4, 64), y).shape == (4, 64)
    with pytest.raises(ValueError, match="pass y"):
        model.decode(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        model.decode(torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="4 labels for 3"):
        model.decode(torch.zeros(3, 2), y)
    with pytest.raises(ValueError, match="takes no labels"):
        AdversarialAutoencoder(64, 2, hidden=(16,)).decode(torch.zeros(4, 2), y)


def test_wrong_inputs_raise_clear_errors():
    model = AdversarialAutoencoder(64, 2, hidden=(16,))
    with pytest.raises(ValueError, match=r"shape \(B, 64\)"):
        model.encode(torch.zeros(4, 63))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        model.discriminator(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="prior has dimension 2"):
        AdversarialAutoencoder(64, 3, prior=SwissRollPrior())
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        train_adversarial(model, binary_data(8, 64), progress=False)
    with pytest.raises(ValueError, match="pass y exactly"):
        train_adversarial(model, binary_data(8, 64), y=torch.zeros(8, dtype=torch.long), steps=1, progress=False)
    with pytest.raises(ValueError, match="pass y exactly"):
        train_adversarial(AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=2), binary_data(8, 64), steps=1,
                          progress=False)
    with pytest.raises(ValueError, match="needs a SemiSupervisedAAE"):
        train_adversarial(model, binary_data(8, 64), labelled=(binary_data(2, 64), torch.tensor([0, 1])), steps=1,
                          progress=False)
    semi = SemiSupervisedAAE(64, n_classes=3, style_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        semi.classification_loss(binary_data(2, 64), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer tensor"):
        semi.classification_loss(binary_data(2, 64), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="as many"):
        train_adversarial(semi, binary_data(8, 64), labelled=(binary_data(2, 64), torch.tensor([0])), steps=1,
                          progress=False)


def test_a_nan_loss_raises_before_the_update():
    model = AdversarialAutoencoder(64, 2, hidden=(16,))
    x = binary_data(8, 64)
    x[0, 0] = float("nan")
    before = _snapshot(model)
    with pytest.raises(FloatingPointError, match="reconstruction loss is nan"):
        train_adversarial(model, x, steps=1, batch_size=8, progress=False)
    assert _changed(model, before) == set()


def test_one_hot_accepts_indices_and_probabilities_and_rejects_the_rest():
    assert torch.equal(one_hot(torch.tensor([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    probs = torch.tensor([[0.2, 0.8]])
    assert torch.equal(one_hot(probs, 2), probs)
    like = torch.zeros(1, dtype=torch.float64)
    assert one_hot([1], 2, like=like).dtype == torch.float64
    for bad, match in [(torch.tensor([0.0, 1.0]), "integer tensor"), (torch.tensor([3]), r"0\.\.2"),
                       (torch.tensor([[0.5, 0.6, 0.0]]), "probability vectors"), (torch.zeros(1, 1, 3), "shape")]:
        with pytest.raises(ValueError, match=match):
            one_hot(bad, 3)


def test_two_sample_accuracy_is_one_half_for_one_distribution_and_high_for_two():
    a, b = torch.randn(3000, 2), torch.randn(3000, 2)
    same = two_sample_accuracy(a, b)
    assert abs(same - 0.5) < 3 * math.sqrt(0.25 / 3000)
    assert two_sample_accuracy(a, b + 3.0) > 0.9
    with pytest.raises(ValueError, match="equal L"):
        two_sample_accuracy(a, torch.randn(10, 3))
    with pytest.raises(ValueError, match="test_fraction"):
        two_sample_accuracy(a, b, test_fraction=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_runs_on_cuda():
    model = SemiSupervisedAAE(64, n_classes=2, style_dim=2, hidden=(16,))
    x = binary_data(40, 64)
    history = train_adversarial(model, x, labelled=(x[:4], torch.tensor([0, 1, 0, 1])), steps=3, device="cuda",
                                progress=False)
    assert history.device.startswith("cuda") and model.classify(x).shape == (40,)
