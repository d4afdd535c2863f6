"""Evaluating latent-variable models: the ELBO, the importance-sampled log-likelihood and active units.

The estimators work with any model that follows the protocol of :class:`ae_course.vae.VAE`:

* ``encode(x[, y]) -> (mu, log_var)``, the diagonal-Gaussian q(z|x[, y]), each (B, L) (or pass a
  ``proposal``, any callable ``(x, y) -> (mu, log_var)``, for models whose encoder is not a Gaussian);
* ``decode(z[, y]) -> out`` for z of shape (N, L);
* ``log_likelihood(x, out) -> (N,)``, log p(x|z) in nats;
* ``prior``: p(z), with ``log_prob(z) -> (...)`` for z of shape (..., L) (a torch distribution, or a
  :class:`ae_course.priors.Prior` with a density).

Labels are the optional last argument ``y`` (B,): with a conditional model the estimates are of log p(x|y).
Everything runs without gradients, and an ``nn.Module`` is put in eval mode for the duration (and restored
afterwards).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .losses import gaussian_kl, reparameterize
from .models import check_finite

Proposal = Callable[[torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor]"]
"""A diagonal-Gaussian proposal r(z|x[, y]) = N(mu, diag(exp(log_var))): (x, y) -> (mu, log_var), each (B, L)."""


@contextmanager
def _evaluating(model) -> Iterator[None]:
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training is not None:
            model.train(was_training)


def _check_x(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a (B, D) tensor with B >= 1, got {getattr(x, 'shape', type(x).__name__)}")
    check_finite(x, "x")
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _args(y: torch.Tensor | None) -> tuple:
    return () if y is None else (y,)


def _proposal(model, proposal: Proposal | None) -> Proposal:
    return proposal if proposal is not None else (lambda x, y: model.encode(x, *_args(y)))


def _log_weights(model, x: torch.Tensor, y: torch.Tensor | None, mu: torch.Tensor, log_var: torch.Tensor,
                 n: int, generator: torch.Generator | None, eps: torch.Tensor | None = None) -> torch.Tensor:
    """log w_i = log p(x|z_i[, y]) + log p(z_i) - log r(z_i|x) for n samples z_i ~ r(z|x): returns (n, B).

    z_i = mu + sigma * eps_i, the noise drawn here or given as eps (n, B, L); differentiable (the IWAE trains
    on it)."""
    batch, latent_dim = mu.shape
    z = reparameterize(mu, log_var, eps, n_samples=n, generator=generator)          # (n, B, L)
    log_q = Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1).log_prob(z)  # (n, B)
    log_prior = model.prior.log_prob(z.reshape(n * batch, latent_dim)).reshape(n, batch)          # log p(z)
    y_rep = None if y is None else y.unsqueeze(0).expand(n, *y.shape).reshape(n * batch, *y.shape[1:])
    out = model.decode(z.reshape(n * batch, latent_dim), *_args(y_rep))
    x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * batch, x.shape[1])
    log_px_z = model.log_likelihood(x_rep, out).reshape(n, batch)                  # log p(x|z), (n, B)
    return log_px_z + log_prior - log_q


def importance_sampled_log_likelihood(model, x: torch.Tensor, k: int = 1000, batch_size: int = 100,
                                      chunk: int = 100, generator: torch.Generator | None = None,
                                      proposal: Proposal | None = None,
                                      y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Importance-sampled estimate of log p(x) (or log p(x|y)), (B,) in nats (Burda, Grosse & Salakhutdinov
    2016, eq. 8).

    log p(x) ~ log (1/k) sum_{i=1}^k p(x|z_i) p(z_i) / r(z_i|x),  z_i ~ r(z|x) i.i.d.,

    with the proposal r = the model's encoder q(z|x) by default: the IWAE bound L_k. For any proposal that
    is positive wherever p(z|x) is, it is <= log p(x) in expectation (Jensen), nondecreasing in k in
    expectation, equal to the ELBO of r for k = 1 and consistent as k -> infinity (Burda et al. 2016,
    Thm. 1). The sum is taken with ``torch.logsumexp``: the k samples are drawn ``chunk`` at a time and a
    running log-sum-exp is kept, so memory is O(batch_size * chunk * D) whatever k is.

    Args:
        model: follows the protocol of the module docstring (decode, log_likelihood, prior; encode unless
            `proposal` is given).
        x: (N, D) data on the model's device, evaluated ``batch_size`` rows at a time; finite.
        k: number of importance samples per example.
        batch_size: rows of x per pass; chunk: samples per pass.
        generator: optional torch.Generator (on x's device) for reproducible samples.
        proposal: r(z|x, y) as ``(x, y) -> (mu, log_var)``; default ``model.encode(x[, y])``.
        y: optional (N,) labels for a conditional model: the estimate is then of log p(x|y).
    Returns:
        (N,) estimates of log p(x) in nats, on x's device; the negative log-likelihood (NLL) is its negation.
    Raises:
        ValueError: if x is not a non-empty finite (N, D) tensor, y has another length, or k, batch_size
            or chunk is < 1.
    """
    _check_x(x, y)
    _check_positive(k=k, batch_size=batch_size, chunk=chunk)
    propose = _proposal(model, proposal)
    results = []
    with _evaluating(model):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            mu, log_var = propose(xb, yb)
            running = torch.full((len(xb),), -math.inf, device=mu.device, dtype=mu.dtype)
            for done in range(0, k, chunk):
                log_w = _log_weights(model, xb, yb, mu, log_var, min(chunk, k - done), generator)
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
            results.append(running - math.log(k))
    return torch.cat(results).to(x.device)


def estimate_elbo(model, x: torch.Tensor, n_samples: int = 1, batch_size: int = 100,
                  generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Monte Carlo ELBO, (B,) in nats (Kingma & Welling 2014, eq. 10).

    L(x) = (1/S) sum_s log p(x|z_s) - KL(q(z|x) || N(0, I)), z_s ~ q(z|x), with the KL in closed form
    (App. B); S = ``n_samples`` reduces the variance, not the bias (it stays a lower bound on log p(x)).
    The closed-form KL assumes the prior N(0, I) (the VAE's); for another prior use
    :func:`importance_sampled_log_likelihood` with k = 1, the ELBO with the model's own prior.

    Args:
        model: follows the protocol of the module docstring, with the prior N(0, I).
        x: (N, D) data on the model's device; batch_size: rows per pass; generator: optional torch.Generator on x's device.
        y: optional (N,) labels for a conditional model (then a bound on log p(x|y)).
    Returns:
        (N,) ELBO per example, on x's device; the negative ELBO is its negation.
    Raises:
        ValueError: if x is not a non-empty finite (N, D) tensor, y has another length, or n_samples or
            batch_size is < 1.
    """
    _check_x(x, y)
    _check_positive(n_samples=n_samples, batch_size=batch_size)
    results = []
    with _evaluating(model):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            mu, log_var = model.encode(xb, *_args(yb))
            z = reparameterize(mu, log_var, n_samples=n_samples, generator=generator).reshape(-1, mu.shape[1])
            x_rep = xb.unsqueeze(0).expand(n_samples, *xb.shape).reshape(-1, xb.shape[1])
            y_rep = None if yb is None else yb.unsqueeze(0).expand(n_samples, *yb.shape).reshape(-1, *yb.shape[1:])
            log_px_z = model.log_likelihood(x_rep, model.decode(z, *_args(y_rep))).reshape(n_samples, len(xb)).mean(0)
            results.append(log_px_z - gaussian_kl(mu, log_var))
    return torch.cat(results).to(x.device)


def posterior_mean_variance(model, x: torch.Tensor, batch_size: int = 1000,
                            y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Per-dimension activity A_u = Cov_x( E_{q(z|x)}[z_u] ) = Var_x(mu_u(x)), (L,)
    (Burda et al. 2016, §5.2).

    The variance over the rows of x (population variance, divisor N) of each coordinate of the encoder
    mean.
    x: (N, D) on the model's device; y: optional (N,) labels for a conditional model (mu(x, y)).
    Raises ValueError if x is not a non-empty finite (N, D) tensor, batch_size < 1,
    or the encoder returns NaN or infinite means.
    """
    _check_x(x, y)
    _check_positive(batch_size=batch_size)
    with _evaluating(model):
        mu = torch.cat([model.encode(x[start:start + batch_size],
                                     *_args(None if y is None else y[start:start + batch_size]))[0]
                        for start in range(0, len(x), batch_size)])
    if not bool(torch.isfinite(mu).all()):  # else NaN > threshold is False: active_units would silently say 0
        raise ValueError(
            f"the encoder returned {int((~torch.isfinite(mu)).sum())} NaN or infinite posterior means; "
            "are the model's parameters finite?")
    return mu.var(dim=0, correction=0)


def active_units(model, x: torch.Tensor, threshold: float = 0.01, batch_size: int = 1000,
                 y: torch.Tensor | None = None) -> int:
    r"""Number of active latent units: dimensions u with Var_x(E_q[z_u]) > threshold
    (Burda et al. 2016, §5.2).

    x: (N, D) data (the test set in the paper); threshold: 0.01 in the paper; y: optional (N,) labels.
    Returns an int in [0, L]. Raises ValueError as :func:`posterior_mean_variance`, or for threshold < 0.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return int((posterior_mean_variance(model, x, batch_size, y) > threshold).sum().item())


@torch.no_grad()
def off_data_fraction(z_data: torch.Tensor, z_new: torch.Tensor, quantile: float = 0.99) -> float:
    """Fraction of the codes z_new that fall *off the data*: farther from every code in z_data than
    `quantile` of the data codes are from their own nearest neighbour. A measure of how much of the region
    one samples from holds no data (used by the autoencoder and VAE chapters).

    z_data: (N, L) codes of real data, N >= 2; z_new: (M, L) codes to test. Returns a float in [0, 1].
    Raises ValueError for mismatched latent sizes, N < 2 or a quantile outside (0, 1].
    """
    if z_data.dim() != 2 or z_new.dim() != 2 or z_data.shape[1] != z_new.shape[1] or len(z_data) < 2:
        raise ValueError(f"need z_data (N >= 2, L) and z_new (M, L), got {tuple(z_data.shape)} and {tuple(z_new.shape)}")
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    gaps = torch.cdist(z_data, z_data).fill_diagonal_(float("inf")).min(dim=1).values
    radius = torch.quantile(gaps, quantile)
    return (torch.cdist(z_new, z_data).min(dim=1).values > radius).float().mean().item()


def two_sample_accuracy(a: torch.Tensor, b: torch.Tensor, classifier=None, test_fraction: float = 0.5,
                        seed: int = 0) -> float:
    """Classifier two-sample test: the held-out accuracy of a fresh classifier telling rows of a from rows of b.

    The two samples are labelled 0 and 1, split stratified into a training and a test part, and a
    scikit-learn classifier is fitted on the first and scored on the second. 0.5 means the classifier
    cannot tell the samples apart (as when both come from one distribution); 1.0 means they never overlap.
    Lopez-Paz & Oquab 2017 (Revisiting classifier two-sample tests), section 2.

    a: (N, L), b: (M, L) samples (e.g. encoded test images and prior samples), N, M >= 4.
    classifier: any scikit-learn classifier; default k-nearest neighbours with k = 25 (flexible enough
        for the curved and multi-modal 2-D priors of the AAE chapters).
    Returns the accuracy in [0, 1] (a float). With balanced samples its standard error is about
    sqrt(0.25 / n_test). Raises ValueError for mismatched dimensions, fewer than 4 rows, or a
    test_fraction outside (0, 1).
    """
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 4:
        raise ValueError(f"need two (N >= 4, L) samples of equal L, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    features = torch.cat([a, b]).detach().cpu().double().numpy()
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    x_fit, x_test, y_fit, y_test = train_test_split(features, labels, test_size=test_fraction,
                                                    random_state=seed, stratify=labels)
    classifier = classifier if classifier is not None else KNeighborsClassifier(n_neighbors=min(25, len(y_fit)))
    return float(classifier.fit(x_fit, y_fit).score(x_test, y_test))
