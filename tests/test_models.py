"""The package core: MLP builders, the Autoencoder, the training loop, the plotting helpers."""
import math

import matplotlib
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

import ae_course
from ae_course.models import log_likelihood
from ae_course.plotting import image_grid, latent_scatter


def test_mlp_layer_sizes_and_activation():
    net = ae_course.mlp([784, 500, 2], activation="tanh")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 2)]
    assert isinstance(net[1], nn.Tanh) and len(net) == 3  # no activation after the last layer


def test_mlp_dropout_after_every_hidden_activation_only_in_train_mode():
    net = ae_course.mlp([20, 30, 30, 5], dropout=0.5)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    x = torch.randn(8, 20)
    net.eval()
    assert torch.equal(net(x), net(x))                   # eval mode: deterministic
    net.train()
    assert not torch.equal(net(x), net(x))               # train mode: a fresh mask per call
    with pytest.raises(ValueError, match="dropout must be a probability"):
        ae_course.mlp([20, 5], dropout=1.0)


def test_conv_encoder_shapes_and_refusals():
    net = ae_course.models.ConvEncoder(784, 14, channels=(16, 32), hidden=256, dropout=0.2)
    x = torch.rand(5, 784)
    assert net(x).shape == (5, 14)
    net.eval()
    assert torch.equal(net(x), net(x))
    assert net.head[1].in_features == 32 * 7 * 7                  # 28 -> 14 -> 7
    with pytest.raises(ValueError, match="square input_dim"):
        ae_course.models.ConvEncoder(783, 14)
    with pytest.raises(ValueError, match=r"shape \(B, 784\)"):
        net(torch.rand(5, 28, 28))


@pytest.mark.parametrize("sizes, activation, match", [
    ([784], "relu", "at least an input and an output"),
    ([784, 0, 2], "relu", "positive"),
    ([784, 2], "swish", "unknown activation"),
])
def test_mlp_rejects_bad_arguments(sizes, activation, match):
    with pytest.raises(ValueError, match=match):
        ae_course.mlp(sizes, activation)


def test_autoencoder_shapes_and_values():
    torch.manual_seed(0)
    model = ae_course.Autoencoder(latent_dim=3, hidden=(32,))
    x = torch.rand(5, 784)
    z = model.encode(x)
    torch.testing.assert_close(z, model.encoder(x))
    assert z.shape == (5, 3)
    logits = model(x)
    torch.testing.assert_close(logits, model.decoder(model.encoder(x)))
    assert logits.shape == (5, 784)
    x_hat = model.reconstruct(x)
    torch.testing.assert_close(x_hat, torch.sigmoid(logits).detach())
    assert x_hat.min() >= 0 and x_hat.max() <= 1 and not x_hat.requires_grad
    # the loss of grey levels: the binary cross-entropy summed over pixels, one value per image
    expected = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    torch.testing.assert_close(model.loss(x), expected)


@pytest.mark.parametrize("bad", [torch.rand(784), torch.rand(2, 783), torch.rand(0, 784), torch.ones(2, 784, dtype=torch.long)])
def test_autoencoder_rejects_bad_input(bad):
    with pytest.raises(ValueError, match=r"x must"):
        ae_course.Autoencoder(hidden=(8,)).encode(bad)


def test_unknown_likelihood_raises():
    with pytest.raises(ValueError, match="unknown likelihood 'l1'"):
        ae_course.Autoencoder(likelihood="l1")
    with pytest.raises(ValueError, match="unknown likelihood"):
        log_likelihood(torch.zeros(1, 3), torch.zeros(1, 3), "mse")
    with pytest.raises(TypeError):  # the old keyword is gone
        ae_course.Autoencoder(loss="bce")
    assert ae_course.LIKELIHOODS == ("bernoulli", "gaussian")


def test_losses_are_the_negative_log_likelihoods_of_torch_distributions():
    """Bernoulli: the binary cross-entropy summed over pixels; Gaussian: -log N(x; sigmoid(logits), I), which is
    1/2 the squared error + D/2 log(2 pi) (no longer the squared error itself)."""
    torch.manual_seed(0)
    x_binary, x_grey = torch.rand(4, 784).round(), torch.rand(4, 784)
    bernoulli = ae_course.Autoencoder(latent_dim=2, hidden=(16,), likelihood="bernoulli")
    assert bernoulli.likelihood == "bernoulli" and ae_course.Autoencoder(hidden=(8,)).likelihood == "bernoulli"
    logits = bernoulli(x_binary)
    expected = -Independent(Bernoulli(logits=logits), 1).log_prob(x_binary)
    torch.testing.assert_close(bernoulli.loss(x_binary), expected)
    torch.testing.assert_close(
        bernoulli.loss(x_binary), nn.functional.binary_cross_entropy_with_logits(logits, x_binary, reduction="none").sum(1))

    gaussian = ae_course.Autoencoder(latent_dim=2, hidden=(16,), likelihood="gaussian")
    for x in (x_binary, x_grey, x_grey - 0.5):  # any real x: the Gaussian likelihood has no range
        logits = gaussian(x)
        expected = -Normal(torch.sigmoid(logits), 1.0).log_prob(x).sum(1)
        torch.testing.assert_close(gaussian.loss(x), expected)
        half_squared_error = 0.5 * ((x - torch.sigmoid(logits)) ** 2).sum(1)
        torch.testing.assert_close(gaussian.loss(x), half_squared_error + 392 * math.log(2 * math.pi))
        torch.testing.assert_close(gaussian.log_likelihood(x, logits), -expected)


def test_autoencoder_refuses_labels():
    model = ae_course.Autoencoder(hidden=(8,))
    x = torch.rand(2, 784)
    for call in (model.encode, model.loss, model.reconstruct, model):
        with pytest.raises(ValueError, match="not conditioned on a label"):
            call(x, torch.tensor([0, 1]))


@pytest.mark.parametrize("bad, count", [(float("nan"), 1), (float("inf"), 1), (-float("inf"), 1)])
def test_autoencoder_refuses_non_finite_x(bad, count):
    model = ae_course.Autoencoder(hidden=(8,))
    x = torch.rand(3, 784)
    x[1, 5] = bad
    for call in (model.encode, model, model.loss, model.reconstruct):
        with pytest.raises(ValueError, match=rf"^x has {count} NaN or infinite entries"):
            call(x)
    z = torch.zeros(2, 2)
    z[0, 0] = bad
    with pytest.raises(ValueError, match="^z has 1 NaN"):
        model.decode(z)


def test_autoencoder_refuses_float64_x_and_says_how_to_cast():
    model = ae_course.Autoencoder(hidden=(8,))
    x = torch.rand(2, 784, dtype=torch.float64)
    for call in (model.encode, model, model.loss):
        with pytest.raises(ValueError, match=r"x is torch\.float64 but the model's parameters are torch\.float32; "
                                             r"convert with x\.to\(torch\.float32\)"):
            call(x)
    # the suggested cast works, and so does the other one
    torch.testing.assert_close(model.loss(x.to(torch.float32)).double(), model.double().loss(x), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("scale", [255.0, 2.0, -1.0])
def test_bernoulli_autoencoder_refuses_x_outside_the_unit_interval(scale):
    model = ae_course.Autoencoder(hidden=(8,))
    x = torch.rand(2, 784) * scale
    match = r"x must lie in \[0, 1\] for a Bernoulli likelihood" + (r".*divide by 255" if scale > 1 else "")
    with pytest.raises(ValueError, match=match):
        model.loss(x)
    if scale < 0:
        with pytest.raises(ValueError) as err:
            model.loss(x)
        assert "255" not in str(err.value)  # no hint where it does not apply
    # the Gaussian decoder is defined for any real x
    gaussian = ae_course.Autoencoder(hidden=(8,), likelihood="gaussian")
    assert torch.isfinite(gaussian.loss(x)).all()


def _tiny_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 784, generator=g) > 0.7).float()
    return prototypes[torch.randint(0, 4, (n,), generator=g)]


def test_schedulers_step_once_per_training_step():
    """ExponentialLR with gamma = 0.1 ** (1 / steps) ends the run at a tenth of the rate; an unscheduled
    optimizer keeps its rate."""
    x = _tiny_data(64)
    model = ae_course.Autoencoder(latent_dim=2, hidden=(8,))
    opt = ae_course.adam(model.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / 20))
    ae_course.train(model, x, steps=20, batch_size=16, optimizers=opt, schedulers=[decay], progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3, rel=1e-9)
    plain = ae_course.adam(model.parameters(), lr=1e-2)
    ae_course.train(model, x, steps=5, batch_size=16, optimizers=plain, progress=False)
    assert plain.param_groups[0]["lr"] == 1e-2


def test_training_reduces_loss_and_records_history():
    x = _tiny_data()
    torch.manual_seed(0)
    model = ae_course.Autoencoder(latent_dim=2, hidden=(32,))
    before = ae_course.evaluate(model, x)
    history = ae_course.train(model, x, epochs=15, batch_size=32, lr=3e-3, x_val=x[:50], progress=False)
    assert len(history.train_loss) == 15 and len(history.val_loss) == 15
    assert history.steps == 15 * math.ceil(200 / 32)
    assert ae_course.evaluate(model, x) < 0.5 * before
    assert history.train_loss[-1] < history.train_loss[0]


def test_training_is_reproducible_with_a_seed():
    x = _tiny_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = ae_course.Autoencoder(latent_dim=2, hidden=(16,))
        history = ae_course.train(model, x, epochs=3, batch_size=16, seed=7, progress=False)
        runs.append((history.train_loss, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


class _PoisonedAutoencoder(ae_course.Autoencoder):
    """An autoencoder whose loss is NaN for the examples marked by a pixel of 0.5 (the data are 0/1 otherwise)."""

    def loss(self, x, y=None):
        marked = x[:, 3] == 0.5
        return super().loss(x, y) + torch.where(marked, torch.tensor(float("nan")), torch.tensor(0.0)).to(x)


def test_nan_loss_stops_training_naming_the_step_and_keeps_parameters():
    x = _tiny_data(64)
    x[40, 3] = 0.5  # in one of the two batches of 32 of the first epoch
    torch.manual_seed(0)
    model = _PoisonedAutoencoder(latent_dim=2, hidden=(16,))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"loss is nan.*\(epoch 1, step [12]; global step [12]\)") as err:
        ae_course.train(model, x, epochs=2, batch_size=32, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert err.value.history.epochs == 0
    if err.value.history.steps == 0:  # the marked example was in the first batch: nothing was updated
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_refuses_bad_x_before_any_update():
    x = _tiny_data(64)
    model = ae_course.Autoencoder(latent_dim=2, hidden=(16,))
    before = [p.detach().clone() for p in model.parameters()]
    bad = x.clone()
    bad[40, 3] = float("nan")
    with pytest.raises(ValueError, match="^x has 1 NaN or infinite entries"):
        ae_course.train(model, bad, epochs=1, progress=False)
    with pytest.raises(ValueError, match="^x_val has 1 NaN or infinite entries"):
        ae_course.train(model, x, epochs=1, x_val=bad, progress=False)
    with pytest.raises(ValueError, match=r"convert with x\.to\(torch\.float32\)"):
        ae_course.train(model, x.double(), epochs=1, progress=False)
    with pytest.raises(ValueError, match="divide by 255"):
        ae_course.train(model, x * 255, epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_rejects_bad_arguments():
    model = ae_course.Autoencoder(hidden=(8,))
    with pytest.raises(ValueError):
        ae_course.train(model, torch.rand(10, 784), epochs=0)
    with pytest.raises(ValueError, match="empty"):
        ae_course.train(model, torch.rand(0, 784), epochs=1)


def test_get_device(monkeypatch):
    monkeypatch.delenv("AE_COURSE_DEVICE", raising=False)
    assert ae_course.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("AE_COURSE_DEVICE", "cpu")
    assert ae_course.get_device() == torch.device("cpu")
    monkeypatch.setenv("AE_COURSE_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="unknown device"):
        ae_course.get_device()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            ae_course.get_device("cuda")


def test_image_grid_and_latent_scatter():
    matplotlib.use("Agg", force=True)  # tests only; never in a chapter
    ax = image_grid(torch.rand(23, 784), nrow=10, row_labels=["a", "b", "c"])
    canvas = ax.images[0].get_array()
    assert canvas.shape == (3 * 29 + 1, 10 * 29 + 1)
    with pytest.raises(ValueError, match="cannot be split"):
        image_grid(torch.rand(2, 100))
    ax = latent_scatter(torch.randn(50, 2), torch.randint(0, 10, (50,)))
    assert len(ax.collections[0].get_offsets()) == 50
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        latent_scatter(torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="labels"):
        latent_scatter(torch.randn(5, 2), torch.zeros(4))


def test_training_by_steps_gives_the_same_budget_on_any_data_size():
    for n in (50, 1000):
        model = ae_course.Autoencoder(latent_dim=2, hidden=(8,))
        history = ae_course.train(model, _tiny_data(n), steps=20, batch_size=32, progress=False)
        assert history.steps == 20
        assert len(history.train_loss) == math.ceil(20 / math.ceil(n / 32))
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        ae_course.train(model, _tiny_data(10), epochs=1, steps=1)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        ae_course.train(model, _tiny_data(10))
    with pytest.raises(ValueError, match=">= 1"):
        ae_course.train(model, _tiny_data(10), steps=0)


class _LabelledLoss(nn.Module):
    """A toy conditional model: its loss depends on the label, so the loop must pass the right labels."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def loss(self, x, y):
        assert len(x) == len(y)
        return (self.scale * x.sum(1) - y.float()) ** 2


def test_training_passes_labels_batch_by_batch():
    x = torch.ones(64, 3)
    y = torch.full((64,), 6)
    model = _LabelledLoss()
    history = ae_course.train(model, x, y=y, epochs=60, batch_size=16, lr=0.05, x_val=x, y_val=y, progress=False)
    assert abs(model.scale.item() - 2.0) < 0.05          # x.sum(1) = 3, so scale -> 6 / 3
    assert ae_course.evaluate(model, x, y=y) == pytest.approx(history.val_loss[-1])
    with pytest.raises(ValueError, match="64 rows but y has 10 labels"):
        ae_course.train(model, x, y=y[:10], epochs=1)
