"""The VQ-VAE, its quantizer and losses, codebook usage, and the PixelCNN prior over codes (ae_course.vq_vae)."""
import itertools
import math

import pytest
import torch
from torch.distributions import Categorical

import ae_course
from ae_course.vq_vae import (CodePrior, ConvDecoder, ConvEncoder, MaskedConvolution, VectorQuantizer, VQVAE,
                              codebook_loss, codebook_usage, commitment_loss, nearest_code, straight_through,
                              vq_log_likelihood_bound)


def binary(n, seed=0):
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)).round()


# ------------------------------------------------------------------------------------ networks


def test_conv_shapes_and_receptive_field():
    torch.manual_seed(0)
    enc, dec = ConvEncoder(code_dim=5, channels=(4, 6)), ConvDecoder(code_dim=5, channels=(4, 6))
    z = enc(binary(3))
    assert z.shape == (3, 5, 7, 7) and dec(z).shape == (3, 784)
    with torch.no_grad():
        for p in enc.parameters():
            p.abs_()
    x = torch.rand(1, 784, requires_grad=True)
    enc(x)[0, :, 0, 0].sum().backward()
    seen = (x.grad.reshape(28, 28) != 0).nonzero()
    assert seen.max(0).values.tolist() == [6, 6]  # the corner vector sees rows and columns 0..6 (then padding)


@pytest.mark.parametrize("bad", [torch.zeros(2, 783), torch.zeros(784), torch.zeros(2, 784, dtype=torch.int64),
                                 torch.full((2, 784), float("nan"))])
def test_encoder_refuses_bad_input(bad):
    with pytest.raises((ValueError, TypeError)):
        ConvEncoder()(bad)


def test_decoder_and_constructors_refuse_bad_input():
    with pytest.raises(ValueError):
        ConvDecoder(code_dim=8)(torch.zeros(2, 8, 6, 6))
    with pytest.raises(ValueError):
        ConvEncoder(channels=(4,))
    with pytest.raises(ValueError):
        VQVAE(beta=-1)
    with pytest.raises(ValueError):
        VectorQuantizer(n_codes=0)
    with pytest.raises(ValueError):
        VectorQuantizer(restart_after=0)


# ------------------------------------------------------------------------------------ quantization


def test_nearest_code_is_the_argmin_of_cdist():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, 5, 6, generator=gen)
    e = torch.randn(11, 3, generator=gen)
    codes = nearest_code(z, e)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    assert codes.shape == (4, 5, 6) and codes.dtype == torch.long
    assert torch.equal(codes.flatten(), torch.cdist(flat, e).argmin(1))
    with pytest.raises(ValueError):
        nearest_code(z, torch.randn(11, 4))


def test_straight_through_value_and_gradient():
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = straight_through(z_e, z_q)
    assert torch.allclose(out, z_q, atol=1e-6)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    assert torch.equal(z_e.grad, w) and z_q.grad is None


def test_each_loss_moves_one_side_only():
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    e = torch.randn(2, 3, 4, 4, requires_grad=True)
    expected = (z_e - e).detach().square().flatten(1).sum(1)
    cb, cm = codebook_loss(z_e, e), commitment_loss(z_e, e)
    assert cb.shape == cm.shape == (2,) and torch.allclose(cb, expected) and torch.allclose(cm, expected)
    g = torch.autograd.grad(cb.sum(), [z_e, e], allow_unused=True)
    assert g[0] is None and torch.allclose(g[1], 2 * (e - z_e).detach())
    g = torch.autograd.grad(cm.sum(), [z_e, e], allow_unused=True)
    assert g[1] is None and torch.allclose(g[0], 2 * (z_e - e).detach())


def test_vqvae_loss_by_hand_and_its_gradients():
    torch.manual_seed(0)
    model = VQVAE(n_codes=16, code_dim=4, channels=(4, 8), beta=0.3).eval()
    x = binary(5)
    loss = model.loss(x)
    z_e = model.encode(x)
    codes = nearest_code(z_e, model.quantizer.codebook.weight)
    e = model.quantizer.codebook.weight[codes].permute(0, 3, 1, 2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model.decode(e), x, reduction="none").sum(1)
    by_hand = bce + 1.3 * (z_e - e).square().flatten(1).sum(1)
    assert loss.shape == (5,) and torch.allclose(loss, by_hand, rtol=1e-5)
    loss.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError):
        model.loss(x, torch.zeros(5, dtype=torch.long))


def test_the_reconstruction_gradient_reaches_the_encoder_unchanged():
    torch.manual_seed(0)
    model = VQVAE(n_codes=8, code_dim=4, channels=(4, 8)).eval()
    x = binary(3)
    z_e = model.encode(x)
    q = model.quantizer(z_e)
    rec = -model.log_likelihood(x, model.decode(q.z_q)).sum()
    g_ze = torch.autograd.grad(rec, z_e, retain_graph=True)[0]
    leaf = q.z_q.detach().requires_grad_()
    g_zq = torch.autograd.grad(-model.log_likelihood(x, model.decode(leaf)).sum(), leaf)[0]
    assert torch.equal(g_ze, g_zq)
    assert torch.autograd.grad(rec, model.quantizer.codebook.weight, allow_unused=True)[0] is None


def test_codes_decode_codes_and_reconstruct():
    torch.manual_seed(0)
    model = VQVAE(n_codes=8, code_dim=4, channels=(4, 8))
    x = binary(3)
    codes = model.codes(x)
    assert codes.shape == (3, 7, 7) and int(codes.max()) < 8
    assert model.reconstruct(x).shape == (3, 784)
    assert torch.allclose(model.decode_codes(codes), model.decode(model.quantizer(model.encode(x)).z_q), atol=1e-5)
    for bad in (torch.full((1, 7, 7), 8), torch.full((1, 7, 7), -1), torch.full((1, 7, 7), 0.5), torch.zeros(7, 7)):
        with pytest.raises(ValueError):
            model.decode_codes(bad)


# ------------------------------------------------------------------------------------ dead codes


def test_restarts_revive_dead_codes_in_training_only():
    torch.manual_seed(0)
    q = VectorQuantizer(n_codes=4, code_dim=2, restart_after=3)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    z_e = 0.1 * torch.randn(2, 2, 3, 3)
    q.eval()
    for _ in range(5):
        q(z_e)
    assert q.restarts == 0 and q.step == 0                      # eval mode: no tracking, no restarts
    q.train()
    for _ in range(2):
        q(z_e)
    assert q.restarts == 0                                       # not dead long enough yet
    q(z_e)
    assert q.restarts == 3                                       # codes 1..3 unused for 3 steps
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in (1, 2, 3):
        assert (q.codebook.weight[k] - flat).abs().sum(1).min() < 1e-6  # moved onto an encoder output


def test_no_restarts_without_restart_after():
    q = VectorQuantizer(n_codes=4, code_dim=2)
    with torch.no_grad():
        q.codebook.weight[1:] = 100.0
    for _ in range(10):
        q(torch.zeros(1, 2, 2, 2))
    assert q.restarts == 0 and torch.all(q.codebook.weight[1:] == 100.0)


def test_codebook_usage():
    assert math.isclose(codebook_usage(torch.arange(8).repeat(3), 8).perplexity, 8)
    usage = codebook_usage(torch.zeros(2, 7, 7, dtype=torch.long), 5)
    assert math.isclose(usage.perplexity, 1.0) and usage.dead == 4 and usage.counts.tolist() == [98, 0, 0, 0, 0]
    codes = torch.tensor([0, 0, 0, 1])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(codebook_usage(codes, 3).perplexity, math.exp(h))
    for bad in (torch.tensor([], dtype=torch.long), torch.tensor([3]), torch.tensor([-1])):
        with pytest.raises(ValueError):
            codebook_usage(bad, 3)


# ------------------------------------------------------------------------------------ the prior


@pytest.mark.parametrize("mask", ["A", "B"])
def test_masked_convolution_is_causal(mask):
    torch.manual_seed(0)
    conv = MaskedConvolution(mask, 2, 3, 5)
    x = torch.randn(1, 2, 6, 6)
    base = conv(x)
    for i, j in itertools.product(range(6), range(6)):
        changed = x.clone()
        changed[0, :, i, j] += 1.0
        diff = (conv(changed) - base).abs().amax(dim=1)[0].flatten()
        pos = i * 6 + j
        first_affected = pos + 1 if mask == "A" else pos
        assert diff[:first_affected].max() == 0 if first_affected > 0 else True
    with pytest.raises(ValueError):
        MaskedConvolution("C", 1, 1, 3)
    with pytest.raises(ValueError):
        MaskedConvolution("A", 1, 1, 4)


def test_prior_is_a_normalized_distribution_over_grids():
    torch.manual_seed(0)
    prior = CodePrior(n_codes=3, grid=(2, 2), channels=8, layers=1, kernel_size=3)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))                      # away from the uniform start
        grids = torch.tensor(list(itertools.product(range(3), repeat=4))).reshape(-1, 2, 2)
        log_p = prior.log_prob(grids)
    assert log_p.shape == (81,) and torch.isclose(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-5)
    # the chain rule, position by position, with torch.distributions
    with torch.no_grad():
        logits = prior.logits(grids).permute(0, 2, 3, 1)
    by_hand = Categorical(logits=logits).log_prob(grids).flatten(1).sum(1)
    assert torch.allclose(log_p, by_hand, atol=1e-5)


def test_prior_samples_follow_log_prob():
    torch.manual_seed(0)
    prior = CodePrior(n_codes=2, grid=(1, 2), channels=8, layers=1, kernel_size=3)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p))
        grids = torch.tensor([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]])
        probs = prior.log_prob(grids).exp()
    samples = prior.sample(20000, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (20000, 1, 2) and samples.dtype == torch.long
    freq = torch.bincount((2 * samples[:, 0, 0] + samples[:, 0, 1]), minlength=4).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015), (freq, probs)


def test_prior_loss_and_errors():
    prior = CodePrior(n_codes=4, grid=(7, 7))
    codes = torch.randint(4, (3, 7, 7))
    assert torch.allclose(prior.loss(codes.flatten(1).float()), -prior.log_prob(codes))
    with pytest.raises(ValueError):
        prior.loss(codes.float())                                  # not flattened
    with pytest.raises(ValueError):
        prior.loss(codes.flatten(1).float() + 0.5)                 # not whole numbers
    with pytest.raises(ValueError):
        prior.log_prob(torch.randint(4, (3, 6, 7)))
    with pytest.raises(ValueError):
        prior.sample(0)
    with pytest.raises(ValueError):
        CodePrior(n_codes=1)


def test_bound_by_hand_and_training():
    torch.manual_seed(0)
    model = VQVAE(n_codes=8, code_dim=4, channels=(4, 8))
    x = binary(64)
    history = ae_course.train(model, x, steps=3, batch_size=32, progress=False)
    assert history.steps == 3 and math.isfinite(history.losses["loss"][-1])
    prior = CodePrior(n_codes=8, channels=8)
    codes = model.codes(x)
    ae_course.train(prior, codes.flatten(1).float(), steps=3, batch_size=32, progress=False)
    result = vq_log_likelihood_bound(model, prior, x[:10], batch_size=4)
    with torch.no_grad():
        c = model.codes(x[:10])
        log_px_z = model.log_likelihood(x[:10], model.decode_codes(c))
        expected = log_px_z + prior.log_prob(c)
    assert torch.allclose(result.bound, expected, atol=1e-4) and (result.bound <= result.log_likelihood).all()
    with pytest.raises(ValueError):
        vq_log_likelihood_bound(model, CodePrior(n_codes=4), x)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(n_codes=8, code_dim=4, channels=(4, 8), restart_after=5)
    ae_course.save_checkpoint(tmp_path / "vq.pt", model)
    other = VQVAE(n_codes=8, code_dim=4, channels=(4, 8), restart_after=5)
    ae_course.load_checkpoint(tmp_path / "vq.pt", other)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    with pytest.raises(ValueError):
        ae_course.load_checkpoint(tmp_path / "vq.pt", VQVAE(n_codes=16, code_dim=4, channels=(4, 8)))
