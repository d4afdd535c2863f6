"""Likelihoods and reconstruction losses, written to read like the equations in the book.

Every function here works per example: it takes a batch and returns a tensor of shape (B,), summed
over the data dimensions, in nats. Averaging over the batch is the caller's choice (the training loop
averages); summing over pixels is not optional, because the sum is the log-likelihood of the image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal


def check_unit_interval(x: torch.Tensor, name: str = "x", purpose: str = "for a Bernoulli likelihood") -> None:
    """Raise ValueError unless every entry of x lies in [0, 1] (NaN fails too); the message names `name`,
    `purpose`, the range found, and hints at dividing by 255 when the values look like raw bytes.

    A Bernoulli likelihood is only defined for targets in [0, 1]: images of raw byte values 0..255 would
    otherwise train to a loss of about -4e9 nats without a word. Binarization needs the same range.
    """
    if not x.numel():
        return
    low, high = torch.aminmax(x)                 # one pass; NaN propagates and fails both comparisons
    if not (bool(low >= 0) and bool(high <= 1)):
        finite = x[torch.isfinite(x)]
        span = f"[{finite.min().item():g}, {finite.max().item():g}]" if finite.numel() else "no finite values"
        nan = ", with NaN or infinite entries" if finite.numel() < x.numel() else ""
        hint = " (raw pixel values? divide by 255)" if finite.numel() and finite.max() > 1 else ""
        raise ValueError(f"{name} must lie in [0, 1] {purpose}, got values in {span}{nan}{hint}")


def _check_pair(x: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, D), got {tuple(x.shape)}")
    if x.shape != other.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but {other_name} has shape {tuple(other.shape)}; they must match")


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""log p(x | logits) under independent Bernoulli pixels, computed stably from logits.

    With p = sigmoid(l), log p(x) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d)
    = sum_d [x_d l_d - softplus(l_d)], which needs no epsilon and never evaluates log(0).
    For x in {0, 1} this is a normalized log-probability; for grey levels in (0, 1) it is the
    (negative) binary cross-entropy, which is *not* a normalized density (Kingma & Welling 2014, App. C.1).

    Args:
        x: (B, D) float in [0, 1], the targets.
        logits: (B, D) float, decoder outputs before the sigmoid.
    Returns:
        (B,) log-likelihood in nats (<= 0 for binary x).
    Raises:
        ValueError: if the shapes differ, x is not 2-D, or x has entries outside [0, 1] (or NaN).
    """
    _check_pair(x, logits, "logits")
    check_unit_interval(x)
    return (x * logits - F.softplus(logits)).sum(dim=1)


def binary_cross_entropy(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels: the negative of :func:`bernoulli_log_likelihood`.

    x: (B, D) in [0, 1]; logits: (B, D). Returns (B,) in nats. Raises ValueError on shape mismatch.
    Same value as ``F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)``.
    """
    return -bernoulli_log_likelihood(x, logits)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, ||x - x_hat||^2.

    x, x_hat: (B, D) float. Returns (B,) in squared pixel units. Raises ValueError on shape mismatch.
    Up to a constant and a factor 1/2 it is the negative log-likelihood of a Gaussian decoder with unit
    variance (see :func:`gaussian_log_likelihood`).
    """
    _check_pair(x, x_hat, "x_hat")
    return (x - x_hat).pow(2).sum(dim=1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor | float = 0.0) -> torch.Tensor:
    r"""log N(x; mean, diag(exp(log_var))) summed over dimensions.

    log p(x) = -1/2 sum_d [ (x_d - mean_d)^2 / sigma_d^2 + log sigma_d^2 + log 2 pi ].
    With log_var = 0 (unit variance) this is -1/2 ||x - mean||^2 - D/2 log 2 pi, so maximizing it is
    minimizing the squared error.

    Args:
        x: (B, D) float.
        mean: (B, D) float.
        log_var: (B, D) tensor or a float (shared log-variance), log sigma^2.
    Returns:
        (B,) log-density in nats.
    Raises:
        ValueError: on shape mismatch.
    """
    _check_pair(x, mean, "mean")
    log_var = torch.as_tensor(log_var, dtype=x.dtype, device=x.device).expand_as(x)
    return -0.5 * ((x - mean).pow(2) / log_var.exp() + log_var + torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))).sum(dim=1)


def gaussian_kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""KL( N(mu_j, exp(log_var_j)) || N(0, 1) ) of every latent dimension j separately: (B, L) in nats.

    KL_j = 1/2 [ mu_j^2 + exp(log_var_j) - log_var_j - 1 ]   (Kingma & Welling 2014, App. B).
    Its sum over j is :func:`gaussian_kl`; its mean over the data is the per-unit KL that free bits floors
    (Kingma et al. 2016, :func:`ae_course.kl_term.free_bits_kl`).

    Args:
        mu: (B, L) float, the means of q(z|x).
        log_var: (B, L) float, the log-variances log sigma^2 of q(z|x).
    Returns:
        (B, L) KL divergences in nats, each >= 0.
    Raises:
        ValueError: if mu is not 2-D or log_var's shape differs from mu's.
    """
    if mu.dim() != 2:
        raise ValueError(f"mu must have shape (B, L), got {tuple(mu.shape)}")
    if log_var.shape != mu.shape:
        raise ValueError(f"mu has shape {tuple(mu.shape)} but log_var has shape {tuple(log_var.shape)}; "
                         "they must match")
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0)


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""Closed-form KL( N(mu, diag(exp(log_var))) || N(0, I) ), summed over latent dimensions.

    KL = 1/2 sum_j [ mu_j^2 + exp(log_var_j) - log_var_j - 1 ]   (Kingma & Welling 2014, App. B): the sum of
    :func:`gaussian_kl_per_dimension`. It is >= 0, and 0 only where mu = 0 and log_var = 0 (the posterior
    equals the prior).

    Args:
        mu: (B, L) float, the means of q(z|x).
        log_var: (B, L) float, the log-variances log sigma^2 of q(z|x).
    Returns:
        (B,) KL divergence in nats.
    Raises:
        ValueError: if mu is not 2-D or log_var's shape differs from mu's.
    """
    return gaussian_kl_per_dimension(mu, log_var).sum(dim=1)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None,
                   n_samples: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A reparameterized sample of q(z|x) = N(mu, diag(exp(log_var))): z = mu + exp(log_var / 2) * eps.

    Kingma & Welling 2014, eq. 10 and section 2.4: the noise eps ~ N(0, I) carries the randomness, so z is a
    differentiable function of mu and log_var (the pathwise gradient flows through it).

    Args:
        mu, log_var: (B, L) means and log-variances (log sigma^2) of q.
        eps: optional noise of shape (B, L), or (S, B, L) for S samples; drawn if omitted.
        n_samples: S, to draw S samples at once: then eps and z have shape (S, B, L) (a leading sample
            dimension); None draws one sample of shape (B, L).
        generator: an optional torch.Generator (on mu's device) for the drawn noise.
    Returns:
        z: (B, L), or (S, B, L) when n_samples is given or eps has three dimensions.
    Raises:
        ValueError: if log_var's shape differs from mu's, n_samples < 1, or eps has neither shape.
    """
    if mu.shape != log_var.shape:
        raise ValueError(f"mu has shape {tuple(mu.shape)} but log_var has shape {tuple(log_var.shape)}; "
                         "they must match")
    if n_samples is not None and int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1 or None, got {n_samples}")
    shape = tuple(mu.shape) if n_samples is None else (int(n_samples), *mu.shape)
    if eps is None:
        eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    elif tuple(eps.shape) not in (tuple(mu.shape), (len(eps), *mu.shape)) or (
            n_samples is not None and tuple(eps.shape) != shape):
        raise ValueError(f"eps must have the shape of mu {tuple(mu.shape)} or (S, *{tuple(mu.shape)}), "
                         f"got {tuple(eps.shape)}")
    return mu + torch.exp(0.5 * log_var) * eps


def standard_normal(dim: int, like: torch.Tensor | None = None) -> Independent:
    """The prior p(z) = N(0, I_dim) as ``Independent(Normal(0, 1), 1)``, event shape (dim,).

    like: a tensor whose device and dtype the distribution takes (e.g. a weight of the model); float32 on
    the CPU if None. ``log_prob(z)`` of z (..., dim) returns (...) in nats. Raises ValueError for dim < 1.
    """
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    zeros = torch.zeros(int(dim)) if like is None else torch.zeros(int(dim), device=like.device, dtype=like.dtype)
    return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)
