"""The exercise checkers accept the right answers and say what is wrong with the typical wrong ones."""
import torch
import torch.nn.functional as F

from ae_course.exercises import Feedback, check_bernoulli_nll, check_mean_image_baseline, check_pca_error


def test_feedback_truthiness_and_text():
    assert Feedback(True, "ok") and not Feedback(False, "no")
    assert str(Feedback(False, "no")).startswith("Not yet")


def test_bernoulli_checker():
    stable = lambda x, l: (F.softplus(l) - x * l).sum(1)
    assert check_bernoulli_nll(stable)
    cases = {
        "underflows": lambda x, l: -(x * torch.log(torch.sigmoid(l)) + (1 - x) * torch.log(1 - torch.sigmoid(l))).sum(1),
        "one value per pixel": lambda x, l: F.softplus(l) - x * l,
        "single number": lambda x, l: (F.softplus(l) - x * l).sum(),
        "sign is flipped": lambda x, l: -(F.softplus(l) - x * l).sum(1),
        "averaged over pixels": lambda x, l: (F.softplus(l) - x * l).mean(1),
        "raised ZeroDivisionError": lambda x, l: 1 / 0,
        "return a torch.Tensor": lambda x, l: 3.0,
        "differ": lambda x, l: (F.softplus(l) - x * l).sum(1) + 1,
    }
    for needle, fn in cases.items():
        feedback = check_bernoulli_nll(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(300, 784, generator=g) ** 3, torch.rand(100, 784, generator=g) ** 3


def test_baseline_checker():
    x_train, x_test = _data()
    right = ((x_test - x_train.mean(0)) ** 2).sum(1).mean()
    assert check_mean_image_baseline(right, x_train, x_test)
    assert "averaged over pixels" in check_mean_image_baseline(right / 784, x_train, x_test).message
    test_mean = ((x_test - x_test.mean(0)) ** 2).sum(1).mean()
    assert "test" in check_mean_image_baseline(test_mean, x_train, x_test).message
    assert "number" in check_mean_image_baseline(None, x_train, x_test).message
    assert "finite" in check_mean_image_baseline(float("nan"), x_train, x_test).message
    assert not check_mean_image_baseline(right * 1.1, x_train, x_test)


def test_pca_checker():
    from sklearn.decomposition import PCA
    x_train, x_test = _data()
    pca = PCA(2).fit(x_train.numpy())
    right = ((x_test.numpy() - pca.inverse_transform(pca.transform(x_test.numpy()))) ** 2).sum(1).mean()
    assert check_pca_error(right, x_train, x_test)
    no_mean = x_test.numpy() - pca.mean_
    forgot = ((x_test.numpy() - no_mean @ pca.components_.T @ pca.components_) ** 2).sum(1).mean()
    assert "mean image back" in check_pca_error(forgot, x_train, x_test).message
    pca_t = PCA(2).fit(x_test.numpy())
    on_test = ((x_test.numpy() - pca_t.inverse_transform(pca_t.transform(x_test.numpy()))) ** 2).sum(1).mean()
    assert "fitted PCA on the test" in check_pca_error(on_test, x_train, x_test).message


# ------------------------------------------------------------------------- the autoencoder model (skill)
import pytest  # noqa: E402
from torch import nn  # noqa: E402

from ae_course.exercises.autoencoder_checks import check_autoencoder_model  # noqa: E402


def _reference_loss(self, x):
    return (F.softplus(self.decoder(self.encoder(x))) - x * self.decoder(self.encoder(x))).sum(dim=1).mean()


def make_model(loss=_reference_loss, code=None, sigmoid=False, hidden=(16, 8), code_activation=False):
    loss_of = loss
    """A learner's autoencoder class, right by default; the arguments plant one mistake each."""
    class Model(nn.Module):
        def __init__(self, latent_dim):
            super().__init__()
            d = code or latent_dim
            h1, h2 = hidden
            self.encoder = nn.Sequential(nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
                                         nn.Linear(h2, d), *([nn.ReLU()] if code_activation else []))
            self.decoder = nn.Sequential(nn.Linear(d, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(),
                                         nn.Linear(h1, 784), *([nn.Sigmoid()] if sigmoid else []))

        def loss(self, x):
            return loss_of(self, x)
    return Model


def _mnist_like(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 784, generator=g) ** 4).round()


@pytest.fixture
def tiny_mnist(seed_and_one_thread):
    return _mnist_like(256, 0), _mnist_like(128, 1)


def _check(model_class, data, **kwargs):
    """The checker on tiny data with tiny hidden layers (the learner's models above use them too)."""
    x_train, x_test = data
    return check_autoencoder_model(model_class, x_train, x_test, steps=kwargs.pop("steps", 12), batch_size=64,
                                   hidden=(16, 8), device="cpu", **kwargs)


def test_autoencoder_model_checker_accepts_the_package_design(tiny_mnist):
    feedback = _check(make_model(), tiny_mnist)
    assert feedback, feedback
    assert "held-out" in feedback.message
    bce = lambda self, x: F.binary_cross_entropy_with_logits(self.decoder(self.encoder(x)), x,  # noqa: E731
                                                             reduction="sum") / len(x)
    assert _check(make_model(loss=bce), tiny_mnist)


def _logits(self, x):
    return self.decoder(self.encoder(x))


AE_MODEL_MISTAKES = {
    "applies a second one": dict(sigmoid=True, loss=lambda self, x: F.binary_cross_entropy_with_logits(
        _logits(self, x), x, reduction="sum") / len(x)),
    "returns probabilities": dict(sigmoid=True, loss=lambda self, x: F.binary_cross_entropy(
        _logits(self, x), x, reduction="sum") / len(x)),
    "applied twice": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        torch.sigmoid(_logits(self, x)), x, reduction="sum") / len(x)),
    "averaged over the pixels": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(_logits(self, x), x)),
    "summed over the batch": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        _logits(self, x), x, reduction="sum")),
    "sign is flipped": dict(loss=lambda self, x: -_reference_loss(self, x)),
    "swapped the arguments": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        x, _logits(self, x), reduction="sum") / len(x)),
    "squared error": dict(loss=lambda self, x: ((x - torch.sigmoid(_logits(self, x))) ** 2).sum(1).mean()),
    "one value per image": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        _logits(self, x), x, reduction="none").sum(1)),
    "one value per pixel": dict(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        _logits(self, x), x, reduction="none")),
    "Python number": dict(loss=lambda self, x: _reference_loss(self, x).item()),
    "no gradient": dict(loss=lambda self, x: _reference_loss(self, x).detach()),
    "no bottleneck": dict(code=784),
    "latent_dim = 2": dict(code=3),
    "raised ZeroDivisionError": dict(loss=lambda self, x: 1 / 0),
}


@pytest.mark.parametrize("needle", AE_MODEL_MISTAKES)
def test_autoencoder_model_checker_names_mistakes(tiny_mnist, needle):
    feedback = _check(make_model(**AE_MODEL_MISTAKES[needle]), tiny_mnist)
    assert not feedback and needle in feedback.message, (needle, feedback)


def test_autoencoder_model_checker_stubs_and_training(tiny_mnist):
    class Stub(nn.Module):
        def __init__(self, latent_dim):
            super().__init__()

        def loss(self, x):
            raise NotImplementedError

    assert "no module `encoder`" in _check(Stub, tiny_mnist).message
    assert str(_check(Stub, tiny_mnist)).startswith("Not yet")
    detached = make_model(loss=lambda self, x: F.binary_cross_entropy_with_logits(
        self.decoder(self.encoder(x).detach()), x, reduction="sum") / len(x))
    assert "no gradient to the encoder" in _check(detached, tiny_mnist).message
    slow = _check(make_model(), tiny_mnist, max_seconds=0.0)
    assert not slow and "longer than 0 s" in slow.message
    worse = _check(make_model(hidden=(2, 2)), tiny_mnist, steps=30, tolerance=0.01)
    assert not worse and "worse" in worse.message, worse
