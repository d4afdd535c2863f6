r"""Adversarial autoencoders (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2016).

An autoencoder whose codes z = q(x) are pushed towards a prior p(z) by a GAN game played in code space
(Goodfellow et al. 2014): a discriminator T(z) learns to tell prior samples z' ~ p(z) (label 1) from codes
(label 0), and the encoder, acting as the generator, learns to fool it. For a fixed encoder the best
discriminator is T*(z) = p(z) / (p(z) + q(z)) (:func:`optimal_discriminator`), and at T* the game's value
is 2 JS(q || p) - log 4, minimal exactly when the aggregated posterior q(z) equals p(z). Only samples of
p(z) are needed, never its density: the prior can be a mixture, a swiss roll, a categorical
(:mod:`ae_course.priors`).

Training alternates, per minibatch (Makhzani et al. 2016, section 2):

1. the **reconstruction phase** updates encoder and decoder on the reconstruction loss;
2. the **regularization phase** first updates the discriminator on ``discriminator_loss``, then the
   encoder (the generator) on the non-saturating ``generator_loss`` = -log T(q(x));
3. for the semi-supervised model, a **semi-supervised phase** updates the encoder's class head on the
   cross-entropy of the few labelled examples (section 5).

Each phase has its own optimizer over exactly the parameters it should change (:func:`make_optimizers`);
:func:`adversarial_step` is one minibatch of the three phases, and it is the models' ``training_step``, so
:func:`ae_course.train` trains them like every other model. All losses are computed from logits (softplus,
no epsilons) and returned per example, shape (B,), in nats.

The objective, as a two-player game between the discriminator T and the encoder q (Makhzani et al. 2016,
eq. 1, after Goodfellow et al. 2014, eq. 1), next to the reconstruction loss that encoder and decoder minimize:

.. math::

    \min_q \max_T \; V(T, q) = \mathbb{E}_{z' \sim p(z)}[\log T(z')] + \mathbb{E}_{x}[\log(1 - T(q(x)))].
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .losses import bernoulli_log_likelihood
from .models import check_input, mlp, with_labels
from .priors import GaussianPrior, Prior
from .training import adam, update

__all__ = ["Discriminator", "optimal_discriminator", "discriminator_loss", "generator_loss",
           "AdversarialModel", "AdversarialAutoencoder", "make_optimizers", "adversarial_step"]


# ----------------------------------------------------------------------------------------- the game


class Discriminator(nn.Module):
    """T(z): an MLP from (B, input_dim) codes to (B,) logits; T(z) = sigmoid(logit) = P(z came from the prior).

    Raises ValueError as :func:`ae_course.models.mlp` (non-positive sizes, unknown activation), and on a
    wrong input shape in :meth:`forward`. Makhzani et al. 2016 use two hidden layers of 1000 units.
    ``dropout``: the probability of :func:`~ae_course.models.mlp`'s dropout after every hidden layer.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        self.input_dim = int(input_dim)
        self.net = mlp([self.input_dim, *hidden, 1], activation, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, input_dim) -> (B,) logits."""
        check_input(z, self.input_dim, "z")
        return self.net(z).squeeze(1)


def optimal_discriminator(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r"""T*(z) = p(z) / (p(z) + q(z)) = sigmoid(log p(z) - log q(z)), from log-densities of the same shape.

    The discriminator that maximizes E_p[log T] + E_q[log(1 - T)] for fixed p (the prior, label 1) and q
    (the codes, label 0); Goodfellow et al. 2014, Proposition 1. Raises ValueError if the shapes differ.
    """
    if log_p.shape != log_q.shape:
        raise ValueError(f"log_p has shape {tuple(log_p.shape)} but log_q has {tuple(log_q.shape)}")
    return torch.sigmoid(log_p - log_q)


def discriminator_loss(prior_logits: torch.Tensor, code_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's cross-entropy, per pair: -log T(z') - log(1 - T(z)), (B,) in nats.

    prior_logits: T's logits on B prior samples z' (label 1); code_logits: on B codes z (label 0).
    The discriminator *descends* this loss, i.e. ascends V: it raises T on prior samples and lowers it on
    codes; the sign is that of a cross-entropy, so that both players minimize.
    Computed as softplus(-l') + softplus(l) (no epsilons). Its mean is minus the GAN value function
    V(T, q) (Goodfellow et al. 2014, eq. 1), whose minimum over T is log 4 - 2 JS(q || p).
    Raises ValueError unless both are (B,) tensors of the same length.
    """
    if prior_logits.dim() != 1 or prior_logits.shape != code_logits.shape:
        raise ValueError(f"expected two (B,) logit tensors of equal length, got {tuple(prior_logits.shape)} "
                         f"and {tuple(code_logits.shape)}")
    return F.softplus(-prior_logits) + F.softplus(code_logits)


def generator_loss(code_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    r"""What the encoder (the generator) minimizes, per code, (B,) in nats.

    The encoder descends it: it moves its codes to where T says "prior". Saturating and non-saturating
    forms have the same fixed point (q = p) but not the same gradients:
    non-saturating (default): -log T(z) = softplus(-l), strong gradients while T rejects the codes
    (Goodfellow et al. 2014, section 3). Saturating: log(1 - T(z)) = -softplus(l), the minimax form,
    whose gradient vanishes exactly when T confidently rejects the codes. Raises ValueError unless (B,).
    """
    if code_logits.dim() != 1:
        raise ValueError(f"expected (B,) logits, got shape {tuple(code_logits.shape)}")
    return -F.softplus(code_logits) if saturating else F.softplus(-code_logits)


# ----------------------------------------------------------------------------------------- training


def make_optimizers(model: "AdversarialModel", lr: float = 1e-3, lr_adversarial: float = 2e-4,
                    betas_adversarial: tuple[float, float] = (0.5, 0.999)) -> dict[str, torch.optim.Optimizer]:
    """One Adam optimizer (:func:`ae_course.training.adam`) per phase, each over exactly the parameters that phase may change.

    ``reconstruction``: encoder + decoder at `lr`; ``discriminator``: the discriminator(s) and
    ``generator``: the encoder, both at `lr_adversarial` with `betas_adversarial` (beta1 = 0.5, the usual
    choice for GANs, Radford et al. 2016); ``classification`` (semi-supervised models only): the encoder at `lr`.
    """
    opts = {"reconstruction": adam([*model.encoder.parameters(), *model.decoder.parameters()], lr=lr),
            "discriminator": adam(model.discriminators.parameters(), lr=lr_adversarial, betas=betas_adversarial),
            "generator": adam(model.encoder.parameters(), lr=lr_adversarial, betas=betas_adversarial)}
    if hasattr(model, "classification_loss"):
        opts["classification"] = adam(model.encoder.parameters(), lr=lr)
    return opts


def adversarial_step(model: "AdversarialModel", optimizers: Mapping[str, torch.optim.Optimizer],
                     x: torch.Tensor, y: torch.Tensor | None = None,
                     labelled: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One minibatch of AAE training (Makhzani et al. 2016, sections 2 and 5), each phase one :func:`update`:

    1. reconstruction: encoder and decoder descend -log p(x | q(x)[, y]);
    2. discriminator: T descends its cross-entropy on prior samples (label 1) vs codes (label 0);
    3. generator: the encoder descends -log T(q(x)), moving its codes towards the prior;
    4. given `labelled` = (x_l, y_l) (semi-supervised), classification: the encoder's class head descends
       the cross-entropy of the labels.

    x: (B, input_dim); y: (B,) labels for a label-conditioned decoder. Returns the mean loss of each phase
    (nats per example, detached). Raises FloatingPointError on a NaN or infinite loss, before that phase's
    update, and ValueError for `labelled` with a model that has no class head (before any update).
    """
    if labelled is not None and not hasattr(model, "classification_loss"):
        raise ValueError(f"{type(model).__name__} has no class head: `labelled` needs a SemiSupervisedAAE")
    losses = {"reconstruction": update(model, optimizers["reconstruction"],
                                       model.reconstruction_loss(x, y).mean(), "reconstruction"),
              "discriminator": update(model, optimizers["discriminator"], model.discriminator_loss(x).mean(),
                                      "discriminator"),
              "generator": update(model, optimizers["generator"], model.generator_loss(x).mean(),
                                  "generator")}
    if labelled is not None:
        losses["classification"] = update(model, optimizers["classification"],
                                          model.classification_loss(*labelled).mean(), "classification")
    return losses


# ----------------------------------------------------------------------------------------- the models


class AdversarialModel(nn.Module):
    """What every adversarial autoencoder shares: an ``encoder``, a ``decoder`` returning Bernoulli logits,
    the ``discriminators`` (a ModuleList), the Bernoulli likelihood, and the training step.

    Subclasses define the networks, a ``discriminators`` property (a ModuleList of every discriminator) and
    ``reconstruction_loss``, ``discriminator_loss``, ``generator_loss``.
    :func:`ae_course.train` finds ``training_step`` (:func:`adversarial_step`) and ``make_optimizers``.
    """

    encoder: nn.Module
    decoder: nn.Module

    training_step = adversarial_step
    make_optimizers = make_optimizers

    def __init__(self, input_dim: int, latent_dim: int, n_classes: int, hidden: Sequence[int], activation: str,
                 discriminator_hidden: Sequence[int], prior: Prior | None, latent_name: str = "latent_dim"):
        """Store the settings every adversarial autoencoder shares; the prior on z defaults to N(0, I).
        Raises ValueError for a prior of another dimension than latent_dim (named `latent_name`)."""
        super().__init__()
        self.input_dim, self.latent_dim, self.n_classes = int(input_dim), int(latent_dim), int(n_classes)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.discriminator_hidden = tuple(int(h) for h in discriminator_hidden)
        self.prior = prior if prior is not None else GaussianPrior(self.latent_dim, 1.0)
        if self.prior.dim != self.latent_dim:
            raise ValueError(f"the prior has dimension {self.prior.dim} but {latent_name} is {self.latent_dim}")

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) under Bernoulli pixels from the decoder's logits, (B,) in nats (x in [0, 1])."""
        return bernoulli_log_likelihood(x, logits)

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The reconstruction loss, (B,) in nats, so that :func:`ae_course.evaluate` works."""
        return self.reconstruction_loss(x, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """sigmoid of the reconstruction logits: (B, input_dim) in [0, 1], no gradient."""
        return torch.sigmoid(self(x, y))

    def _n(self, n: int) -> int:
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        return int(n)

    def _weight(self) -> torch.Tensor:
        return self.decoder[0].weight


class AdversarialAutoencoder(AdversarialModel):
    r"""The adversarial autoencoder with a deterministic encoder, unsupervised or with a labelled decoder.

    encoder q(x) = z: ``mlp([input_dim, *hidden, latent_dim])``; decoder p(x|z) (or p(x|z, y)):
    ``mlp([latent_dim (+ n_classes), *reversed(hidden), input_dim])`` returning Bernoulli logits;
    discriminator T(z): :class:`Discriminator` over latent_dim.

    With ``n_classes = 0`` (unsupervised) the decoder sees z only. With ``n_classes = K > 0`` (the
    *supervised* AAE, Makhzani et al. 2016, section 4) the decoder also reads one_hot(y), so the label
    need not be stored in z and the codes learn the style; then every method that decodes needs y.
    The encoder never reads y (its codes must not depend on the label).

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: L, the dimension of z.
        hidden: the encoder's hidden widths; the decoder mirrors them.
        activation: a key of :data:`ae_course.models.ACTIVATIONS`.
        prior: a :class:`ae_course.priors.Prior` with ``dim == latent_dim``; default N(0, I).
        n_classes: 0 for the unsupervised AAE, K for the supervised one.
        discriminator_hidden: hidden widths of T.
        dropout: dropout probability after every hidden layer of the encoder and the decoder (train mode only).
        discriminator_dropout: the same for T (the PyTorch AAE write-up, Ducau 2017: 0.25 and 0.2).
    Raises:
        ValueError: for latent_dim < 1, n_classes < 0, a prior of another dimension, or as :func:`mlp`
            (dropout outside [0, 1)).
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 2, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", prior: Prior | None = None, n_classes: int = 0,
                 discriminator_hidden: Sequence[int] = (256, 256), dropout: float = 0.0,
                 discriminator_dropout: float = 0.0):
        if int(latent_dim) < 1 or int(n_classes) < 0:
            raise ValueError(f"need latent_dim >= 1 and n_classes >= 0, got {latent_dim}, {n_classes}")
        super().__init__(input_dim, latent_dim, n_classes, hidden, activation, discriminator_hidden, prior)
        self.dropout, self.discriminator_dropout = float(dropout), float(discriminator_dropout)
        self.encoder = mlp([self.input_dim, *hidden, self.latent_dim], activation, dropout)
        self.decoder = mlp([self.latent_dim + self.n_classes, *reversed(tuple(hidden)), self.input_dim], activation,
                           dropout)
        self.discriminator = Discriminator(self.latent_dim, discriminator_hidden, activation, discriminator_dropout)

    @property
    def discriminators(self) -> nn.ModuleList:
        """The discriminator, as the list the regularization phase updates."""
        return nn.ModuleList([self.discriminator])

    @property
    def config(self) -> dict:
        """The constructor's arguments (the prior by its repr): what a checkpoint stores."""
        return {"input_dim": self.input_dim, "latent_dim": self.latent_dim, "hidden": list(self.hidden),
                "activation": self.activation, "prior": repr(self.prior), "n_classes": self.n_classes,
                "discriminator_hidden": list(self.discriminator_hidden), "dropout": self.dropout,
                "discriminator_dropout": self.discriminator_dropout}

    # ------------------------------------------------------------------ the networks
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """z = q(x): x (B, input_dim) -> (B, latent_dim). y is accepted and ignored (the encoder does not
        read labels). Raises ValueError for a wrong shape or dtype, or NaN."""
        check_input(x, self.input_dim, like=self._weight())
        return self.encoder(x)

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z (B, latent_dim) [, y (B,) labels for the supervised AAE] -> logits (B, input_dim).

        Raises ValueError on a wrong shape, when y is missing (supervised) or given (unsupervised), and
        for labels outside 0..n_classes-1 (see :func:`ae_course.models.one_hot`).
        """
        check_input(z, self.latent_dim, "z", like=self._weight())
        return self.decoder(with_labels(z, y, self.n_classes, self))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x (B, input_dim) [, y] -> reconstruction logits (B, input_dim)."""
        return self.decode(self.encode(x), y)

    # ------------------------------------------------------------------ the three losses
    def reconstruction_loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-log p(x | z = q(x)[, y]) under Bernoulli pixels (binary cross-entropy summed over pixels),
        (B,) in nats."""
        return -self.log_likelihood(x, self(x, y))

    def discriminator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """T's loss on the codes of x (detached: the encoder gets no gradient) and as many prior samples,
        (B,)."""
        with torch.no_grad():
            z = self.encode(x)
        z_prior = self.prior.sample(len(x), device=z.device).to(z.dtype)
        return discriminator_loss(self.discriminator(z_prior), self.discriminator(z))

    def generator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's adversarial loss -log T(q(x)), (B,) in nats (non-saturating)."""
        return generator_loss(self.discriminator(self.encode(x)))

    # ------------------------------------------------------------------ using the model
    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """n images decoded from z ~ p(z): (n, input_dim) pixel probabilities in [0, 1], no gradient.

        y: for the supervised AAE, n labels (the class of each image). Raises ValueError for n < 1 or as
        :meth:`decode`.
        """
        z = self.prior.sample(self._n(n), device=self._weight().device).to(self._weight().dtype)
        return torch.sigmoid(self.decode(z, y))
