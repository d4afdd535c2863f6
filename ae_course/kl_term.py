"""What the KL term of the ELBO does: ELBO surgery, the inference gaps, and two remedies for posterior
collapse.

* **ELBO surgery** (Hoffman & Johnson 2016, eq. 2): averaged over the N data points x_n, the KL term splits
  into the mutual information between the index n of a data point and its code under q, and the KL
  divergence of the *aggregate posterior* q(z) = 1/N sum_n q(z|x_n) from the prior:
  1/N sum_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z))  (:func:`elbo_surgery`).
* **The inference gaps** (Cremer, Li & Duvenaud 2018, section 3): log p(x) - L[q_phi] = (log p(x) - L[q*])
  + (L[q*] - L[q_phi]), the approximation gap of the Gaussian family plus the amortization gap of the encoder,
  where q* is the best Gaussian for x found by optimizing its (mu, log_var) with the decoder fixed
  (:func:`optimize_posterior`, :func:`inference_gaps`).
* **KL warm-up** (Bowman et al. 2016, section 3.1; Sonderby et al. 2016, section 2.3) and **free bits**
  (Kingma et al. 2016, eq. 15), two changes of the training objective against posterior collapse, as a
  training step for :func:`ae_course.train` (:func:`kl_step`, :func:`kl_warmup`, :func:`free_bits_kl`).

Models follow the protocol of :mod:`ae_course.evaluation` with a diagonal-Gaussian encoder and the prior
N(0, I): ``encode(x) -> (mu, log_var)``, ``decode(z)``, ``log_likelihood(x, out)``, ``prior``. Everything
is in nats.
"""
from __future__ import annotations

import math
from typing import Literal, Mapping, NamedTuple

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .evaluation import _evaluating, importance_sampled_log_likelihood
from .losses import gaussian_kl, gaussian_kl_per_dimension, reparameterize
from .models import check_finite
from .training import Step, update

__all__ = ["ElboSurgery", "GaussianPosterior", "InferenceGaps", "aggregate_log_density", "elbo_surgery",
           "free_bits_kl", "gaussian_elbo", "gaussian_kl_per_dimension", "inference_gaps", "kl_step",
           "kl_warmup", "optimize_posterior"]

Mixture = Literal["all", "leave_one_out"]


def _check_posterior(mu: torch.Tensor, log_var: torch.Tensor) -> None:
    if not isinstance(mu, torch.Tensor) or mu.dim() != 2 or len(mu) == 0:
        found = getattr(mu, "shape", type(mu).__name__)
        raise ValueError(f"mu must be a (N, L) tensor with N >= 1, got {found}")
    if not isinstance(log_var, torch.Tensor) or log_var.shape != mu.shape:
        raise ValueError(f"mu has shape {tuple(mu.shape)} but log_var has shape "
                         f"{tuple(getattr(log_var, 'shape', ()))}; they must match")


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or len(x) == 0:
        found = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"x must be a (N, D) tensor with N >= 1, got {found}")
    check_finite(x, "x")


def _whole(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------- ELBO surgery


def aggregate_log_density(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                          mixture: Mixture = "all", chunk: int = 1024) -> torch.Tensor:
    r"""log q(z) of the aggregate posterior q(z) = 1/N sum_m N(z; mu_m, diag(exp(log_var_m))), a mixture of
    the N posteriors: log q(z) = logsumexp_m log q(z|x_m) - log N (Hoffman & Johnson 2016, section 2).

    Args:
        z: (..., L) codes; with ``mixture="leave_one_out"`` it must be (S, N, L), z[s, n] drawn from q(z|x_n).
        mu, log_var: (N, L) means and log-variances of the N posteriors q(z|x_m).
        mixture: ``"all"``: the mixture of all N posteriors; ``"leave_one_out"``: for z[s, n], the mixture
            of the N - 1 posteriors other than its own, logsumexp_{m != n} log q(z|x_m) - log(N - 1).
        chunk: codes evaluated per pass (memory O(chunk * N)).
    Returns:
        (...) log-densities in nats, float64 (the mixture's terms are computed in float64).
    Raises:
        ValueError: for mismatched shapes, N < 2 with ``"leave_one_out"``, or an unknown mixture.
    """
    _check_posterior(mu, log_var)
    if mixture not in ("all", "leave_one_out"):
        raise ValueError(f"mixture must be 'all' or 'leave_one_out', got {mixture!r}")
    n, latent = mu.shape
    if z.shape[-1] != latent:
        raise ValueError(f"z has {z.shape[-1]} latent dimensions, the posteriors {latent}")
    if mixture == "leave_one_out" and (z.dim() != 3 or z.shape[1] != n or n < 2):
        raise ValueError(f"leave_one_out needs z of shape (S, N, L) = (S, {n}, {latent}) with N >= 2, "
                         f"got {tuple(z.shape)}")
    mu, log_var = mu.double(), log_var.double()
    precision = torch.exp(-log_var)                                          # 1 / sigma^2, (N, L)
    # log N(z; mu_m, sigma_m^2) = -1/2 sum_l [(z_l - mu_ml)^2 / sigma_ml^2 + log sigma_ml^2 + log 2 pi],
    # with the square expanded so that the N components are one matrix product per chunk of codes
    constant = -0.5 * ((mu.pow(2) * precision + log_var).sum(1) + latent * math.log(2 * math.pi))  # (N,)
    flat = z.reshape(-1, latent).double()
    out = []
    for start in range(0, len(flat), int(chunk)):
        zc = flat[start:start + int(chunk)]
        log_q = (-0.5 * zc.pow(2) @ precision.T + zc @ (mu * precision).T + constant)   # (chunk, N)
        if mixture == "leave_one_out":
            own = torch.arange(start, start + len(zc), device=z.device) % n       # z[s, n] is row s * N + n
            log_q[torch.arange(len(zc)), own] = -math.inf
        out.append(torch.logsumexp(log_q, dim=1))
    return torch.cat(out).reshape(z.shape[:-1]) - math.log(n - (mixture == "leave_one_out"))


class ElboSurgery(NamedTuple):
    """The two parts of the average KL term (Hoffman & Johnson 2016, eq. 2), in nats, over N data points."""
    average_kl: float
    """1/N sum_n KL(q(z|x_n) || p(z)), in closed form."""
    mutual_information: float
    """I_q(n; z) = E_n E_{q(z|x_n)}[log q(z|x_n) - log q(z)], Monte Carlo; <= log N with ``mixture="all"``."""
    marginal_kl: float
    """KL(q(z) || p(z)) = E_n E_{q(z|x_n)}[log q(z) - log p(z)], Monte Carlo."""
    standard_error: float
    """Monte Carlo standard error of mutual_information + marginal_kl as an estimate of average_kl."""


def elbo_surgery(model, x: torch.Tensor, n_samples: int = 10, mixture: Mixture = "all",
                 generator: torch.Generator | None = None, batch_size: int = 1000) -> ElboSurgery:
    r"""Split the average KL term of `model` on the N rows of x into mutual information and marginal KL.

    Hoffman & Johnson 2016, eq. 2: with n uniform on {1..N}, z ~ q(z|x_n) and q(z) = 1/N sum_m q(z|x_m),

        1/N sum_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)).

    Both parts are Monte Carlo averages over `n_samples` codes per row, z = mu + sigma * eps, of
    log q(z|x_n) - log q(z) and log q(z) - log p(z) (q(z) from :func:`aggregate_log_density`). Their sum is
    the Monte Carlo estimate of the average KL, unbiased, whose closed form is
    :func:`ae_course.losses.gaussian_kl`.

    Bias. For the N points themselves the estimates are unbiased. As estimates of the same quantities for
    the population the N points are drawn from, they are not: log q(z|x_n) - log q(z) <= log N for every
    sample, so the mutual information estimate never exceeds log N, and in expectation it is a *lower*
    bound on the population's I(x; z) (it is the InfoNCE bound with the critic log q(z|x); Poole et al.
    2019, eq. 12), hence the marginal KL an upper bound on the population's. ``mixture="leave_one_out"``
    drops each sample's own posterior from the mixture: an *upper* bound on the population's mutual
    information in expectation (Poole et al. 2019, eq. 13), not capped by log N.

    Args:
        model: ``encode(x) -> (mu, log_var)`` and the prior N(0, I) (``model.prior``).
        x: (N, D) data, N >= 2 for leave_one_out; n_samples: S codes per row; mixture: see
            :func:`aggregate_log_density`; generator: for reproducible codes; batch_size: rows encoded
            per pass.
    Returns:
        :class:`ElboSurgery` of Python floats, nats.
    Raises:
        ValueError: for x that is not a non-empty finite (N, D) tensor, n_samples < 1, or as
            :func:`aggregate_log_density`.
    """
    _check_x(x)
    n_samples = _whole(n_samples, "n_samples")
    with _evaluating(model):
        mu, log_var = (torch.cat(t) for t in zip(*(model.encode(x[s:s + batch_size])
                                                    for s in range(0, len(x), batch_size))))
        z = reparameterize(mu, log_var, n_samples=n_samples, generator=generator)          # (S, N, L)
        log_q_zx = Independent(Normal(mu.double(), torch.exp(0.5 * log_var.double())), 1).log_prob(z.double())
        log_q_z = aggregate_log_density(z, mu, log_var, mixture)                        # (S, N)
        log_p_z = model.prior.log_prob(z).double()
        kl_n = gaussian_kl(mu.double(), log_var.double())                               # (N,), closed form
    information, marginal = log_q_zx - log_q_z, log_q_z - log_p_z
    error = ((information + marginal - kl_n).pow(2).mean() / information.numel()).sqrt()
    return ElboSurgery(kl_n.mean().item(), information.mean().item(), marginal.mean().item(), error.item())


# --------------------------------------------------------------------------------------------- inference gaps


class GaussianPosterior(NamedTuple):
    """The parameters of diagonal-Gaussian posteriors q(z|x_n) = N(mu_n, diag(exp(log_var_n))), each (N,
    L)."""
    mu: torch.Tensor
    log_var: torch.Tensor


def gaussian_elbo(model, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, n_samples: int = 1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The ELBO of x under the Gaussian q(z|x) = N(mu, diag(exp(log_var))) given directly, not by the
    encoder: (1/S) sum_s log p(x|z_s) - KL(q || N(0, I)), z_s = mu + sigma * eps_s, (N,) in nats.

    Differentiable in mu and log_var (and the decoder's weights): :func:`optimize_posterior` ascends it.
    With the encoder's (mu, log_var) it is :func:`ae_course.evaluation.estimate_elbo` (Kingma & Welling 2014,
    eq. 10). x: (N, D); mu, log_var: (N, L). Raises ValueError for mismatched shapes or n_samples < 1.
    """
    _check_posterior(mu, log_var)
    if x.dim() != 2 or len(x) != len(mu):
        raise ValueError(f"x must be (N, D) with N = {len(mu)} rows, like mu; got {tuple(x.shape)}")
    n_samples = _whole(n_samples, "n_samples")
    z = reparameterize(mu, log_var, n_samples=n_samples, generator=generator)          # (S, N, L)
    x_rep = x.unsqueeze(0).expand(n_samples, *x.shape).reshape(-1, x.shape[1])
    logits = model.decode(z.reshape(-1, mu.shape[1]))
    log_px_z = model.log_likelihood(x_rep, logits).reshape(n_samples, len(x))
    return log_px_z.mean(0) - gaussian_kl(mu, log_var)


def optimize_posterior(model, x: torch.Tensor, steps: int = 100, lr: float = 3e-2, n_samples: int = 1,
                       init: Literal["encoder", "prior"] = "encoder",
                       generator: torch.Generator | None = None) -> GaussianPosterior:
    r"""The best Gaussian q*(z|x_n) for every row of x, the decoder fixed: per-digit (mu, log_var) maximizing
    the ELBO (Cremer, Li & Duvenaud 2018, section 3, "q*").

    Adam (Kingma & Ba 2015) ascends :func:`gaussian_elbo` of all rows at once (their ELBOs summed, so each
    row's parameters get their own gradient), with `n_samples` reparameterized codes per row and step. The
    model's weights are not changed and get no gradients.

    Args:
        model: ``decode``, ``log_likelihood``, the prior N(0, I); ``encode`` for ``init="encoder"``, else
            ``latent_dim``.
        x: (N, D) data; steps: Adam steps (0 returns the initial values); lr: Adam's learning rate;
        init: ``"encoder"`` starts from the encoder's (mu, log_var) (so q* is at least as good as the
            encoder's q, up to the noise of the ascent), ``"prior"`` from mu = 0, log_var = 0 (x's dtype).
        generator: for reproducible noise (on x's device).
    Returns:
        :class:`GaussianPosterior` (mu, log_var), each (N, L), detached, on x's device.
    Raises:
        ValueError: for x that is not a non-empty finite (N, D) tensor, steps < 0, n_samples < 1, lr <= 0
            or an unknown init.
    """
    _check_x(x)
    steps, n_samples = _whole(steps, "steps", 0), _whole(n_samples, "n_samples")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if init not in ("encoder", "prior"):
        raise ValueError(f"init must be 'encoder' or 'prior', got {init!r}")
    with _evaluating(model):
        if init == "encoder":
            mu, log_var = model.encode(x)
        else:
            mu = log_var = x.new_zeros(len(x), model.latent_dim)
    mu, log_var = mu.detach().clone().requires_grad_(), log_var.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([mu, log_var], lr=lr)
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    try:
        with torch.enable_grad():
            for _ in range(steps):
                loss = -gaussian_elbo(model, x, mu, log_var, n_samples, generator).sum()
                # the gradient with respect to (mu, log_var) only: the weights get none
                mu.grad, log_var.grad = torch.autograd.grad(loss, [mu, log_var])
                optimizer.step()
    finally:
        if was_training is not None:
            model.train(was_training)
    return GaussianPosterior(mu.detach(), log_var.detach())


class InferenceGaps(NamedTuple):
    """log p(x) - L[q_phi] = approximation gap + amortization gap (Cremer et al. 2018, eq. 5), per row, (N,)
    tensors in nats."""
    log_likelihood: torch.Tensor
    """Importance-sampled log p(x), with q* as the proposal."""
    amortized_elbo: torch.Tensor
    """L[q_phi], the ELBO of the encoder's q(z|x)."""
    optimized_elbo: torch.Tensor
    """L[q*], the ELBO of the per-row optimized Gaussian."""
    approximation_gap: torch.Tensor
    """log p(x) - L[q*]: what the Gaussian family costs."""
    amortization_gap: torch.Tensor
    """L[q*] - L[q_phi]: what sharing one encoder across all x costs."""


def inference_gaps(model, x: torch.Tensor, steps: int = 100, lr: float = 3e-2, n_samples: int = 1,
                   elbo_samples: int = 100, k: int = 1000, generator: torch.Generator | None = None,
                   chunk: int = 100) -> InferenceGaps:
    r"""Split the gap log p(x) - ELBO of every row of x into the approximation and the amortization gap
    (Cremer, Li & Duvenaud 2018, section 3).

    q* comes from :func:`optimize_posterior` (steps, lr, n_samples, starting at the encoder's q); both
    ELBOs are :func:`gaussian_elbo` with `elbo_samples` codes per row (a closed-form KL); log p(x) is
    :func:`ae_course.evaluation.importance_sampled_log_likelihood` with k samples from q* (the better
    proposal). That estimate is itself a lower bound on log p(x) in expectation, so the approximation gap is
    underestimated by its remaining bias (small when k is large).

    Args: as :func:`optimize_posterior`; elbo_samples: codes per row for the two ELBOs; k: importance samples;
        chunk: importance samples per pass (memory O(N * chunk * D)).
    Returns:
        :class:`InferenceGaps` of (N,) tensors, nats.
    Raises:
        ValueError: as :func:`optimize_posterior`, or for elbo_samples or k < 1.
    """
    _check_x(x)
    elbo_samples, k = _whole(elbo_samples, "elbo_samples"), _whole(k, "k")
    best = optimize_posterior(model, x, steps, lr, n_samples, "encoder", generator)
    with _evaluating(model):
        mu, log_var = model.encode(x)
        amortized = gaussian_elbo(model, x, mu, log_var, elbo_samples, generator)
        optimized = gaussian_elbo(model, x, best.mu, best.log_var, elbo_samples, generator)
    log_px = importance_sampled_log_likelihood(model, x, k=k, batch_size=len(x), chunk=chunk,
                                               generator=generator, proposal=lambda xb, yb: best)
    return InferenceGaps(log_px, amortized, optimized, log_px - optimized, optimized - amortized)


# ------------------------------------------------------------------------------------- collapse remedies


def kl_warmup(step: int, warmup_steps: int) -> float:
    """The KL weight of KL warm-up at a (0-based) training step: min(1, step / warmup_steps), rising linearly
    from 0 at step 0 to 1 at step `warmup_steps` and staying there (Bowman et al. 2016, section 3.1;
    Sonderby et al. 2016, section 2.3). warmup_steps = 0 is no warm-up (always 1). Raises ValueError for
    negative arguments.
    """
    step, warmup_steps = _whole(step, "step", 0), _whole(warmup_steps, "warmup_steps", 0)
    return 1.0 if warmup_steps == 0 else min(1.0, step / warmup_steps)


def free_bits_kl(mu: torch.Tensor, log_var: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    r"""The free-bits KL term of a minibatch, a scalar in nats per example (Kingma et al. 2016, eq. 15):

        sum_j max(lambda, 1/B sum_b KL(q(z_j|x_b) || p(z_j))),

    each latent dimension j's KL averaged over the minibatch *first*, then floored at lambda = `free_bits`
    nats. A dimension below the floor contributes the constant lambda: no gradient pulls it towards the prior,
    so the encoder can spend up to lambda nats on it for free. With lambda = 0 it is the minibatch mean of
    :func:`ae_course.losses.gaussian_kl`.

    mu, log_var: (B, L). Raises ValueError for mismatched shapes or free_bits < 0.
    """
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be >= 0 (nats per dimension), got {free_bits}")
    per_dimension = gaussian_kl_per_dimension(mu, log_var).mean(dim=0)              # (L,), averaged over b
    return per_dimension.clamp(min=free_bits).sum()


def kl_step(warmup_steps: int = 0, free_bits: float = 0.0) -> Step:
    r"""A training step for ``ae_course.train(model, x, step=kl_step(...))`` minimizing, per minibatch,

        -1/B sum_b log p(x_b|z_b) + beta * w_t * free_bits_kl(mu, log_var, lambda),

    with one reparameterized z_b per image, beta the model's own KL weight (``model.beta``, 1 if it has none),
    w_t = :func:`kl_warmup` (t, warmup_steps) at the step's own call count t (KL warm-up) and the free-bits
    floor lambda (:func:`free_bits_kl`). ``kl_step()`` is the mean negative ELBO, as
    :func:`ae_course.training.loss_step` minimizes for a VAE. The step reports ``loss`` (the objective),
    ``kl`` (the mean KL, nats per image) and ``weight`` (beta * w_t). Each call of kl_step makes a new step
    with its own count: make one per training run (a run in stages keeps the same step).

    Raises ValueError for warmup_steps < 0 or free_bits < 0.
    """
    warmup_steps = _whole(warmup_steps, "warmup_steps", 0)
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be >= 0 (nats per dimension), got {free_bits}")
    calls = 0

    def step(model, optimizers: Mapping[str, torch.optim.Optimizer], x: torch.Tensor,
             y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        nonlocal calls
        weight = getattr(model, "beta", 1.0) * kl_warmup(calls, warmup_steps)
        calls += 1
        logits, mu, log_var = model(x) if y is None else model(x, y)      # one reparameterized z per image
        objective = -model.log_likelihood(x, logits).mean() + weight * free_bits_kl(mu, log_var, free_bits)
        loss = update(model, optimizers["loss"], objective)
        return {"loss": loss, "kl": gaussian_kl(mu, log_var).mean().detach(),
                "weight": torch.tensor(weight)}

    return step
