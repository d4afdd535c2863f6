"""Checkers for the exercises of the chapter "Discrete codes: the VQ-VAE".

* :func:`check_vector_quantizer`: a learner's ``quantize(z_e, codebook) -> (z_q, codes, codebook_loss,
  commitment_loss)``: the nearest code, the straight-through estimator and the two losses with their
  stop-gradients (van den Oord, Vinyals & Kavukcuoglu 2017, eq. 3; Bengio et al. 2013), checked in value
  against :mod:`ae_course.vq_vae` and in gradient with autograd;
* :func:`check_perplexity`: the perplexity exp(H(f)) of the code frequencies f.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..vq_vae import codebook_loss, codebook_usage, commitment_loss, nearest_code
from .feedback import Feedback, NotYet, as_number, call_learner, checker, close, name_mistake

__all__ = ["check_vector_quantizer", "check_perplexity"]

_B, _D, _H, _W, _K = 3, 4, 2, 3, 6


def _inputs(seed: int = 0) -> tuple[torch.Tensor, nn.Parameter]:
    """Encoder outputs z_e (B, D, H, W) (a leaf that requires grad) and a codebook (K, D) (a Parameter), chosen
    so that the nearest and the farthest code, and the largest inner product, differ at some positions."""
    gen = torch.Generator().manual_seed(seed)
    z_e = torch.randn(_B, _D, _H, _W, generator=gen, dtype=torch.float64)
    codebook = torch.randn(_K, _D, generator=gen, dtype=torch.float64) * torch.linspace(0.3, 2.0, _K,
                                                                                         dtype=torch.float64)[:, None]
    return z_e.requires_grad_(), nn.Parameter(codebook)


def _call(fn, z_e: torch.Tensor, codebook: nn.Parameter) -> tuple[torch.Tensor, ...]:
    out = call_learner(fn, z_e, codebook, call="quantize(z_e, codebook)", returns=(tuple, list), copy=False,
                       detach=False, expect="four tensors: (z_q, codes, codebook_loss, commitment_loss)")
    if len(out) != 4 or not all(isinstance(t, torch.Tensor) for t in out):
        raise NotYet(f"quantize should return four tensors (z_q, codes, codebook_loss, commitment_loss); got "
                     f"{len(out)} values of types {[type(t).__name__ for t in out]}.")
    return tuple(out)


def _check_shapes(z_q: torch.Tensor, codes: torch.Tensor, cb: torch.Tensor, cm: torch.Tensor) -> None:
    if tuple(z_q.shape) == (_B, _H, _W, _D):
        raise NotYet(f"z_q has shape (B, H, W, D) = {tuple(z_q.shape)}: codebook[codes] puts the code's D "
                     "coordinates last; permute them back to the channel axis, .permute(0, 3, 1, 2).")
    if tuple(z_q.shape) != (_B, _D, _H, _W):
        raise NotYet(f"z_q should have the shape of z_e, (B, D, H, W) = {(_B, _D, _H, _W)}; got {tuple(z_q.shape)}.")
    if codes.numel() == _B * _H * _W and tuple(codes.shape) != (_B, _H, _W):
        raise NotYet(f"codes has shape {tuple(codes.shape)}: reshape it to (B, H, W) = {(_B, _H, _W)}, one code per "
                     "position of each image.")
    if tuple(codes.shape) != (_B, _H, _W):
        raise NotYet(f"codes should have shape (B, H, W) = {(_B, _H, _W)}, one index per position; got "
                     f"{tuple(codes.shape)}" + (" (one row per position and code: take the argmin over the codes, "
                                                "dim=1)." if codes.numel() == _B * _H * _W * _K else "."))
    if codes.is_floating_point() and not torch.equal(codes, codes.round()):
        raise NotYet("codes should be whole numbers, the indices of the nearest codes (argmin returns them).")
    for name, loss in (("codebook loss", cb), ("commitment loss", cm)):
        if loss.numel() == 1:
            raise NotYet(f"the {name} is a single number for the whole batch; return one value per image, shape "
                         f"(B,) = ({_B},): sum over D, H and W only, .flatten(1).sum(1).")
        if tuple(loss.shape) == (_B, _D, _H, _W):
            raise NotYet(f"the {name} has one value per coordinate and position, {tuple(loss.shape)}: sum them, "
                         "one value per image, .flatten(1).sum(1).")
        if tuple(loss.shape) != (_B,):
            raise NotYet(f"the {name} should have shape (B,) = ({_B},), one value per image; got {tuple(loss.shape)}.")


def _check_codes(codes: torch.Tensor, z_e: torch.Tensor, codebook: torch.Tensor) -> None:
    z, e = z_e.detach(), codebook.detach()
    right = nearest_code(z, e)
    if torch.equal(codes.long(), right):
        return
    flat = z.permute(0, 2, 3, 1).reshape(-1, _D)
    distances = torch.cdist(flat, e)
    name_mistake(codes.long(), [
        (distances.argmax(1).reshape(_B, _H, _W), "your codes are the FARTHEST codes: argmax of the distances. The "
                                                  "nearest code is the argmin."),
        ((flat @ e.T).argmax(1).reshape(_B, _H, _W), "your codes maximize the inner product z_e . e_k; the nearest "
                                                    "code minimizes the distance ||z_e - e_k||^2 = ||z_e||^2 - 2 "
                                                    "z_e . e_k + ||e_k||^2, which also depends on ||e_k||^2."),
        (torch.cdist(z.reshape(-1, _D), e).argmin(1).reshape(_B, _H, _W),
         "z_e was reshaped to (-1, D) without moving the channel axis last: each row then mixes coordinates of "
         "different positions. Use z_e.permute(0, 2, 3, 1).reshape(-1, D)."),
    ], rtol=0, atol=0)
    wrong = int((codes.long() != right).sum())
    raise NotYet(f"{wrong} of the {right.numel()} codes are not the nearest codes, argmin_k ||z_e - e_k||^2 at each "
                 "position.")


def _grad(output: torch.Tensor, wrt: list[torch.Tensor], weight: torch.Tensor | None = None) -> list[torch.Tensor]:
    """d(sum(weight * output))/d(wrt), with zeros where output does not depend on a tensor."""
    if not output.requires_grad:
        return [torch.zeros_like(t) for t in wrt]
    total = (output * weight).sum() if weight is not None else output.sum()
    grads = torch.autograd.grad(total, wrt, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]


def _moves(g: torch.Tensor) -> bool:
    return bool(g.abs().max() > 1e-12)


@checker
def check_vector_quantizer(fn: Callable[[torch.Tensor, torch.Tensor], tuple]) -> Feedback:
    r"""Check ``quantize(z_e, codebook) -> (z_q, codes, codebook_loss, commitment_loss)``.

    z_e: (B, D, H, W) encoder outputs, codebook: (K, D) (an ``nn.Parameter``). Expected (van den Oord et al.
    2017, eq. 3): codes = argmin_k ||z_e - e_k||^2 at each position, (B, H, W); z_q = z_e + sg[e_codes - z_e]
    (the straight-through estimator: the value of the nearest codes, the gradient of z_e); the codebook loss
    ||sg[z_e] - e||^2 and the commitment loss ||z_e - sg[e]||^2 of each image, (B,), summed over D, H, W.

    Values are compared with :func:`ae_course.vq_vae.nearest_code`, :func:`~ae_course.vq_vae.codebook_loss`
    and :func:`~ae_course.vq_vae.commitment_loss`; gradients with autograd: a fixed linear "decoder"
    sum(w * z_q) must give z_e the gradient w and the codebook none, the codebook loss must move only the
    codebook and the commitment loss only z_e. Named mistakes: shapes ((B, H, W, D) for z_q, flat codes, one
    number per batch), the farthest code (argmax), the largest inner product, a reshape without permute,
    z_e returned instead of z_q, losses averaged instead of summed, beta inside the commitment loss, the losses
    swapped, a missing straight-through (the encoder gets no gradient from the decoder), a half-detached
    straight-through (the codebook gets it too), and each stop-gradient missing or on the wrong side.
    """
    z_e, codebook = _inputs()
    z_q, codes, cb, cm = _call(fn, z_e, codebook)
    _check_shapes(z_q, codes, cb, cm)
    _check_codes(codes, z_e, codebook)

    e = codebook.detach()[nearest_code(z_e.detach(), codebook.detach())].permute(0, 3, 1, 2)
    if not close(z_q.detach(), e, rtol=1e-6, atol=1e-9):
        if close(z_q.detach(), z_e.detach(), rtol=1e-6, atol=1e-9):
            raise NotYet("z_q equals z_e: the straight-through line must give the VALUE of the nearest codes, "
                         "z_e + (z_q - z_e).detach(), not z_e itself.")
        raise NotYet("the codes are right, but z_q is not codebook[codes] at every position (in the layout of "
                     "z_e, (B, D, H, W)).")

    right_cb, right_cm = codebook_loss(z_e.detach(), e), commitment_loss(z_e.detach(), e)
    for name, got, right in (("codebook loss", cb, right_cb), ("commitment loss", cm, right_cm)):
        value = got.detach()
        if close(value, right, rtol=1e-6, atol=1e-9):
            continue
        name_mistake(value, [
            (right / (_D * _H * _W), f"the {name} is averaged over the D coordinates and the H x W positions "
                                     "(a mean, as F.mse_loss computes by default); sum them, as the book sums "
                                     "every term of a per-image loss."),
            (right / (_H * _W), f"the {name} is averaged over the positions; sum over D, H and W."),
            (0.25 * right, f"the {name} is multiplied by beta = 0.25; return it without beta (the model weighs the "
                           "commitment loss)."),
            (right.sqrt(), f"the {name} is a distance, not a squared distance: ||z_e - e||^2."),
        ], rtol=1e-6, atol=1e-9)
        raise NotYet(f"the {name} should be the squared distance ||z_e - e||^2 summed over D, H and W, "
                     f"{[round(v, 4) for v in right.tolist()]}; got {[round(v, 4) for v in value.tolist()]}.")

    wrt = [z_e, codebook]
    w = torch.randn(z_q.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_ze, g_cb = _grad(z_q, wrt, w)
    if not _moves(g_ze):
        raise NotYet("the decoder's gradient does not reach z_e: z_q = codebook[codes] has no gradient with respect "
                     "to the encoder (argmin is piecewise constant), so the encoder would learn from the commitment "
                     "loss alone. Return the straight-through z_e + (z_q - z_e).detach().")
    if _moves(g_cb):
        raise NotYet("the decoder's gradient reaches the codebook through z_q: detach the whole difference, "
                     "z_e + (z_q - z_e).detach() (z_e + z_q - z_e.detach() lets it through). Only the codebook loss "
                     "should move the codes.")
    if not close(g_ze, w, rtol=1e-6, atol=1e-9):
        raise NotYet("the straight-through gradient should reach z_e unchanged (dz_q/dz_e = I); yours changes it. "
                     "Use z_e + (z_q - z_e).detach().")

    for name, loss, target, other, fix in (
            ("codebook loss", cb, "the codebook", "z_e (the encoder)", "(z_e.detach() - z_q) ** 2"),
            ("commitment loss", cm, "z_e (the encoder)", "the codebook", "(z_e - z_q.detach()) ** 2")):
        g_z, g_c = (_moves(g) for g in _grad(loss, wrt))
        moves_target, moves_other = (g_c, g_z) if name == "codebook loss" else (g_z, g_c)
        if moves_target and not moves_other:
            continue
        if moves_target:
            raise NotYet(f"the {name} has no stop-gradient: it moves {target} and {other}. It should move only "
                         f"{target}: {fix}.")
        if moves_other:
            raise NotYet(f"the stop-gradient of the {name} is on the wrong side: it moves {other} instead of "
                         f"{target}. Write {fix}.")
        raise NotYet(f"the {name} moves nothing: both sides are detached. It should move {target}: {fix}.")
    return Feedback(True, "nearest codes, the straight-through gradient to the encoder, the codebook loss moving "
                          "only the codes and the commitment loss only the encoder.")


@checker
def check_perplexity(value, codes: torch.Tensor, n_codes: int) -> Feedback:
    """Check the perplexity exp(-sum_k f_k log f_k) of the frequencies f_k of `codes` (any shape) over n_codes.

    Diagnoses: the entropy itself (nats or bits), exp of the entropy in bits, the number of used codes, the
    number of codes, the mean of per-image perplexities. Raises ValueError if `codes` itself is invalid (a
    wrong call, not a wrong answer).
    """
    number = as_number(value, "the perplexity")
    usage = codebook_usage(codes, n_codes)
    right = usage.perplexity
    if close(number, right, rtol=1e-4):
        return Feedback(True, f"a perplexity of {right:.2f}: the codes are as varied as {right:.2f} equally used "
                              f"codes (of {n_codes}).")
    entropy = math.log(right)
    per_image = sum(codebook_usage(c, n_codes).perplexity for c in codes) / len(codes)
    name_mistake(number, [
        (entropy, "that is the entropy H(f) in nats; the perplexity is its exponential, exp(H)."),
        (entropy / math.log(2), "that is the entropy in bits; the perplexity is 2 ** H_bits = exp(H_nats)."),
        (math.exp(entropy / math.log(2)), "you exponentiated the entropy in bits with e; use 2 ** H_bits, or exp of "
                                          "the entropy in nats."),
        (n_codes - usage.dead, "that is the number of codes used at least once; the perplexity weighs them by their "
                               "frequencies: exp(-sum_k f_k log f_k)."),
        (float(n_codes), "that is K, the size of the codebook: the perplexity of codes used equally often."),
    ], rtol=1e-4)
    if close(number, per_image, rtol=1e-4):
        raise NotYet("that is the mean of the perplexities of each image's grid; count the codes over ALL positions "
                     "of all images first, then take one entropy.")
    return Feedback(False, f"expected exp(-sum_k f_k log f_k) = {right:.3f} with f_k the fraction of all positions that "
                           f"chose code k; got {number:.3f}.")
