"""Multilayer-perceptron encoders and decoders, and the plain autoencoder.

Notation follows the book: the encoder f maps an image x to a code z = f(x); the decoder g maps a code
back to the logits of a reconstruction, x_hat = sigmoid(g(z)). Decoders always return logits so that
the Bernoulli log-likelihood can be computed stably (see :mod:`ae_course.losses`).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence, get_args

import torch
from torch import nn

from .losses import bernoulli_log_likelihood, gaussian_log_likelihood

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "selu": nn.SELU,
}


def mlp(sizes: Sequence[int], activation: str = "relu", dropout: float = 0.0) -> nn.Sequential:
    """Fully connected network: Linear layers of the given sizes with `activation` between them.

    sizes: [in, hidden..., out], at least two positive ints. The last layer is linear (no activation).
    dropout: if > 0, an ``nn.Dropout(dropout)`` after every hidden activation (active in train mode only;
    Srivastava et al. 2014).
    Raises ValueError for fewer than two sizes, a non-positive size, an unknown activation
    (one of :data:`ACTIVATIONS`) or a dropout probability outside [0, 1).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"layer sizes must be positive, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
    return nn.Sequential(*layers)


def mlp_encoder(input_dim: int = 784, hidden: Sequence[int] = (512, 256), latent_dim: int = 2,
                activation: str = "relu") -> nn.Sequential:
    """Encoder x -> z: maps (B, input_dim) to (B, latent_dim). Raises ValueError as :func:`mlp`."""
    return mlp([input_dim, *hidden, latent_dim], activation)


def mlp_decoder(latent_dim: int = 2, hidden: Sequence[int] = (256, 512), output_dim: int = 784,
                activation: str = "relu") -> nn.Sequential:
    """Decoder z -> logits: maps (B, latent_dim) to (B, output_dim) logits. Raises ValueError as :func:`mlp`."""
    return mlp([latent_dim, *hidden, output_dim], activation)


class ConvEncoder(nn.Module):
    """A small convolutional encoder of flattened square images: x (B, side * side) -> (B, output_dim).

    Two 5x5 convolutions with stride 2 and ReLU (1 -> channels[0] -> channels[1] feature maps, each halving
    the side: 28 -> 14 -> 7), then ``mlp([channels[1] * 7 * 7, hidden, output_dim])``, with dropout before
    and after the hidden layer. Its output is linear, like :func:`mlp`'s, and the same size as an MLP
    encoder's, so it can replace one (``SemiSupervisedAAE(encoder=ConvEncoder(784, 10 + style_dim))``).
    A convolution shares its weights across positions: the prior that a digit is the same digit wherever
    its strokes are (LeCun et al. 1998).

    Raises ValueError for an input_dim that is not a square image, non-positive sizes, or dropout outside
    [0, 1); :meth:`forward` raises ValueError for a wrong shape, as :func:`check_input`.
    """

    def __init__(self, input_dim: int = 784, output_dim: int = 20, channels: Sequence[int] = (16, 32),
                 hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.input_dim, self.side = int(input_dim), math.isqrt(int(input_dim))
        if self.side * self.side != self.input_dim or len(channels) != 2 or min(*channels, hidden, output_dim) < 1:
            raise ValueError(f"need a square input_dim and positive sizes, got input_dim={input_dim}, "
                             f"channels={tuple(channels)}, hidden={hidden}, output_dim={output_dim}")
        c1, c2 = (int(c) for c in channels)
        reduced = (self.side + 3) // 4                       # two stride-2 convolutions with padding 2
        self.features = nn.Sequential(nn.Conv2d(1, c1, 5, stride=2, padding=2), nn.ReLU(),
                                      nn.Conv2d(c1, c2, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten())
        head = mlp([c2 * reduced * reduced, int(hidden), int(output_dim)], "relu", dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), *head) if dropout > 0 else head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, input_dim) -> (B, output_dim)."""
        check_input(x, self.input_dim)
        return self.head(self.features(x.reshape(-1, 1, self.side, self.side)))


def check_input(x: torch.Tensor, dim: int, name: str = "x", like: torch.Tensor | None = None) -> None:
    """Raise unless x is a floating (B, dim) tensor with B >= 1 and finite entries.

    like: a parameter of the network x is fed to; x must then have its dtype (a float64 batch would
    otherwise fail deep inside torch with "mat1 and mat2 must have the same dtype").
    Raises TypeError if x is not a tensor, ValueError for a wrong shape or dtype, or NaN / infinite entries.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, {dim}) with B >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if like is not None and x.dtype != like.dtype:
        raise ValueError(f"{name} is {x.dtype} but the model's parameters are {like.dtype}; "
                         f"convert with {name}.to({like.dtype}) (or the model with model.to({x.dtype}))")
    check_finite(x, name)


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError (naming `name` and counting the bad entries) unless every entry of x is finite.

    One reduction over x, no temporary tensor: a sum is finite whenever every entry is (only then is the
    exact count computed; a sum that overflows on large finite entries is confirmed entry by entry).
    """
    if x.numel() and not bool(torch.isfinite(x.sum())):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"{name} has {bad} NaN or infinite entries; every entry must be finite")


Likelihood = Literal["bernoulli", "gaussian"]
"""The decoder's observation model p(x|z), one vocabulary for every model of the package:
``"bernoulli"``: independent Bernoulli pixels with probabilities sigmoid(logits) (x in [0, 1]);
``"gaussian"``: N(x; sigmoid(logits), I), unit variance."""

LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)


def check_likelihood(likelihood: str) -> str:
    """Return `likelihood` if it is one of :data:`LIKELIHOODS`, else raise ValueError."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    return likelihood


def log_likelihood(x: torch.Tensor, logits: torch.Tensor, likelihood: Likelihood) -> torch.Tensor:
    """log p(x|z) from the decoder's logits: x, logits (B, D) -> (B,) in nats.

    ``"bernoulli"``: sum_d x_d l_d - softplus(l_d) (x must lie in [0, 1]); ``"gaussian"``:
    log N(x; sigmoid(logits), I) = -1/2 ||x - sigmoid(logits)||^2 - D/2 log(2 pi).
    Raises ValueError on a shape mismatch, an unknown likelihood, or (Bernoulli) x outside [0, 1].
    """
    if check_likelihood(likelihood) == "bernoulli":
        return bernoulli_log_likelihood(x, logits)
    return gaussian_log_likelihood(x, torch.sigmoid(logits), 0.0)


class Autoencoder(nn.Module):
    """The deterministic autoencoder: z = f(x), x_hat = sigmoid(g(z)), trained to reconstruct x.

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: size of the bottleneck code z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
        activation: a key of :data:`ACTIVATIONS`.
        likelihood: the decoder's observation model (:data:`Likelihood`); the loss is -log p(x|z) in nats:
            ``"bernoulli"``: the binary cross-entropy summed over pixels; ``"gaussian"``: 1/2 the squared
            error summed over pixels + D/2 log(2 pi) (the squared error, halved, up to a constant).
    Raises:
        ValueError: for an unknown likelihood, or as :func:`mlp`.

    Rumelhart, Hinton & Williams 1986; Hinton & Salakhutdinov 2006.
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 2, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", likelihood: Likelihood = "bernoulli"):
        super().__init__()
        self.likelihood = check_likelihood(likelihood)
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.encoder = mlp_encoder(input_dim, hidden, latent_dim, activation)
        self.decoder = mlp_decoder(latent_dim, tuple(reversed(hidden)), input_dim, activation)

    @property
    def config(self) -> dict:
        """The constructor's arguments: what :func:`ae_course.training.save_checkpoint` stores to rebuild the model."""
        return {"input_dim": self.input_dim, "latent_dim": self.latent_dim, "hidden": list(self.hidden),
                "activation": self.activation, "likelihood": self.likelihood}

    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x: (B, input_dim) -> z: (B, latent_dim). Raises ValueError for a wrong shape or dtype, NaN, or labels."""
        check_input(x, self.input_dim, like=self.decoder[0].weight)
        return self.encoder(with_labels(x, y, 0, self))

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z: (B, latent_dim) -> logits (B, input_dim); the image is sigmoid(logits)."""
        check_input(z, self.latent_dim, "z", like=self.decoder[0].weight)
        return self.decoder(with_labels(z, y, 0, self))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x: (B, input_dim) -> reconstruction logits (B, input_dim)."""
        return self.decode(self.encode(x, y))

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) given the decoder's logits, (B,) in nats: :func:`log_likelihood` with this model's likelihood."""
        return log_likelihood(x, logits, self.likelihood)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """x: (B, input_dim) -> x_hat = sigmoid(g(f(x))): (B, input_dim) in [0, 1], no gradient."""
        return torch.sigmoid(self(x, y))

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Per-example reconstruction loss -log p(x | z = f(x)), (B,) in nats, summed over pixels.

        x: (B, input_dim) in [0, 1] for the Bernoulli likelihood. Raises ValueError as :meth:`encode` and
        :func:`log_likelihood` (e.g. x outside [0, 1]: divide raw pixels by 255).
        """
        return -self.log_likelihood(x, self(x, y))


def with_labels(t: torch.Tensor, y, n_classes: int, owner: nn.Module) -> torch.Tensor:
    """The input of a network that may read a label: t (B, d) itself when ``n_classes == 0``, else t with
    one_hot(y) appended as its last n_classes columns, (B, d + n_classes), in t's dtype and device.

    The one place where every model of the package (``Autoencoder``, ``VAE`` / ``ConditionalVAE``,
    ``AdversarialAutoencoder``) decides whether it takes labels. Raises ValueError, naming `owner`'s class,
    when y is given to an unconditional model or missing for a conditional one, and as :func:`one_hot`.
    """
    name = type(owner).__name__
    if n_classes == 0:
        if y is not None:
            raise ValueError(f"{name} is not conditioned on a label (n_classes=0): call it without y "
                             "(it takes no labels)")
        return t
    if y is None:
        raise ValueError(f"{name} is conditioned on a label (n_classes={n_classes}): pass y")
    return torch.cat([t, one_hot(y, n_classes, t.shape[0], like=t)], dim=1)


def one_hot(y, n_classes: int, batch_size: int | None = None, like: torch.Tensor | None = None) -> torch.Tensor:
    """Class labels -> a (B, n_classes) float tensor, for the networks that take a label as input.

    y: integer class indices of shape (B,) (a tensor with an integer dtype, or a list of ints), or an
    already encoded floating (B, n_classes) tensor whose rows are probability vectors (returned as is,
    cast). batch_size: if given, B must equal it (the number of images or codes y goes with).
    like: the result takes its device and dtype (e.g. a weight of the network); float32 on y's device if None.
    Raises:
        ValueError: for floating or boolean class indices, indices outside 0..n_classes-1, a one-hot
            tensor of the wrong width or whose rows are not probability vectors, a tensor with more
            than two dimensions, or B != batch_size.
    """
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    if y.dim() == 2:
        if not y.is_floating_point():
            raise ValueError(f"a one-hot y must be a floating (B, {n_classes}) tensor, got dtype {y.dtype}; "
                             f"class indices go in as a 1-d integer tensor of shape (B,)")
        if y.shape[1] != n_classes:
            raise ValueError(f"a one-hot y must have n_classes = {n_classes} columns, got shape {tuple(y.shape)}")
        if not torch.isfinite(y).all() or (y < 0).any() or not torch.allclose(
                y.sum(dim=1), torch.ones((), dtype=y.dtype, device=y.device), atol=1e-4):
            raise ValueError("the rows of a one-hot y must be probability vectors (non-negative, summing to 1)")
        encoded = y
    elif y.dim() == 1:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"class labels must be an integer tensor of shape (B,), got dtype {y.dtype}; "
                             f"convert whole-number labels with y.long()")
        if y.numel() and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)][0].item()
            raise ValueError(f"class labels must lie in 0..{n_classes - 1} (n_classes = {n_classes}), got {bad}")
        encoded = torch.nn.functional.one_hot(y.long(), n_classes)
    else:
        raise ValueError(f"y must be class indices of shape (B,) or a one-hot tensor of shape (B, {n_classes}), "
                         f"got shape {tuple(y.shape)}")
    if batch_size is not None and encoded.shape[0] != batch_size:
        raise ValueError(f"got {encoded.shape[0]} labels for {batch_size} inputs; give one label per row")
    if like is None:
        return encoded.float()
    return encoded.to(device=like.device, dtype=like.dtype)
