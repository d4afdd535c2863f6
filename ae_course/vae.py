"""The variational autoencoder (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014), and its
conditional form (Sohn, Lee & Yan 2015; the generative model M2 of Kingma, Rezende, Mohamed & Welling 2014).

Notation follows the book:

* the prior is p(z) = N(0, I) over ``latent_dim`` dimensions (:attr:`VAE.prior`);
* the encoder q_phi(z|x) = N(mu(x), diag(exp(log_var(x)))) is an MLP whose last layer outputs
  ``2 * latent_dim`` numbers, split into ``mu`` and ``log_var``;
* the decoder p_theta(x|z) is an MLP returning logits; the image is sigmoid(logits);
* the ELBO is log p(x) >= E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)), estimated with one
  reparameterized sample z = mu + exp(log_var / 2) * eps, eps ~ N(0, I) (:func:`ae_course.losses.reparameterize`).

With ``n_classes = K > 0`` the same model is the **conditional VAE**: every distribution is conditioned on a
label y, given to both networks as a one-hot vector concatenated to their input (x for the encoder, z for
the decoder): q_phi(z|x, y), p_theta(x|z, y), the prior p(z) = N(0, I) independent of y, and the
conditional ELBO log p(x|y) >= E_q[log p_theta(x|z, y)] - KL(q_phi(z|x, y) || p(z)) (Sohn et al. 2015,
eq. 4; Kingma et al. 2014, eq. 6). Every method then takes the labels as its last argument ``y``.

With ``prior=`` a :class:`ae_course.learned_priors.GaussianMixturePrior` (a learned mixture of Gaussians, or
the VampPrior of Tomczak & Welling 2018), p(z) is that learned prior: :attr:`VAE.prior` returns it as a
torch distribution, :meth:`VAE.sample` draws from it, and the KL term has no closed form, so it is estimated
by Monte Carlo at the reparameterized sample, log q_phi(z|x) - log p(z) (Kingma & Welling 2014, eq. 6-7).

All per-example quantities are returned with shape (B,), summed over pixels and latent dimensions,
in nats.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Independent

from .learned_priors import GaussianMixturePrior, VampPrior
from .losses import gaussian_kl, gaussian_log_likelihood, reparameterize, standard_normal
from .models import Likelihood, check_input, check_likelihood, log_likelihood, mlp, with_labels

__all__ = ["VAE", "ConditionalVAE", "LOG_VAR_MIN", "LOG_VAR_MAX"]

LOG_VAR_MIN = -30.0
"""Lower clamp of the encoder's log-variance: sigma >= exp(-15) ~ 3e-7."""
LOG_VAR_MAX = 20.0
"""Upper clamp of the encoder's log-variance: sigma <= exp(10) ~ 2.2e4, so exp(log_var) stays finite."""


class VAE(nn.Module):
    r"""Variational autoencoder with a diagonal-Gaussian encoder and a Bernoulli or Gaussian decoder,
    optionally conditioned on a class label.

    Architecture: encoder ``mlp([input_dim + n_classes, *hidden, 2 * latent_dim])`` (the trunk, then a final
    Linear layer whose output is split into ``mu`` and ``log_var``); decoder ``mlp([latent_dim + n_classes,
    *reversed(hidden), input_dim])`` returning logits. The two reference architectures of the book are
    ``VAE(hidden=(500,), latent_dim=2, activation="tanh")`` (784-500-(2x2), Kingma & Welling 2014, App. C)
    and ``VAE(hidden=(150, 100), latent_dim=10, activation="gelu")`` (784-150-100-10, the Keras example).

    log_var is clamped to [LOG_VAR_MIN, LOG_VAR_MAX] = [-30, 20] so that exp(log_var) and the KL stay
    finite however far the encoder drifts; inside that range the clamp is the identity (and outside it
    the gradient with respect to log_var is zero).

    Labels ``y`` (only with n_classes > 0, and then required) are integer class indices of shape (B,) in
    0..n_classes-1, or a floating (B, n_classes) tensor of class probabilities (one-hot rows, or a
    distribution over classes as when M2 marginalizes an unknown label); see :func:`ae_course.models.one_hot`.

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: L, the dimension of z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them. May be empty.
        activation: a key of :data:`ae_course.models.ACTIVATIONS`.
        likelihood: ``"bernoulli"``: p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d)) (for x in [0, 1]);
            ``"gaussian"``: p(x|z) = N(x; sigmoid(logits), I), fixed unit variance, so
            -log p(x|z) = 1/2 ||x - sigmoid(logits)||^2 + D/2 log(2 pi).
        beta: weight of the KL term in :meth:`loss` (beta-VAE, Higgins et al. 2017); beta = 1 is the ELBO.
        n_classes: 0 for the VAE, K > 0 for the conditional VAE.
        prior: None for p(z) = N(0, I) (closed-form KL), or a learned prior module
            (:class:`~ae_course.learned_priors.LearnedMixturePrior`, :class:`~ae_course.learned_priors.VampPrior`),
            registered as ``learned_prior`` and trained with the model (Monte Carlo KL).
    Raises:
        ValueError: for an unknown likelihood or activation, input_dim < 1, latent_dim < 1, n_classes < 0,
            a non-positive hidden width, or beta < 0; for a prior that is not a GaussianMixturePrior, whose
            latent_dim (or input_dim) differs from the model's, or a VampPrior on a conditional model.
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, hidden: Sequence[int] = (400,),
                 activation: str = "relu", likelihood: Likelihood = "bernoulli", beta: float = 1.0,
                 n_classes: int = 0, prior: GaussianMixturePrior | None = None):
        super().__init__()
        if int(input_dim) < 1 or int(latent_dim) < 1 or int(n_classes) < 0:
            raise ValueError(f"need input_dim >= 1, latent_dim >= 1 and n_classes >= 0, got input_dim={input_dim}, "
                             f"latent_dim={latent_dim}, n_classes={n_classes}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.input_dim, self.latent_dim, self.n_classes = int(input_dim), int(latent_dim), int(n_classes)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.likelihood, self.beta = check_likelihood(likelihood), float(beta)
        self.encoder = mlp([self.input_dim + self.n_classes, *self.hidden, 2 * self.latent_dim], activation)
        self.decoder = mlp([self.latent_dim + self.n_classes, *reversed(self.hidden), self.input_dim], activation)
        self.learned_prior = _check_prior(prior, self.input_dim, self.latent_dim, self.n_classes)

    @property
    def config(self) -> dict:
        """The constructor's arguments: what :func:`ae_course.training.save_checkpoint` stores to rebuild the model."""
        return {"input_dim": self.input_dim, "latent_dim": self.latent_dim, "hidden": list(self.hidden),
                "activation": self.activation, "likelihood": self.likelihood, "beta": self.beta,
                "n_classes": self.n_classes,
                **({} if self.learned_prior is None else {"prior": self.learned_prior.config})}

    @property
    def prior(self) -> Independent:
        """p(z) = N(0, I): :func:`ae_course.losses.standard_normal` with event shape (latent_dim,), on the model's device.

        With a learned prior, its :meth:`~ae_course.learned_priors.GaussianMixturePrior.distribution`: a
        MixtureSameFamily with event shape (latent_dim,), differentiable in the prior's parameters.
        """
        if self.learned_prior is not None:
            return self.learned_prior.distribution(self)
        return standard_normal(self.latent_dim, like=self.decoder[0].weight)

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """q_phi(z|x[, y]): x (B, input_dim) -> (mu, log_var), each (B, latent_dim); log_var clamped to
        [-30, 20].

        Raises ValueError unless x is a finite (B, input_dim) tensor of the model's dtype with B >= 1, when
        y is missing (conditional) or given (unconditional), or for labels :func:`~ae_course.models.one_hot`
        rejects.
        """
        check_input(x, self.input_dim, like=self.decoder[0].weight)
        mu, log_var = self.encoder(with_labels(x, y, self.n_classes, self)).chunk(2, dim=1)
        return mu, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    reparameterize = staticmethod(reparameterize)

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """p_theta(x|z[, y]): z (B, latent_dim) -> logits (B, input_dim); the image (or the Gaussian mean) is
        sigmoid(logits). Raises ValueError as :meth:`encode`, for z of shape (B, latent_dim)."""
        check_input(z, self.latent_dim, "z", like=self.decoder[0].weight)
        return self.decoder(with_labels(z, y, self.n_classes, self))

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p_theta(x|z) given the decoder's logits: x, logits (B, input_dim) -> (B,) in nats.

        :func:`ae_course.models.log_likelihood` with this model's likelihood. Raises ValueError on a shape
        mismatch, or for a Bernoulli likelihood and x outside [0, 1].
        """
        return log_likelihood(x, logits, self.likelihood)

    def forward(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, input_dim) -> (logits (B, input_dim), mu (B, latent_dim), log_var (B, latent_dim)), one
        sample of z."""
        mu, log_var = self.encode(x, y)
        z = reparameterize(mu, log_var)
        return self.decode(z, y), mu, log_var

    def elbo_terms(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms of the ELBO: (log p_theta(x|z[, y]) at one z ~ q_phi(z|x[, y]), KL(q_phi || p(z))),
        each (B,) in nats. With a learned prior the KL is the Monte Carlo estimate of
        :meth:`monte_carlo_elbo_terms`. Raises ValueError as :meth:`encode` and :meth:`log_likelihood`.
        """
        if self.learned_prior is not None:
            return self.monte_carlo_elbo_terms(x, y)
        logits, mu, log_var = self(x, y)
        return self.log_likelihood(x, logits), gaussian_kl(mu, log_var)

    def monte_carlo_elbo_terms(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_theta(x|z), log q_phi(z|x) - log p(z)) at one reparameterized z ~ q_phi(z|x), (B,) each.

        The second term is a single-sample, unbiased estimate of KL(q_phi(z|x) || p(z)) for any prior with a
        density (Kingma & Welling 2014, eq. 6-7); its gradient reaches the encoder (through z, mu and
        log_var) and the prior's parameters. Raises ValueError as :meth:`encode`.
        """
        mu, log_var = self.encode(x, y)
        z = reparameterize(mu, log_var)
        log_q = gaussian_log_likelihood(z, mu, log_var)                 # log q(z|x), (B,)
        return self.log_likelihood(x, self.decode(z, y)), log_q - self.prior.log_prob(z)

    def elbo(self, x: torch.Tensor, y=None) -> torch.Tensor:
        r"""Single-sample estimate of the ELBO, (B,) in nats (Kingma & Welling 2014, eq. 10).

        L(x) = log p_theta(x|z) - KL(q_phi(z|x) || p(z)), z = mu + sigma * eps, with the KL in closed form
        (App. B). Unbiased for E_q[log p(x|z)] - KL <= log p(x); with labels, a bound on log p(x|y) (Sohn
        et al. 2015, eq. 4). The sample is drawn in eval mode too. Raises ValueError as :meth:`elbo_terms`.
        """
        log_px_z, kl = self.elbo_terms(x, y)
        return log_px_z - kl

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Per-example training loss -(log p_theta(x|z) - beta * KL), (B,) in nats.

        With beta = 1 this is the negative ELBO; beta != 1 is the beta-VAE objective (Higgins et al. 2017).
        Raises ValueError as :meth:`elbo_terms`.
        """
        log_px_z, kl = self.elbo_terms(x, y)
        return -(log_px_z - self.beta * kl)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x: (B, input_dim) -> sigmoid(decode(mu(x))): (B, input_dim) in [0, 1], the decoder's mean at the
        posterior mean (no sampling, no gradient). Decoding the code of x with a *different* label than x's
        own is style transfer. Raises ValueError as :meth:`encode`."""
        mu, _ = self.encode(x, y)
        return torch.sigmoid(self.decode(mu, y))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """Draw n images from the model: z ~ p(z) = N(0, I) (or the learned prior), returns sigmoid(decode(z[, y])),
        (n, input_dim) in [0, 1].

        These are the decoder's means (pixel probabilities), not binary draws. `generator` makes the draw
        reproducible (it must live on the model's device). y: n labels, the class of each image
        (conditional VAE). Raises ValueError for n < 1, or as :meth:`decode`.
        """
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if self.learned_prior is not None:
            return torch.sigmoid(self.decode(self.learned_prior.sample(self, int(n), generator), y))
        weight = self.decoder[0].weight
        z = torch.randn(int(n), self.latent_dim, generator=generator, device=weight.device, dtype=weight.dtype)
        return torch.sigmoid(self.decode(z, y))


def _check_prior(prior, input_dim: int, latent_dim: int, n_classes: int) -> GaussianMixturePrior | None:
    if prior is None:
        return None
    if not isinstance(prior, GaussianMixturePrior):
        raise ValueError(f"prior must be None (N(0, I)) or a GaussianMixturePrior module, got {type(prior).__name__}")
    if getattr(prior, "latent_dim", latent_dim) != latent_dim:
        raise ValueError(f"the prior is over {prior.latent_dim} dimensions but latent_dim = {latent_dim}")
    if isinstance(prior, VampPrior) and (prior.input_dim != input_dim or n_classes):
        raise ValueError(f"a VampPrior needs an unconditional model with its input_dim; got pseudo-inputs of "
                         f"{prior.input_dim} pixels for input_dim = {input_dim}, n_classes = {n_classes}")
    return prior


class ConditionalVAE(VAE):
    """The conditional VAE: :class:`VAE` with ``n_classes = 10`` and ``latent_dim = 2`` by default.

    Sohn, Lee & Yan 2015 (the CVAE, eq. 4); Kingma, Rezende, Mohamed & Welling 2014 (model M2, eq. 6).
    Raises ValueError for n_classes < 1, and for everything :class:`VAE` rejects.
    """

    def __init__(self, input_dim: int = 784, n_classes: int = 10, latent_dim: int = 2,
                 hidden: Sequence[int] = (400,), activation: str = "relu", likelihood: Likelihood = "bernoulli",
                 beta: float = 1.0, prior: GaussianMixturePrior | None = None):
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        super().__init__(input_dim=input_dim, latent_dim=latent_dim, hidden=hidden, activation=activation,
                         likelihood=likelihood, beta=beta, n_classes=n_classes, prior=prior)
