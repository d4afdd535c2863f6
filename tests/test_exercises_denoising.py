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
