"""Checkers for the exercises of chapter 1, the autoencoder."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..losses import bernoulli_log_likelihood, squared_error
from .feedback import Feedback, as_number


def check_bernoulli_nll(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check `fn(x, logits) -> (B,)`, the Bernoulli negative log-likelihood of each image in nats.

    Tries a batch of MNIST-sized random inputs with moderate logits, then logits of +-100 where a naive
    log(sigmoid(.)) overflows. Chapter 1, exercise "Bernoulli NLL from logits".
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 784, generator=gen).round()
    logits = 3 * torch.randn(5, 784, generator=gen)
    expected = -bernoulli_log_likelihood(x, logits)
    try:
        got = fn(x.clone(), logits.clone())
    except Exception as err:  # the learner's code may fail in any way; report it
        return Feedback(False, f"calling your function raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor):
        return Feedback(False, f"return a torch.Tensor, got {type(got).__name__}.")
    if got.shape == x.shape:
        return Feedback(False, "you returned one value per pixel, shape (B, 784); "
                               "sum over the pixels (dim=1): the log-likelihood of an image is the sum over its pixels.")
    if got.dim() == 0:
        return Feedback(False, "you returned a single number for the whole batch; return one value per image, shape (B,).")
    if got.shape != expected.shape:
        return Feedback(False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.")
    got = got.detach().double()
    if torch.allclose(got, -expected.double(), rtol=1e-4):
        return Feedback(False, "the sign is flipped: a negative log-likelihood is >= 0 for binary images.")
    if torch.allclose(got, expected.double() / 784, rtol=1e-4):
        return Feedback(False, "you averaged over pixels (a mean) instead of summing: the values are 784 times too small.")
    if not torch.allclose(got, expected.double(), rtol=1e-4, atol=1e-3):
        worst = (got - expected.double()).abs().max().item()
        return Feedback(False, f"values differ from -sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)] by up to {worst:.4g} nats.")
    extreme_logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]])
    extreme_x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    extreme = fn(extreme_x, extreme_logits)
    if not torch.isfinite(torch.as_tensor(extreme)).all():
        return Feedback(False, "correct for moderate logits, but not finite at logits = +-100: log(sigmoid(l)) "
                               "underflows to log(0). Rewrite with softplus: log sigmoid(l) = -softplus(-l), "
                               "log(1 - sigmoid(l)) = -softplus(l).")
    if not torch.allclose(torch.as_tensor(extreme).double(), torch.tensor([200.0], dtype=torch.float64), rtol=1e-4):
        return Feedback(False, f"at logits = +-100 the answer is 200 nats (two pixels wrong by 100 each), got {extreme}.")
    return Feedback(True, "matches the reference and stays finite at extreme logits.")


def check_mean_image_baseline(value, x_train: torch.Tensor, x_test: torch.Tensor) -> Feedback:
    """Check the mean-image baseline: the squared error per test image (summed over pixels, averaged over
    images) of predicting the mean *training* image for every test image. Chapter 1.
    x_train: (N, D), x_test: (M, D) in [0, 1].
    """
    value = as_number(value, "the baseline error")
    if isinstance(value, Feedback):
        return value
    mean_image = x_train.mean(dim=0, keepdim=True)
    expected = squared_error(x_test, mean_image.expand_as(x_test)).mean().item()
    test_mean = squared_error(x_test, x_test.mean(dim=0, keepdim=True).expand_as(x_test)).mean().item()
    if math.isclose(value, expected, rel_tol=1e-3):
        return Feedback(True, f"{expected:.3f} squared pixel units per image.")
    if math.isclose(value, expected / x_test.shape[1], rel_tol=1e-3):
        return Feedback(False, "you averaged over pixels; sum over the pixels of an image, then average over images.")
    if math.isclose(value, test_mean, rel_tol=1e-4):
        return Feedback(False, "you used the mean of the *test* images; a baseline may only use the training data.")
    if math.isclose(value, math.sqrt(expected), rel_tol=1e-3):
        return Feedback(False, "that is a root: report the squared error, not its square root.")
    return Feedback(False, f"expected about {expected:.3f} squared pixel units per image, got {value:.4g}.")


def check_pca_error(value, x_train: torch.Tensor, x_test: torch.Tensor, n_components: int = 2) -> Feedback:
    """Check the test squared error per image of the best rank-`n_components` linear reconstruction
    (PCA fitted on the training images: project the centred test image, add the mean back). Chapter 1.
    """
    from sklearn.decomposition import PCA

    value = as_number(value, "the PCA error")
    if isinstance(value, Feedback):
        return value
    train_np, test_np = x_train.double().numpy(), x_test.double().numpy()
    pca = PCA(n_components=n_components).fit(train_np)
    recon = pca.inverse_transform(pca.transform(test_np))
    expected = float(((test_np - recon) ** 2).sum(axis=1).mean())
    no_mean = float(((test_np - (test_np - pca.mean_) @ pca.components_.T @ pca.components_) ** 2).sum(axis=1).mean())
    if math.isclose(value, expected, rel_tol=1e-3):
        return Feedback(True, f"{expected:.3f} squared pixel units per image.")
    if math.isclose(value, expected / x_test.shape[1], rel_tol=1e-3):
        return Feedback(False, "you averaged over pixels; sum over the pixels of an image, then average over images.")
    if math.isclose(value, no_mean, rel_tol=1e-3):
        return Feedback(False, "you forgot to add the mean image back after projecting the centred images.")
    pca_test = PCA(n_components=n_components).fit(test_np)
    fitted_on_test = float(((test_np - pca_test.inverse_transform(pca_test.transform(test_np))) ** 2).sum(axis=1).mean())
    if math.isclose(value, fitted_on_test, rel_tol=1e-3):
        return Feedback(False, "you fitted PCA on the test images; fit on the training images and apply to the test images.")
    return Feedback(False, f"expected about {expected:.3f} squared pixel units per image, got {value:.4g}.")
