r"""The source documents' own configurations, built from the package's parts (chapter "The sources,
reproduced").

Each builder returns one source's model as that source wrote it: its layer sizes and activations, its
parameterization of the encoder's variance and its initialization; beside it, the source's optimizer and
objective. The chapter trains them at the book's budget and ``benchmarks/sources.py`` on the source's full
schedule; both put the source's reported numbers beside ours.

* **Géron's Keras VAE** on Fashion-MNIST (*Hands-On Machine Learning*, chapter 17): 784-150-100 GELU to a
  10-D code, decoder 10-100-150-784 sigmoid, Keras's Glorot-uniform weights and zero biases
  (:func:`keras_vae`); the loss is the per-pixel mean binary cross-entropy plus KL / 784, i.e. the negative
  ELBO divided by 784 (:func:`keras_loss`); RMSprop as Keras computes it, with its defaults
  (:class:`KerasRMSprop`, :func:`keras_rmsprop`).
* **Shark's C++ VAE tutorial** (``VariationalAutoencoder.cpp``): 784-500 ReLU to 2 x 300 linear, decoder
  300-500 ReLU to 784 sigmoid, every parameter drawn from N(0, 1e-4) (a *variance*, std 0.01), the squared
  loss plus lambda KL (:func:`shark_vae`). Shark's ``SquaredLoss`` returns ||x - x_hat||^2 but its derivative
  is that of 1/2 ||x - x_hat||^2, which is -log N(x; x_hat, I) up to a constant: the gradients are those of
  the package's Gaussian likelihood.
* **The Theano VAE of Kingma & Welling's Fig. 4b**: 784-500 tanh to a 2-D code whose encoder outputs
  (mu, log sigma), z = mu + eps exp(log sigma) (:class:`LogSigmaHead`), decoder 500 tanh to 784 sigmoid,
  every parameter drawn from N(0, 0.01^2); the cost is minus the mean bound plus 0.01 times the sum of all
  squared parameters, minimized by plain SGD at 1e-3 (:func:`theano_vae`, :func:`theano_sgd`). Its printed
  bound adds the KL's constant once per minibatch instead of once per code dimension and example
  (:func:`theano_bound_offset`).
* **The PyTorch AAE write-up** (Ducau 2017): Q and P with two 1,000-unit ReLU layers and dropout 0.25, D with
  two 1,000-unit layers and dropout 0.2, the prior N(0, 5^2 I) on a 2-D code, Adam at 6e-4 for the
  reconstruction and 8e-4 for the regularization (:func:`pytorch_aae`, :func:`pytorch_aae_optimizers`).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .aae import AdversarialAutoencoder
from .aae import make_optimizers as aae_optimizers
from .priors import GaussianPrior
from .training import update
from .vae import VAE

__all__ = ["glorot_init_", "normal_init_", "keras_vae", "keras_loss", "keras_step", "KerasRMSprop",
           "keras_rmsprop", "bilinear_codings", "shark_vae", "LogSigmaHead", "theano_vae", "theano_sgd",
           "theano_bound_offset", "pytorch_aae", "pytorch_aae_optimizers"]


# ----------------------------------------------------------------------------------------- initializations


def glorot_init_(model: nn.Module) -> nn.Module:
    """Keras's default Dense initialization, in place: Glorot-uniform weights, U(-a, a) with
    a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010, eq. 16), and zero biases. Returns `model`."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def normal_init_(model: nn.Module, std: float) -> nn.Module:
    """Every parameter, weights and biases alike, drawn from N(0, std^2), in place (Shark's
    ``initRandomNormal(model, variance)``; the Theano source's ``0.01 * randn``). Returns `model`.
    Raises ValueError for std <= 0."""
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    for parameter in model.parameters():
        nn.init.normal_(parameter, 0.0, std)
    return model


# ----------------------------------------------------------------------------------------- Keras (Géron)


def keras_vae(input_dim: int = 784) -> VAE:
    """Géron's Keras VAE: encoder 784-150-100 GELU -> (mu, log_var) in 10-D, decoder 10-100-150-784 sigmoid,
    Bernoulli likelihood, Keras's initialization (:func:`glorot_init_`)."""
    return glorot_init_(VAE(input_dim, latent_dim=10, hidden=(150, 100), activation="gelu"))


def keras_loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
    r"""The Keras source's loss, (B,): the per-pixel *mean* binary cross-entropy plus KL / 784,

    .. math:: \ell(x) = \frac{1}{D}\Big(\sum_{d=1}^{D} \mathrm{BCE}(x_d, \hat x_d) + \mathrm{KL}\Big)
       = -\frac{\mathrm{ELBO}(x)}{D},

    the negative single-sample ELBO in nats per pixel (D = 784). Keras clips probabilities to
    [1e-7, 1 - 1e-7] before the logarithm; computed from logits, this loss has no clip. Raises ValueError as
    :meth:`ae_course.VAE.loss`."""
    return model.loss(x) / model.input_dim


def keras_step(model: VAE, optimizers: Mapping[str, torch.optim.Optimizer], x: torch.Tensor,
               y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One minibatch of the Keras source's training, a step for :func:`ae_course.train`: the optimizer
    (``optimizers["loss"]``) descends the batch mean of :func:`keras_loss`. Returns ``{"loss": ...}``."""
    return {"loss": update(model, optimizers["loss"], keras_loss(model, x).mean())}


class KerasRMSprop(torch.optim.Optimizer):
    r"""RMSprop as Keras (and TensorFlow's ``ApplyRMSProp``) computes it, with the epsilon *inside* the root:

    .. math:: v_t = \rho\, v_{t-1} + (1 - \rho)\, g_t^2, \qquad
       \theta_t = \theta_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t + \epsilon}}.

    ``torch.optim.RMSprop`` divides by :math:`\sqrt{v_t} + \epsilon` instead. With Keras's epsilon = 1e-7 the
    denominator here never falls below :math:`\sqrt{10^{-7}} \approx 3.2 \cdot 10^{-4}`, which damps every
    parameter whose gradients are of that size or smaller, as they are under a loss divided by 784. Defaults:
    Keras's (lr 1e-3, rho 0.9, epsilon 1e-7). Raises ValueError for lr <= 0, rho outside [0, 1) or
    epsilon < 0.
    """

    def __init__(self, parameters, lr: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        if not lr > 0 or not 0 <= rho < 1 or not epsilon >= 0:
            raise ValueError(f"need lr > 0, 0 <= rho < 1 and epsilon >= 0, got {lr}, {rho}, {epsilon}")
        super().__init__(parameters, {"lr": lr, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given, as torch's do."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                v = self.state[p].setdefault("velocity", torch.zeros_like(p))
                v.mul_(group["rho"]).addcmul_(p.grad, p.grad, value=1 - group["rho"])
                p.addcdiv_(p.grad, (v + group["epsilon"]).sqrt(), value=-group["lr"])
        return loss


def keras_rmsprop(parameters) -> KerasRMSprop:
    """The Keras source's optimizer: :class:`KerasRMSprop` with Keras's defaults (lr 1e-3, rho 0.9,
    epsilon 1e-7)."""
    return KerasRMSprop(parameters)


def bilinear_codings(codings: torch.Tensor, rows: int, cols: int, size: tuple[int, int]) -> torch.Tensor:
    """The Keras source's interpolation: codings (rows * cols, L), read as a rows x cols grid, resized
    bilinearly to ``size`` = (R, C) as ``tf.image.resize`` does (half-pixel centres, no antialiasing:
    ``F.interpolate(mode="bilinear", align_corners=False)``). Returns (R * C, L), row by row; when
    enlarging, the four corners are the original corner codings. Raises ValueError unless codings has
    rows * cols rows."""
    if codings.dim() != 2 or codings.shape[0] != rows * cols:
        raise ValueError(f"expected ({rows * cols}, L) codings for a {rows} x {cols} grid, "
                         f"got {tuple(codings.shape)}")
    grid = codings.T.reshape(1, codings.shape[1], rows, cols)
    resized = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)
    return resized.reshape(codings.shape[1], -1).T


# ----------------------------------------------------------------------------------------- Shark (C++)


def shark_vae(kl_weight: float = 1.0, input_dim: int = 784) -> VAE:
    """Shark's VAE tutorial: encoder 784-500 ReLU -> 2 x 300 linear (mu, log_var), decoder 300-500 ReLU -> 784
    sigmoid, the squared loss (Gaussian likelihood, unit variance) plus `kl_weight` times the KL, every
    parameter from N(0, 1e-4) (std 0.01).

    The tutorial writes lambda in front of the KL term, and `kl_weight` is that lambda: lambda = 0 leaves the
    squared loss alone, and the source says the encoder's variance then shrinks. (Shark's
    ``VariationalAutoencoderError`` multiplies the *squared loss* by its lambda instead; the two agree at
    lambda = 1, the tutorial's value.) Raises ValueError for kl_weight < 0."""
    model = VAE(input_dim, latent_dim=300, hidden=(500,), activation="relu", likelihood="gaussian",
                beta=kl_weight)
    return normal_init_(model, std=0.01)


# ----------------------------------------------------------------------------------------- Theano (Fig. 4b)


class LogSigmaHead(nn.Module):
    """The Theano source's encoder outputs (mu, log sigma); :class:`ae_course.VAE` reads (mu, log sigma^2).
    This head passes mu and doubles the second half: (B, 2L) -> (B, 2L). It has no parameters, so the
    source's parameters, their initialization, their L2 penalty and their SGD steps stay the source's."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = h.chunk(2, dim=1)
        return torch.cat([mu, 2 * log_sigma], dim=1)


def theano_vae(input_dim: int = 784) -> VAE:
    """The Theano VAE of Kingma & Welling's Fig. 4b: 784-500 tanh -> (mu, log sigma) in 2-D, decoder 2-500
    tanh -> 784 sigmoid, Bernoulli likelihood (binary cross-entropy on grey levels), every parameter from
    N(0, 0.01^2). The encoder is ``Sequential(mlp, LogSigmaHead())``."""
    model = normal_init_(VAE(input_dim, latent_dim=2, hidden=(500,), activation="tanh"), std=0.01)
    model.encoder = nn.Sequential(model.encoder, LogSigmaHead())
    return model


def theano_sgd(parameters, lr: float = 1e-3, l2: float = 0.01) -> torch.optim.SGD:
    """Plain SGD on the Theano source's cost, -mean bound + l2 * sum(theta^2): torch's ``weight_decay`` adds
    wd * theta to each gradient, and d/dtheta (l2 * theta^2) = 2 l2 theta, so wd = 2 * l2 = 0.02."""
    return torch.optim.SGD(parameters, lr=lr, weight_decay=2 * l2)


def theano_bound_offset(latent_dim: int = 2, batch_size: int = 100) -> float:
    r"""How far the Theano source's printed bound lies below the true one, in nats per example.

    The source's KL term is :math:`\tfrac{1}{2B}\big(1 + \sum_{b,j} (2\log\sigma_{bj} - \mu_{bj}^2 -
    \sigma_{bj}^2)\big)`: the constant 1 of
    :math:`-\mathrm{KL} = \tfrac12\sum_j (1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2)`
    enters once per minibatch instead of B * L times, so the printed bound is the true mean bound
    minus :math:`\tfrac12 (L - 1/B)` = 0.995 for L = 2, B = 100. A constant: the gradients are untouched.
    Raises ValueError for latent_dim < 1 or batch_size < 1."""
    if latent_dim < 1 or batch_size < 1:
        raise ValueError(f"need latent_dim >= 1 and batch_size >= 1, got {latent_dim}, {batch_size}")
    return 0.5 * (latent_dim - 1 / batch_size)


# ----------------------------------------------------------------------------------------- PyTorch AAE


def pytorch_aae(input_dim: int = 784) -> AdversarialAutoencoder:
    """The PyTorch AAE write-up (Ducau 2017): Q 784-1000-1000-2 and P 2-1000-1000-784 (ReLU, dropout 0.25),
    D 2-1000-1000-1 (ReLU, dropout 0.2), the prior N(0, 5^2 I), PyTorch's default initialization."""
    return AdversarialAutoencoder(input_dim, latent_dim=2, hidden=(1000, 1000), prior=GaussianPrior(2, 5.0),
                                  discriminator_hidden=(1000, 1000), dropout=0.25, discriminator_dropout=0.2)


def pytorch_aae_optimizers(model: AdversarialAutoencoder) -> dict[str, torch.optim.Optimizer]:
    """The write-up's optimizers: Adam (default betas) at 6e-4 for the reconstruction phase (Q and P), at 8e-4
    for the discriminator and for the encoder as generator (:func:`ae_course.aae.make_optimizers`)."""
    return aae_optimizers(model, lr=6e-4, lr_adversarial=8e-4, betas_adversarial=(0.9, 0.999))
