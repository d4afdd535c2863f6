"""Multilayer-perceptron encoders and decoders, and the plain autoencoder.

Notation follows the book: the encoder f maps an image x to a code z = f(x); the decoder g maps a code
back to the logits of a reconstruction, x_hat = sigmoid(g(z)). Decoders always return logits so that
the Bernoulli log-likelihood can be computed stably (see :mod:`ae_course.losses`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .losses import binary_cross_entropy, squared_error

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Fully connected network: Linear layers of the given sizes with `activation` between them.

    sizes: [in, hidden..., out], at least two positive ints. The last layer is linear (no activation).
    Raises ValueError for fewer than two sizes, a non-positive size or an unknown activation
    (one of :data:`ACTIVATIONS`).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"layer sizes must be positive, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def mlp_encoder(input_dim: int = 784, hidden: Sequence[int] = (512, 256), latent_dim: int = 2,
                activation: str = "relu") -> nn.Sequential:
    """Encoder x -> z: maps (B, input_dim) to (B, latent_dim). Raises ValueError as :func:`mlp`."""
    return mlp([input_dim, *hidden, latent_dim], activation)


def mlp_decoder(latent_dim: int = 2, hidden: Sequence[int] = (256, 512), output_dim: int = 784,
                activation: str = "relu") -> nn.Sequential:
    """Decoder z -> logits: maps (B, latent_dim) to (B, output_dim) logits. Raises ValueError as :func:`mlp`."""
    return mlp([latent_dim, *hidden, output_dim], activation)


def check_input(x: torch.Tensor, dim: int, name: str = "x") -> None:
    """Raise ValueError unless x is a floating (B, dim) tensor with B >= 1 and finite entries."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, {dim}) with B >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


class Autoencoder(nn.Module):
    """The deterministic autoencoder: z = f(x), x_hat = sigmoid(g(z)), trained to reconstruct x.

    Args:
        input_dim: D, the number of pixels (784 for MNIST).
        latent_dim: size of the bottleneck code z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
        activation: a key of :data:`ACTIVATIONS`.
        loss: "bce" (Bernoulli negative log-likelihood, i.e. binary cross-entropy summed over pixels)
            or "mse" (squared error summed over pixels).
    Raises:
        ValueError: for an unknown loss, or as :func:`mlp`.

    Rumelhart, Hinton & Williams 1986; Hinton & Salakhutdinov 2006.
    """

    LOSSES = ("bce", "mse")

    def __init__(self, input_dim: int = 784, latent_dim: int = 2, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", loss: str = "bce"):
        super().__init__()
        if loss not in self.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {self.LOSSES}")
        self.input_dim, self.latent_dim, self.loss_name = input_dim, latent_dim, loss
        self.encoder = mlp_encoder(input_dim, hidden, latent_dim, activation)
        self.decoder = mlp_decoder(latent_dim, tuple(reversed(hidden)), input_dim, activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_dim) in [0, 1] -> z: (B, latent_dim). Raises ValueError on a wrong shape."""
        check_input(x, self.input_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> logits (B, input_dim); the image is sigmoid(logits)."""
        check_input(z, self.latent_dim, "z")
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_dim) -> reconstruction logits (B, input_dim)."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_dim) -> x_hat = sigmoid(g(f(x))): (B, input_dim) in [0, 1], no gradient."""
        return torch.sigmoid(self(x))

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example reconstruction loss, (B,) summed over pixels.

        x: (B, input_dim) input; target: what to reconstruct (defaults to x; a denoising autoencoder
        passes the clean image while x is corrupted). "bce" is in nats, "mse" in squared pixel units.
        """
        target = x if target is None else target
        logits = self(x)
        if self.loss_name == "bce":
            return binary_cross_entropy(target, logits)
        return squared_error(target, torch.sigmoid(logits))


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
