r"""Adversarial autoencoders (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2016).

An autoencoder whose codes z = q(x) are pushed towards a prior p(z) by a GAN game played in code space
(Goodfellow et al. 2014): a discriminator D(z) learns to tell prior samples z' ~ p(z) (label 1) from codes
(label 0), and the encoder, acting as the generator, learns to fool it. For a fixed encoder the best
discriminator is D*(z) = p(z) / (p(z) + q(z)) (:func:`optimal_discriminator`), and at D* the game's value
is 2 JS(q || p) - log 4, minimal exactly when the aggregated posterior q(z) equals p(z). Only samples of
p(z) are needed, never its density: the prior can be a mixture, a swiss roll, a categorical
(:mod:`ae_course.priors`).

Training alternates, per minibatch (Makhzani et al. 2016, section 2):

1. the **reconstruction phase** updates encoder and decoder on the reconstruction loss;
2. the **regularization phase** first updates the discriminator on ``discriminator_loss``, then the
   encoder (the generator) on the non-saturating ``generator_loss`` = -log D(q(x));
3. for the semi-supervised model, a **semi-supervised phase** updates the encoder's class head on the
   cross-entropy of the few labelled examples (section 5).

Each phase has its own optimizer over exactly the parameters it should change (:func:`make_optimizers`),
and :func:`train_adversarial` runs the loop. All losses are computed from logits (softplus, no epsilons)
and returned per example, shape (B,), in nats.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .losses import binary_cross_entropy
from .models import check_input, mlp, one_hot
from .priors import CategoricalPrior, GaussianPrior, Prior
from .train import get_device, minibatch_budget

__all__ = ["Discriminator", "optimal_discriminator", "discriminator_loss", "generator_loss",
           "AdversarialAutoencoder", "SemiSupervisedAAE", "make_optimizers", "adversarial_step",
           "AdversarialHistory", "train_adversarial"]


# ----------------------------------------------------------------------------------------- the game


class Discriminator(nn.Module):
    """D(z): an MLP from (B, input_dim) codes to (B,) logits; D(z) = sigmoid(logit) = P(z came from the prior).

    Raises ValueError as :func:`ae_course.models.mlp` (non-positive sizes, unknown activation), and on a
    wrong input shape in :meth:`forward`. Makhzani et al. 2016 use two hidden layers of 1000 units.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu"):
        super().__init__()
        self.input_dim = int(input_dim)
        self.net = mlp([self.input_dim, *hidden, 1], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, input_dim) -> (B,) logits."""
        check_input(z, self.input_dim, "z")
        return self.net(z).squeeze(1)


def optimal_discriminator(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r"""D*(z) = p(z) / (p(z) + q(z)) = sigmoid(log p(z) - log q(z)), from log-densities of the same shape.

    The discriminator that maximizes E_p[log D] + E_q[log(1 - D)] for fixed p (the prior, label 1) and q
    (the codes, label 0); Goodfellow et al. 2014, Proposition 1. Raises ValueError if the shapes differ.
    """
    if log_p.shape != log_q.shape:
        raise ValueError(f"log_p has shape {tuple(log_p.shape)} but log_q has {tuple(log_q.shape)}")
    return torch.sigmoid(log_p - log_q)


def discriminator_loss(prior_logits: torch.Tensor, code_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's cross-entropy, per pair: -log D(z') - log(1 - D(z)), (B,) in nats.

    prior_logits: D's logits on B prior samples z' (label 1); code_logits: on B codes z (label 0).
    Computed as softplus(-l') + softplus(l) (no epsilons). Its mean is minus the GAN value function
    V(D, q) (Goodfellow et al. 2014, eq. 1), whose minimum over D is log 4 - 2 JS(q || p).
    Raises ValueError unless both are (B,) tensors of the same length.
    """
    if prior_logits.dim() != 1 or prior_logits.shape != code_logits.shape:
        raise ValueError(f"expected two (B,) logit tensors of equal length, got {tuple(prior_logits.shape)} "
                         f"and {tuple(code_logits.shape)}")
    return F.softplus(-prior_logits) + F.softplus(code_logits)


def generator_loss(code_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    r"""What the encoder (the generator) minimizes, per code, (B,) in nats.

    Non-saturating (default): -log D(z) = softplus(-l), strong gradients while D rejects the codes
    (Goodfellow et al. 2014, section 3). Saturating: log(1 - D(z)) = -softplus(l), the minimax form,
    whose gradient vanishes exactly when D confidently rejects the codes. Raises ValueError unless (B,).
    """
    if code_logits.dim() != 1:
        raise ValueError(f"expected (B,) logits, got shape {tuple(code_logits.shape)}")
    return -F.softplus(code_logits) if saturating else F.softplus(-code_logits)


# ----------------------------------------------------------------------------------------- the models


class AdversarialAutoencoder(nn.Module):
    r"""The adversarial autoencoder with a deterministic encoder, unsupervised or with a labelled decoder.

    encoder q(x) = z: ``mlp([input_dim, *hidden, latent_dim])``; decoder p(x|z) (or p(x|z, y)):
    ``mlp([latent_dim (+ n_classes), *reversed(hidden), input_dim])`` returning Bernoulli logits;
    discriminator D(z): :class:`Discriminator` over latent_dim.

    With ``n_classes = 0`` (unsupervised) the decoder sees z only. With ``n_classes = K > 0`` (the
    *supervised* AAE, Makhzani et al. 2016, section 4) the decoder also reads one_hot(y), so the label
    need not be stored in z and the codes learn the style; then every method that decodes needs y.

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: L, the dimension of z.
        hidden: the encoder's hidden widths; the decoder mirrors them.
        activation: a key of :data:`ae_course.models.ACTIVATIONS`.
        prior: a :class:`ae_course.priors.Prior` with ``dim == latent_dim``; default N(0, I).
        n_classes: 0 for the unsupervised AAE, K for the supervised one.
        discriminator_hidden: hidden widths of D.
    Raises:
        ValueError: for latent_dim < 1, n_classes < 0, a prior of another dimension, or as :func:`mlp`.
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 2, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", prior: Prior | None = None, n_classes: int = 0,
                 discriminator_hidden: Sequence[int] = (256, 256)):
        super().__init__()
        if int(latent_dim) < 1 or int(n_classes) < 0:
            raise ValueError(f"need latent_dim >= 1 and n_classes >= 0, got {latent_dim}, {n_classes}")
        self.input_dim, self.latent_dim, self.n_classes = int(input_dim), int(latent_dim), int(n_classes)
        self.prior = prior if prior is not None else GaussianPrior(self.latent_dim, 1.0)
        if self.prior.dim != self.latent_dim:
            raise ValueError(f"the prior has dimension {self.prior.dim} but latent_dim is {self.latent_dim}")
        self.encoder = mlp([self.input_dim, *hidden, self.latent_dim], activation)
        self.decoder = mlp([self.latent_dim + self.n_classes, *reversed(tuple(hidden)), self.input_dim], activation)
        self.discriminator = Discriminator(self.latent_dim, discriminator_hidden, activation)

    # ------------------------------------------------------------------ the networks
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = q(x): x (B, input_dim) -> (B, latent_dim). Raises ValueError on a wrong shape or dtype."""
        check_input(x, self.input_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z (B, latent_dim) [, y (B,) labels for the supervised AAE] -> logits (B, input_dim).

        Raises ValueError on a wrong shape, when y is missing (supervised) or given (unsupervised), and
        for labels outside 0..n_classes-1 (see :func:`ae_course.models.one_hot`).
        """
        check_input(z, self.latent_dim, "z")
        if self.n_classes == 0:
            if y is not None:
                raise ValueError("this AAE is unsupervised (n_classes=0): its decoder takes no labels")
            return self.decoder(z)
        if y is None:
            raise ValueError(f"this AAE's decoder is conditioned on labels (n_classes={self.n_classes}): pass y")
        return self.decoder(torch.cat([z, one_hot(y, self.n_classes, z.shape[0], like=z)], dim=1))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x (B, input_dim) [, y] -> reconstruction logits (B, input_dim)."""
        return self.decode(self.encode(x), y)

    # ------------------------------------------------------------------ the three losses
    def reconstruction_loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-log p(x | z = q(x)[, y]) under Bernoulli pixels (binary cross-entropy summed over pixels), (B,) in nats."""
        return binary_cross_entropy(x, self(x, y))

    def discriminator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """D's loss on the codes of x (detached: the encoder gets no gradient) and as many prior samples, (B,)."""
        with torch.no_grad():
            z = self.encode(x)
        z_prior = self.prior.sample(len(x), device=z.device).to(z.dtype)
        return discriminator_loss(self.discriminator(z_prior), self.discriminator(z))

    def generator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's adversarial loss -log D(q(x)), (B,) in nats (non-saturating)."""
        return generator_loss(self.discriminator(self.encode(x)))

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The reconstruction loss, (B,) in nats, so that :func:`ae_course.evaluate` works."""
        return self.reconstruction_loss(x, y)

    # ------------------------------------------------------------------ who is updated by which phase
    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Encoder and decoder: updated by the reconstruction phase."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """The discriminator: updated by the discriminator half of the regularization phase."""
        return list(self.discriminator.parameters())

    def generator_parameters(self) -> list[nn.Parameter]:
        """The encoder: updated by the generator half of the regularization phase."""
        return list(self.encoder.parameters())

    # ------------------------------------------------------------------ using the model
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """sigmoid(decode(q(x)[, y])): (B, input_dim) in [0, 1], no gradient."""
        return torch.sigmoid(self(x, y))

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """n images decoded from z ~ p(z): (n, input_dim) pixel probabilities in [0, 1], no gradient.

        y: for the supervised AAE, n labels (the class of each image). Raises ValueError for n < 1 or as
        :meth:`decode`.
        """
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        weight = self.decoder[0].weight
        z = self.prior.sample(int(n), device=weight.device).to(weight.dtype)
        return torch.sigmoid(self.decode(z, y))


class SemiSupervisedAAE(nn.Module):
    r"""The semi-supervised AAE (Makhzani et al. 2016, section 5, Fig. 8).

    The encoder outputs both a class y (logits of a softmax over n_classes) and a style z:
    ``mlp([input_dim, *hidden, n_classes + style_dim])`` split into ``y_logits`` and ``z``. The decoder
    reconstructs x from (softmax(y_logits), z). Two discriminators impose two priors: ``discriminator_y``
    a categorical prior (one-hot samples) on softmax(y_logits), ``discriminator_z`` a Gaussian on z. The
    labelled examples train the class head with the cross-entropy (:meth:`classification_loss`).

    Args:
        input_dim: D (784 for MNIST); n_classes: K; style_dim: the dimension of z.
        hidden, activation: the encoder's hidden layers (the decoder mirrors them).
        prior: the prior on z (default N(0, I)); the prior on y is uniform categorical.
        discriminator_hidden: hidden widths of both discriminators.
    Raises:
        ValueError: for n_classes < 2, style_dim < 1, a prior of another dimension, or as :func:`mlp`.
    """

    def __init__(self, input_dim: int = 784, n_classes: int = 10, style_dim: int = 10,
                 hidden: Sequence[int] = (512, 256), activation: str = "relu", prior: Prior | None = None,
                 discriminator_hidden: Sequence[int] = (256, 256)):
        super().__init__()
        if int(n_classes) < 2 or int(style_dim) < 1:
            raise ValueError(f"need n_classes >= 2 and style_dim >= 1, got {n_classes}, {style_dim}")
        self.input_dim, self.n_classes, self.latent_dim = int(input_dim), int(n_classes), int(style_dim)
        self.prior = prior if prior is not None else GaussianPrior(self.latent_dim, 1.0)
        if self.prior.dim != self.latent_dim:
            raise ValueError(f"the prior has dimension {self.prior.dim} but style_dim is {self.latent_dim}")
        self.class_prior = CategoricalPrior(self.n_classes)
        self.encoder = mlp([self.input_dim, *hidden, self.n_classes + self.latent_dim], activation)
        self.decoder = mlp([self.n_classes + self.latent_dim, *reversed(tuple(hidden)), self.input_dim], activation)
        self.discriminator_y = Discriminator(self.n_classes, discriminator_hidden, activation)
        self.discriminator_z = Discriminator(self.latent_dim, discriminator_hidden, activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, input_dim) -> (y_logits (B, n_classes), z (B, style_dim)). Raises ValueError on a wrong shape."""
        check_input(x, self.input_dim)
        return self.encoder(x).split([self.n_classes, self.latent_dim], dim=1)

    def decode(self, y, z: torch.Tensor) -> torch.Tensor:
        """(y, z) -> logits (B, input_dim). y: (B,) class indices or (B, n_classes) probabilities.

        Raises ValueError on a wrong shape of z or labels that :func:`ae_course.models.one_hot` rejects.
        """
        check_input(z, self.latent_dim, "z")
        return self.decoder(torch.cat([one_hot(y, self.n_classes, z.shape[0], like=z), z], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x -> reconstruction logits (B, input_dim), decoded from (softmax(y_logits), z)."""
        y_logits, z = self.encode(x)
        return self.decoder(torch.cat([y_logits.softmax(dim=1), z], dim=1))

    def reconstruction_loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Binary cross-entropy of the reconstruction, summed over pixels, (B,) in nats (y is unused)."""
        return binary_cross_entropy(x, self(x))

    def discriminator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Both discriminators' losses, summed: categorical prior vs softmax(y_logits), N(0, I) vs z; (B,)."""
        with torch.no_grad():
            y_logits, z = self.encode(x)
        y_prior = self.class_prior.sample(len(x), device=z.device).to(z.dtype)
        z_prior = self.prior.sample(len(x), device=z.device).to(z.dtype)
        return (discriminator_loss(self.discriminator_y(y_prior), self.discriminator_y(y_logits.softmax(dim=1)))
                + discriminator_loss(self.discriminator_z(z_prior), self.discriminator_z(z)))

    def generator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's adversarial loss against both discriminators, -log D_y - log D_z, (B,)."""
        y_logits, z = self.encode(x)
        return (generator_loss(self.discriminator_y(y_logits.softmax(dim=1)))
                + generator_loss(self.discriminator_z(z)))

    def classification_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy -log q(y|x) of the true labels, (B,) in nats. Raises ValueError for bad labels."""
        one_hot(y, self.n_classes, x.shape[0])            # validates the labels
        y_logits, _ = self.encode(x)
        return F.cross_entropy(y_logits, y.to(y_logits.device).long(), reduction="none")

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The reconstruction loss, (B,) in nats, so that :func:`ae_course.evaluate` works."""
        return self.reconstruction_loss(x)

    @torch.no_grad()
    def classify(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """argmax_y q(y|x): x (N, input_dim) -> (N,) int64 predicted classes (eval mode, no gradient)."""
        was_training = self.training
        self.eval()
        device = self.decoder[0].weight.device
        out = torch.cat([self.encode(x[i:i + batch_size].to(device))[0].argmax(dim=1).cpu()
                         for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.discriminator_y.parameters(), *self.discriminator_z.parameters()]

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The encoder: updated by the semi-supervised phase."""
        return list(self.encoder.parameters())

    @torch.no_grad()
    def sample(self, n: int, y=None) -> torch.Tensor:
        """n images from (y, z), y uniform (or the given (n,) labels) and z ~ p(z): (n, input_dim) in [0, 1]."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        weight = self.decoder[0].weight
        z = self.prior.sample(int(n), device=weight.device).to(weight.dtype)
        y = self.class_prior.sample(int(n), device=weight.device) if y is None else y
        return torch.sigmoid(self.decode(y, z))


# ----------------------------------------------------------------------------------------- training


def make_optimizers(model: nn.Module, lr: float = 1e-3, lr_adversarial: float = 2e-4,
                    betas_adversarial: tuple[float, float] = (0.5, 0.999)) -> dict[str, torch.optim.Optimizer]:
    """One Adam optimizer per phase, each over exactly the parameters that phase may change.

    ``reconstruction``: encoder + decoder at `lr`; ``discriminator``: the discriminator(s) and
    ``generator``: the encoder, both at `lr_adversarial` with `betas_adversarial` (beta1 = 0.5, the usual
    choice for GANs, Radford et al. 2016); ``classification`` (semi-supervised models only): the encoder at `lr`.
    """
    opts = {"reconstruction": torch.optim.Adam(model.autoencoder_parameters(), lr=lr),
            "discriminator": torch.optim.Adam(model.discriminator_parameters(), lr=lr_adversarial,
                                              betas=betas_adversarial),
            "generator": torch.optim.Adam(model.generator_parameters(), lr=lr_adversarial, betas=betas_adversarial)}
    if hasattr(model, "classifier_parameters"):
        opts["classification"] = torch.optim.Adam(model.classifier_parameters(), lr=lr)
    return opts


def _update(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, phase: str) -> float:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the {phase} loss is {loss.item()}; the parameters were not updated with it. "
                                 "Lower the learning rates or check the inputs.")
    model.zero_grad(set_to_none=True)       # also clears what the generator phase left in the discriminator
    loss.backward()
    optimizer.step()
    return loss.item()


def adversarial_step(model: nn.Module, optimizers: dict[str, torch.optim.Optimizer], x: torch.Tensor,
                     y: torch.Tensor | None = None,
                     labelled: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """One minibatch of AAE training: the reconstruction phase, then the regularization phase
    (discriminator, then generator), then, given `labelled` = (x_l, y_l), the semi-supervised phase.

    x: (B, input_dim); y: (B,) labels for a label-conditioned decoder. Returns the mean loss of each phase (nats per example).
    Raises FloatingPointError on a NaN or infinite loss, before that phase's update.
    Makhzani et al. 2016, sections 2 and 5.
    """
    losses = {"reconstruction": _update(model, optimizers["reconstruction"],
                                        model.reconstruction_loss(x, y).mean(), "reconstruction"),
              "discriminator": _update(model, optimizers["discriminator"], model.discriminator_loss(x).mean(),
                                       "discriminator"),
              "generator": _update(model, optimizers["generator"], model.generator_loss(x).mean(), "generator")}
    if labelled is not None:
        losses["classification"] = _update(model, optimizers["classification"],
                                           model.classification_loss(*labelled).mean(), "classification")
    return losses


@dataclass
class AdversarialHistory:
    """Per-epoch mean loss of each phase (nats per example), the wall time, steps and device."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"


def train_adversarial(model: nn.Module, x: torch.Tensor, *, y: torch.Tensor | None = None,
                      labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
                      epochs: int | None = None, steps: int | None = None, batch_size: int = 100,
                      lr: float = 1e-3, lr_adversarial: float = 2e-4, seed: int = 0,
                      device: str | torch.device | None = None,
                      transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      optimizers: dict[str, torch.optim.Optimizer] | None = None,
                      progress: bool = True) -> AdversarialHistory:
    """Train an adversarial autoencoder with :func:`adversarial_step` on minibatches of x.

    Args:
        model: an :class:`AdversarialAutoencoder` or :class:`SemiSupervisedAAE`; moved to `device`.
        x: (N, input_dim) training images in [0, 1].
        y: (N,) labels, for the supervised AAE (label-conditioned decoder) only.
        labelled: (x_l (M, input_dim), y_l (M,)), the labelled examples of the semi-supervised AAE; every
            step draws a minibatch of min(batch_size, M) of them, with replacement.
        epochs or steps: the budget, exactly one (as in :func:`ae_course.train`).
        batch_size, seed, device, transform (applied to each batch, e.g. dynamic binarization), progress
            (a tqdm bar showing the phases' mean losses): as for :func:`ae_course.train`.
        lr, lr_adversarial: see :func:`make_optimizers` (ignored when `optimizers` is given).
    Returns:
        an :class:`AdversarialHistory`.
    Raises:
        ValueError: for a bad budget, empty data, a length mismatch, y given for a model without labels
            (or missing for one with them), or `labelled` for a model without a class head.
        FloatingPointError: as :func:`adversarial_step`.
    """
    steps_per_epoch, total_steps = minibatch_budget(len(x), batch_size, epochs, steps)
    labelled_decoder = isinstance(model, AdversarialAutoencoder) and model.n_classes > 0
    if (y is not None) != labelled_decoder:
        raise ValueError("pass y exactly when the model's decoder is conditioned on labels (the supervised AAE): "
                         f"{type(model).__name__} with n_classes={getattr(model, 'n_classes', 0)} got "
                         f"{'labels' if y is not None else 'none'}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
    if labelled is not None:
        if not hasattr(model, "classification_loss"):
            raise ValueError(f"{type(model).__name__} has no class head: `labelled` needs a SemiSupervisedAAE")
        if len(labelled[0]) != len(labelled[1]) or len(labelled[0]) == 0:
            raise ValueError(f"labelled needs as many (>= 1) labels as images, got {len(labelled[0])} images and "
                             f"{len(labelled[1])} labels")
    dev = get_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    optimizers = optimizers if optimizers is not None else make_optimizers(model, lr, lr_adversarial)
    history = AdversarialHistory(device=str(dev))
    start = time.perf_counter()
    bar = tqdm(range(math.ceil(total_steps / steps_per_epoch)), desc=type(model).__name__, mininterval=1.0,
               **({} if progress else {"disable": True}))
    for _ in bar:
        order = torch.randperm(len(x), device=x.device)
        sums: dict[str, float] = {}
        n_steps = min(steps_per_epoch, total_steps - history.steps)
        for i in range(n_steps):
            rows = order[i * batch_size:(i + 1) * batch_size]
            batch = x[rows].to(dev, non_blocking=True)
            if transform is not None:
                batch = transform(batch)
            labels = None if y is None else y[rows.to(y.device)].to(dev)
            lab = None
            if labelled is not None:
                pick = torch.randint(len(labelled[0]), (min(batch_size, len(labelled[0])),))
                lab = (labelled[0][pick].to(dev), labelled[1][pick].to(dev))
                if transform is not None:
                    lab = (transform(lab[0]), lab[1])
            for name, value in adversarial_step(model, optimizers, batch, labels, lab).items():
                sums[name] = sums.get(name, 0.0) + value
            history.steps += 1
        for name, total in sums.items():
            history.losses.setdefault(name, []).append(total / n_steps)
        bar.set_postfix({name[:5]: f"{values[-1]:.3f}" for name, values in history.losses.items()})
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
