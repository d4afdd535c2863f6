"""Checkers for the exercises of chapter 1, the autoencoder."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import bernoulli_log_likelihood, squared_error
from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, max_difference,
                       name_mistake, prefixed, OutOfTime, with_deadline)

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


# ------------------------------------------------------------------------------- the skill exercise: a model

MODEL_MISTAKES_HINT = ("the package's Autoencoder is 784-512-256-d (encoder) and d-256-512-784 (decoder) with "
                       "ReLU between the layers and no activation on the code or on the logits")


def _held_out_nll(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean over the rows of x of -log p(x | z = f(x)) under the Bernoulli decoder, nats per image."""
    device = next(decoder.parameters()).device
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device)
            total += -bernoulli_log_likelihood(batch, decoder(encoder(batch))).sum().item()
    return total / len(x)


def name_distinct_mistake(got: float, expected: float, mistakes: list[tuple[float, str]]) -> None:
    """:func:`name_mistake` (to 0.1 %) with only the mistakes whose value differs from the right one by more
    than 1 %: a right answer is never mistaken for a wrong one that happens to be close on this batch."""
    name_mistake(got, [(value, message) for value, message in mistakes
                       if not close(value, expected, rtol=1e-2, atol=0)], rtol=1e-3, atol=0)


def _check_loss_value(loss: torch.Tensor, x: torch.Tensor, logits: torch.Tensor) -> None:
    """NotYet naming the mistake, unless `loss` is mean_n sum_i [softplus(l_ni) - x_ni l_ni] of the batch."""
    expected = -bernoulli_log_likelihood(x, logits).mean().item()
    got = loss.item()
    if bool(((logits >= 0) & (logits <= 1)).all()):
        probabilities = logits.double().clamp(1e-7, 1 - 1e-7)
        from_probabilities = -bernoulli_log_likelihood(x.double(), torch.logit(probabilities)).mean().item()
        if close(got, expected, rtol=1e-3, atol=0):
            raise NotYet("every output of your decoder lies in [0, 1]: it ends with a sigmoid, and the loss "
                         "from logits applies a second one, sigmoid(sigmoid(l)). The decoder returns the "
                         "logits l = g(z) (drop the final nn.Sigmoid); the loss applies the sigmoid once.")
        if close(got, from_probabilities, rtol=1e-3, atol=0):
            raise NotYet("your decoder returns probabilities (it ends with a sigmoid) and the loss takes their "
                         "logarithm. Return the logits l = g(z) instead (drop the final nn.Sigmoid) and compute "
                         "the loss from them, sum_i softplus(l_i) - x_i l_i: no log(0) when a pixel saturates.")
        raise NotYet("every output of your decoder lies in [0, 1]: it ends with a sigmoid. The decoder returns "
                     "the logits l = g(z), unbounded; x_hat = sigmoid(l) is computed from them.")
    sigmoid_twice = -bernoulli_log_likelihood(x, torch.sigmoid(logits)).mean().item()
    swapped = (F.softplus(x) - logits * x).sum(dim=1).mean().item()
    squared = ((x - torch.sigmoid(logits)) ** 2).sum(dim=1).mean().item()
    name_distinct_mistake(got, expected, [
        (expected / x.shape[1], "you averaged over the pixels: binary_cross_entropy_with_logits averages over "
                                "pixels AND images by default (reduction='mean'). Sum over the 784 pixels of an "
                                "image (the log-likelihood of an image), then average over the images."),
        (expected * len(x), "you summed over the batch; average over the images (divide the sum by the batch "
                            "size), so that the loss does not grow with the batch size."),
        (-expected, "the sign is flipped: that is the log-likelihood; minimize its negative."),
        (sigmoid_twice, "you applied a sigmoid to the logits and then a loss that takes logits: the sigmoid is "
                        "applied twice. Pass the logits l = g(z) themselves to the loss."),
        (swapped, "you swapped the arguments: binary_cross_entropy_with_logits(input=logits, target=x)."),
        (squared, "that is the squared error of sigmoid(l) (a Gaussian likelihood); this model's loss is the "
                  "Bernoulli negative log-likelihood, sum_i softplus(l_i) - x_i l_i."),
        (0.5 * squared, "that is half the squared error (a Gaussian likelihood, up to a constant); this model's "
                        "loss is the Bernoulli negative log-likelihood, sum_i softplus(l_i) - x_i l_i."),
    ])
    if not close(got, expected, rtol=1e-3, atol=0):
        raise NotYet(f"model.loss(x) is {got:.4g}, but the mean over the batch of -log p(x | z = f(x)), computed "
                     f"from model.decoder(model.encoder(x)), is {expected:.4g} nats.")


@checker
def check_autoencoder_model(model_class: Callable[[int], nn.Module], x_train: torch.Tensor, x_test: torch.Tensor,
                            latent_dim: int = 2, steps: int = 200, batch_size: int = 32, lr: float = 1e-3,
                            seed: int = 0, max_seconds: float = 60.0, tolerance: float = 0.05,
                            hidden: tuple[int, ...] = (512, 256), n_test: int = 1000,
                            device: str | torch.device | None = None) -> Feedback:
    """Check a learner's autoencoder class by building, probing and training it against the package's.

    model_class(latent_dim) must build an nn.Module with attributes `encoder` ((B, 784) -> codes (B, d)) and
    `decoder` (codes -> logits (B, 784)), and a method `loss(x)` returning a scalar tensor: the Bernoulli
    negative log-likelihood -log p(x | z = f(x)) of each image, summed over pixels, averaged over the batch.

    The checker builds the model after torch.manual_seed(seed), checks the code's shape (a bottleneck of
    `latent_dim` numbers), that the decoder returns logits, and the loss's shape, gradient and value on 64
    training images (naming: a sigmoid applied twice, probabilities instead of logits, a mean over pixels, a
    sum over the batch, a flipped sign, swapped arguments, the squared error, one value per image or pixel,
    a Python number, no gradient). It then trains the model for `steps` Adam steps (lr, batch_size, seed) on
    x_train with :func:`ae_course.training.train`, stopping with "Not yet" after `max_seconds` of wall-clock
    time, and trains :class:`ae_course.models.Autoencoder` (same latent_dim and seed, hidden layers `hidden`)
    the same way. It passes if the held-out negative log-likelihood on the first `n_test` rows of x_test
    (nats per image) is at most (1 + tolerance) times the package model's. x_train (N, 784), x_test (M, 784):
    images in [0, 1]. Chapter 1.
    """
    from ..models import Autoencoder
    from ..training import train, update

    torch.manual_seed(seed)
    model = call_learner(model_class, latent_dim, call="your class", when=f" with latent_dim={latent_dim}",
                         returns=nn.Module, expect="an instance of a subclass of torch.nn.Module")
    for part in ("encoder", "decoder"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise NotYet(f"your model has no module `{part}`: set self.{part} in __init__ (e.g. an nn.Sequential) "
                         "after calling super().__init__().")
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise NotYet("your model has no parameters: build its layers in __init__.")
    x = x_train[:64].to(parameter.dtype)
    z = call_learner(model.encoder, x, call="model.encoder", when=" on a batch of 64 images")
    if z.dim() != 2 or z.shape[0] != len(x):
        raise NotYet(f"model.encoder returned shape {tuple(z.shape)} for 64 images; expected (64, {latent_dim}).")
    if z.shape[1] >= x.shape[1]:
        raise NotYet(f"no bottleneck: the code has {z.shape[1]} numbers per image, as many as the "
                     f"{x.shape[1]} pixels, so copying the image is a perfect solution. The encoder's last layer "
                     f"maps to latent_dim = {latent_dim} numbers.")
    if z.shape[1] != latent_dim:
        raise NotYet(f"the code has {z.shape[1]} numbers per image, but latent_dim = {latent_dim}: use the "
                     "constructor's argument for the width of the encoder's last layer (and the decoder's first).")
    logits = call_learner(model.decoder, z, call="model.decoder", when=" on the encoder's codes")
    if tuple(logits.shape) != tuple(x.shape):
        raise NotYet(f"model.decoder returned shape {tuple(logits.shape)}; expected {tuple(x.shape)}, one logit "
                     "per pixel.")
    loss = call_learner(model.loss, x, call="model.loss", when=" on a batch of 64 images", returns=None,
                        detach=False)
    if isinstance(loss, (float, int)):
        raise NotYet("model.loss returned a Python number (did you call .item()?); return the tensor, so that "
                     "loss.backward() can follow its graph.")
    if not isinstance(loss, torch.Tensor):
        raise NotYet(f"model.loss returned a {type(loss).__name__}; return a scalar tensor.")
    if tuple(loss.shape) == tuple(x.shape):
        raise NotYet("model.loss returned one value per pixel, shape (B, 784); sum over the pixels of each image "
                     "(dim=1), then average over the images: one number.")
    if tuple(loss.shape) == (len(x),):
        raise NotYet("model.loss returned one value per image, shape (B,); average them over the batch "
                     "(.mean()): backward and the optimizer need one number.")
    if loss.numel() != 1:
        raise NotYet(f"model.loss returned shape {tuple(loss.shape)}; return a scalar, the mean over the batch of "
                     "each image's negative log-likelihood.")
    if not loss.requires_grad:
        raise NotYet("the loss carries no gradient: do not compute it under torch.no_grad() or from detached "
                     "tensors (.detach(), .item(), .numpy()).")
    _check_loss_value(loss.detach(), x, logits)
    model.zero_grad(set_to_none=True)
    loss.backward()
    if all(p.grad is None for p in model.encoder.parameters()):
        raise NotYet("the loss sends no gradient to the encoder: compute it from decoder(encoder(x)), without "
                     "detaching the code.")
    model.zero_grad(set_to_none=True)

    start = time.perf_counter()

    def learner_step(model, optimizers, batch, y=None):
        return {"loss": update(model, optimizers["loss"], model.loss(batch).reshape(()))}

    try:
        train(model, x_train, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              step=with_deadline(learner_step, max_seconds), device=device, progress=False)
    except OutOfTime:
        raise NotYet(f"training your model for {steps} steps took longer than {max_seconds:.0f} s (the "
                     f"package's takes a few seconds): use the sizes asked for, {MODEL_MISTAKES_HINT}.") from None
    except Exception as err:  # the learner's model may fail in any way during training
        raise NotYet(f"training your model raised {type(err).__name__}: {err}") from None
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    reference = Autoencoder(input_dim=x_train.shape[1], latent_dim=latent_dim, hidden=hidden)
    train(reference, x_train, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=False)
    got = _held_out_nll(model.encoder, model.decoder, x_test[:n_test])
    expected = _held_out_nll(reference.encoder, reference.decoder, x_test[:n_test])
    summary = (f"after {steps} steps your model's held-out -log p(x|z) is {got:.2f} nats per image, the package's "
               f"Autoencoder's {expected:.2f} ({seconds:.1f} s to train yours)")
    if not math.isfinite(got) or got > (1 + tolerance) * expected:
        return Feedback(False, f"{summary}: more than {100 * tolerance:.0f} % worse. Check the architecture: "
                               f"{MODEL_MISTAKES_HINT}.")
    return Feedback(True, summary + ".")
