"""Checkers for the exercises of chapter 1, the autoencoder."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..losses import bernoulli_log_likelihood, squared_error
from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, name_mistake,
                       prefixed)

AVERAGED_OVER_PIXELS = "you averaged over pixels; sum over the pixels of an image, then average over images."


@checker
def check_bernoulli_nll(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check `fn(x, logits) -> (B,)`, the Bernoulli negative log-likelihood of each image in nats.

    Tries a batch of MNIST-sized random inputs with moderate logits, then logits of +-100 where a naive
    log(sigmoid(.)) overflows. Chapter 1, exercise "Bernoulli NLL from logits".
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 784, generator=gen).round()
    logits = 3 * torch.randn(5, 784, generator=gen)
    expected = -bernoulli_log_likelihood(x, logits).double()
    got = as_vector(call_learner(fn, x, logits), len(x), "your result", finite=False, mistakes=[
        (x.shape, "you returned one value per pixel, shape (B, 784); sum over the pixels (dim=1): the "
                  "log-likelihood of an image is the sum over its pixels."),
        ((), "you returned a single number for the whole batch; return one value per image, shape (B,)."),
    ])
    name_mistake(got, [
        (-expected, "the sign is flipped: a negative log-likelihood is >= 0 for binary images."),
        (expected / 784, "you averaged over pixels (a mean) instead of summing: the values are 784 times too small."),
    ], rtol=1e-4, atol=1e-8)
    if not close(got, expected, rtol=1e-4, atol=1e-3):
        return Feedback(False, "values differ from -sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)] by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    with prefixed("correct for moderate logits, but at logits = +-100: "):
        extreme = call_learner(fn, torch.tensor([[0.0, 1.0, 1.0, 0.0]]), torch.tensor([[100.0, -100.0, 100.0, -100.0]]))
    if not torch.isfinite(extreme).all():
        return Feedback(False, "correct for moderate logits, but not finite at logits = +-100: log(sigmoid(l)) "
                               "underflows to log(0). Rewrite with softplus: log sigmoid(l) = -softplus(-l), "
                               "log(1 - sigmoid(l)) = -softplus(l).")
    if not close(extreme.reshape(-1), torch.tensor([200.0]), rtol=1e-4, atol=1e-8):
        return Feedback(False, f"at logits = +-100 the answer is 200 nats (two pixels wrong by 100 each), got {extreme}.")
    return Feedback(True, "matches the reference and stays finite at extreme logits.")


@checker
def check_mean_image_baseline(value, x_train: torch.Tensor, x_test: torch.Tensor) -> Feedback:
    """Check the mean-image baseline: the squared error per test image (summed over pixels, averaged over
    images) of predicting the mean *training* image for every test image. Chapter 1.
    x_train: (N, D), x_test: (M, D) in [0, 1].
    """
    value = as_number(value, "the baseline error")
    mean_image = x_train.mean(dim=0, keepdim=True)
    expected = squared_error(x_test, mean_image.expand_as(x_test)).mean().item()
    if close(value, expected, rtol=1e-3, atol=0):
        return Feedback(True, f"{expected:.3f} squared pixel units per image.")
    test_mean = squared_error(x_test, x_test.mean(dim=0, keepdim=True).expand_as(x_test)).mean().item()
    name_mistake(value, [
        (expected / x_test.shape[1], AVERAGED_OVER_PIXELS),
        (test_mean, "you used the mean of the *test* images; a baseline may only use the training data."),
        (math.sqrt(expected), "that is a root: report the squared error, not its square root."),
    ], rtol=1e-3, atol=0)
    return Feedback(False, f"expected about {expected:.3f} squared pixel units per image, got {value:.4g}.")


@checker
def check_pca_error(value, x_train: torch.Tensor, x_test: torch.Tensor, n_components: int = 2) -> Feedback:
    """Check the test squared error per image of the best rank-`n_components` linear reconstruction
    (PCA fitted on the training images: project the centred test image, add the mean back). Chapter 1.
    """
    from sklearn.decomposition import PCA

    value = as_number(value, "the PCA error")
    train_np, test_np = x_train.double().numpy(), x_test.double().numpy()

    def error_of(pca: PCA) -> float:
        return float(((test_np - pca.inverse_transform(pca.transform(test_np))) ** 2).sum(axis=1).mean())

    pca = PCA(n_components=n_components).fit(train_np)
    expected = error_of(pca)
    if close(value, expected, rtol=1e-3, atol=0):
        return Feedback(True, f"{expected:.3f} squared pixel units per image.")
    no_mean = float(((test_np - (test_np - pca.mean_) @ pca.components_.T @ pca.components_) ** 2).sum(axis=1).mean())
    name_mistake(value, [
        (expected / x_test.shape[1], AVERAGED_OVER_PIXELS),
        (no_mean, "you forgot to add the mean image back after projecting the centred images."),
        (error_of(PCA(n_components=n_components).fit(test_np)),
         "you fitted PCA on the test images; fit on the training images and apply to the test images."),
    ], rtol=1e-3, atol=0)
    return Feedback(False, f"expected about {expected:.3f} squared pixel units per image, got {value:.4g}.")
