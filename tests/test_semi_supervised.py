"""The semi-supervised adversarial autoencoder: its two codes, the four phases, training with a few labels."""
import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F

import ae_course
from ae_course import SemiSupervisedAAE
from ae_course.aae import adversarial_step, make_optimizers
from ae_course.corruption import gaussian_noise
from ae_course.models import ConvEncoder

from helpers import binary_data, record_phases

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _small(**kwargs):
    return SemiSupervisedAAE(64, **{"n_classes": 3, "style_dim": 2, "hidden": (16,), **kwargs})


def test_the_encoder_splits_class_logits_and_style_and_the_decoder_reads_both():
    model, x = _small(), binary_data(5, 64)
    y_logits, z = model.encode(x)
    with torch.no_grad():
        out = model.encoder(x)
    assert torch.equal(y_logits, out[:, :3]) and torch.equal(z, out[:, 3:])
    assert model.decoder[0].in_features == 3 + 2
    with torch.no_grad():                       # reconstruction: decoded from (softmax(y_logits), z)
        by_hand = torch.sigmoid(model.decoder(torch.cat([out[:, :3].softmax(dim=1), out[:, 3:]], dim=1)))
    assert torch.equal(model.reconstruct(x), by_hand)
    assert torch.allclose(model.reconstruction_loss(x),
                          F.binary_cross_entropy(by_hand, x, reduction="none").sum(dim=1), atol=1e-4)


def test_corruption_and_dropout_act_in_train_mode_only():
    """The regularizers of the semi-supervised recipe: the encoder reads corruption(x) and both networks
    drop units while training; classify() and every evaluation see the clean image and the whole network."""
    x = binary_data(6, 64)
    torch.manual_seed(0)
    plain = _small()
    torch.manual_seed(0)
    noisy = _small(corruption=functools.partial(gaussian_noise, std=0.3, clip=False))
    noisy.train()
    torch.manual_seed(1)
    eps = torch.randn_like(x)
    torch.manual_seed(1)
    y_logits, z = noisy.encode(x)
    with torch.no_grad():
        by_hand = plain.encoder(x + 0.3 * eps)
    assert torch.allclose(torch.cat([y_logits, z], dim=1), by_hand)
    noisy.eval()
    assert torch.equal(noisy.encode(x)[0], plain.encode(x)[0])      # eval: no corruption
    model = _small(dropout=0.5, hidden=(32, 32))
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.encoder) == 2
    assert model.config["dropout"] == 0.5 and model.config["corruption"] == "None"
    model.eval()
    assert torch.equal(model.classify(x), model.classify(x))
    with pytest.raises(ValueError, match="corruption must be a callable"):
        _small(corruption=0.3)
    with pytest.raises(ValueError, match="dropout"):
        _small(dropout=1.5)


def test_an_encoder_passed_in_replaces_the_default_mlp():
    encoder = ConvEncoder(64, 3 + 2, channels=(4, 8), hidden=16)
    model = _small(encoder=encoder)
    assert model.encoder is encoder and model.config["encoder"] == "ConvEncoder"
    y_logits, z = model.encode(binary_data(5, 64))
    assert y_logits.shape == (5, 3) and z.shape == (5, 2)
    with pytest.raises(ValueError, match="nn.Module"):
        _small(encoder=lambda x: x)


def test_decode_takes_the_code_first_and_the_label_last():
    """decode(z, y): y as class indices or as probability vectors, the one-hot placed before z."""
    model = _small()
    z, y = torch.randn(4, 2), torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        by_hand = model.decoder(torch.cat([F.one_hot(y, 3).float(), z], dim=1))
        assert torch.equal(model.decode(z, y), by_hand)
        assert torch.equal(model.decode(z, y=y), by_hand)
        assert torch.equal(model.decode(z, F.one_hot(y, 3).float()), by_hand)
        soft = torch.tensor([[0.2, 0.3, 0.5]]).expand(4, 3)
        assert torch.equal(model.decode(z, soft), model.decoder(torch.cat([soft, z], dim=1)))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):     # the old order, decode(y, z), is refused
        model.decode(y, z)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        model.decode(z, torch.tensor([0, 1, 2, 3]))


def test_sample_decodes_prior_samples_with_the_given_or_uniform_labels():
    model = _small()
    y = torch.tensor([0, 2, 1])
    torch.manual_seed(3)
    samples = model.sample(3, y=y)
    torch.manual_seed(3)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(torch.cat([F.one_hot(y, 3).float(), model.prior.sample(3)], dim=1)))
    assert torch.equal(samples, expected)
    torch.manual_seed(4)
    samples = model.sample(5)
    torch.manual_seed(4)
    with torch.no_grad():
        z = model.prior.sample(5)
        y_onehot = model.class_prior.sample(5)          # uniform one-hot classes, drawn after z
        expected = torch.sigmoid(model.decoder(torch.cat([y_onehot, z], dim=1)))
    assert torch.equal(samples, expected)
    assert y_onehot.sum(dim=1).eq(1).all()


def test_classification_loss_is_the_cross_entropy_and_classify_the_argmax():
    model, x, labels = _small(), binary_data(6, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    y_logits, _ = model.encode(x)
    assert torch.allclose(model.classification_loss(x, labels), -y_logits.log_softmax(dim=1)[range(6), labels])
    predicted = model.classify(x, batch_size=4)
    assert predicted.dtype == torch.int64 and torch.equal(predicted, y_logits.argmax(dim=1))
    assert model.training                                  # classify restores the mode it found


def test_each_phase_updates_only_its_parameters():
    """Through the real adversarial_step: each optimizer's step changes exactly the networks of its phase."""
    model, x, labels = _small(), binary_data(12, 64), torch.tensor([0, 1, 2] * 4)
    opts = model.make_optimizers()
    assert set(opts) == {"reconstruction", "discriminator", "generator", "classification"}
    changed, handles = record_phases(model, opts)
    try:
        adversarial_step(model, opts, x, labelled=(x, labels))
    finally:
        for handle in handles:
            handle.remove()
    assert list(changed) == ["reconstruction", "discriminator", "generator", "classification"]
    assert changed == {"reconstruction": {"encoder", "decoder"},
                       "discriminator": {"discriminator_y", "discriminator_z"},
                       "generator": {"encoder"}, "classification": {"encoder"}}


def test_make_optimizers_adds_a_classification_optimizer_over_the_encoder():
    model = _small()
    opts = make_optimizers(model, lr=2e-3)
    ids = {id(t) for group in opts["classification"].param_groups for t in group["params"]}
    assert ids == {id(t) for t in model.encoder.parameters()} and opts["classification"].defaults["lr"] == 2e-3
    ids = {id(t) for group in opts["discriminator"].param_groups for t in group["params"]}
    assert ids == {id(t) for d in (model.discriminator_y, model.discriminator_z) for t in d.parameters()}
    assert list(model.discriminators) == [model.discriminator_y, model.discriminator_z]


def test_adversarial_step_returns_each_phase_loss():
    model = _small()
    x, labels = binary_data(12, 64), torch.tensor([0, 1, 2] * 4)
    losses = adversarial_step(model, make_optimizers(model), x, labelled=(x, labels))
    assert list(losses) == ["reconstruction", "discriminator", "generator", "classification"]
    assert all(v.dim() == 0 and not v.requires_grad and math.isfinite(v) for v in losses.values())
    assert losses["classification"].item() == pytest.approx(math.log(3), rel=0.2)     # untrained: near uniform
    without = adversarial_step(model, make_optimizers(model), x)
    assert list(without) == ["reconstruction", "discriminator", "generator"]


def _old_loop(model, x, labelled, *, steps, batch_size, seed, optimizers):
    """The loop of the former ae_course.aae.train_adversarial for the semi-supervised AAE, written out: per
    epoch one randperm; per step, after the minibatch, min(batch_size, M) labelled rows drawn with replacement."""
    steps_per_epoch = math.ceil(len(x) / batch_size)
    torch.manual_seed(seed)
    model.train()
    done = 0
    while done < steps:
        order = torch.randperm(len(x))
        for i in range(min(steps_per_epoch, steps - done)):
            rows = order[i * batch_size:(i + 1) * batch_size]
            pick = torch.randint(len(labelled[0]), (min(batch_size, len(labelled[0])),))
            adversarial_step(model, optimizers, x[rows], None, (labelled[0][pick], labelled[1][pick]))
            done += 1
    model.eval()


def test_train_with_labelled_examples_is_the_former_train_adversarial():
    x, labels = binary_data(90, 64), torch.arange(90) % 3
    labelled = (x[:6], labels[:6])
    torch.manual_seed(2)
    model = _small()
    twin = copy.deepcopy(model)
    history = ae_course.train(model, x, labelled=labelled, steps=7, batch_size=40, seed=5, progress=False)
    rng_after_train = torch.get_rng_state()
    _old_loop(twin, x, labelled, steps=7, batch_size=40, seed=5, optimizers=twin.make_optimizers())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    assert torch.equal(torch.get_rng_state(), rng_after_train)
    assert history.steps == 7 and history.epochs == 3
    assert set(history.losses) == {"reconstruction", "discriminator", "generator", "classification"}


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
    ae_course.train(model, x, labelled=(x[few], labels[few]), steps=200, batch_size=50, progress=False)
    predicted = model.classify(x)
    assert predicted.shape == (400,) and predicted.dtype == torch.int64
    assert (predicted == labels).float().mean() > 0.95


def test_wrong_inputs_raise_clear_errors():
    semi = _small()
    with pytest.raises(ValueError, match="n_classes >= 2 and style_dim >= 1"):
        SemiSupervisedAAE(64, n_classes=1)
    with pytest.raises(ValueError, match="prior has dimension"):
        SemiSupervisedAAE(64, style_dim=3, prior=ae_course.GaussianPrior(2))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        semi.classification_loss(binary_data(2, 64), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer tensor"):
        semi.classification_loss(binary_data(2, 64), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="as many"):
        ae_course.train(semi, binary_data(8, 64), labelled=(binary_data(2, 64), torch.tensor([0])), steps=1,
                        progress=False)
    with pytest.raises(ValueError, match="divide by 255"):
        ae_course.train(semi, 255 * binary_data(8, 64), steps=1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_runs_on_cuda():
    model = SemiSupervisedAAE(64, n_classes=2, style_dim=2, hidden=(16,))
    x = binary_data(40, 64)
    history = ae_course.train(model, x, labelled=(x[:4], torch.tensor([0, 1, 0, 1])), steps=3, device="cuda",
                              progress=False)
    assert history.device.startswith("cuda") and model.classify(x).shape == (40,)
    assert model.sample(3, y=torch.tensor([0, 1, 0])).is_cuda


def test_labels_for_every_image_are_refused_with_a_pointer_to_labelled():
    torch.manual_seed(0)
    model = SemiSupervisedAAE(input_dim=12, n_classes=3, style_dim=2, hidden=(16,), discriminator_hidden=(8,))
    x, y = torch.rand(20, 12), torch.randint(3, (20,))
    with pytest.raises(ValueError, match=r"labelled=\(x_l, y_l\)"):
        ae_course.train(model, x, y, epochs=1, batch_size=10, progress=False)
