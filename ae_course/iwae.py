"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2016), and the signal-to-noise ratio of
its gradients (Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018).

The IWAE is the VAE of :class:`ae_course.vae.VAE` (same encoder, decoder and prior) trained on a tighter
bound,

    L_k(x) = E[ log (1/k) sum_{i=1}^k w_i ],   w_i = p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x) i.i.d.,

(Burda et al. 2016, eq. 8): L_1 is the ELBO, L_k <= L_{k+1} <= log p(x) (their Theorem 1). The log-weights
are those of :func:`ae_course.evaluation.importance_sampled_log_likelihood` (one function computes both), here
with gradients: every z_i is reparameterized. The gradient of L_k is sum_i w~_i grad log w_i with the
normalized weights w~_i = w_i / sum_j w_j (their eq. 14). Rainforth et al. (2018, Theorem 1) show that the
signal-to-noise ratio |E g| / std(g) of this gradient falls like 1/sqrt(k) for the encoder's parameters and
grows like sqrt(k) for the decoder's: :func:`gradient_snr` measures both.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from .evaluation import _log_weights
from .learned_priors import GaussianMixturePrior
from .models import Likelihood
from .vae import VAE

__all__ = ["IWAE", "GradientSNR", "iwae_bound", "gradient_snr"]


def _check_k(k) -> int:
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def iwae_bound(model, x: torch.Tensor, k: int, y: torch.Tensor | None = None, eps: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The importance-weighted bound L_k(x) = logsumexp_i(log w_i) - log k, (B,) in nats, with gradients.

    Burda et al. 2016, eq. 8: log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) at k reparameterized samples
    z_i = mu(x) + sigma(x) * eps_i. k = 1 is the single-sample ELBO with the KL estimated by Monte Carlo.

    Args:
        model: a VAE-like model (encode, decode, log_likelihood, prior; see :mod:`ae_course.evaluation`).
        x: (B, D) data of the model's dtype; k: the number of samples per example.
        y: optional (B,) labels of a conditional model (then a bound on log p(x|y)).
        eps: optional (k, B, L) standard-normal noise (then nothing is drawn); generator: for the drawn noise.
    Returns:
        (B,) L_k per example; differentiable in the encoder's, decoder's and prior's parameters.
    Raises:
        ValueError: for k < 1, eps of another shape than (k, B, L), or inputs ``model.encode`` rejects.
    """
    k = _check_k(k)
    mu, log_var = model.encode(x) if y is None else model.encode(x, y)
    log_w = _log_weights(model, x, y, mu, log_var, k, generator, eps)    # (k, B)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


class IWAE(VAE):
    r"""The importance-weighted autoencoder: a :class:`~ae_course.vae.VAE` whose loss is -L_k
    (Burda et al. 2016).

    Architecture, prior (standard or learned), encode/decode/sample are the VAE's; only the objective
    changes: ``loss(x) = -iwae_bound(self, x, k)``, k samples per example, so one training step decodes k
    times as many codes as the VAE's. ``elbo`` still returns the (closed-form KL) ELBO, for comparison.
    The book's comparison protocol (784-400-16 MLPs) is ``IWAE(hidden=(400,), latent_dim=16, k=5)``.

    Args:
        k: samples per example in the training objective (k = 1: the ELBO with a Monte Carlo KL).
        the others: as :class:`~ae_course.vae.VAE` (no beta: the bound has none).
    Raises:
        ValueError: for k < 1, and everything :class:`~ae_course.vae.VAE` rejects.
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, hidden: Sequence[int] = (400,),
                 activation: str = "relu", likelihood: Likelihood = "bernoulli", k: int = 5,
                 n_classes: int = 0, prior: GaussianMixturePrior | None = None):
        super().__init__(input_dim=input_dim, latent_dim=latent_dim, hidden=hidden, activation=activation,
                         likelihood=likelihood, n_classes=n_classes, prior=prior)
        self.k = _check_k(k)

    @property
    def config(self) -> dict:
        return {**super().config, "k": self.k}

    def bound(self, x: torch.Tensor, y=None, k: int | None = None) -> torch.Tensor:
        """L_k(x), (B,) in nats, with this model's k unless another is given (:func:`iwae_bound`)."""
        return iwae_bound(self, x, self.k if k is None else k, y)

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-L_k(x), (B,) in nats: the training loss. Raises ValueError as :func:`iwae_bound`."""
        return -iwae_bound(self, x, self.k, y)


class GradientSNR(NamedTuple):
    """Per-parameter signal-to-noise ratios |mean g| / std g of the encoder's and the decoder's parameters,
    flattened over all their weights and biases: (P_encoder,) and (P_decoder,); NaN where every draw of
    the gradient was the same (std 0, e.g. a dead unit)."""

    encoder: torch.Tensor
    decoder: torch.Tensor


def gradient_snr(model: nn.Module, x: torch.Tensor, k: int, n_draws: int = 100, y: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> GradientSNR:
    r"""SNR(theta_j) = |E[g_j]| / std[g_j] of the gradient g of the minibatch mean of L_k, per parameter
    (Rainforth et al. 2018, eq. 3), over `n_draws` independent draws of the k samples on the fixed batch x.

    model: a VAE-like model with ``encoder`` and ``decoder`` modules; x: (B, D) the fixed minibatch.
    The moments are accumulated in float64 (no (n_draws, P) array is kept); std is the population standard
    deviation over the draws. The model's parameters are not changed and their ``.grad`` is left untouched.
    Raises ValueError for k < 1 or n_draws < 2.
    """
    if isinstance(n_draws, bool) or int(n_draws) != n_draws or int(n_draws) < 2:
        raise ValueError(f"n_draws must be an integer >= 2, got {n_draws!r}")
    groups = {"encoder": list(model.encoder.parameters()), "decoder": list(model.decoder.parameters())}
    params = groups["encoder"] + groups["decoder"]
    total = sum_sq = None
    for _ in range(int(n_draws)):
        grads = torch.autograd.grad(iwae_bound(model, x, k, y, generator=generator).mean(), params,
                                    allow_unused=True)
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                          for p, g in zip(params, grads)]).double()
        total = flat if total is None else total + flat
        sum_sq = flat ** 2 if sum_sq is None else sum_sq + flat ** 2
    mean = total / n_draws
    std = (sum_sq / n_draws - mean ** 2).clamp_min(0).sqrt()
    snr = torch.where(std > 0, mean.abs() / std, torch.full_like(std, math.nan))
    n_encoder = sum(p.numel() for p in groups["encoder"])
    return GradientSNR(snr[:n_encoder].cpu(), snr[n_encoder:].cpu())
