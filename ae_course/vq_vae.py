"""Discrete codes: the vector-quantized VAE (VQ-VAE) and an autoregressive prior over its grid of codes.

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural discrete representation learning" (the VQ-VAE, eq. 3);
Bengio, Leonard & Courville 2013 (the straight-through estimator); van den Oord, Kalchbrenner & Kavukcuoglu
2016a and van den Oord et al. 2016b (PixelCNN, masked convolutions). Notation follows the book:

* the **encoder** is convolutional (:class:`ConvEncoder`): an image x (B, 784) becomes a grid of H x W = 7 x 7
  vectors z_e(x), shape (B, D, 7, 7);
* the **codebook** holds K vectors e_1..e_K in R^D (:class:`VectorQuantizer`); every position of the grid is
  replaced by its nearest code, k = argmin_j ||z_e - e_j||^2, giving z_q(x) and the integer **codes**
  (B, 7, 7) in 0..K-1;
* the **decoder** (:class:`ConvDecoder`) maps z_q back to the logits of 784 Bernoulli pixels;
* the loss of one image (:meth:`VQVAE.loss`, eq. 3 of the paper, with sg the stop-gradient ``.detach()``):

      -log p(x|z_q) + ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2,

  the reconstruction term summed over pixels (nats), the codebook and commitment terms summed over the grid
  positions and the D coordinates;
* the **prior** over codes is fitted afterwards (:class:`CodePrior`, a small PixelCNN): p(c) = prod_i
  p(c_i | c_<i) over the 49 positions in raster order, and log p(x) >= log p(x|z_q) + log p(z_q)
  (:func:`vq_log_likelihood_bound`).

Everything per image is returned with shape (B,), in nats.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import Likelihood, check_finite, check_input, check_likelihood, log_likelihood

__all__ = ["ConvEncoder", "ConvDecoder", "nearest_code", "straight_through", "codebook_loss",
           "commitment_loss", "Quantized", "VectorQuantizer", "VQVAE", "CodebookUsage", "codebook_usage",
           "MaskedConvolution", "CodePrior", "VQBound", "vq_log_likelihood_bound"]

SIDE = 28
"""Images are SIDE x SIDE = 28 x 28 pixels, flattened row-major to 784 (as everywhere in the book)."""


def _check_channels(channels: Sequence[int], code_dim: int) -> tuple[int, int]:
    channels = tuple(int(c) for c in channels)
    if len(channels) != 2 or min(channels) < 1 or int(code_dim) < 1:
        raise ValueError(f"need two channel counts >= 1 and code_dim >= 1, got channels={channels}, "
                         f"code_dim={code_dim}")
    return channels


class ConvEncoder(nn.Module):
    """x (B, 784) -> z_e (B, code_dim, 7, 7): two stride-2 convolutions (28 -> 14 -> 7), then a 1 x 1 one.

    Conv(1 -> c1, 4x4, stride 2) - ReLU - Conv(c1 -> c2, 4x4, stride 2) - ReLU - Conv(c2 -> code_dim, 1x1).
    Each output vector sees a 10 x 10 patch of the image (its receptive field). Raises ValueError for a bad
    channel count, and as :func:`ae_course.models.check_input` for x.
    """

    def __init__(self, code_dim: int = 8, channels: Sequence[int] = (16, 32)):
        super().__init__()
        c1, c2 = _check_channels(channels, code_dim)
        self.net = nn.Sequential(nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(c2, int(code_dim), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, SIDE * SIDE, like=self.net[0].weight)
        return self.net(x.reshape(-1, 1, SIDE, SIDE))


class ConvDecoder(nn.Module):
    """z (B, code_dim, 7, 7) -> logits (B, 784): a 3 x 3 convolution, then two stride-2 transposed ones.

    Conv(code_dim -> c2, 3x3) - ReLU - ConvTranspose(c2 -> c1, 4x4, stride 2) - ReLU - ConvTranspose(c1 -> 1,
    4x4, stride 2): 7 -> 14 -> 28; the output is flattened row-major to the 784 logits. Raises ValueError for
    z that is not (B, code_dim, 7, 7).
    """

    def __init__(self, code_dim: int = 8, channels: Sequence[int] = (16, 32)):
        super().__init__()
        c1, c2 = _check_channels(channels, code_dim)
        self.code_dim = int(code_dim)
        self.net = nn.Sequential(nn.Conv2d(self.code_dim, c2, 3, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != (self.code_dim, 7, 7):
            shape = tuple(getattr(z, "shape", ()))
            raise ValueError(f"z must have shape (B, {self.code_dim}, 7, 7), got {shape}")
        return self.net(z).flatten(1)


# ------------------------------------------------------------------------------------ vector quantization


def nearest_code(z_e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest code at every position: z_e (B, D, H, W), codebook (K, D) -> (B, H, W) long.

    k = argmin_j ||z_e - e_j||^2, with ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2 (one matrix product). Raises
    ValueError unless z_e is 4-D with D channels.
    """
    if z_e.dim() != 4 or codebook.dim() != 2 or z_e.shape[1] != codebook.shape[1]:
        raise ValueError(f"z_e must be (B, D, H, W) and the codebook (K, D) with the same D, got "
                         f"{tuple(z_e.shape)} and {tuple(codebook.shape)}")
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])                      # (B*H*W, D)
    distances = (flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.T
                 + codebook.square().sum(1))                                       # (B*H*W, K)
    return distances.argmin(dim=1).reshape(z_e.shape[0], *z_e.shape[2:])


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z_e + sg[z_q - z_e]: equal to z_q in the forward pass, with the gradient of z_e (identity) backwards.

    Bengio et al. 2013; van den Oord et al. 2017, section 3.2: the decoder's gradient with respect to z_q is
    copied to z_e unchanged, so the encoder learns from the reconstruction although argmin has no gradient.
    """
    return z_e + (z_q - z_e).detach()


def codebook_loss(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """||sg[z_e] - z_q||^2 per image, (B,): moves the chosen codes towards the encoder's outputs only.

    z_e, z_q: (B, D, H, W); summed over D, H, W (the second term of eq. 3 of van den Oord et al. 2017).
    """
    return (z_e.detach() - z_q).square().flatten(1).sum(1)


def commitment_loss(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """||z_e - sg[z_q]||^2 per image, (B,): keeps the encoder's outputs near their codes; moves the encoder.

    z_e, z_q: (B, D, H, W); summed over D, H, W (the third term of eq. 3, before its weight beta).
    """
    return (z_e - z_q.detach()).square().flatten(1).sum(1)


class Quantized(NamedTuple):
    """What :meth:`VectorQuantizer.forward` returns for z_e (B, D, H, W)."""

    z_q: torch.Tensor             #: (B, D, H, W) the nearest codes, with the straight-through gradient to z_e
    codes: torch.Tensor           #: (B, H, W) long, their indices in 0..K-1
    codebook_loss: torch.Tensor   #: (B,) ||sg[z_e] - e||^2
    commitment_loss: torch.Tensor  #: (B,) ||z_e - sg[e]||^2 (unweighted)


class VectorQuantizer(nn.Module):
    """The codebook of K vectors in R^D and the nearest-code quantizer with its two losses.

    Args:
        n_codes: K, the number of codes.
        code_dim: D, the dimension of a code.
        restart_after: None, or a number of training steps: a code that no position of any minibatch chose
            during the last ``restart_after`` training steps is **dead** and is moved onto an encoder output
            drawn at random from the current minibatch (a remedy for dead codes; Dhariwal et al. 2020 reset
            codes whose usage falls below a threshold in the same way). Only in training mode, without
            gradient; the codebook loss then pulls the code on as usual.
    The codebook is initialized uniformly in [-1/K, 1/K] (``nn.Embedding`` weights, as in common
    implementations): near the origin, where few encoder outputs are nearest to any but a few codes.
    Raises ValueError for K < 1, D < 1 or restart_after < 1.
    """

    def __init__(self, n_codes: int = 32, code_dim: int = 8, restart_after: int | None = None):
        super().__init__()
        if int(n_codes) < 1 or int(code_dim) < 1 or (restart_after is not None and int(restart_after) < 1):
            raise ValueError(f"need n_codes >= 1, code_dim >= 1 and restart_after >= 1 or None, got "
                             f"{n_codes}, {code_dim}, {restart_after}")
        self.n_codes, self.code_dim = int(n_codes), int(code_dim)
        self.restart_after = None if restart_after is None else int(restart_after)
        self.codebook = nn.Embedding(self.n_codes, self.code_dim)
        nn.init.uniform_(self.codebook.weight, -1 / self.n_codes, 1 / self.n_codes)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_used", torch.zeros(self.n_codes, dtype=torch.long))
        self.restarts = 0  # codes restarted so far (a count for the reader; not saved)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        """z_e (B, D, H, W) -> :class:`Quantized`. Raises ValueError for a wrong shape or NaN entries."""
        check_finite(z_e, "z_e")
        codes = nearest_code(z_e, self.codebook.weight)                     # (B, H, W)
        z_q = self.codebook(codes).permute(0, 3, 1, 2)                      # (B, D, H, W)
        if self.training:
            self._track_and_restart(z_e, codes)
        return Quantized(straight_through(z_e, z_q), codes, codebook_loss(z_e, z_q),
                         commitment_loss(z_e, z_q))

    @torch.no_grad()
    def _track_and_restart(self, z_e: torch.Tensor, codes: torch.Tensor) -> None:
        self.step += 1
        self.last_used[codes.unique()] = self.step
        if self.restart_after is None:
            return
        dead = (self.step - self.last_used >= self.restart_after).nonzero().flatten()
        if len(dead):
            flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            pick = torch.randint(len(flat), (len(dead),), device=flat.device)
            self.codebook.weight[dead] = flat[pick]
            self.last_used[dead] = self.step
            self.restarts += len(dead)


class VQVAE(nn.Module):
    """The VQ-VAE of van den Oord et al. 2017 for 28 x 28 images: conv encoder, codebook, conv decoder.

    Args:
        n_codes: K; code_dim: D; channels: (c1, c2) of :class:`ConvEncoder` / :class:`ConvDecoder`.
        beta: the weight of the commitment loss (0.25 in the paper; any beta >= 0).
        restart_after: see :class:`VectorQuantizer` (None: the plain VQ-VAE).
        likelihood: the decoder's observation model, ``"bernoulli"`` (binary images) or ``"gaussian"``.
    The code of an image is a grid of 7 x 7 = 49 indices: 49 log2 K bits at most.
    Raises ValueError for beta < 0 and as :class:`VectorQuantizer` / :class:`ConvEncoder`.
    """

    def __init__(self, n_codes: int = 32, code_dim: int = 8, channels: Sequence[int] = (16, 32),
                 beta: float = 0.25, restart_after: int | None = None, likelihood: Likelihood = "bernoulli"):
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.channels, self.beta = tuple(int(c) for c in channels), float(beta)
        self.likelihood = check_likelihood(likelihood)
        self.encoder = ConvEncoder(code_dim, channels)
        self.quantizer = VectorQuantizer(n_codes, code_dim, restart_after)
        self.decoder = ConvDecoder(code_dim, channels)

    @property
    def config(self) -> dict:
        """The constructor's arguments (what :func:`ae_course.training.save_checkpoint` stores)."""
        q = self.quantizer
        return {"n_codes": q.n_codes, "code_dim": q.code_dim, "channels": list(self.channels),
                "beta": self.beta, "restart_after": q.restart_after, "likelihood": self.likelihood}

    @property
    def n_codes(self) -> int:
        return self.quantizer.n_codes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_e(x): x (B, 784) -> (B, D, 7, 7). Raises ValueError as :func:`ae_course.models.check_input`."""
        return self.encoder(x)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, 7, 7) -> logits (B, 784)."""
        return self.decoder(z_q)

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z_q) from the decoder's logits: x, logits (B, 784) -> (B,) in nats."""
        return log_likelihood(x, logits, self.likelihood)

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-log p(x|z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 per image, (B,) (eq. 3 of the paper).

        The decoder reads z_q through the straight-through estimator, so the reconstruction term reaches the
        encoder; the codebook term moves only the codes, the commitment term only the encoder. Raises
        ValueError as :meth:`encode`, for labels (the model takes none) or x outside [0, 1] (Bernoulli).
        """
        if y is not None:
            raise ValueError("VQVAE is not conditioned on a label: call loss(x)")
        q = self.quantizer(self.encode(x))
        reconstruction = -self.log_likelihood(x, self.decode(q.z_q))
        return reconstruction + q.codebook_loss + self.beta * q.commitment_loss

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The discrete code of each image: x (B, 784) -> (B, 7, 7) long in 0..K-1 (no gradient, no
        restarts)."""
        return nearest_code(self.encode(x), self.quantizer.codebook.weight)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, 7, 7) integers in 0..K-1 -> logits (B, 784). Raises ValueError for codes out of range."""
        _check_codes(codes, self.n_codes)
        return self.decode(self.quantizer.codebook(codes.long()).permute(0, 3, 1, 2))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(decode(z_q(x))): (B, 784) pixel probabilities, no gradient."""
        return torch.sigmoid(self.decode_codes(self.codes(x)))


def _check_codes(codes: torch.Tensor, n_codes: int) -> None:
    if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.numel() == 0:
        raise ValueError(f"codes must be a (B, H, W) tensor, got {tuple(getattr(codes, 'shape', ()))}")
    if codes.is_floating_point() and not torch.equal(codes, codes.round()):
        raise ValueError("codes must be whole numbers (indices into the codebook)")
    if codes.min() < 0 or codes.max() >= n_codes:
        raise ValueError(f"codes must lie in 0..{n_codes - 1}, got values in "
                         f"{int(codes.min())}..{int(codes.max())}")


class CodebookUsage(NamedTuple):
    """How a set of codes uses a codebook of K codes (:func:`codebook_usage`)."""

    perplexity: float  #: exp(H(f)), H the entropy (nats) of the code frequencies f: 1 (one code) .. K
    dead: int          #: codes never used
    counts: torch.Tensor  #: (K,) how often each code was used


def codebook_usage(codes: torch.Tensor, n_codes: int) -> CodebookUsage:
    """Perplexity and dead codes of `codes` (any shape, integers in 0..n_codes-1), e.g. a (B, 7, 7) grid.

    The perplexity exp(-sum_k f_k log f_k) of the frequencies f_k is the number of equally used codes with
    the same entropy. Raises ValueError for an empty tensor or codes out of range.
    """
    codes = torch.as_tensor(codes)
    if codes.numel() == 0 or codes.min() < 0 or codes.max() >= n_codes:
        raise ValueError(f"codes must be a non-empty tensor of integers in 0..{n_codes - 1}")
    counts = torch.bincount(codes.flatten().long(), minlength=n_codes)
    f = counts.double() / counts.sum()
    entropy = -(f[f > 0] * f[f > 0].log()).sum().item()
    return CodebookUsage(math.exp(entropy), int((counts == 0).sum()), counts)


# ------------------------------------------------------------------------------------ the prior over codes


class MaskedConvolution(nn.Conv2d):
    """A convolution that sees only the positions before the centre in raster order (PixelCNN; van den Oord,
    Kalchbrenner & Kavukcuoglu 2016a): mask ``"A"`` hides the centre too (the first layer: c_i must not see
    itself), ``"B"`` lets it through (the later layers: the centre already holds only information about c_<i).
    Raises ValueError for another mask or an even kernel size."""

    def __init__(self, mask: Literal["A", "B"], in_channels: int, out_channels: int, kernel_size: int):
        if mask not in ("A", "B") or kernel_size % 2 == 0:
            raise ValueError(f"need mask 'A' or 'B' and an odd kernel size, got {mask!r}, {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        m = torch.ones_like(self.weight)
        centre = kernel_size // 2
        m[:, :, centre, centre + (mask == "B"):] = 0   # the centre row: from the centre (A) or after it (B)
        m[:, :, centre + 1:] = 0                       # every row below
        self.register_buffer("mask", m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class CodePrior(nn.Module):
    """An autoregressive prior over a grid of codes: a small PixelCNN (van den Oord et al. 2016a, b).

    p(c) = prod_i p(c_i | c_<i) over the H x W positions in raster order. Each code becomes a learned
    vector (an embedding of ``channels`` numbers); a masked ``kernel_size`` x ``kernel_size`` convolution
    (mask A) and ``layers`` masked 3 x 3 ones (mask B) with ReLUs between them; a 1 x 1 convolution gives the
    K logits of every position. (The masks leave a blind spot to the upper right, which the gated PixelCNN of
    van den Oord et al. 2016b removes; for a 7 x 7 grid of codes the simple form is enough.)

    ``loss`` takes the codes flattened to (B, H*W) floats (whole numbers), so that ``ae_course.train`` can fit
    it like any model: ``train(prior, codes.flatten(1).float(), steps=...)``.
    Raises ValueError for K < 2, a grid or widths < 1, or an even kernel size.
    """

    def __init__(self, n_codes: int, grid: tuple[int, int] = (7, 7), channels: int = 32, layers: int = 2,
                 kernel_size: int = 5):
        super().__init__()
        if int(n_codes) < 2 or min(grid) < 1 or int(channels) < 1 or int(layers) < 0:
            raise ValueError(f"need n_codes >= 2, a grid and channels >= 1 and layers >= 0, got {n_codes}, "
                             f"{grid}, {channels}, {layers}")
        self.n_codes, self.grid, self.channels = int(n_codes), tuple(int(g) for g in grid), int(channels)
        self.embed = nn.Embedding(self.n_codes, self.channels)
        blocks: list[nn.Module] = [MaskedConvolution("A", self.channels, self.channels, int(kernel_size))]
        for _ in range(int(layers)):
            blocks += [nn.ReLU(), MaskedConvolution("B", self.channels, self.channels, 3)]
        self.net = nn.Sequential(*blocks, nn.ReLU(), nn.Conv2d(self.channels, self.n_codes, 1))

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, H, W) -> logits (B, K, H, W) of p(c_i | c_<i) at every position i."""
        _check_codes(codes, self.n_codes)
        if tuple(codes.shape[1:]) != self.grid:
            raise ValueError(f"codes must have shape (B, {self.grid[0]}, {self.grid[1]}), got "
                             f"{tuple(codes.shape)}")
        return self.net(self.embed(codes.long()).permute(0, 3, 1, 2))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) = sum_i log p(c_i | c_<i): codes (B, H, W) -> (B,) in nats. Raises ValueError as
        :meth:`logits`."""
        log_p = F.log_softmax(self.logits(codes), dim=1)
        return log_p.gather(1, codes.long().unsqueeze(1)).flatten(1).sum(1)

    def loss(self, c: torch.Tensor, y=None) -> torch.Tensor:
        """-log p(c) per grid, (B,) in nats, for codes flattened to (B, H*W) (floats of whole numbers)."""
        if y is not None:
            raise ValueError("CodePrior takes no labels")
        if c.dim() != 2 or c.shape[1] != self.grid[0] * self.grid[1]:
            raise ValueError(f"c must have shape (B, {self.grid[0] * self.grid[1]}), got {tuple(c.shape)}")
        return -self.log_prob(c.reshape(-1, *self.grid))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n grids of codes (n, H, W) long, drawn position by position in raster order (H*W passes).

        `generator` makes the draw reproducible (on the model's device). Raises ValueError for n < 1."""
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        device = self.embed.weight.device
        codes = torch.zeros(int(n), *self.grid, dtype=torch.long, device=device)
        for i in range(self.grid[0]):
            for j in range(self.grid[1]):
                probs = F.softmax(self.logits(codes)[:, :, i, j], dim=1)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes


class VQBound(NamedTuple):
    """The terms of log p(x) >= log p(x|z_q) + log p(z_q), each (B,) in nats (see vq_log_likelihood_bound)."""

    bound: torch.Tensor           #: log p(x|z_q) + log p(z_q)
    log_likelihood: torch.Tensor  #: log p(x|z_q), the reconstruction term
    log_prior: torch.Tensor       #: log p(z_q) = -KL(one-point posterior || prior)


@torch.no_grad()
def vq_log_likelihood_bound(model: VQVAE, prior: CodePrior, x: torch.Tensor,
                            batch_size: int = 500) -> VQBound:
    """A lower bound on log p(x) of the VQ-VAE with the fitted prior, per image, in nats.

    p(x) = sum_c p(c) p(x|c) >= p(z_q(x)) p(x|z_q(x)): one term of the sum. It is also the ELBO with the
    one-point posterior q(c|x) = 1[c = z_q(x)], whose KL to the prior is -log p(z_q) (van den Oord et al.
    2017, section 3.1). x (N, 784) is evaluated `batch_size` rows at a time. Raises ValueError for a prior
    with another K, and as :meth:`VQVAE.encode`.
    """
    if prior.n_codes != model.n_codes:
        raise ValueError(f"the prior has {prior.n_codes} codes, the model {model.n_codes}")
    parts = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        codes = model.codes(xb)
        parts.append((model.log_likelihood(xb, model.decode_codes(codes)), prior.log_prob(codes)))
    log_px_z, log_pz = (torch.cat(t) for t in zip(*parts))
    return VQBound(log_px_z + log_pz, log_px_z, log_pz)
