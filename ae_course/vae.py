"""The variational autoencoder (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014).

Notation follows the book:

* the prior is p(z) = N(0, I) over ``latent_dim`` dimensions;
* the encoder q_phi(z|x) = N(mu(x), diag(exp(log_var(x)))) is an MLP whose last layer outputs
  ``2 * latent_dim`` numbers, split into ``mu`` and ``log_var``;
* the decoder p_theta(x|z) is an MLP returning logits; the image is sigmoid(logits);
* the ELBO is log p(x) >= E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)), estimated with one
  reparameterized sample z = mu + exp(log_var / 2) * eps, eps ~ N(0, I).

All per-example quantities are returned with shape (B,), summed over pixels and latent dimensions,
in nats.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .losses import bernoulli_log_likelihood, gaussian_kl, gaussian_log_likelihood
from .models import check_input, mlp

LOG_VAR_MIN = -30.0
"""Lower clamp of the encoder's log-variance: sigma >= exp(-15) ~ 3e-7."""
LOG_VAR_MAX = 20.0
"""Upper clamp of the encoder's log-variance: sigma <= exp(10) ~ 2.2e4, so exp(log_var) stays finite."""


class VAE(nn.Module):
    r"""Variational autoencoder with a diagonal-Gaussian encoder and a Bernoulli or Gaussian decoder.

    Architecture: encoder ``mlp([input_dim, *hidden, 2 * latent_dim])`` (the trunk, then a final Linear
    layer whose output is split into ``mu`` and ``log_var``); decoder ``mlp([latent_dim, *reversed(hidden),
    input_dim])`` returning logits. The two reference architectures of the book are
    ``VAE(hidden=(500,), latent_dim=2, activation="tanh")`` (784-500-(2x2), Kingma & Welling 2014, App. C)
    and ``VAE(hidden=(150, 100), latent_dim=10, activation="gelu")`` (784-150-100-10, the Keras example).

    log_var is clamped to [LOG_VAR_MIN, LOG_VAR_MAX] = [-30, 20] so that exp(log_var) and the KL stay
    finite however far the encoder drifts; inside that range the clamp is the identity (and outside it
    the gradient with respect to log_var is zero).

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: L, the dimension of z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them. May be empty.
        activation: a key of :data:`ae_course.models.ACTIVATIONS`.
        likelihood: ``"bernoulli"``: p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d)) (for binary x);
            ``"gaussian"``: p(x|z) = N(x; sigmoid(logits), I), fixed unit variance, so
            -log p(x|z) = 1/2 ||x - sigmoid(logits)||^2 + D/2 log(2 pi).
        beta: weight of the KL term in :meth:`loss` (beta-VAE, Higgins et al. 2017); beta = 1 is the ELBO.
    Raises:
        ValueError: for an unknown likelihood or activation, input_dim < 1, latent_dim < 1, a non-positive
            hidden width, or beta < 0.
    """

    LIKELIHOODS = ("bernoulli", "gaussian")

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, hidden: Sequence[int] = (400,),
                 activation: str = "relu", likelihood: str = "bernoulli", beta: float = 1.0):
        super().__init__()
        if likelihood not in self.LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {self.LIKELIHOODS}")
        if int(input_dim) < 1 or int(latent_dim) < 1:
            raise ValueError(f"input_dim and latent_dim must be >= 1, got input_dim={input_dim}, latent_dim={latent_dim}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.likelihood, self.beta = likelihood, float(beta)
        self.encoder = mlp([self.input_dim, *self.hidden, 2 * self.latent_dim], activation)
        self.decoder = mlp([self.latent_dim, *reversed(self.hidden), self.input_dim], activation)

    @property
    def prior(self) -> Independent:
        """p(z) = N(0, I): an ``Independent(Normal(0, 1), 1)`` with event shape (latent_dim,), on the model's device."""
        zeros = torch.zeros(self.latent_dim, device=self.decoder[0].weight.device, dtype=self.decoder[0].weight.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_phi(z|x): x (B, input_dim) -> (mu, log_var), each (B, latent_dim); log_var clamped to [-30, 20].

        Raises ValueError unless x is a floating (B, input_dim) tensor with B >= 1.
        """
        check_input(x, self.input_dim)
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    @staticmethod
    def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + exp(log_var / 2) * eps with eps ~ N(0, I) (Kingma & Welling 2014, eq. 10 and §2.4).

        mu, log_var: (B, L); eps: optional (B, L) noise, drawn from torch's global generator if omitted.
        Returns z: (B, L), differentiable with respect to mu and log_var.
        Raises ValueError if the shapes differ.
        """
        if mu.shape != log_var.shape:
            raise ValueError(f"mu has shape {tuple(mu.shape)} but log_var has shape {tuple(log_var.shape)}; they must match")
        if eps is None:
            eps = torch.randn_like(mu)
        elif eps.shape != mu.shape:
            raise ValueError(f"eps must have the shape of mu {tuple(mu.shape)}, got {tuple(eps.shape)}")
        return mu + torch.exp(0.5 * log_var) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """p_theta(x|z): z (B, latent_dim) -> logits (B, input_dim); the image (or the Gaussian mean) is sigmoid(logits).

        Raises ValueError unless z is a floating (B, latent_dim) tensor with B >= 1.
        """
        check_input(z, self.latent_dim, "z")
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p_theta(x|z) given the decoder's logits: x, logits (B, input_dim) -> (B,) in nats.

        Bernoulli: sum_d x_d l_d - softplus(l_d); Gaussian: log N(x; sigmoid(logits), I).
        Raises ValueError on a shape mismatch.
        """
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, logits)
        return gaussian_log_likelihood(x, torch.sigmoid(logits), 0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, input_dim) -> (logits (B, input_dim), mu (B, latent_dim), log_var (B, latent_dim)), one sample of z."""
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var)
        return self.decode(z), mu, log_var

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms of the ELBO: (log p_theta(x|z) at one z ~ q_phi(z|x), KL(q_phi(z|x) || p(z))), each (B,) in nats.

        Raises ValueError unless x is a floating (B, input_dim) tensor.
        """
        logits, mu, log_var = self(x)
        return self.log_likelihood(x, logits), gaussian_kl(mu, log_var)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        r"""Single-sample estimate of the ELBO, (B,) in nats (Kingma & Welling 2014, eq. 10).

        L(x) = log p_theta(x|z) - KL(q_phi(z|x) || p(z)), z = mu + sigma * eps, with the KL in closed form
        (App. B). Unbiased for E_q[log p(x|z)] - KL <= log p(x). The sample is drawn in eval mode too.
        Raises ValueError unless x is a floating (B, input_dim) tensor.
        """
        log_px_z, kl = self.elbo_terms(x)
        return log_px_z - kl

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example training loss -(log p_theta(x|z) - beta * KL), (B,) in nats.

        With beta = 1 this is the negative ELBO; beta != 1 is the beta-VAE objective (Higgins et al. 2017).
        Raises ValueError unless x is a floating (B, input_dim) tensor.
        """
        log_px_z, kl = self.elbo_terms(x)
        return -(log_px_z - self.beta * kl)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_dim) -> sigmoid(decode(mu(x))): (B, input_dim) in [0, 1], the decoder's mean at the
        posterior mean (no sampling, no gradient). Raises ValueError on a wrong shape."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n images from the model: z ~ p(z) = N(0, I), returns sigmoid(decode(z)), (n, input_dim) in [0, 1].

        These are the decoder's means (pixel probabilities), not binary draws. `generator` makes the draw
        reproducible (it must live on the model's device). Raises ValueError for n < 1.
        """
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        weight = self.decoder[0].weight
        z = torch.randn(int(n), self.latent_dim, generator=generator, device=weight.device, dtype=weight.dtype)
        return torch.sigmoid(self.decode(z))
