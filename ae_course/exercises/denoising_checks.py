"""Checkers for the exercises of the chapter "Denoising autoencoders".

* :func:`check_masking_noise`: a masking-noise corruption x -> x~ that erases each pixel with
  probability `fraction` (Vincent et al. 2008, section 2.3; Vincent et al. 2010);
* :func:`check_denoising_error`: the squared error per image between a reconstruction and the CLEAN
  image, shape (B,);
* :func:`check_identity_masking_error`: the expected squared error per image, against the clean image,
  of the identity map applied to a masked input: fraction * sum_d x_d^2, averaged over images;
* :func:`check_dae_step`: a denoising training step (corrupt, encode x~, reconstruct the CLEAN x) and the
  test-time reconstruction, run, then trained on real data against
  :class:`~ae_course.denoising.DenoisingAutoencoder`.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import copy
import functools
import math
import time
from typing import Callable

import torch
from torch import nn

from ..corruption import masking_noise
from ..denoising import DenoisingAutoencoder
from ..losses import squared_error
from ..models import Autoencoder
from .autoencoder_checks import name_distinct_mistake

from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, max_difference,
                       mean_of, name_mistake, OutOfTime, with_deadline)

__all__ = ["check_dae_step", "check_denoising_error", "check_identity_masking_error", "check_masking_noise"]


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


# ------------------------------------------------------------------ the skill exercise: a training step

class _RecordingCorruption:
    """Masking noise of a given fraction that remembers every (x, x~) it produced (detached copies)."""

    def __init__(self, fraction: float):
        self.fraction, self.calls = fraction, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x_tilde = masking_noise(x, self.fraction)
        self.calls.append((x.detach().clone(), x_tilde.detach().clone()))
        return x_tilde


def _parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _moved_by(before: list[torch.Tensor], after: list[torch.Tensor], step: list[torch.Tensor]) -> bool:
    """Whether after == before - step for every parameter (to float32 rounding)."""
    return all(close(a, b - s, rtol=1e-3, atol=1e-6) for b, a, s in zip(before, after, step))


def _mean_nll(model: nn.Module, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """mean_n -log p(target_n | z = f(source_n)): the loss of reconstructing `target` from `source`."""
    return -model.log_likelihood(target, model(source)).mean()


def _check_one_step(step_fn: Callable, latent_dim: int, fraction: float, x: torch.Tensor, lr: float) -> None:
    """One call of the learner's step, with plain SGD, on a fresh Autoencoder: NotYet naming the mistake,
    unless it corrupts x once, returns mean_n -log p(x_n | f(x~_n)) and takes the SGD step of that loss
    from zeroed gradients."""
    model = Autoencoder(input_dim=x.shape[1], latent_dim=latent_dim, hidden=(32, 16))
    with torch.no_grad():                     # logits that depend on the input and on the pixel, so that the
        for p in model.parameters():          # losses of the usual mistakes differ from the right one
            p.mul_(3.0)
        model.decoder[-1].bias.fill_(3.0)
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for p in model.parameters():              # gradients left over from a previous step
        p.grad = torch.ones_like(p)
    before = _parameters(model)
    corrupt = _RecordingCorruption(fraction)
    returned = call_learner(step_fn, model, optimizer, x, corrupt, call="your step", returns=None,
                            expect="the minibatch's loss (a number, e.g. loss.item())")
    if not corrupt.calls:
        raise NotYet("your step never called corrupt(x): the encoder must see a corrupted copy x~ = corrupt(x), "
                     "drawn fresh in every step.")
    if len(corrupt.calls) > 1:
        raise NotYet(f"your step called corrupt {len(corrupt.calls)} times; draw ONE corrupted copy x~ of the "
                     "batch per step, feed it to the model, and compare the output with the clean x.")
    x_seen, x_tilde = corrupt.calls[0]
    if x_seen.shape != x.shape:
        raise NotYet(f"you corrupted a tensor of shape {tuple(x_seen.shape)}; corrupt the minibatch x "
                     f"{tuple(x.shape)} inside the step.")
    loss = as_number(returned, "the value your step returned", several=": return the mean over the batch")
    expected = _mean_nll(twin, x, x_tilde).item()
    with torch.no_grad():
        name_distinct_mistake(loss, expected, [
            (_mean_nll(twin, x_tilde, x_tilde).item(),
             "the noisy target: you compared the reconstruction with the corrupted x~. The target is the CLEAN "
             "x: -log p(x | z = f(x~)). With x~ as the target, copying the input (noise included) is optimal."),
            (_mean_nll(twin, x, x).item(),
             "you fed the clean x to the model: the corruption x~ was drawn but not used. The encoder's input "
             "is x~, the target is x."),
            (_mean_nll(twin, x_tilde, x).item(),
             "input and target are swapped: encode the corrupted x~ and compare with the clean x."),
            (expected * len(x), "you summed over the batch; average over the images (.mean())."),
            (expected / x.shape[1], "you averaged over the pixels; sum over the pixels of an image (the "
                                    "log-likelihood of an image), then average over the batch."),
            (-expected, "the sign is flipped: minimize the NEGATIVE log-likelihood."),
        ])
    if not close(loss, expected, rtol=1e-3, atol=0):
        raise NotYet(f"your step returned {loss:.4g}; the mean over the batch of -log p(x | z = f(x~)) for the "
                     f"x~ it drew is {expected:.4g} nats.")
    twin.zero_grad()
    _mean_nll(twin, x, x_tilde).backward()
    gradient = [lr * p.grad for p in twin.parameters()]
    after = _parameters(model)
    if all(torch.equal(a, b) for a, b in zip(after, before)):
        raise NotYet("the parameters did not change: call optimizer.step() after loss.backward().")
    if _moved_by(before, after, [g + lr for g in gradient]):
        raise NotYet("the gradients of the previous step were added to this one: call optimizer.zero_grad() "
                     "before loss.backward().")
    if _moved_by(before, after, [-g for g in gradient]):
        raise NotYet("the parameters moved uphill: backpropagate the loss itself, not its negative.")
    if not _moved_by(before, after, gradient):
        raise NotYet("the update is not one optimizer step on the gradient of the loss you returned: compute the "
                     "loss, optimizer.zero_grad(), loss.backward(), optimizer.step(), once each.")


@checker
def check_dae_step(step_fn: Callable, denoise_fn: Callable, x_train: torch.Tensor, x_test: torch.Tensor,
                   fraction: float = 0.5, latent_dim: int = 32, steps: int = 200, batch_size: int = 32,
                   lr: float = 1e-3, seed: int = 0, max_seconds: float = 60.0, tolerance: float = 0.05,
                   hidden: tuple[int, ...] = (512, 256), n_test: int = 1000,
                   device: str | torch.device | None = None) -> Feedback:
    """Check a learner's denoising training step and test-time reconstruction by running and training them.

    step_fn(model, optimizer, x, corrupt) -> loss: one training step of a denoising autoencoder on the
    minibatch x (B, D): draw x~ = corrupt(x), compute the mean over the batch of -log p(x | z = f(x~)) with
    ``model.log_likelihood(x, model(x~))`` (the CLEAN x as the target), zero the gradients, backpropagate,
    step the optimizer, return the loss as a number. denoise_fn(model, x_noisy) -> x_hat: the reconstruction
    sigmoid(g(f(x~))) of noisy inputs, (B, D) in [0, 1], deterministic (no corruption at test time).
    Vincent et al. 2008, section 2.3 (the objective); :meth:`ae_course.denoising.DenoisingAutoencoder.loss`.

    Checks, in order: one step with plain SGD on a small fresh Autoencoder (one call of corrupt, the returned
    loss, the parameter update; naming the noisy target, the unused corruption, swapped input and target, a
    sum over the batch, a mean over pixels, a flipped sign, a missing step or zero_grad); two steps on the
    same batch draw different corruptions (not re-seeded, not cached); denoise_fn returns probabilities,
    twice the same, equal to sigmoid(model(x_noisy)). Then it trains an Autoencoder(latent_dim, hidden) with
    the learner's step for `steps` Adam steps (masking noise of `fraction`, lr, batch_size, seed) through
    :func:`ae_course.training.train`, with a wall-clock limit of `max_seconds`, and the package's
    DenoisingAutoencoder the same way from the same initial weights and seed. It passes if the learner's
    denoising error (squared error to the clean image, per image) on the first `n_test` test images, masked
    with a fixed draw, is at most (1 + tolerance) times the package model's. x_train, x_test: (N, D) in [0, 1].
    """
    from ..training import train

    x = x_train[:16]
    torch.manual_seed(seed)
    _check_one_step(step_fn, latent_dim, fraction, x, lr=0.1)
    corrupt = _RecordingCorruption(fraction)
    model = Autoencoder(input_dim=x.shape[1], latent_dim=latent_dim, hidden=(32, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    for _ in range(2):
        call_learner(step_fn, model, optimizer, x, corrupt, call="your step", when=" a second time", returns=None)
    if len(corrupt.calls) < 2:
        raise NotYet("called twice, your step drew a corruption only the first time: draw a fresh x~ = "
                     "corrupt(x) in every step (do not keep x~ from an earlier step).")
    if torch.equal(corrupt.calls[0][1], corrupt.calls[1][1]):
        raise NotYet("two steps on the same batch drew the same corruption: the noise must be fresh in every step "
                     "(do not re-seed the random generator inside the step).")

    x_noisy = masking_noise(x, fraction, generator=torch.Generator().manual_seed(seed))
    first = call_learner(denoise_fn, model, x_noisy, call="your denoise function")
    second = call_learner(denoise_fn, model, x_noisy, call="your denoise function", when=" a second time")
    with torch.no_grad():
        expected = torch.sigmoid(model(x_noisy))
    if first.shape != x.shape:
        raise NotYet(f"denoise returned shape {tuple(first.shape)}; expected {tuple(x.shape)}, like its input.")
    if not torch.equal(first, second):
        raise NotYet("denoise returned two different reconstructions of the same noisy digits: the corruption "
                     "belongs to training only. At test time the model maps its input deterministically, "
                     "x_hat = sigmoid(g(f(x~))), without corrupting it again.")
    if close(first, model(x_noisy).detach(), rtol=1e-4, atol=1e-5):
        raise NotYet("denoise returned the logits; the reconstruction is x_hat = sigmoid(logits), in [0, 1].")
    if not close(first, expected, rtol=1e-4, atol=1e-5):
        raise NotYet("denoise should return sigmoid(model(x_noisy)), the reconstruction of the noisy input; "
                     f"yours differs by up to {max_difference(first, expected):.3g}.")

    start = time.perf_counter()
    corrupt = functools.partial(masking_noise, fraction=fraction)

    def learner_step(model, optimizers, batch, y=None):
        loss = step_fn(model, optimizers["loss"], batch, corrupt)
        return {"loss": torch.as_tensor(float(loss.detach() if isinstance(loss, torch.Tensor) else loss))}

    torch.manual_seed(seed)
    learner = Autoencoder(input_dim=x.shape[1], latent_dim=latent_dim, hidden=hidden)
    try:
        train(learner, x_train, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              step=with_deadline(learner_step, max_seconds), device=device, progress=False)
    except OutOfTime:
        raise NotYet(f"training with your step for {steps} steps took longer than {max_seconds:.0f} s (the "
                     "package's takes a few seconds).") from None
    except Exception as err:  # the learner's step may fail in any way during training
        raise NotYet(f"training with your step raised {type(err).__name__}: {err}") from None
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    reference = DenoisingAutoencoder(corruption=corrupt, input_dim=x.shape[1], latent_dim=latent_dim,
                                     hidden=hidden)
    train(reference, x_train, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=False)

    clean = x_test[:n_test]
    noisy = masking_noise(clean, fraction, generator=torch.Generator().manual_seed(seed + 1))
    learner.cpu()
    reconstruction = call_learner(denoise_fn, learner, noisy, call="your denoise function",
                                  when=" on the trained model")
    got = squared_error(clean, reconstruction.to(clean.dtype)).mean().item()
    wanted = squared_error(clean, reference.cpu().reconstruct(noisy)).mean().item()
    summary = (f"trained for {steps} steps with your step ({seconds:.1f} s), the model's denoising error on "
               f"{len(clean)} masked test digits is {got:.2f} per image, the package's DenoisingAutoencoder's "
               f"{wanted:.2f}")
    if not math.isfinite(got) or got > (1 + tolerance) * wanted:
        return Feedback(False, f"{summary}: more than {100 * tolerance:.0f} % worse.")
    return Feedback(True, summary + ".")
