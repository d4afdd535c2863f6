"""The checkers of the denoising chapter accept the right answers and diagnose the typical wrong ones."""
import torch

from ae_course.corruption import masking_noise
from ae_course.exercises.denoising_checks import (check_denoising_error, check_identity_masking_error,
                                                  check_masking_noise)


def test_masking_noise_checker_accepts_right_answers():
    assert check_masking_noise(lambda x, f: x * (torch.rand_like(x) >= f))
    assert check_masking_noise(lambda x, f: masking_noise(x, f))

    def fixed_count(x, f):  # Vincent et al. 2008: a fixed number of pixels per image
        order = torch.rand_like(x).argsort(dim=1)
        mask = torch.ones_like(x)
        mask.scatter_(1, order[:, :round(f * x.shape[1])], 0.0)
        return x * mask
    assert check_masking_noise(fixed_count)


def _in_place(x, f):
    x[torch.rand_like(x) < f] = 0
    return x


def test_masking_noise_checker_diagnoses():
    fixed = torch.Generator()
    cases = {
        "raised ZeroDivisionError": lambda x, f: 1 / 0,
        "return a torch.Tensor": lambda x, f: 3.0,
        "in place": _in_place,
        "expected shape": lambda x, f: (x * (torch.rand_like(x) >= f))[:, :10],
        "dtype": lambda x, f: (x * (torch.rand_like(x) >= f)).double(),
        "salt-and-pepper": lambda x, f: torch.where(torch.rand_like(x) < f, torch.ones_like(x), x),
        "does not add noise": lambda x, f: x + 0.1 * torch.randn_like(x),
        "1 - fraction": lambda x, f: x * (torch.rand_like(x) < f),
        "whole images": lambda x, f: x * (torch.rand(x.shape[0], 1) >= f),
        "same mask": lambda x, f: x * (torch.rand(x.shape[1]) >= f),
        "fresh": lambda x, f: x * (torch.rand(x.shape, generator=fixed.manual_seed(0)) >= f),
        "expected 0.1": lambda x, f: x * (torch.rand_like(x) >= 0.3),
    }
    for needle, fn in cases.items():
        feedback = check_masking_noise(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def _tensors():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 784, generator=g) ** 3
    x_noisy = masking_noise(x, 0.5, generator=g)
    x_hat = torch.rand(50, 784, generator=g)
    return x, x_noisy, x_hat


def test_denoising_error_checker():
    x, x_noisy, x_hat = _tensors()
    right = ((x_hat - x) ** 2).sum(1)
    assert check_denoising_error(right, x, x_noisy, x_hat)
    cases = {
        "NOISY input": ((x_hat - x_noisy) ** 2).sum(1),
        "error of the noisy input itself": ((x_noisy - x) ** 2).sum(1),
        "averaged over pixels": ((x_hat - x) ** 2).mean(1),
        "average over images": right.mean(),
        "one value per pixel": (x_hat - x) ** 2,
        "Euclidean distance": right.sqrt(),
        "got None": None,
        "differ": right + 1,
        "expected shape": right[:10],
    }
    for needle, value in cases.items():
        feedback = check_denoising_error(value, x, x_noisy, x_hat)
        assert not feedback and needle in feedback.message, (needle, feedback)


def test_identity_masking_error_checker():
    x, _, _ = _tensors()
    sq = (x ** 2).sum(1).mean()
    assert check_identity_masking_error(0.3 * sq, x, 0.3)
    cases = {
        "KEEPING": 0.7 * sq,
        "not x_d": 0.3 * x.sum(1).mean(),
        "averaged over pixels": 0.3 * sq / 784,
        "PLAIN objective": 0.0,
        "every pixel were erased": sq,
        "number": None,
        "expected about": 0.5 * sq,
    }
    for needle, value in cases.items():
        feedback = check_identity_masking_error(value, x, 0.3)
        assert not feedback and needle in feedback.message, (needle, feedback)


# ------------------------------------------------------------------ the denoising training step (skill)
import functools  # noqa: E402

import pytest  # noqa: E402

from ae_course.exercises.denoising_checks import check_dae_step  # noqa: E402


def dae_step(model, optimizer, x, corrupt):
    x_tilde = corrupt(x)
    loss = -model.log_likelihood(x, model(x_tilde)).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def denoise(model, x_noisy):
    with torch.no_grad():
        return torch.sigmoid(model(x_noisy))


def _step_with(loss_of, zero_grad=True, step=True, sign=1.0):
    """A training step with one mistake planted: loss_of(model, x, x_tilde) is the loss it minimizes."""
    def wrong_step(model, optimizer, x, corrupt):
        loss = loss_of(model, x, corrupt(x))
        if zero_grad:
            optimizer.zero_grad()
        (sign * loss).backward()
        if step:
            optimizer.step()
        return loss.item()
    return wrong_step


def _nll(model, target, source):
    return -model.log_likelihood(target, model(source))


_cache = {}


def _cached_step(model, optimizer, x, corrupt):  # draws x~ once and keeps it
    if "x_tilde" not in _cache:
        _cache["x_tilde"] = corrupt(x)
    loss = _nll(model, x, _cache["x_tilde"]).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _reseeded_step(model, optimizer, x, corrupt):
    torch.manual_seed(0)
    return dae_step(model, optimizer, x, corrupt)


def _denoise_again(model, x_noisy):  # corrupts at test time
    return denoise(model, masking_noise(x_noisy, 0.5))


DAE_STEP_MISTAKES = {
    "noisy target": (_step_with(lambda m, x, xt: _nll(m, xt, xt).mean()), denoise),
    "drawn but not used": (_step_with(lambda m, x, xt: _nll(m, x, x).mean()), denoise),
    "swapped": (_step_with(lambda m, x, xt: _nll(m, xt, x).mean()), denoise),
    "summed over the batch": (_step_with(lambda m, x, xt: _nll(m, x, xt).sum()), denoise),
    "averaged over the pixels": (_step_with(lambda m, x, xt: _nll(m, x, xt).mean() / 784), denoise),
    "sign is flipped": (_step_with(lambda m, x, xt: -_nll(m, x, xt).mean()), denoise),
    "zero_grad": (_step_with(lambda m, x, xt: _nll(m, x, xt).mean(), zero_grad=False), denoise),
    "optimizer.step()": (_step_with(lambda m, x, xt: _nll(m, x, xt).mean(), step=False), denoise),
    "uphill": (_step_with(lambda m, x, xt: _nll(m, x, xt).mean(), sign=-1.0), denoise),
    "never called corrupt": (lambda m, o, x, c: _nll(m, x, masking_noise(x, 0.5)).mean().item(), denoise),
    "called corrupt 2 times": (lambda m, o, x, c: _nll(m, c(x), c(x)).mean().item(), denoise),
    "only the first time": (_cached_step, denoise),
    "re-seed": (_reseeded_step, denoise),
    "corrupting it again": (dae_step, _denoise_again),
    "returned the logits": (dae_step, lambda m, x: m(x).detach()),
    "returned None": (lambda m, o, x, c: None, denoise),
    "raised NotImplementedError": (dae_step, lambda m, x: (_ for _ in ()).throw(NotImplementedError())),
}


@pytest.fixture
def tiny_digits(seed_and_one_thread):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(256, 784, generator=g) ** 4).round(), (torch.rand(128, 784, generator=g) ** 4).round()


def _check_step(step, denoise_fn, data, **kwargs):
    x_train, x_test = data
    return check_dae_step(step, denoise_fn, x_train, x_test, steps=kwargs.pop("steps", 12), batch_size=64,
                          hidden=(16, 8), latent_dim=4, device="cpu", **kwargs)


def test_dae_step_checker_accepts_the_right_step(tiny_digits):
    feedback = _check_step(dae_step, denoise, tiny_digits)
    assert feedback and "DenoisingAutoencoder" in feedback.message, feedback

    def with_loss_method(model, optimizer, x, corrupt):  # the loss through F.binary_cross_entropy_with_logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(corrupt(x)), x, reduction="sum") / len(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss
    assert _check_step(with_loss_method, functools.partial(denoise), tiny_digits)


@pytest.mark.parametrize("needle", DAE_STEP_MISTAKES)
def test_dae_step_checker_names_mistakes(tiny_digits, needle):
    _cache.clear()
    step, denoise_fn = DAE_STEP_MISTAKES[needle]
    feedback = _check_step(step, denoise_fn, tiny_digits)
    assert not feedback and needle in feedback.message, (needle, feedback)
    assert str(feedback).startswith("Not yet")


def test_dae_step_checker_training_limits(tiny_digits):
    slow = _check_step(dae_step, denoise, tiny_digits, max_seconds=0.0)
    assert not slow and "longer than 0 s" in slow.message
    stub = _check_step(lambda m, o, x, c: None, denoise, tiny_digits)
    assert not stub and "returned None" in stub.message
