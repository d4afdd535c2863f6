"""The checkers of the conditional-VAE chapter accept the right answers and name each typical mistake."""
import pytest
import torch
import torch.nn.functional as F

from ae_course.models import one_hot
from ae_course.exercises.cvae_checks import check_condition, check_generation_accuracy


def right_condition(x, y, n_classes):
    if y.is_floating_point() or y.dim() != 1:
        raise ValueError("labels must be integer")
    if len(y) != len(x):
        raise ValueError("one label per row")
    if (y < 0).any() or (y >= n_classes).any():
        raise ValueError("label out of range")
    return torch.cat([x, F.one_hot(y, n_classes).to(x.dtype)], dim=1)


def test_condition_accepts_right_answers():
    assert check_condition(right_condition)
    # the package's one_hot (what the conditional models use) does the validation too
    assert check_condition(lambda x, y, k: torch.cat([x, one_hot(y, k, len(x), like=x)], dim=1))


def unvalidated(x, y, k):
    return torch.cat([x, F.one_hot(y.long(), k).to(x.dtype)], dim=1)


@pytest.mark.parametrize("needle, fn", [
    ("num_classes", lambda x, y, k: torch.cat([x, F.one_hot(y)], dim=1)),
    ("dtype torch.int64", lambda x, y, k: torch.cat([x.long(), F.one_hot(y, k)], dim=1)),
    ("single number", lambda x, y, k: torch.cat([x, y[:, None].float()], dim=1)),
    ("one-hot code first", lambda x, y, k: torch.cat([F.one_hot(y, k).float(), x], dim=1)),
    ("along dim 0", lambda x, y, k: torch.cat([x, F.one_hot(y, k).float()[:, :5]], dim=0)),
    ("last n_classes are not one_hot", lambda x, y, k: torch.cat([x, F.one_hot((y + 1) % k, k).float()], dim=1)),
    ("must raise ValueError", unvalidated),
    ("raised RuntimeError", lambda x, y, k: torch.cat([x, F.one_hot(y, k).to(x.dtype)], dim=1)),
    ("raised ZeroDivisionError", lambda x, y, k: 1 / 0),
    ("return a torch.Tensor", lambda x, y, k: None),
])
def test_condition_names_each_mistake(needle, fn):
    feedback = check_condition(fn)
    assert not feedback and needle in feedback.message, feedback.message


def test_condition_lists_each_unvalidated_case():
    message = check_condition(unvalidated).message
    for case in ("equal to n_classes", "negative", "floating", "5 labels for 6 rows"):
        assert case in message, message


@pytest.fixture
def predictions():
    gen = torch.Generator().manual_seed(0)
    requested = torch.arange(10).repeat_interleave(20)
    wrong = torch.rand(200, generator=gen) < 0.15
    return torch.where(wrong, torch.randint(0, 10, (200,), generator=gen), requested), requested


def test_generation_accuracy_accepts_the_fraction(predictions):
    pred, req = predictions
    right = (pred == req).float().mean()
    assert check_generation_accuracy(right, pred, req)
    assert check_generation_accuracy(right.item(), pred, req)


@pytest.mark.parametrize("needle, answer", [
    ("percentage", lambda p, r: 100 * (p == r).float().mean()),
    ("error rate", lambda p, r: (p != r).float().mean()),
    ("number of matches", lambda p, r: (p == r).sum()),
    ("arange(K).repeat(n)", lambda p, r: (p == torch.arange(10).repeat(20)).float().mean()),
    ("should be a number", lambda p, r: None),
    ("single number", lambda p, r: (p == r).float()),
    ("not the fraction", lambda p, r: 0.5),
])
def test_generation_accuracy_names_each_mistake(predictions, needle, answer):
    pred, req = predictions
    feedback = check_generation_accuracy(answer(pred, req), pred, req)
    assert not feedback and needle in feedback.message, feedback.message


def test_generation_accuracy_detects_the_interleaved_order_too():
    gen = torch.Generator().manual_seed(1)
    requested = torch.arange(10).repeat(20)
    pred = torch.where(torch.rand(200, generator=gen) < 0.1, torch.randint(0, 10, (200,), generator=gen), requested)
    wrong = (pred == torch.arange(10).repeat_interleave(20)).float().mean()
    feedback = check_generation_accuracy(wrong, pred, requested)
    assert not feedback and "repeat_interleave" in feedback.message


def test_generation_accuracy_length_mismatch():
    feedback = check_generation_accuracy(0.5, torch.zeros(10), torch.zeros(9))
    assert not feedback and "same length" in feedback.message


# --------------------------------------------------------------------------- the conditional loss, trained
from ae_course.exercises.cvae_checks import check_cvae_loss  # noqa: E402


def cvae_loss(*, sign=-1.0, kl_weight=1.0, pixel_mean=False, sample=True, log_std=False, swap=False,
              label_first=(False, False), double_sigmoid=False, detach_z=False, no_grad=False, batch_mean=False,
              decoder_label=True, num_classes=True):
    """The negative conditional ELBO from the two networks, right by default, with one mistake switched on."""
    def loss(model, x, y):
        e_y = F.one_hot(y, model.n_classes if num_classes else -1).to(x.dtype)
        join = lambda t, first: torch.cat([e_y, t] if first else [t, e_y], dim=1)  # noqa: E731
        mu, log_var = model.encoder(join(x, label_first[0])).chunk(2, dim=1)
        if swap:
            mu, log_var = log_var, mu
        std = torch.exp(log_var) if log_std else torch.exp(0.5 * log_var)
        z = mu + std * torch.randn_like(mu) if sample else mu
        if detach_z:
            z = z.detach()
        logits = model.decoder(join(z, label_first[1]) if decoder_label else z)
        if double_sigmoid:
            logits = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        log_px = -(bce.mean(dim=1) if pixel_mean else bce.sum(dim=1))
        kl = 0.5 * (mu ** 2 + log_var.exp() - log_var - 1).sum(dim=1)
        value = sign * (log_px - kl_weight * kl)
        if no_grad:
            value = value.detach()
        return value.mean() if batch_mean else value
    return loss


@pytest.fixture(scope="module")
def digits():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(200, 784, generator=gen), torch.randint(0, 10, (200,), generator=gen)


TINY = dict(steps=4, batch_size=50)


@pytest.mark.usefixtures("seed_and_one_thread")
def test_cvae_loss_accepts_the_right_loss(digits):
    feedback = check_cvae_loss(cvae_loss(), *digits, **TINY)
    assert feedback and "4 Adam steps" in feedback.message, feedback


@pytest.mark.usefixtures("seed_and_one_thread")
def test_cvae_loss_accepts_the_package_pieces(digits):
    from ae_course.losses import bernoulli_log_likelihood, gaussian_kl, reparameterize
    from ae_course.models import one_hot

    def loss(model, x, y):
        e_y = one_hot(y, model.n_classes, len(x), like=x)
        mu, log_var = model.encoder(torch.cat([x, e_y], dim=1)).chunk(2, dim=1)
        logits = model.decoder(torch.cat([reparameterize(mu, log_var), e_y], dim=1))
        return gaussian_kl(mu, log_var) - bernoulli_log_likelihood(x, logits)
    assert check_cvae_loss(loss, *digits, **TINY)


@pytest.mark.usefixtures("seed_and_one_thread")
@pytest.mark.parametrize("needle, mistake", [
    ("that is the ELBO itself", dict(sign=1.0)),
    ("KL term is missing", dict(kl_weight=0.0)),
    ("KL term has the wrong sign", dict(kl_weight=-1.0)),
    ("twice too large", dict(kl_weight=2.0)),
    ("mean over the pixels", dict(pixel_mean=True)),
    ("reads mu, not a sample", dict(sample=False)),
    ("exp(log_var) as the standard deviation", dict(log_std=True)),
    ("mu and log_var are swapped", dict(swap=True)),
    ("you put the one-hot label first", dict(label_first=(True, True))),
    ("the encoder's input has the one-hot label first", dict(label_first=(True, False))),
    ("the decoder's input has the one-hot label first", dict(label_first=(False, True))),
    ("sigmoid is applied twice", dict(double_sigmoid=True)),
    ("the sample z is detached", dict(detach_z=True)),
    ("carry no gradient", dict(no_grad=True)),
    ("mean over the batch", dict(batch_mean=True)),
    ("to the input of *both* networks", dict(decoder_label=False)),
    ("without num_classes", dict(num_classes=False)),
])
def test_cvae_loss_names_each_mistake(digits, needle, mistake):
    feedback = check_cvae_loss(cvae_loss(**mistake), *digits, **TINY)
    assert not feedback and needle in feedback.message, feedback.message


@pytest.mark.usefixtures("seed_and_one_thread")
def test_cvae_loss_stubs_and_the_model_view(digits):
    def stub(model, x, y):
        raise NotImplementedError("write the loss")
    feedback = check_cvae_loss(stub, *digits, **TINY)
    assert not feedback and "raised NotImplementedError" in feedback.message
    feedback = check_cvae_loss(lambda model, x, y: None, *digits, **TINY)
    assert not feedback and "returned None" in feedback.message
    feedback = check_cvae_loss(lambda model, x, y: model.loss(x, y), *digits, **TINY)
    assert not feedback and "write the loss from the two networks" in feedback.message
    feedback = check_cvae_loss(lambda model, x, y: cvae_loss()(model, x, y) + 1.0, *digits, **TINY)
    assert not feedback and "differ from the package's" in feedback.message


@pytest.mark.usefixtures("seed_and_one_thread")
def test_cvae_loss_time_limit(digits):
    feedback = check_cvae_loss(cvae_loss(), *digits, **TINY, time_limit=0.0)
    assert not feedback and "took more than 0 s" in feedback.message
