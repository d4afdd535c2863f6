"""Checkers for the exercises of the chapter "Denoising autoencoders".

* :func:`check_masking_noise`: a masking-noise corruption x -> x~ that erases each pixel with
  probability `fraction` (Vincent et al. 2008, section 2.3; Vincent et al. 2010);
* :func:`check_denoising_error`: the squared error per image between a reconstruction and the CLEAN
  image, shape (B,);
* :func:`check_identity_masking_error`: the expected squared error per image, against the clean image,
  of the identity map applied to a masked input: fraction * sum_d x_d^2, averaged over images.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, mean_of,
                       name_mistake)

__all__ = ["check_denoising_error", "check_identity_masking_error", "check_masking_noise"]


def _test_images(n: int = 400, seed: int = 0) -> torch.Tensor:
    """(n, 784) float32 test images with every pixel > 0, so that any zero is the noise's doing."""
    gen = torch.Generator().manual_seed(seed)
    return 0.05 + 0.95 * torch.rand(n, 784, generator=gen)


@checker
def check_masking_noise(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Feedback:
    """Check `fn(x, fraction) -> x~`, masking noise: each pixel set to 0 with probability `fraction`.

    Tests, on (400, 784) images with no zero pixel: a new tensor of the same shape and dtype, the input
    left unchanged, every pixel either kept or set to 0 (noise never adds ink), the fraction of zeros
    within 6 binomial standard errors of `fraction` for fractions 0.1, 0.5 and 0.8 (a fixed count
    of round(fraction * D) pixels per image, as in Vincent et al. 2008, is accepted too), a different
    mask for every image and fresh noise on every call.
    """
    x = _test_images()
    for fraction in (0.1, 0.5, 0.8):
        original = x.clone()
        got = call_learner(fn, x, fraction, when=f" with fraction={fraction}", copy=False)
        if not torch.equal(x, original):
            return Feedback(False, "your function changed its input in place; return a new tensor "
                                   "(e.g. x * mask) and leave x as it was: the clean x is the target.")
        if got.shape != x.shape:
            return Feedback(False, f"expected shape {tuple(x.shape)}, like the input, got {tuple(got.shape)}.")
        if got.dtype != x.dtype:
            return Feedback(False, f"expected dtype {x.dtype}, like the input, got {got.dtype}: multiply by "
                                   "a mask converted with .to(x.dtype), or use torch.where.")
        zero = got == 0
        kept = got == x
        changed = ~(zero | kept)
        if changed.any():
            if (got[changed] == 1).all():  # all set to 1 (not any: a noisy pixel can land on 1 by chance)
                return Feedback(False, "some pixels were set to 1: masking noise only erases (sets to 0); "
                                       "that is salt-and-pepper noise.")
            return Feedback(False, "some pixels are neither kept nor 0: masking noise erases pixels, it "
                                   "does not add noise to them.")
        per_image = zero.double().mean(dim=1)
        if ((per_image == 0) | (per_image == 1)).all():
            return Feedback(False, "you erased whole images (all pixels or none); draw the mask "
                                   "independently for every pixel, with shape (B, D), not (B, 1).")
        if (zero == zero[:1]).all():
            return Feedback(False, "every image got the same mask; draw a mask of shape (B, D), "
                                   "one per image, not (D,).")
        measured = zero.double().mean().item()
        n = x.numel()
        se = math.sqrt(fraction * (1 - fraction) / n)
        if abs(measured - (1 - fraction)) < 6 * se and abs(fraction - 0.5) > 0.05:
            return Feedback(False, f"with fraction={fraction} you erased {measured:.3f} of the pixels, "
                                   f"which is 1 - fraction: `fraction` is the probability of ERASING a "
                                   "pixel, not of keeping it.")
        if abs(measured - fraction) > 6 * se:
            return Feedback(False, f"with fraction={fraction} you erased {measured:.3f} of the pixels; "
                                   f"expected {fraction} +- {6 * se:.4f}.")
    again = call_learner(fn, x, 0.5, when=" again with fraction=0.5")
    first = call_learner(fn, x, 0.5, when=" again with fraction=0.5")
    if torch.equal(again, first):
        return Feedback(False, "two calls returned the same mask; the noise must be fresh on every call "
                               "(do not re-seed a generator inside the function).")
    return Feedback(True, "each pixel is erased with the right probability, independently per image and "
                          "per call, and nothing else changes.")


@checker
def check_denoising_error(value, x_clean: torch.Tensor, x_noisy: torch.Tensor, x_hat: torch.Tensor) -> Feedback:
    """Check the denoising error per image: ||x_hat - x_clean||^2 summed over pixels, shape (B,).

    x_clean, x_noisy, x_hat: (B, D) the clean images, their corrupted copies (the model's inputs) and the
    model's reconstructions. Diagnoses comparing to the noisy input, averaging over pixels, averaging over
    images and taking a square root.
    """
    expected = ((x_hat - x_clean) ** 2).sum(dim=1).double()
    got = as_vector(value, len(expected), "your answer", finite=False, mistakes=[
        (mean_of(expected), "that is the average over images; return one error per image, shape (B,) (sum over "
                            "pixels only: dim=1)."),
        (x_clean.shape, "you returned one value per pixel, shape (B, D); sum over the pixels (dim=1)."),
    ], none="got None: compute a tensor of shape (B,), one squared error per image.")
    if close(got, expected):
        return Feedback(True, f"mean {expected.mean().item():.3f} squared pixel units per image.")
    name_mistake(got, [
        (((x_hat - x_noisy) ** 2).sum(dim=1), "you compared the reconstruction with the NOISY input; the denoising "
                                               "error is measured against the clean image x, which is what the model "
                                               "should recover."),
        (((x_noisy - x_clean) ** 2).sum(dim=1), "that is the error of the noisy input itself (x~ vs x); compare the "
                                                 "reconstruction x_hat with the clean x."),
        (expected / x_clean.shape[1], "you averaged over pixels (a mean); sum over the pixels of each image: the "
                                      f"values are {x_clean.shape[1]} times too small."),
        (expected.sqrt(), "that is the Euclidean distance; report its square (the squared error)."),
    ])
    return Feedback(False, f"values differ from sum_d (x_hat_d - x_d)^2 by up to {max_difference(got, expected):.4g}.")


@checker
def check_identity_masking_error(value, x_clean: torch.Tensor, fraction: float) -> Feedback:
    """Check E_q[ ||x~ - x||^2 ] averaged over images, for masking noise of the given fraction.

    The identity map returns x~; masking erases pixel d with probability `fraction`, which costs x_d^2, so
    the expected squared error of image x is fraction * sum_d x_d^2. x_clean: (B, D).
    """
    value = as_number(value, "the expected error")
    sq = (x_clean.double() ** 2).sum(dim=1).mean().item()
    expected = fraction * sq
    if close(value, expected, rtol=1e-3, atol=0):
        return Feedback(True, f"fraction * E||x||^2 = {expected:.3f} squared pixel units per image.")
    name_mistake(value, [
        ((1 - fraction) * sq, "you used the probability of KEEPING a pixel; only erased pixels cost anything, each "
                              "with probability `fraction`."),
        (fraction * x_clean.double().sum(dim=1).mean().item(), "an erased pixel costs (0 - x_d)^2 = x_d^2, not x_d "
                                                               "(they agree only for binary pixels)."),
        (expected / x_clean.shape[1], "you averaged over pixels; sum over the pixels of an image, then average "
                                      "over images."),
        (sq, "that is the error if every pixel were erased; each is erased only with probability `fraction`."),
    ], rtol=1e-3, atol=0)
    if close(value, 0.0, atol=1e-9):
        return Feedback(False, "zero is the identity's error under the PLAIN objective (target x~); here "
                               "the target is the clean x.")
    return Feedback(False, f"expected about {expected:.3f} squared pixel units per image, got {value:.4g}.")
