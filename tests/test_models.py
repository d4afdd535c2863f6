"""The package core: MLP builders, the Autoencoder, the training loop, the plotting helpers."""
import math

import matplotlib
import pytest
import torch
from torch import nn

import ae_course
from ae_course.plotting import image_grid, latent_scatter


def test_mlp_layer_sizes_and_activation():
    net = ae_course.mlp([784, 500, 2], activation="tanh")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 2)]
    assert isinstance(net[1], nn.Tanh) and len(net) == 3  # no activation after the last layer


@pytest.mark.parametrize("sizes, activation, match", [
    ([784], "relu", "at least an input and an output"),
    ([784, 0, 2], "relu", "positive"),
    ([784, 2], "swish", "unknown activation"),
])
def test_mlp_rejects_bad_arguments(sizes, activation, match):
    with pytest.raises(ValueError, match=match):
        ae_course.mlp(sizes, activation)


def test_autoencoder_shapes_and_range():
    model = ae_course.Autoencoder(latent_dim=3, hidden=(32,))
    x = torch.rand(5, 784)
    assert model.encode(x).shape == (5, 3)
    assert model(x).shape == (5, 784)
    x_hat = model.reconstruct(x)
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    assert model.loss(x).shape == (5,)


@pytest.mark.parametrize("bad", [torch.rand(784), torch.rand(2, 783), torch.rand(0, 784), torch.ones(2, 784, dtype=torch.long)])
def test_autoencoder_rejects_bad_input(bad):
    with pytest.raises(ValueError, match=r"x must"):
        ae_course.Autoencoder(hidden=(8,)).encode(bad)


def test_unknown_loss_raises():
    with pytest.raises(ValueError, match="unknown loss"):
        ae_course.Autoencoder(loss="l1")


def test_bce_loss_is_bernoulli_nll_and_mse_is_squared_error():
    torch.manual_seed(0)
    x = torch.rand(4, 784).round()
    for loss in ("bce", "mse"):
        model = ae_course.Autoencoder(latent_dim=2, hidden=(16,), loss=loss)
        logits = model(x)
        expected = (nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1) if loss == "bce"
                    else ((x - torch.sigmoid(logits)) ** 2).sum(1))
        assert torch.allclose(model.loss(x), expected, rtol=1e-5)


def test_denoising_target_is_used():
    torch.manual_seed(0)
    model = ae_course.Autoencoder(latent_dim=2, hidden=(16,))
    x, clean = torch.rand(3, 784), torch.rand(3, 784)
    assert not torch.allclose(model.loss(x), model.loss(x, target=clean))


def _tiny_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 784, generator=g) > 0.7).float()
    return prototypes[torch.randint(0, 4, (n,), generator=g)]


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


def test_nan_loss_stops_training_naming_the_step_and_keeps_parameters():
    x = _tiny_data(64)
    x[40, 3] = float("nan")  # the second batch of 32 after shuffling may or may not hold it; any epoch will
    torch.manual_seed(0)
    model = ae_course.Autoencoder(latent_dim=2, hidden=(16,))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d"):
        ae_course.train(model, x, epochs=2, batch_size=32, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


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
