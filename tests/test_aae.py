"""Adversarial autoencoders: the optimal discriminator, the losses, the phases, training and errors.

The semi-supervised AAE has its own file, test_semi_supervised.py.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from torch.distributions import Normal

import ae_course
from ae_course.aae import (AdversarialAutoencoder, Discriminator, adversarial_step, discriminator_loss,
                           generator_loss, make_optimizers, optimal_discriminator)
from ae_course.evaluation import two_sample_accuracy
from ae_course.models import one_hot
from ae_course.priors import GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior

from helpers import binary_data, changed_modules, record_phases, snapshot

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


@pytest.mark.parametrize("make, y", [
    (lambda: AdversarialAutoencoder(64, 2, hidden=(16,), prior=GaussianPrior(2, 5.0)), None),
    (lambda: AdversarialAutoencoder(64, 3, hidden=(16,), n_classes=4), torch.tensor([0, 1, 2, 3] * 4)),
])
def test_each_phase_updates_only_its_parameters(make, y):
    """Through the real adversarial_step: each optimizer's step changes exactly the networks of its phase."""
    model, x = make(), binary_data(16, 64)
    opts = model.make_optimizers()
    assert set(opts) == {"reconstruction", "discriminator", "generator"}
    changed, handles = record_phases(model, opts)
    try:
        adversarial_step(model, opts, x, y)
    finally:
        for handle in handles:
            handle.remove()
    assert list(changed) == ["reconstruction", "discriminator", "generator"]      # the order of the phases
    assert changed == {"reconstruction": {"encoder", "decoder"}, "discriminator": {"discriminator"},
                       "generator": {"encoder"}}


def test_make_optimizers_holds_exactly_the_parameters_of_each_phase():
    model = AdversarialAutoencoder(64, 2, hidden=(16,))
    opts = make_optimizers(model, lr=3e-3, lr_adversarial=5e-4, betas_adversarial=(0.4, 0.9))

    def ids(opt):
        return {id(t) for group in opt.param_groups for t in group["params"]}

    def of(*modules):
        return {id(t) for m in modules for t in m.parameters()}
    assert ids(opts["reconstruction"]) == of(model.encoder, model.decoder)
    assert ids(opts["discriminator"]) == of(model.discriminator)
    assert ids(opts["generator"]) == of(model.encoder)
    assert opts["reconstruction"].defaults["lr"] == 3e-3
    assert {opts[k].defaults["lr"] for k in ("discriminator", "generator")} == {5e-4}
    assert {opts[k].defaults["betas"] for k in ("discriminator", "generator")} == {(0.4, 0.9)}
    assert type(model).training_step is adversarial_step


def test_the_discriminator_phase_sends_no_gradient_to_the_encoder():
    model, x = AdversarialAutoencoder(64, 2, hidden=(16,)), binary_data(8, 64)
    model.discriminator_loss(x).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_adversarial_step_is_the_three_updates_written_out():
    """adversarial_step gives the same parameters, bit for bit, and returns each phase's loss as a detached 0-d
    tensor, as three hand-written updates (zero all gradients, backward, step) from the same random state."""
    model, x = AdversarialAutoencoder(64, 2, hidden=(16,)), binary_data(16, 64)
    twin = copy.deepcopy(model)
    opts, twin_opts = model.make_optimizers(), twin.make_optimizers()
    torch.manual_seed(7)
    losses = adversarial_step(model, opts, x)
    torch.manual_seed(7)
    expected = {}
    for phase, loss_fn in [("reconstruction", twin.reconstruction_loss), ("discriminator", twin.discriminator_loss),
                           ("generator", twin.generator_loss)]:
        loss = loss_fn(x).mean()
        twin.zero_grad(set_to_none=True)
        loss.backward()
        twin_opts[phase].step()
        expected[phase] = loss.item()
    assert list(losses) == list(expected)
    assert all(v.dim() == 0 and not v.requires_grad for v in losses.values())
    assert {k: v.item() for k, v in losses.items()} == expected
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def _old_train_adversarial(model, x, y=None, *, steps, batch_size, seed, optimizers):
    """The loop of the former ae_course.aae.train_adversarial, written out: seed, then per epoch one randperm,
    then adversarial_step on each minibatch; the per-epoch losses are the mean of the steps' means."""
    steps_per_epoch = math.ceil(len(x) / batch_size)
    torch.manual_seed(seed)
    model.train()
    losses, done = {}, 0
    while done < steps:
        order = torch.randperm(len(x))
        sums, n_steps = {}, min(steps_per_epoch, steps - done)
        for i in range(n_steps):
            rows = order[i * batch_size:(i + 1) * batch_size]
            for name, value in adversarial_step(model, optimizers, x[rows], None if y is None else y[rows]).items():
                sums[name] = sums.get(name, 0.0) + float(value)
            done += 1
        for name, total in sums.items():
            losses.setdefault(name, []).append(total / n_steps)
    model.eval()
    return losses


@pytest.mark.parametrize("n_classes", [0, 3])
def test_train_on_an_aae_is_the_former_train_adversarial(n_classes):
    """ae_course.train runs the model's training_step with the random stream of the old train_adversarial:
    the same parameters bit for bit, and the same per-epoch losses (all minibatches full here)."""
    x = binary_data(120, 64)
    y = torch.arange(120) % 3 if n_classes else None
    torch.manual_seed(1)
    model = AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=n_classes, discriminator_hidden=(16,))
    twin = copy.deepcopy(model)
    history = ae_course.train(model, x, y, steps=13, batch_size=30, lr=2e-3, seed=3, progress=False,
                              optimizers=model.make_optimizers(lr=2e-3, lr_adversarial=1e-3))
    rng_after_train = torch.get_rng_state()
    expected = _old_train_adversarial(twin, x, y, steps=13, batch_size=30, seed=3,
                                      optimizers=twin.make_optimizers(lr=2e-3, lr_adversarial=1e-3))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    assert history.steps == 13 and history.epochs == 4 and set(history.losses) == set(expected)
    for name, values in expected.items():
        assert history.losses[name] == pytest.approx(values, rel=1e-6), name
    assert torch.equal(torch.get_rng_state(), rng_after_train)      # both consumed the same random numbers


def _train_toy(seed):
    torch.manual_seed(seed)
    model = AdversarialAutoencoder(64, 2, hidden=(32,), prior=MixtureOfGaussiansPrior(4))
    history = ae_course.train(model, binary_data(200, 64), steps=30, batch_size=50, seed=seed, progress=False)
    return model, history


def test_seeded_runs_reproduce_bit_for_bit():
    (a, ha), (b, hb), (c, _) = _train_toy(1), _train_toy(1), _train_toy(2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ha.losses == hb.losses and ha.steps == 30 and len(ha.losses["generator"]) == 8
    assert set(ha.losses) == {"reconstruction", "discriminator", "generator"}
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    with pytest.raises(AttributeError, match="history.losses"):
        ha.train_loss


def test_training_matches_the_codes_to_the_prior():
    """The adversarial phases make the codes hard to tell from prior samples (two-sample accuracy -> 0.5)."""
    x = binary_data(1000, 64, seed=3)
    prior = GaussianPrior(2, 1.0)
    model = AdversarialAutoencoder(64, 2, hidden=(32,), prior=prior)
    with torch.no_grad():
        before = two_sample_accuracy(model.encode(x), prior.sample(len(x)))
    history = ae_course.train(model, x, steps=300, batch_size=100, progress=False)
    with torch.no_grad():
        after = two_sample_accuracy(model.encode(x), prior.sample(len(x)))
    assert before > 0.8 and after < 0.65, (before, after)
    assert history.losses["reconstruction"][-1] < history.losses["reconstruction"][0]


def test_reconstruct_and_sample_are_the_networks_applied_by_hand():
    model = AdversarialAutoencoder(64, 2, hidden=(16,), prior=MixtureOfGaussiansPrior(4))
    x = binary_data(5, 64)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(model.encoder(x)))
    reconstruction = model.reconstruct(x)
    assert torch.equal(reconstruction, expected) and not reconstruction.requires_grad
    torch.manual_seed(11)
    samples = model.sample(6)
    torch.manual_seed(11)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(model.prior.sample(6)))
    assert torch.equal(samples, expected)
    with pytest.raises(ValueError, match="integer >= 1"):
        model.sample(0)


def test_supervised_aae_decodes_with_labels_and_samples_per_class():
    model = AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    x = binary_data(4, 64)
    with torch.no_grad():
        by_hand = torch.sigmoid(model.decoder(torch.cat([model.encoder(x), F.one_hot(y, 3).float()], dim=1)))
    assert torch.equal(model.reconstruct(x, y), by_hand)
    assert torch.equal(model.reconstruct(x, y), model.reconstruct(x, y=y))
    torch.manual_seed(5)
    samples = model.sample(4, y=y)
    torch.manual_seed(5)
    with torch.no_grad():
        z = model.prior.sample(4)
        by_hand = torch.sigmoid(model.decoder(torch.cat([z, F.one_hot(y, 3).float()], dim=1)))
    assert torch.equal(samples, by_hand)
    # the label changes the image: the same z decoded with two labels
    z = torch.zeros(2, 2)
    with torch.no_grad():
        assert not torch.equal(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([0, 1])))
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
    with pytest.raises(ValueError, match="latent_dim >= 1 and n_classes >= 0"):
        AdversarialAutoencoder(64, 2, n_classes=-1)
    with pytest.raises(ValueError, match="divide by 255"):
        model.reconstruction_loss(255 * binary_data(2, 64))
    with pytest.raises(ValueError, match="float64"):
        model.encode(binary_data(2, 64).double())
    before = snapshot(model)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        ae_course.train(model, binary_data(8, 64), progress=False)
    with pytest.raises(ValueError, match="takes no labels"):
        ae_course.train(model, binary_data(8, 64), torch.zeros(8, dtype=torch.long), steps=1, progress=False)
    with pytest.raises(ValueError, match="pass y"):
        ae_course.train(AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=2), binary_data(8, 64), steps=1,
                        progress=False)
    with pytest.raises(ValueError, match="needs a SemiSupervisedAAE"):
        ae_course.train(model, binary_data(8, 64), labelled=(binary_data(2, 64), torch.tensor([0, 1])), steps=1,
                        progress=False)
    assert changed_modules(model, before) == set()


def test_an_input_with_a_nan_is_refused_before_any_update():
    model = AdversarialAutoencoder(64, 2, hidden=(16,))
    x = binary_data(8, 64)
    x[0, 0] = float("nan")
    before = snapshot(model)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ae_course.train(model, x, steps=1, batch_size=8, progress=False)
    assert changed_modules(model, before) == set()


class _NaNAtCall(AdversarialAutoencoder):
    """An AAE whose reconstruction loss turns NaN at its `nan_at`-th call (the `nan_at`-th training step)."""

    def __init__(self, nan_at, **kwargs):
        super().__init__(**kwargs)
        self.calls, self.nan_at = 0, nan_at

    def reconstruction_loss(self, x, y=None):
        self.calls += 1
        loss = super().reconstruction_loss(x, y)
        return loss * float("nan") if self.calls == self.nan_at else loss


@pytest.mark.parametrize("batch_size, where", [(8, "epoch 1, step 3; global step 3"),
                                               (16, "epoch 2, step 1; global step 3")])
def test_a_nan_loss_names_the_phase_the_epoch_and_the_step_and_keeps_the_last_finite_step(batch_size, where):
    x = binary_data(32, 64)
    torch.manual_seed(0)
    model = _NaNAtCall(3, input_dim=64, latent_dim=2, hidden=(16,))
    twin = copy.deepcopy(model)
    with pytest.raises(FloatingPointError, match=rf"reconstruction loss is nan.*\({where}\)") as caught:
        ae_course.train(model, x, steps=5, batch_size=batch_size, seed=4, progress=False)
    history = caught.value.history
    assert history.steps == 2 and history.epochs == (0 if batch_size == 8 else 1)
    ae_course.train(twin, x, steps=2, batch_size=batch_size, seed=4, progress=False)    # the two finite steps
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


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
    model = AdversarialAutoencoder(64, 2, hidden=(16,), n_classes=2)
    x, y = binary_data(40, 64), torch.arange(40) % 2
    history = ae_course.train(model, x, y, steps=3, batch_size=16, device="cuda", progress=False)
    assert history.device.startswith("cuda") and next(model.parameters()).is_cuda
    assert set(history.losses) == {"reconstruction", "discriminator", "generator"}
    assert model.sample(3, y=torch.tensor([0, 1, 0], device="cuda")).is_cuda
