"""Checkers for the exercises of the chapter "Training a VAE on MNIST".

* :func:`check_negative_elbo`: the per-image loss -log p(x|z) + KL(q(z|x) || N(0, I)) (Kingma & Welling
  2014, eq. 10) from the decoder's logits and the encoder's (mu, log_var);
* :func:`check_active_units`: the number of latent dimensions whose posterior mean varies across the data
  (Burda, Grosse & Salakhutdinov 2016, §5.2);
* :func:`check_log_likelihood_bound`: the importance-sampled bound L_k = logsumexp_i(log w_i) - log k
  (Burda et al. 2016, eq. 8);
* :func:`check_vae_class`: a learner's VAE class (encoder, reparameterized sample, decoder, negative ELBO),
  checked at fixed weights and then trained on MNIST next to :class:`ae_course.VAE`.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import gaussian_kl
from .feedback import (Feedback, NotYet, OutOfTime, as_number, as_vector, call_learner, checker, close,
                       max_difference, name_mistake, prefixed, with_deadline)

__all__ = ["check_active_units", "check_log_likelihood_bound", "check_negative_elbo", "check_vae_class"]


def _bce_hint(err: Exception) -> str:
    if "between 0 and 1" in str(err) or "0 <= input" in str(err) or "input values" in str(err):
        return (" F.binary_cross_entropy expects probabilities in [0, 1], but the decoder returns logits:"
                " use F.binary_cross_entropy_with_logits(logits, x, reduction='none').")
    return ""


def _losses(fn, x, logits, mu, log_var) -> torch.Tensor:
    """fn(x, logits, mu, log_var) as a float64 (B,) vector of losses, or NotYet saying why it is not one."""
    return as_vector(call_learner(fn, x, logits, mu, log_var, hint=_bce_hint), len(x), "your result", finite=False,
                     mistakes=[((), "you returned a single number for the whole batch; return one loss per image, "
                                    "shape (B,) (the training loop takes the mean over the batch)."),
                               (x.shape, "you returned one value per pixel, shape (B, 784); sum the reconstruction "
                                         "term over the pixels (dim=1) and add the KL of each image.")])


_close = functools.partial(close, rtol=1e-4, atol=1e-3)


@checker
def check_negative_elbo(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(x, logits, mu, log_var) -> (B,)`, the negative ELBO of each image in nats.

    The reference is sum_d [softplus(l_d) - x_d l_d] + 1/2 sum_j [mu_j^2 + exp(log_var_j) - log_var_j - 1]
    (Kingma & Welling 2014, eq. 10 with the KL of App. B), for x (B, 784) binary, logits (B, 784),
    mu and log_var (B, L). The checker first calls `fn` with mu = log_var = 0 (KL = 0) to isolate the
    reconstruction term, then with random (mu, log_var) to isolate the KL term, and names the typical
    mistakes: a mean over pixels instead of a sum, probabilities treated as logits (or the reverse),
    a squared error, a missing KL, a KL with the wrong sign, averaged over latent dimensions, missing its
    factor 1/2 or reading log_var as log sigma, the ELBO instead of its negative, one number per batch;
    finally it tries logits of +-150, where a cross-entropy computed from probabilities saturates.
    """
    gen = torch.Generator().manual_seed(0)
    batch, pixels, latent = 6, 784, 8
    x = torch.rand(batch, pixels, generator=gen).round()
    logits = 3 * torch.randn(batch, pixels, generator=gen)
    mu = torch.randn(batch, latent, generator=gen)
    log_var = 0.7 * torch.randn(batch, latent, generator=gen)
    zeros = torch.zeros(batch, latent)

    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").double()
    recon = bce.sum(dim=1)
    kl = gaussian_kl(mu, log_var).double()

    got = _losses(fn, x, logits, mu, log_var)
    if _close(got, recon + kl):
        return _check_extreme_logits(fn)
    if _close(got, -(recon + kl)):
        return Feedback(False, "the sign is flipped: that is the ELBO. The loss to minimize is its negative, "
                               "-log p(x|z) + KL, which is positive.")

    with prefixed("with mu = log_var = 0: "):
        at_prior = _losses(fn, x, logits, zeros, zeros)
    probs = torch.sigmoid(logits)
    if not _close(at_prior, recon):
        name_mistake(at_prior, [
            (bce.mean(dim=1), "the reconstruction term is averaged over the 784 pixels (a mean) instead of summed: "
                              "-log p(x|z) of an image is the SUM over its pixels. With the summed KL this makes the "
                              "KL 784 times too strong (posterior collapse)."),
            (F.binary_cross_entropy_with_logits(probs, x, reduction="none").sum(dim=1),
             "you applied the sigmoid twice: binary_cross_entropy_with_logits expects the logits themselves, "
             "not sigmoid(logits)."),
            (((x - probs) ** 2).sum(dim=1), "that is a squared error: the model has a Bernoulli decoder, so "
                                            "the reconstruction term is the binary cross-entropy summed over pixels."),
            (0.5 * ((x - probs) ** 2).sum(dim=1), "that is half a squared error (a Gaussian decoder with sigma = 1): "
                                                  "the model has a Bernoulli decoder, so use the binary "
                                                  "cross-entropy."),
            (bce.sum(dim=1).mean().expand(batch), "the reconstruction term is averaged over the batch; keep one value "
                                                  "per image."),
        ], rtol=1e-4, atol=1e-3)
        return Feedback(False, "with mu = 0 and log_var = 0 the KL is 0, so your function should return the "
                               "reconstruction term alone, sum_d BCE(x_d, logits_d); it differs by up to "
                               f"{max_difference(at_prior, recon):.4g} nats.")

    kl_part = got - at_prior
    kl_per_dim = 0.5 * (mu**2 + log_var.exp() - log_var - 1).double()
    as_log_sigma = 0.5 * (mu**2 + (2 * log_var).exp() - 2 * log_var - 1).double().sum(dim=1)
    name_mistake(kl_part, [
        (torch.zeros_like(kl), "the KL term is missing: without it the model is a (noisy) autoencoder and "
                               "nothing pulls q(z|x) towards the prior N(0, I)."),
        (-kl, "the KL enters with the wrong sign: the loss is -log p(x|z) + KL, and the KL is >= 0. "
              "Check the sign of -1/2 sum (1 + log_var - mu^2 - exp(log_var))."),
        (kl_per_dim.mean(dim=1), "the KL is averaged over the latent dimensions instead of summed: "
                                 "KL(q || p) of independent dimensions is the SUM of their KLs."),
        (2 * kl, "the KL is twice too large: it is 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1)."),
        (kl / 2, "the KL is half what it should be: 1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1)."),
        (as_log_sigma, "your KL treats log_var as log sigma; log_var is log sigma^2, so sigma^2 = exp(log_var)."),
        (kl_per_dim.sum(dim=1).mean().expand(batch), "the KL is averaged over the batch; keep one value per image."),
        (kl / pixels, "the KL is divided by 784; with the reconstruction term summed over pixels, keep the KL summed too."),
    ], rtol=1e-4, atol=1e-3)
    return Feedback(False, "the reconstruction term is right, but the KL term differs from "
                           "1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1) by up to "
                           f"{max_difference(kl_part, kl):.4g} nats.")


def _check_extreme_logits(fn) -> Feedback:
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[-150.0, 150.0, 150.0, -150.0]])
    zeros = torch.zeros(1, 2)
    with prefixed("right for moderate logits, but at logits of +-150: "):
        got = call_learner(fn, x, logits, zeros, zeros, hint=_bce_hint).double()
    if got.numel() != 1 or not torch.isfinite(got).all():
        return Feedback(False, "right for moderate logits, but not finite at logits of +-150: compute the "
                               "cross-entropy from the logits (softplus or binary_cross_entropy_with_logits).")
    if abs(got.item() - 200.0) < 1e-2:
        return Feedback(False, "right for moderate logits, but at logits of +-150 your cross-entropy is 100 nats "
                               "per wrong pixel instead of 150: F.binary_cross_entropy on probabilities clamps log p "
                               "at -100. Use F.binary_cross_entropy_with_logits on the logits.")
    if abs(got.item() - 300.0) > 1e-2:
        return Feedback(False, f"right for moderate logits, but at logits of +-150 (two pixels wrong by 150 nats each) "
                               f"the loss should be 300 nats, got {got.item():.4g}.")
    return Feedback(True, "reconstruction summed over pixels, KL summed over latent dimensions, one value per image, "
                          "stable at extreme logits.")


@checker
def check_active_units(value, mu: torch.Tensor, threshold: float = 0.01) -> Feedback:
    """Check the number of active units of posterior means `mu` (N, L): #{u : Var_n(mu[n, u]) > threshold}.

    Burda et al. (2016, §5.2), threshold 0.01. The variance is over the N examples; the population (divisor N)
    and the sample (divisor N - 1) variance are both accepted. Diagnoses: variance over the latent dimensions,
    a threshold on the standard deviation or on the mean, the number of *inactive* units, a fraction.
    Raises ValueError if `mu` itself is not (N, L) with N >= 2 (a wrong call, not a wrong answer).
    """
    number = as_number(value, "the number of active units")
    mu = torch.as_tensor(mu).detach().double()
    if mu.dim() != 2 or len(mu) < 2:
        raise ValueError(f"mu must be (N, L) with N >= 2, got {tuple(mu.shape)}")  # the chapter's bug, not the learner's
    latent = mu.shape[1]
    expected = {int((mu.var(dim=0, correction=c) > threshold).sum()) for c in (0, 1)}
    if number in expected:
        return Feedback(True, f"{int(number)} of {latent} latent dimensions are active.")
    answer = min(expected)
    if number != int(number):
        if any(math.isclose(number, e / latent, rel_tol=1e-6) for e in expected):
            return Feedback(False, f"that is the fraction of active units; give their number (out of {latent}).")
        return Feedback(False, f"a number of units is a whole number, got {number:g}.")
    number = int(number)
    if number in {latent - e for e in expected}:
        return Feedback(False, "you counted the INACTIVE units: a unit is active when the variance of its "
                               f"posterior mean exceeds {threshold}.")
    if number > latent:
        return Feedback(False, f"there are only {latent} latent dimensions, you counted {number}: take the variance "
                               "over the images (dim=0), one variance per latent dimension.")
    if number == int((mu.std(dim=0) > threshold).sum()):
        return Feedback(False, f"you thresholded the standard deviation; the criterion is the VARIANCE of mu_u "
                               f"over the images > {threshold} (a standard deviation > {math.sqrt(threshold):g}).")
    if number == int((mu.mean(dim=0).abs() > threshold).sum()):
        return Feedback(False, "you thresholded the mean of mu_u; a unit is active when mu_u VARIES across "
                               "images: threshold its variance over the images.")
    return Feedback(False, f"expected {answer} active units, got {number}: count the dimensions u with "
                           f"Var_n(mu[n, u]) > {threshold}, the variance taken over the images (dim=0).")


@checker
def check_log_likelihood_bound(fn: Callable[[torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(log_w) -> (B,)` with log_w (k, B): L_k = log (1/k) sum_i exp(log_w[i]) per column.

    Burda et al. (2016), eq. 8. Tried on float32 log-weights around -120 (exp underflows in float32) and
    float64 log-weights around -800 (exp underflows in float64), and with k = 1 (L_1 = log_w[0]).
    Diagnoses: the mean of the log-weights (the ELBO, not L_k), a missing -log k, the largest weight only,
    the reduction taken over the images instead of the samples, underflow of exp.
    """
    gen = torch.Generator().manual_seed(0)
    k, batch = 50, 4
    cases = [(-120 + 3 * torch.randn(k, batch, generator=gen), "float32 log-weights around -120"),
             (-800 + 3 * torch.randn(k, batch, generator=gen, dtype=torch.float64), "float64 log-weights around -800")]
    for log_w, what in cases:
        wd = log_w.double()
        expected = torch.logsumexp(wd, dim=0) - math.log(k)
        got = as_vector(call_learner(fn, log_w), batch, "your result", finite=False, mistakes=[
            ((k,), "you reduced over the images (dim=1); the k samples are the rows, dim=0: return one value per "
                   "image, shape (B,)."),
        ])
        if _close(got, expected, rtol=1e-6, atol=1e-3):
            continue
        if not torch.isfinite(got).all():
            return Feedback(False, f"with {what} your result is not finite: exp(log_w) underflows to 0 and log(0) = "
                                   "-inf. Use torch.logsumexp(log_w, dim=0), which subtracts the largest log-weight first.")
        name_mistake(got, [
            (wd.mean(dim=0), "that is the mean of the log-weights: the average of k single-sample ELBOs, a looser "
                             "bound. L_k is the log of the MEAN WEIGHT: logsumexp(log_w, dim=0) - log k."),
            (expected + math.log(k), "you forgot to divide by k: subtract log k from the log-sum-exp."),
            (wd.max(dim=0).values, "that is the largest log-weight alone; L_k averages all k weights: "
                                   "logsumexp(log_w, dim=0) - log k."),
        ], rtol=1e-6, atol=1e-3)
        return Feedback(False, f"with {what} the values differ from logsumexp(log_w, dim=0) - log k by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    single = torch.tensor([[-90.0, -110.0, -130.0]])
    with prefixed("with k = 1: "):
        got = call_learner(fn, single)
    if not _close(got, single[0], rtol=1e-6):
        return Feedback(False, f"with k = 1 the bound is the single log-weight itself, {single[0].tolist()}; got {got.tolist()}.")
    return Feedback(True, "logsumexp over the samples minus log k, stable when every weight underflows.")



# ------------------------------------------------------------------------------------ the learner's VAE class

_ATOL = 2e-3  # nats; with rtol 1e-5: float32 sums over 784 pixels of ~0.7 nats agree to ~1e-4


def _reference_terms(model, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                     eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """The negative ELBO of each image (B,), from the learner's own encoder outputs and decoder, and its pieces."""
    logits = model.decode(mu + torch.exp(0.5 * log_var) * eps)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    kl_dims = 0.5 * (mu.square() + log_var.exp() - log_var - 1)
    return {"loss": bce.sum(dim=1) + kl_dims.sum(dim=1), "recon": bce.sum(dim=1), "kl": kl_dims.sum(dim=1),
            "bce": bce, "kl_dims": kl_dims, "logits": logits}


def _loss_mistakes(model, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor,
                   t: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """(message, value) for the typical wrong losses: per-image values (B,), or one number for a batch reduction."""
    recon, kl, bce = t["recon"], t["kl"], t["bce"]
    probs = torch.sigmoid(t["logits"])

    def recon_at(z: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(dim=1)

    kl_log_sigma = 0.5 * (mu.square() + torch.exp(2 * log_var) - 2 * log_var - 1).sum(dim=1)
    return [
        ("the reconstruction term is averaged over the 784 pixels (a mean) instead of summed: -log p(x|z) of an "
         "image is the SUM over its pixels. Next to the summed KL this makes the KL 784 times too strong, and the "
         "model collapses to the prior.", bce.mean(dim=1) + kl),
        ("the KL enters with the wrong sign: the loss is -log p(x|z) + KL(q(z|x) || p(z)), and the KL is >= 0.",
         recon - kl),
        ("the sign is flipped: that is the ELBO, which training maximizes; loss(x) is its negative, "
         "-log p(x|z) + KL.", -(recon + kl)),
        ("the KL term is missing: without it nothing pulls q(z|x) towards the prior, and the model is a noisy "
         "autoencoder whose decoded samples z ~ N(0, I) need not be digits.", recon),
        ("the KL is summed over the whole batch, over the images too (as -0.5 * torch.sum(1 + log_var - mu**2 - "
         "log_var.exp()) does), while the reconstruction term is per image (or averaged over the batch): the KL is "
         "B times too strong. Sum it over the latent dimensions only (dim=1), one KL per image.", recon + kl.sum()),
        ("your loss is the SUM over the batch of the per-image losses (reduction='sum'), B times their mean, so it "
         "grows with the batch size. Return the per-image values (B,), or their mean.", (recon + kl).sum()),
        ("the KL is averaged over the latent dimensions instead of summed: the KL of independent dimensions is the "
         "SUM of their KLs.", recon + t["kl_dims"].mean(dim=1)),
        ("z was sampled with the variance exp(log_var) as its scale; the standard deviation is sigma = "
         "exp(log_var / 2): z = mu + torch.exp(0.5 * log_var) * eps.", recon_at(mu + log_var.exp() * eps) + kl),
        ("z = mu: the loss decodes the posterior mean, without noise. The ELBO needs a SAMPLE z ~ q(z|x): "
         "z = mu + exp(log_var / 2) * eps with eps ~ N(0, I), a fresh eps at every call.", recon_at(mu) + kl),
        ("the sigmoid is applied twice: binary_cross_entropy_with_logits expects logits, and your decoder's output "
         "has been through a sigmoid already. decode should return the logits (no final sigmoid).",
         F.binary_cross_entropy_with_logits(probs, x, reduction="none").sum(dim=1) + kl),
        ("that is a squared error: the model has a Bernoulli decoder, so -log p(x|z) is the binary cross-entropy "
         "summed over the pixels.", ((x - probs) ** 2).sum(dim=1) + kl),
        ("the KL treats log_var as log sigma; log_var is log sigma^2, so sigma^2 = exp(log_var) and the KL is "
         "1/2 sum_j (mu_j^2 + exp(log_var_j) - log_var_j - 1).", recon + kl_log_sigma),
    ]


def _matches(got: torch.Tensor, value: torch.Tensor) -> bool:
    """A per-image loss (B,) or one number (the batch mean, or a batch reduction) against a candidate."""
    value = value.detach().double()
    if value.dim() == 0:
        return got.dim() == 0 and close(got, value, rtol=1e-5, atol=_ATOL)
    return close(got, value.mean() if got.dim() == 0 else value, rtol=1e-5, atol=_ATOL)


def _call_loss(model, x: torch.Tensor, detach: bool = True) -> torch.Tensor:
    """model.loss(x) as a (B,) vector or a 0-d tensor (float64 when detached), or NotYet naming the wrong shape."""
    got = call_learner(model.loss, x, call="loss(x)", expect="a torch.Tensor: the negative ELBO of each image, (B,)",
                       detach=detach, hint=_bce_hint)
    batch, pixels = x.shape
    if tuple(got.shape) == (batch, pixels):
        raise NotYet("loss(x) returned one value per pixel, shape (B, 784): sum the reconstruction term over the "
                     "pixels (dim=1) and add the KL of each image.")
    if got.numel() == 1:
        got = got.reshape(())
    elif tuple(got.shape) != (batch,):
        raise NotYet(f"loss(x) should return the negative ELBO of each image, shape ({batch},) (or their mean, a "
                     f"single number); got shape {tuple(got.shape)}.")
    return got.detach().double() if detach else got


def _is_affine(fn, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether fn(a / 2 + b / 2) = fn(a) / 2 + fn(b) / 2 on every row: true of an affine map, not of a ReLU network."""
    mid, ends = fn((a + b) / 2), (fn(a) + fn(b)) / 2
    return torch.allclose(mid.double(), ends.double(), rtol=1e-4, atol=1e-5 * (1 + ends.abs().max().item()))


def _is_probabilities(out: torch.Tensor) -> bool:
    """Whether a decoder's outputs look like sigmoid outputs: every one strictly inside (0, 1)."""
    return bool((out > 0).all() and (out < 1).all())


def _parts(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu, log_var, logits at mu) from the learner's encode and decode, checked for shape and known mistakes."""
    batch, pixels = x.shape
    out = call_learner(model.encode, x, call="encode(x)", returns=(tuple, list),
                       expect="a pair (mu, log_var), each of shape (B, latent_dim)")
    if len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out):
        raise NotYet("encode(x) should return a pair of tensors (mu, log_var), each of shape (B, latent_dim).")
    mu, log_var = (t.detach() for t in out)
    if mu.shape != log_var.shape or mu.dim() != 2 or len(mu) != batch:
        split = (" Split the encoder's output along the features, h.chunk(2, dim=1), not along the batch."
                 if len(mu) == batch // 2 else "")
        raise NotYet(f"encode(x) for a batch of {batch} images should return mu and log_var of shape (B, latent_dim) "
                     f"= ({batch}, L); got {tuple(mu.shape)} and {tuple(log_var.shape)}.{split}")
    for name, t in (("mu", mu), ("log_var", log_var)):
        if (t >= 0).all():
            raise NotYet(f"{name} is >= 0 for every image and dimension: the encoder's last layer is followed by an "
                         f"activation (ReLU, softplus, ...). {name} can be any real number"
                         + (" (log_var < 0 means sigma < 1)." if name == "log_var" else ".")
                         + " Leave the last Linear layer's output as it is.")
    logits = call_learner(model.decode, mu, call="decode(z)", expect="logits of shape (B, 784)").detach()
    if tuple(logits.shape) != (batch, pixels):
        raise NotYet(f"decode(z) for {batch} codes should return logits of shape ({batch}, {pixels}); "
                     f"got {tuple(logits.shape)}.")
    if (logits >= 0).all() and (logits == 0).any():
        raise NotYet("decode(z) returns no negative value: the decoder's last layer is followed by a ReLU. Logits "
                     "range over all real numbers (a negative logit is a pixel that is probably white).")
    half = batch // 2
    with torch.no_grad():
        if _is_affine(lambda v: torch.cat(model.encode(v), dim=1), x[:half], x[half:2 * half]):
            raise NotYet("your encoder is an affine function of x: there is no nonlinearity (ReLU) between its "
                         "layers, so the hidden layer adds nothing. Put an activation after the hidden Linear layer.")
        if not _is_probabilities(logits) and _is_affine(model.decode, mu[:half], mu[half:2 * half] + 1):
            raise NotYet("your decoder is an affine function of z: there is no nonlinearity (ReLU) between its "
                         "layers. Put an activation after the hidden Linear layer (and none after the last).")
    return mu, log_var, logits


def _statistical_values(model, x: torch.Tensor, draws: int = 32) -> Feedback | None:
    """When the learner draws its noise differently from torch.randn_like(mu): compare the mean of loss(x) over
    `draws` calls with the expectation of the negative ELBO (and of each typical mistake), in standard errors.
    Returns None when they agree, else the Feedback."""
    got = torch.stack([_call_loss(model, x).mean() for _ in range(draws)])
    if got.std() == 0:
        return Feedback(False, "loss(x) returns the same value at every call, whatever torch's random state: z is not "
                               "sampled afresh. Draw eps ~ N(0, I) at every call (torch.randn_like(mu)) and use "
                               "z = mu + exp(log_var / 2) * eps.")
    gen = torch.Generator().manual_seed(1)
    reference, mistakes = [], []
    with torch.no_grad():
        mu, log_var = model.encode(x)
        for _ in range(draws):
            eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
            t = _reference_terms(model, x, mu, log_var, eps)
            reference.append(t["loss"].double().mean())
            mistakes.append([(m, v.double().mean()) for m, v in _loss_mistakes(model, x, mu, log_var, eps, t)])
    reference = torch.stack(reference)

    def agrees(values: torch.Tensor) -> bool:
        se = math.sqrt(got.var().item() / draws + values.var().item() / draws)
        return abs(got.mean().item() - values.mean().item()) <= 5 * se + _ATOL

    if agrees(reference):
        return None
    for i, (message, _) in enumerate(mistakes[0]):
        if agrees(torch.stack([draw[i][1] for draw in mistakes])):
            return Feedback(False, message)
    return Feedback(False, f"over {draws} calls your loss averages {got.mean():.2f} nats per image, but the negative "
                           f"ELBO of your model on these images is {reference.mean():.2f} on average: "
                           "-log p(x|z) summed over pixels (binary cross-entropy with logits) + the KL summed over "
                           "latent dimensions, at z = mu + exp(log_var / 2) * eps.")


def _value_problem(model, x: torch.Tensor, logits: torch.Tensor, seed: int) -> str | None:
    """None if loss(x) is the negative ELBO of the learner's model, with gradients through a reparameterized z;
    else what is wrong. First with the same noise as the reference (torch.randn_like(mu) after the same seed),
    then, if the learner draws its noise otherwise, statistically."""
    torch.manual_seed(seed)
    with torch.no_grad():
        got = _call_loss(model, x)
    torch.manual_seed(seed)
    with torch.no_grad():
        mu, log_var = model.encode(x)
        eps = torch.randn_like(mu)
        t = _reference_terms(model, x, mu, log_var, eps)
        mistakes = _loss_mistakes(model, x, mu, log_var, eps, t)
    if _is_probabilities(logits):
        probs_bce = F.binary_cross_entropy(t["logits"].clamp(0, 1), x, reduction="none").sum(dim=1) + t["kl"]
        if _matches(got, t["loss"]):
            return ("your decoder ends with a sigmoid, and the loss feeds its output to "
                    "binary_cross_entropy_with_logits, which applies the sigmoid again: the pixel probabilities can "
                    "then never leave [0.5, 0.73]. decode should return the logits (no final sigmoid).")
        return ("decode(z) returns values in (0, 1) only, probabilities (a final sigmoid)"
                + (": the loss values are right, but" if _matches(got, probs_bce) else ";")
                + " decode should return the logits, and the loss binary_cross_entropy_with_logits(logits, x), "
                  "which stays exact where a probability rounds to 0 or 1.")
    same_noise = _matches(got, t["loss"])
    if not same_noise:
        for message, value in mistakes:
            if _matches(got, value):
                return message
        problem = _statistical_values(model, x)
        if problem is not None:
            return problem.message
    return _gradient_problem(model, x, seed, same_noise)


def _gradient_problem(model, x: torch.Tensor, seed: int, same_noise: bool) -> str | None:
    """None if the gradients of the learner's loss are those of the negative ELBO, else what is wrong."""
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    total = _call_loss(model, x, detach=False).mean()
    if not total.requires_grad:
        return ("loss(x) carries no gradient (no grad_fn): it was computed under torch.no_grad(), or through "
                ".item(), .detach() or .numpy(). Training needs the graph from the parameters to the loss.")
    grads = torch.autograd.grad(total, params, allow_unused=True)
    torch.manual_seed(seed)
    mu, log_var = model.encode(x)
    t = _reference_terms(model, x, mu, log_var, torch.randn_like(mu))
    want = torch.autograd.grad(t["loss"].mean(), params, allow_unused=True, retain_graph=True)
    kl_only = torch.autograd.grad(t["kl"].mean(), params, allow_unused=True)

    def same(a, b) -> bool:
        a = torch.zeros_like(b) if a is None else a
        return (a - b).abs().max().item() <= 1e-3 * b.abs().max().item() + 1e-6

    encoder = [i for i, g in enumerate(kl_only) if g is not None and g.abs().max() > 0]
    if encoder and all(same(grads[i], kl_only[i]) for i in encoder):
        return ("the values are right, but z is cut off from the encoder: the encoder's parameters get the gradient "
                "of the KL alone, nothing from the reconstruction term. Was z drawn with "
                "torch.distributions.Normal(...).sample(), or detached (.detach(), torch.no_grad())? Use "
                "z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu) (or .rsample()), so that gradients flow "
                "through z into mu and log_var.")
    if same_noise:
        worst = max((grads[i] if grads[i] is not None else torch.zeros_like(w)).sub(w).abs().max().item()
                    for i, w in enumerate(want) if w is not None)
        if not all(same(g, w) for g, w in zip(grads, want) if w is not None):
            return (f"the values of loss(x) are right, but its gradients differ from those of the negative ELBO by up "
                    f"to {worst:.3g}: is part of the computation detached, or done in place on .data?")
    return None


def _train(model, x_train: torch.Tensor, steps: int, batch_size: int, seed: int, limit: float | None) -> float:
    """Train with ae_course.train (Adam, lr 1e-3, dynamic binarization), stopping with NotYet after `limit`
    seconds; returns the seconds taken."""
    from ..data import binarize_dynamic
    from ..training import loss_step, train

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    try:
        train(model, x_train, steps=steps, batch_size=batch_size, seed=seed, transform=binarize_dynamic,
              optimizers=optimizer, step=loss_step if limit is None else with_deadline(loss_step, limit),
              device="cpu", progress=False)
    except OutOfTime:
        raise NotYet(f"training stopped before its {steps} steps were done: it took more than the time limit of "
                     f"{limit:.0f} s. Is the model much larger than a {model.__class__.__name__} with the sizes "
                     "it was given?") from None
    return time.perf_counter() - start


def _test_negative_elbo(model, x: torch.Tensor, draws: int = 4) -> float:
    """The mean negative ELBO (nats per image) of the binary images x, averaged over `draws` fixed noise draws."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, log_var = model.encode(x)
        values = [_reference_terms(model, x, mu, log_var, torch.randn(mu.shape, generator=gen))["loss"].mean()
                  for _ in range(draws)]
    return torch.stack(values).mean().item()


@checker
def check_vae_class(cls, x_train: torch.Tensor, x_test: torch.Tensor, *, hidden: int = 200, latent_dim: int = 10,
                    steps: int = 200, batch_size: int = 64, seed: int = 0, tolerance: float = 5.0,
                    time_limit: float | None = 120.0) -> Feedback:
    r"""Check a learner's VAE class against :class:`ae_course.VAE`: first its loss on fixed weights, then training.

    ``cls(input_dim=784, hidden=hidden, latent_dim=latent_dim)`` must build an ``nn.Module`` with one hidden
    layer of `hidden` units in each network and

    * ``encode(x)``: x (B, 784) -> (mu, log_var), each (B, latent_dim), q(z|x) = N(mu, diag(exp(log_var)));
    * ``decode(z)``: z (B, latent_dim) -> logits (B, 784) of the Bernoulli decoder p(x|z);
    * ``loss(x)``: the negative ELBO of each image with one reparameterized sample z = mu + exp(log_var / 2) eps,
      -log p(x|z) (binary cross-entropy summed over pixels) + KL(q(z|x) || N(0, I)) (summed over latent
      dimensions), shape (B,) like ``VAE.loss``; or its mean over the batch (Kingma & Welling 2014, eq. 10).

    The loss is compared, on 64 binarized test images and at the learner's own initial weights, with the
    negative ELBO computed from the learner's ``encode`` and ``decode`` with the same noise (``torch.randn_like``
    after the same seed; when the learner draws its noise otherwise, statistically over 32 calls); its
    gradients with the negative ELBO's. Named mistakes: a mean over pixels instead of a sum, the KL with the wrong
    sign, missing, averaged over latent dimensions or summed over the batch, the ELBO instead of its negative, a
    sum over the batch, sigma = exp(log_var) instead of exp(log_var / 2), z = mu without noise, a z that is not
    reparameterized (``Normal(...).sample()``, ``.detach()``: the encoder then gets the KL's gradient only), a
    sigmoid output fed to ``binary_cross_entropy_with_logits`` (or probabilities returned by ``decode``), a
    squared error, log_var read as log sigma, a missing nonlinearity, an activation after the last layer, a
    wrong parameter count. Then both the learner's model and ``VAE(784, latent_dim, (hidden,))``, each built
    after ``torch.manual_seed(seed)``, are trained for `steps` Adam steps (lr 1e-3) on minibatches of
    `batch_size` dynamically binarized images of `x_train` (grey levels in [0, 1]) with
    :func:`ae_course.train`, and their test negative ELBO on the fixed binarization of the first 500 images
    of `x_test` is compared: the learner's must not exceed the reference's by more than `tolerance` nats.
    Training the learner's model stops after `time_limit` seconds (None: no limit). Torch's global random
    state is the same after the check as before. Chapter 6, exercise "a VAE class of your own".
    """
    from ..data import binarize_static
    from ..vae import VAE

    pixels = x_train.shape[1]
    with torch.random.fork_rng(devices=[]):
        name = getattr(cls, "__name__", type(cls).__name__)
        build = f"{name}(input_dim={pixels}, hidden={hidden}, latent_dim={latent_dim})"

        def make():
            return call_learner(lambda: cls(input_dim=pixels, hidden=hidden, latent_dim=latent_dim), call=build,
                                returns=nn.Module, expect="a torch.nn.Module (your class should subclass nn.Module)")

        torch.manual_seed(seed)
        model = make()
        missing = [m for m in ("encode", "decode", "loss") if not callable(getattr(model, m, None))]
        if missing:
            return Feedback(False, f"{name} has no method {', '.join(missing)}: it needs encode(x) -> (mu, log_var), "
                                   "decode(z) -> logits and loss(x) -> the negative ELBO of each image.")
        torch.manual_seed(seed)
        reference = VAE(input_dim=pixels, latent_dim=latent_dim, hidden=(hidden,))
        n_mine, n_ref = (sum(p.numel() for p in m.parameters()) for m in (model, reference))
        if n_mine != n_ref:
            return Feedback(False, f"{build} has {n_mine:,} parameters; a VAE with one hidden layer of {hidden} units "
                                   f"in each network, a {hidden}-to-2x{latent_dim} encoder output (mu and log_var) and "
                                   f"a {pixels}-logit decoder output has {n_ref:,}. Use the sizes you are given.")
        x = binarize_static(x_test[:64], seed=0)
        if next(model.parameters()).dtype != x.dtype:
            return Feedback(False, f"the model's parameters are {next(model.parameters()).dtype}; use float32, as "
                                   "nn.Linear does by default.")
        mu, log_var, logits = _parts(model, x)

        problem = _value_problem(model, x, logits, seed + 1)
        if problem is not None:
            return Feedback(False, problem)

        # training, against the package's VAE of the same sizes
        x_eval = binarize_static(x_test[:500], seed=1)
        torch.manual_seed(seed)
        model = make()
        try:
            seconds = _train(model, x_train, steps, batch_size, seed, time_limit)
        except NotYet:
            raise
        except FloatingPointError as err:
            return Feedback(False, f"training your model failed: {err}")
        except Exception as err:  # the learner's code may fail in any way during training
            return Feedback(False, f"training your model with ae_course.train raised {type(err).__name__}: {err}")
        after = "after training, where sigma is far from 1 and the KL far from 0: "
        with prefixed(after):
            problem = _value_problem(model, x, _parts(model, x)[2], seed + 2)
        if problem is not None:
            return Feedback(False, after + problem)
        ref_seconds = _train(reference, x_train, steps, batch_size, seed, None)
        mine, theirs = _test_negative_elbo(model, x_eval), _test_negative_elbo(reference, x_eval)
    trained = (f"after {steps} steps ({seconds:.1f} s; the package's VAE: {ref_seconds:.1f} s) the test negative ELBO "
               f"of your model is {mine:.1f} nats per image, the package's VAE of the same sizes reaches {theirs:.1f}")
    if not math.isfinite(mine) or mine > theirs + tolerance:
        return Feedback(False, f"the loss is right, but {trained}: more than {tolerance:g} nats worse. Look at the "
                               "networks: a ReLU after each hidden layer and nothing after the last, log_var taken "
                               "from the encoder's output as it is (no clamp to a narrow range), and the KL of the "
                               "same mu and log_var that produced z.")
    return Feedback(True, f"the loss is the negative ELBO with a reparameterized z, and {trained}.")
