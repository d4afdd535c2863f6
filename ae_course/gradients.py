r"""Monte Carlo estimators of the gradient of an expectation under a diagonal Gaussian.

Both functions estimate the gradient of

    F(mu, log_var) = E_{z ~ q}[ f(z) ],    q = N(mu, diag(exp(log_var))),

with respect to ``mu`` and ``log_var`` (the encoder's outputs in :class:`ae_course.VAE`), and return
one estimate *per sample*, so that the caller can average them (the estimate) or take their variance
(the quality of a single-sample estimate). Review: Mohamed, Rosca, Figurnov & Mnih (2020), "Monte
Carlo Gradient Estimation in Machine Learning", JMLR 21(132).

* :func:`score_function_gradient`, the score-function, likelihood-ratio or REINFORCE estimator
  (Williams 1992; Mohamed et al. 2020, §4):  grad F = E_q[ f(z) grad log q(z) ]. It needs only values
  of f, never its derivative, and for z = mu + sigma * eps its terms are
  f(z) eps / sigma  (w.r.t. mu)   and   f(z) (eps^2 - 1) / 2  (w.r.t. log_var).
* :func:`pathwise_gradient`, the pathwise or reparameterization estimator (Kingma & Welling 2014,
  §2.4; Rezende, Mohamed & Wierstra 2014, §3; Mohamed et al. 2020, §5): with
  z = mu + exp(log_var / 2) * eps, eps ~ N(0, I),  grad F = E_eps[ grad f(mu + sigma eps) ], whose
  terms are  f'(z)  (w.r.t. mu)   and   f'(z) sigma eps / 2  (w.r.t. log_var).

The gradient is taken with respect to the *log-variance*, as the VAE parameterizes its encoder. The
gradient with respect to sigma follows from the chain rule: dF/dsigma = dF/dlog_var * 2 / sigma.

Batches of independent objectives. ``f`` maps z of shape (S, *shape) (S = n_samples, shape =
mu.shape) to values of shape (S, *shape[:k]) for some 0 <= k < len(shape): one scalar per sample
(k = 0), or, for mu of shape (B, L), one value per sample and example (k = 1, e.g. log p(x_b | z_b)).
The estimated gradient is that of the *sum* of f's values. With k > 0 the value f[:, b] must depend on
z[:, b] only (the examples are independent, as in a VAE); the score-function estimator then weights
the score of z[:, b] by f[:, b] alone, which is unbiased under that assumption and has a lower
variance than weighting it by the sum over the batch. In every case f must treat the S samples
independently (f[s] depends on z[s] only), as any per-example function does.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

__all__ = ["GradientEstimates", "pathwise_gradient", "score_function_gradient"]


class GradientEstimates(NamedTuple):
    """Per-sample gradient estimates: ``mu`` and ``log_var`` each (n_samples, *mu.shape); ``values``, the
    f(z) of each sample, (n_samples, *shape[:k]). Their mean over dim 0 is the Monte Carlo estimate."""

    mu: torch.Tensor
    log_var: torch.Tensor
    values: torch.Tensor


def _check_parameters(mu: torch.Tensor, log_var: torch.Tensor, n_samples: int) -> int:
    if not isinstance(mu, torch.Tensor) or not isinstance(log_var, torch.Tensor):
        raise ValueError(f"mu and log_var must be tensors, got {type(mu).__name__} and {type(log_var).__name__}")
    if not (mu.is_floating_point() and log_var.is_floating_point()):
        raise ValueError(f"mu and log_var must be floating tensors, got {mu.dtype} and {log_var.dtype}")
    if mu.shape != log_var.shape:
        raise ValueError(f"mu has shape {tuple(mu.shape)} but log_var has shape {tuple(log_var.shape)}; they must match")
    if mu.dim() == 0:
        raise ValueError("mu must have at least one dimension, e.g. shape (L,) or (B, L); got a 0-d tensor")
    if not (torch.isfinite(mu).all() and torch.isfinite(log_var).all()):
        raise ValueError("mu and log_var must be finite")
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    return int(n_samples)


def _noise(mu: torch.Tensor, n_samples: int, eps: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    shape = (n_samples, *mu.shape)
    if eps is None:
        return torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
    if not isinstance(eps, torch.Tensor) or tuple(eps.shape) != shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps must be a tensor of shape (n_samples, *mu.shape) = {shape}, got {got}")
    return eps.to(dtype=mu.dtype, device=mu.device)


def _check_values(values, n_samples: int, shape: torch.Size) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"f must return a tensor, got {type(values).__name__}")
    allowed = [(n_samples, *shape[:k]) for k in range(len(shape))]
    if tuple(values.shape) not in allowed:
        raise ValueError(f"f(z) for z of shape {(n_samples, *shape)} must return one value per sample, shape "
                         f"{' or '.join(map(str, allowed))}; got {tuple(values.shape)}")
    return values


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Append singleton dimensions so that values (S, *shape[:k]) broadcasts against (S, *shape)."""
    return values.reshape(*values.shape, *([1] * (like.dim() - values.dim())))


def score_function_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, log_var: torch.Tensor,
                            n_samples: int, baseline: float | torch.Tensor | str | None = None, *,
                            eps: torch.Tensor | None = None,
                            generator: torch.Generator | None = None) -> GradientEstimates:
    r"""Score-function (REINFORCE) estimates of grad E_{N(mu, diag(exp(log_var)))}[f(z)], one per sample.

    With z_s = mu + sigma * eps_s and sigma = exp(log_var / 2), the s-th estimate is

        (f(z_s) - b_s) * grad log q(z_s) = (f(z_s) - b_s) * ( eps_s / sigma ,  (eps_s^2 - 1) / 2 )

    for the gradients with respect to (mu, log_var) (Williams 1992; Mohamed et al. 2020, eq. 13 and
    §4.3 for the control variate b). Since E_q[grad log q] = 0, any b that does not depend on z_s
    leaves the estimator unbiased; a good b reduces its variance.

    Args:
        f: maps z (n_samples, *mu.shape) to values (n_samples, *mu.shape[:k]) (see the module docstring).
            Only values are needed: f is called under ``torch.no_grad()`` and may be non-differentiable.
        mu, log_var: floating tensors of the same shape (at least 1-D), the mean and log-variance of q.
        n_samples: S >= 1, the number of independent samples (estimates).
        baseline: None (b = 0); a number or a tensor broadcastable to f's values (a constant control
            variate); or ``"leave_one_out"``: b_s = the mean of f over the *other* S - 1 samples, which
            is independent of z_s and hence keeps every estimate unbiased (needs S >= 2).
        eps: optional standard-normal noise of shape (S, *mu.shape); drawn from `generator` (or torch's
            global generator) when omitted.
        generator: a torch.Generator for reproducible noise.
    Returns:
        :class:`GradientEstimates` with ``mu`` and ``log_var`` of shape (S, *mu.shape), in units of f per
        unit of mu (resp. log_var); their mean over dim 0 is the estimate of the gradient.
    Raises:
        ValueError: for mismatched or non-finite mu/log_var, n_samples < 1, eps of the wrong shape, f's
            values of the wrong shape or not a tensor, an unknown baseline string, or "leave_one_out"
            with n_samples < 2.
    """
    n = _check_parameters(mu, log_var, n_samples)
    if isinstance(baseline, str) and baseline != "leave_one_out":
        raise ValueError(f"baseline must be None, a number, a tensor or 'leave_one_out', got {baseline!r}")
    if baseline == "leave_one_out" and n < 2:
        raise ValueError("the leave-one-out baseline needs n_samples >= 2")
    mu, log_var = mu.detach(), log_var.detach()
    eps = _noise(mu, n, eps, generator)
    sigma = torch.exp(0.5 * log_var)
    with torch.no_grad():
        values = _check_values(f(mu + sigma * eps), n, mu.shape).detach()
        if baseline is None:
            centred = values
        elif isinstance(baseline, str):
            centred = values - (values.sum(dim=0, keepdim=True) - values) / (n - 1)
        else:
            b = torch.as_tensor(baseline, dtype=values.dtype, device=values.device)
            try:
                shape = torch.broadcast_shapes(b.shape, values.shape)
            except RuntimeError:
                shape = None
            if shape != values.shape:
                raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to f's values of shape "
                                 f"{tuple(values.shape)}")
            centred = values - b
        weight = _expand(centred, eps)
        return GradientEstimates(mu=weight * eps / sigma, log_var=weight * (eps.square() - 1) / 2, values=values)


def pathwise_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, log_var: torch.Tensor,
                      n_samples: int, *, eps: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> GradientEstimates:
    r"""Pathwise (reparameterization) estimates of grad E_{N(mu, diag(exp(log_var)))}[f(z)], one per sample.

    Writes z_s = mu + sigma * eps_s, sigma = exp(log_var / 2), eps_s ~ N(0, I), differentiates f at z_s
    with autograd and applies the chain rule dz/dmu = 1, dz/dlog_var = sigma * eps / 2:

        ( grad_z f(z_s) ,  grad_z f(z_s) * sigma * eps_s / 2 )

    for the gradients with respect to (mu, log_var) (Kingma & Welling 2014, §2.4 and eq. 10; Rezende,
    Mohamed & Wierstra 2014, §3; Mohamed et al. 2020, §5).

    Args:
        f: maps z (n_samples, *mu.shape) to values (n_samples, *mu.shape[:k]) (see the module docstring);
            must be differentiable in z. Autograd runs even if the caller is inside ``torch.no_grad()``;
            the ``.grad`` of f's own parameters is not touched.
        mu, log_var: floating tensors of the same shape (at least 1-D), the mean and log-variance of q.
        n_samples: S >= 1, the number of independent samples (estimates).
        eps: optional standard-normal noise of shape (S, *mu.shape); drawn from `generator` (or torch's
            global generator) when omitted.
        generator: a torch.Generator for reproducible noise.
    Returns:
        :class:`GradientEstimates` with ``mu`` and ``log_var`` of shape (S, *mu.shape).
    Raises:
        ValueError: for mismatched or non-finite mu/log_var, n_samples < 1, eps of the wrong shape, f's
            values of the wrong shape or not a tensor, or values that do not depend differentiably on z
            (use :func:`score_function_gradient` for such an f).
    """
    n = _check_parameters(mu, log_var, n_samples)
    mu, log_var = mu.detach(), log_var.detach()
    eps = _noise(mu, n, eps, generator)
    sigma = torch.exp(0.5 * log_var)
    with torch.enable_grad():
        z = (mu + sigma * eps).requires_grad_(True)
        values = _check_values(f(z), n, mu.shape)
        if not values.requires_grad:
            raise ValueError("f(z) does not depend differentiably on z (its values have no grad_fn), so "
                             "there is no pathwise gradient; use score_function_gradient")
        (grad_z,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
    if grad_z is None:
        raise ValueError("f(z) does not depend on z through autograd; use score_function_gradient")
    return GradientEstimates(mu=grad_z, log_var=grad_z * sigma * eps / 2, values=values.detach())
