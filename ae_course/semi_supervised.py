r"""The semi-supervised adversarial autoencoder (Makhzani et al. 2016, section 5, Fig. 8).

The encoder splits its output into a class y (the logits of a softmax over K classes) and a style z; the
decoder reconstructs x from (softmax(y_logits), z). Two discriminators impose two priors in code space: a
categorical prior (one-hot samples) on softmax(y_logits), and a Gaussian on z. The few labelled examples
train the class head with the cross-entropy. One minibatch runs the phases of
:func:`ae_course.aae.adversarial_step` (reconstruction, discriminator, generator) and then the
semi-supervised phase:

.. math::

    \min_{q} \; \mathbb{E}_{(x, y) \sim \text{labelled}} [-\log q(y \mid x)].
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .aae import AdversarialModel, Discriminator, discriminator_loss, generator_loss
from .models import check_input, mlp, one_hot
from .priors import CategoricalPrior, Prior

__all__ = ["SemiSupervisedAAE"]


class SemiSupervisedAAE(AdversarialModel):
    r"""The semi-supervised AAE (Makhzani et al. 2016, section 5, Fig. 8).

    The encoder outputs both a class y (logits of a softmax over n_classes) and a style z:
    ``mlp([input_dim, *hidden, n_classes + style_dim])`` split into ``y_logits`` and ``z``. The decoder
    reconstructs x from (softmax(y_logits), z). Two discriminators impose two priors: ``discriminator_y``
    a categorical prior (one-hot samples) on softmax(y_logits), ``discriminator_z`` a Gaussian on z. The
    labelled examples train the class head with the cross-entropy (:meth:`classification_loss`).

    Args:
        input_dim: D (784 for MNIST); n_classes: C; style_dim: the dimension of z.
        hidden, activation: the encoder's hidden layers (the decoder mirrors them).
        prior: the prior on z (default N(0, I)); the prior on y is uniform categorical.
        discriminator_hidden: hidden widths of both discriminators.
        dropout: dropout probability after every hidden layer of the default encoder and of the decoder.
        corruption: a callable x -> x~ (e.g. from :mod:`ae_course.corruption`) applied to every image the
            encoder reads in train mode, as in a denoising autoencoder: the codes of a corrupted image
            must still reconstruct the clean one and still classify it (Makhzani et al. 2016 add Gaussian
            noise to the encoder's input in their semi-supervised experiments). In eval mode
            (:meth:`classify`, every evaluation) the encoder reads x as it is, and dropout is off.
        encoder: a module mapping (B, input_dim) to (B, n_classes + style_dim) that replaces the default
            ``mlp([input_dim, *hidden, n_classes + style_dim], activation, dropout)``, e.g. a
            :class:`ae_course.models.ConvEncoder`; the decoder is always the MLP mirror of `hidden`.
    Raises:
        ValueError: for n_classes < 2, style_dim < 1, a prior of another dimension, a corruption that is
            not callable, an encoder that is not an ``nn.Module``, or as :func:`mlp` (dropout outside [0, 1)).
    """

    def __init__(self, input_dim: int = 784, n_classes: int = 10, style_dim: int = 10,
                 hidden: Sequence[int] = (512, 256), activation: str = "relu", prior: Prior | None = None,
                 discriminator_hidden: Sequence[int] = (256, 256), dropout: float = 0.0,
                 corruption: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 encoder: nn.Module | None = None):
        if int(n_classes) < 2 or int(style_dim) < 1:
            raise ValueError(f"need n_classes >= 2 and style_dim >= 1, got {n_classes}, {style_dim}")
        if corruption is not None and not callable(corruption):
            raise ValueError(f"corruption must be a callable x -> x~, got {type(corruption).__name__}")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        super().__init__(input_dim, style_dim, n_classes, hidden, activation, discriminator_hidden, prior,
                         latent_name="style_dim")
        self.dropout, self.corruption = float(dropout), corruption
        self.class_prior = CategoricalPrior(self.n_classes)
        self.encoder = encoder if encoder is not None else mlp(
            [self.input_dim, *hidden, self.n_classes + self.latent_dim], activation, dropout)
        self.decoder = mlp([self.n_classes + self.latent_dim, *reversed(tuple(hidden)), self.input_dim],
                           activation, dropout)
        self.discriminator_y = Discriminator(self.n_classes, discriminator_hidden, activation)
        self.discriminator_z = Discriminator(self.latent_dim, discriminator_hidden, activation)

    @property
    def config(self) -> dict:
        """The constructor's arguments (the prior by its repr): what a checkpoint stores."""
        return {"input_dim": self.input_dim, "n_classes": self.n_classes, "style_dim": self.latent_dim,
                "hidden": list(self.hidden), "activation": self.activation, "prior": repr(self.prior),
                "discriminator_hidden": list(self.discriminator_hidden), "dropout": self.dropout,
                "corruption": repr(self.corruption), "encoder": type(self.encoder).__name__}

    @property
    def discriminators(self) -> nn.ModuleList:
        """Both discriminators (class, then style): what the discriminator phase updates."""
        return nn.ModuleList([self.discriminator_y, self.discriminator_z])

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, input_dim) -> (y_logits (B, n_classes), z (B, style_dim)). y is accepted and ignored.

        In train mode the encoder reads corruption(x), a fresh corruption per call (if one was given).
        Raises ValueError for a wrong shape or dtype, or NaN."""
        check_input(x, self.input_dim, like=self._weight())
        if self.training and self.corruption is not None:
            x = self.corruption(x)
        return self.encoder(x).split([self.n_classes, self.latent_dim], dim=1)

    def decode(self, z: torch.Tensor, y) -> torch.Tensor:
        """(z, y) -> logits (B, input_dim). y: (B,) class indices or (B, n_classes) probabilities.

        Raises ValueError on a wrong shape of z or labels that :func:`ae_course.models.one_hot` rejects.
        """
        check_input(z, self.latent_dim, "z", like=self._weight())
        return self.decoder(torch.cat([one_hot(y, self.n_classes, z.shape[0], like=z), z], dim=1))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x -> reconstruction logits (B, input_dim), decoded from (softmax(y_logits), z); y is ignored."""
        y_logits, z = self.encode(x)
        return self.decoder(torch.cat([y_logits.softmax(dim=1), z], dim=1))

    def reconstruction_loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Binary cross-entropy of the reconstruction, summed over pixels, (B,) in nats.

        Raises ValueError if labels y are given: the model infers the class of every image; its few labelled
        examples go to the training loop as ``labelled=(x_l, y_l)`` (the semi-supervised phase).
        """
        if y is not None:
            raise ValueError("a SemiSupervisedAAE reconstructs from its own class estimate: pass the labelled "
                             "examples as train(..., labelled=(x_l, y_l)), not y")
        return -self.log_likelihood(x, self(x))

    def discriminator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Both discriminators' losses, summed: categorical prior vs softmax(y_logits), N(0, I) vs z; (B,)."""
        with torch.no_grad():
            y_logits, z = self.encode(x)
        y_prior = self.class_prior.sample(len(x), device=z.device).to(z.dtype)
        z_prior = self.prior.sample(len(x), device=z.device).to(z.dtype)
        return (discriminator_loss(self.discriminator_y(y_prior),
                                   self.discriminator_y(y_logits.softmax(dim=1)))
                + discriminator_loss(self.discriminator_z(z_prior), self.discriminator_z(z)))

    def generator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's adversarial loss against both discriminators, -log T_y - log T_z, (B,)."""
        y_logits, z = self.encode(x)
        return (generator_loss(self.discriminator_y(y_logits.softmax(dim=1)))
                + generator_loss(self.discriminator_z(z)))

    def classification_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy -log q(y|x) of the true labels, (B,) in nats. Raises ValueError for bad labels."""
        one_hot(y, self.n_classes, x.shape[0])            # validates the labels
        y_logits, _ = self.encode(x)
        return F.cross_entropy(y_logits, y.to(y_logits.device).long(), reduction="none")

    @torch.no_grad()
    def classify(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """argmax_y q(y|x): x (N, input_dim) -> (N,) int64 predicted classes (eval mode, no gradient)."""
        was_training = self.training
        self.eval()
        device = self._weight().device
        try:
            return torch.cat([self.encode(x[i:i + batch_size].to(device))[0].argmax(dim=1).cpu()
                              for i in range(0, len(x), batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """n images from (z, y), z ~ p(z) and y uniform (or the given (n,) labels): (n, input_dim) in [0, 1]."""
        weight = self._weight()
        z = self.prior.sample(self._n(n), device=weight.device).to(weight.dtype)
        y = self.class_prior.sample(int(n), device=weight.device) if y is None else y
        return torch.sigmoid(self.decode(z, y))
