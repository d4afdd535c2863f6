"""The conditional VAE (Sohn, Lee & Yan 2015; the generative model M2 of Kingma, Rezende, Mohamed & Welling 2014).

The model conditions every distribution on a class label y in {0, ..., n_classes - 1}, given to the
networks as a one-hot vector:

* the prior is p(z) = N(0, I), independent of y (Kingma et al. 2014, M2; Sohn et al. 2015 also allow a
  learned p(z|y) -- we keep the fixed prior);
* the encoder q_phi(z|x, y) = N(mu(x, y), diag(exp(log_var(x, y)))) reads the image concatenated with
  one_hot(y);
* the decoder p_theta(x|z, y) reads the code concatenated with one_hot(y) and returns logits;
* the conditional ELBO is log p(x|y) >= E_q[log p_theta(x|z, y)] - KL(q_phi(z|x, y) || p(z))
  (Sohn et al. 2015, eq. 4; Kingma et al. 2014, eq. 6), estimated with one reparameterized sample.

Everything else (the reparameterization, the log-variance clamp, the likelihoods, the closed-form KL,
the prior) is inherited from :class:`ae_course.vae.VAE`. Per-example quantities have shape (B,), in nats.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .losses import gaussian_kl
from .models import check_input, mlp, one_hot
from .vae import LOG_VAR_MAX, LOG_VAR_MIN, VAE

__all__ = ["ConditionalVAE"]


class ConditionalVAE(VAE):
    r"""VAE conditioned on a class label: one-hot y is concatenated to the encoder's input and to z.

    Architecture: encoder ``mlp([input_dim + n_classes, *hidden, 2 * latent_dim])`` whose output is split
    into ``mu`` and ``log_var`` (clamped to [-30, 20] as in :class:`~ae_course.vae.VAE`); decoder
    ``mlp([latent_dim + n_classes, *reversed(hidden), input_dim])`` returning logits.

    Labels ``y`` may be given as integer class indices, shape (B,) with an integer dtype and values in
    0..n_classes-1, or as a floating (B, n_classes) tensor of class probabilities (one-hot rows, or a
    distribution over classes as when M2 marginalizes an unknown label).

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        n_classes: K, the number of classes (10 for MNIST).
        latent_dim: L, the dimension of z.
        hidden, activation, likelihood, beta: as for :class:`~ae_course.vae.VAE`.
    Raises:
        ValueError: for n_classes < 1, and for everything :class:`~ae_course.vae.VAE` rejects.

    Sohn, Lee & Yan 2015 (the CVAE, eq. 4); Kingma, Rezende, Mohamed & Welling 2014 (model M2, eq. 6).
    """

    def __init__(self, input_dim: int = 784, n_classes: int = 10, latent_dim: int = 2,
                 hidden: Sequence[int] = (400,), activation: str = "relu", likelihood: str = "bernoulli",
                 beta: float = 1.0):
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        super().__init__(input_dim=input_dim, latent_dim=latent_dim, hidden=hidden, activation=activation,
                         likelihood=likelihood, beta=beta)
        self.n_classes = int(n_classes)
        # the VAE's networks, widened by n_classes inputs each
        self.encoder = mlp([self.input_dim + self.n_classes, *self.hidden, 2 * self.latent_dim], activation)
        self.decoder = mlp([self.latent_dim + self.n_classes, *reversed(self.hidden), self.input_dim], activation)

    # ------------------------------------------------------------------------------------- the labels

    def one_hot(self, y, batch_size: int | None = None) -> torch.Tensor:
        """Labels -> (B, n_classes) float tensor on the model's device and dtype: :func:`ae_course.models.one_hot`."""
        return one_hot(y, self.n_classes, batch_size, like=self.decoder[0].weight)

    # ------------------------------------------------------------------------------------- the networks

    def encode(self, x: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        """q_phi(z|x, y): x (B, input_dim), y (B,) labels -> (mu, log_var), each (B, latent_dim).

        log_var clamped to [-30, 20]. Raises ValueError unless x is a floating (B, input_dim) tensor with
        B >= 1, or for labels that :meth:`one_hot` rejects.
        """
        check_input(x, self.input_dim)
        mu, log_var = self.encoder(torch.cat([x, self.one_hot(y, x.shape[0])], dim=1)).chunk(2, dim=1)
        return mu, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def decode(self, z: torch.Tensor, y) -> torch.Tensor:
        """p_theta(x|z, y): z (B, latent_dim), y (B,) labels -> logits (B, input_dim).

        Raises ValueError unless z is a floating (B, latent_dim) tensor, or for labels that
        :meth:`one_hot` rejects.
        """
        check_input(z, self.latent_dim, "z")
        return self.decoder(torch.cat([z, self.one_hot(y, z.shape[0])], dim=1))

    def forward(self, x: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y) -> (logits (B, input_dim), mu (B, latent_dim), log_var (B, latent_dim)), one sample of z."""
        mu, log_var = self.encode(x, y)
        z = self.reparameterize(mu, log_var)
        return self.decode(z, y), mu, log_var

    # ------------------------------------------------------------------------------------- the objective

    def elbo_terms(self, x: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_theta(x|z, y) at one z ~ q_phi(z|x, y), KL(q_phi(z|x, y) || p(z))), each (B,) in nats."""
        logits, mu, log_var = self(x, y)
        return self.log_likelihood(x, logits), gaussian_kl(mu, log_var)

    def elbo(self, x: torch.Tensor, y) -> torch.Tensor:
        r"""Single-sample estimate of the conditional ELBO, (B,) in nats.

        L(x, y) = log p_theta(x|z, y) - KL(q_phi(z|x, y) || p(z)), z = mu + sigma * eps, a lower bound on
        log p_theta(x|y) in expectation (Sohn et al. 2015, eq. 4; Kingma et al. 2014, eq. 6).
        Raises ValueError as :meth:`encode`.
        """
        log_px_z, kl = self.elbo_terms(x, y)
        return log_px_z - kl

    def loss(self, x: torch.Tensor, y) -> torch.Tensor:
        """Per-example loss -(log p_theta(x|z, y) - beta * KL), (B,) in nats; the negative ELBO for beta = 1.

        This is what ``ae_course.train(model, x, y=labels, ...)`` minimizes.
        """
        log_px_z, kl = self.elbo_terms(x, y)
        return -(log_px_z - self.beta * kl)

    # ------------------------------------------------------------------------------------- using the model

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y) -> torch.Tensor:
        """sigmoid(decode(mu(x, y), y)): (B, input_dim) in [0, 1], the decoder's mean at the posterior mean.

        Decoding the code of x with a *different* label than x's own is style transfer. No gradient.
        """
        mu, _ = self.encode(x, y)
        return torch.sigmoid(self.decode(mu, y))

    @torch.no_grad()
    def sample(self, y, generator: torch.Generator | None = None) -> torch.Tensor:
        """One image per label: z ~ p(z) = N(0, I), returns sigmoid(decode(z, y)), (B, input_dim) in [0, 1].

        y: (B,) class indices (or a (B, n_classes) one-hot tensor). The images are the decoder's means
        (pixel probabilities), not binary draws. `generator` makes the draw reproducible (it must live on
        the model's device). Raises ValueError for labels that :meth:`one_hot` rejects.
        """
        encoded = self.one_hot(y)
        z = torch.randn(encoded.shape[0], self.latent_dim, generator=generator, device=encoded.device,
                        dtype=encoded.dtype)
        return torch.sigmoid(self.decode(z, encoded))
