"""The corruption processes have the right statistics and the denoising autoencoder's loss targets the clean x."""
import functools
import math

import pytest
import torch

import ae_course
from ae_course.corruption import gaussian_noise, masking_noise, random_translation, salt_and_pepper
from ae_course.denoising import DenoisingAutoencoder


def _images(n=200, d=784, seed=0):
    return 0.05 + 0.95 * torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_masking_zeroes_the_right_fraction_and_only_zeroes(fraction):
    x = _images()
    noisy = masking_noise(x, fraction, generator=torch.Generator().manual_seed(1))
    assert noisy.shape == x.shape and noisy.dtype == x.dtype
    zero = noisy == 0
    assert ((noisy == x) | zero).all()          # only erases, never adds ink
    assert (noisy <= x).all()
    se = math.sqrt(fraction * (1 - fraction) / x.numel())
    assert abs(zero.double().mean().item() - fraction) <= 5 * se + 1e-12
    # independent per image: the per-image fractions spread like a binomial, not 0/1
    if 0 < fraction < 1:
        per_image = zero.double().mean(1)
        assert per_image.std().item() < 3 * math.sqrt(fraction * (1 - fraction) / x.shape[1])
        assert not (zero == zero[:1]).all()


def test_masking_is_fresh_and_reproducible():
    x = _images(10)
    assert not torch.equal(masking_noise(x, 0.5), masking_noise(x, 0.5))
    a = masking_noise(x, 0.5, generator=torch.Generator().manual_seed(3))
    b = masking_noise(x, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    x_before = x.clone()
    masking_noise(x, 0.5)
    assert torch.equal(x, x_before)


def test_gaussian_noise_statistics_and_clip():
    x = torch.full((400, 784), 0.5)
    raw = gaussian_noise(x, 0.3, clip=False, generator=torch.Generator().manual_seed(0))
    eps = raw - x
    n = eps.numel()
    assert abs(eps.mean().item()) < 5 * 0.3 / math.sqrt(n)
    assert abs(eps.std().item() - 0.3) < 5 * 0.3 / math.sqrt(2 * n)
    clipped = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(clipped, raw.clamp(0, 1))      # same draw, then clipped
    assert torch.equal(gaussian_noise(x, 0.0), x)


def test_salt_and_pepper():
    x = torch.full((400, 784), 0.5)
    noisy = salt_and_pepper(x, 0.2, generator=torch.Generator().manual_seed(0))
    hit = noisy != 0.5
    assert ((noisy[hit] == 0) | (noisy[hit] == 1)).all()
    se = math.sqrt(0.2 * 0.8 / x.numel())
    assert abs(hit.double().mean().item() - 0.2) < 5 * se
    assert abs((noisy[hit] == 1).double().mean().item() - 0.5) < 0.02


@pytest.mark.parametrize("call, needle", [
    (lambda x: masking_noise(x, -0.1), "fraction must be in [0.0, 1.0]"),
    (lambda x: masking_noise(x, 1.5), "fraction must be in"),
    (lambda x: masking_noise(x, float("nan")), "fraction must be in"),
    (lambda x: masking_noise(x, "a lot"), "fraction must be a number"),
    (lambda x: salt_and_pepper(x, 2.0), "fraction must be in"),
    (lambda x: gaussian_noise(x, -1.0), "std must be >= 0"),
    (lambda x: masking_noise((x * 255).to(torch.uint8), 0.5), "floating-point"),
    (lambda x: gaussian_noise(x.numpy(), 0.1), "torch.Tensor"),
])
def test_bad_arguments_raise(call, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        call(_images(2))


def test_random_translation_moves_each_image_by_its_own_whole_shift():
    """A single lit pixel moves by (dy, dx) in {-2..2}^2, one shift per image; ink that leaves the frame is lost."""
    x = torch.zeros(400, 784)
    x[:, 14 * 28 + 14] = 1.0
    out = random_translation(x, 2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out.sum(dim=1), torch.ones(400))     # nothing lost inside
    rows, cols = out.argmax(dim=1) // 28 - 14, out.argmax(dim=1) % 28 - 14
    shifts = set(zip(rows.tolist(), cols.tolist()))
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}       # all 25, each image its own
    image = torch.rand(3, 784)
    moved = random_translation(image, 3, generator=torch.Generator().manual_seed(1)).reshape(3, 28, 28)
    for i in range(3):                                 # each output is its input shifted, zeros moved in
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if torch.equal(moved[i], torch.roll(image[i].reshape(28, 28), (dy, dx), (0, 1))
                                  * _frame(dy, dx))]
        assert len(matches) == 1
    assert torch.equal(random_translation(image, 0), image)
    edge = torch.zeros(1, 784)
    edge[0, 0] = 1.0                                   # the corner pixel leaves the frame for some shifts
    assert random_translation(edge.repeat(200, 1), 1).sum() < 200


def _frame(dy, dx):
    """1 where a pixel shifted by (dy, dx) came from inside the 28 x 28 frame, 0 where it came from outside."""
    keep = torch.ones(28, 28)
    if dy > 0:
        keep[:dy] = 0
    elif dy < 0:
        keep[dy:] = 0
    if dx > 0:
        keep[:, :dx] = 0
    elif dx < 0:
        keep[:, dx:] = 0
    return keep


@pytest.mark.parametrize("x, shift, needle", [
    (torch.rand(2, 783), 1, "not a square image"),
    (torch.rand(784), 1, "flattened square images"),
    (torch.rand(2, 784), 1.5, "whole number"),
    (torch.rand(2, 784), 28, "max_shift must be in"),
    (torch.randint(0, 2, (2, 784)), 1, "floating-point"),
])
def test_random_translation_refuses_bad_arguments(x, shift, needle):
    with pytest.raises(ValueError, match=needle):
        random_translation(x, shift)


def test_dae_rejects_a_non_callable_corruption():
    with pytest.raises(ValueError, match="callable"):
        DenoisingAutoencoder(corruption=0.5)


def test_dae_is_an_autoencoder_and_its_loss_targets_the_clean_input():
    torch.manual_seed(0)
    corruption = functools.partial(masking_noise, fraction=0.5)
    dae = DenoisingAutoencoder(corruption=corruption, latent_dim=8, hidden=(32,))
    assert isinstance(dae, ae_course.Autoencoder)
    x = _images(16)
    torch.manual_seed(5)
    ours = dae.loss(x)
    torch.manual_seed(5)
    corrupted = corruption(x)                      # the same corruption draw
    # -log p(x | z = f(x~)): the Autoencoder's log-likelihood of the CLEAN x at the corrupted input
    torch.testing.assert_close(ours, -dae.log_likelihood(x, dae(corrupted)))
    # ... which, for the Bernoulli decoder, is the cross-entropy of x against the reconstruction of x~
    torch.testing.assert_close(ours, torch.nn.functional.binary_cross_entropy_with_logits(
        dae(corrupted), x, reduction="none").sum(1))
    # not the plain objective on the corrupted input, nor the plain loss on the clean one
    assert not torch.allclose(ours, ae_course.Autoencoder.loss(dae, corrupted))
    assert not torch.allclose(ours, ae_course.Autoencoder.loss(dae, x))
    assert (corrupted == 0).any() and not torch.equal(corrupted, x)
    # no corruption at test time: reconstruct is deterministic
    assert torch.equal(dae.reconstruct(x), dae.reconstruct(x))
    assert torch.equal(dae.encode(x), ae_course.Autoencoder.encode(dae, x))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_identity_corruption_gives_the_plain_loss(likelihood):
    torch.manual_seed(0)
    dae = DenoisingAutoencoder(corruption=lambda x: x, latent_dim=4, hidden=(16,), likelihood=likelihood)
    assert dae.likelihood == likelihood and dae.config["likelihood"] == likelihood
    x = _images(8)
    torch.testing.assert_close(dae.loss(x), ae_course.Autoencoder.loss(dae, x))
    x_hat = torch.sigmoid(dae(x))
    expected = (0.5 * (x - x_hat).pow(2).sum(1) + 392 * math.log(2 * math.pi) if likelihood == "gaussian"
                else -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(1))
    torch.testing.assert_close(dae.loss(x), expected, rtol=1e-4, atol=1e-3)


def test_dae_refuses_labels_and_bad_x():
    dae = DenoisingAutoencoder(corruption=functools.partial(masking_noise, fraction=0.5), latent_dim=4, hidden=(16,))
    x = _images(4)
    with pytest.raises(ValueError, match="not conditioned on a label"):
        dae.loss(x, torch.zeros(4, dtype=torch.long))
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        dae.loss(bad)
    with pytest.raises(ValueError, match="divide by 255"):
        DenoisingAutoencoder(corruption=lambda x: x, latent_dim=4, hidden=(16,)).loss(x * 255)


def test_training_reduces_the_denoising_loss():
    gen = torch.Generator().manual_seed(0)
    # a toy data set: 10 prototype "digits" with small jitter
    protos = (torch.rand(10, 64, generator=gen) > 0.6).float()
    x = (protos[torch.randint(0, 10, (500,), generator=gen)] + 0.05 * torch.rand(500, 64, generator=gen)).clamp(0, 1)
    torch.manual_seed(0)
    dae = DenoisingAutoencoder(corruption=functools.partial(masking_noise, fraction=0.3),
                               input_dim=64, latent_dim=8, hidden=(64,))
    before = ae_course.evaluate(dae, x)
    ae_course.train(dae, x, steps=150, batch_size=50, lr=3e-3, seed=0, progress=False)
    after = ae_course.evaluate(dae, x)
    assert after < 0.6 * before, (before, after)
