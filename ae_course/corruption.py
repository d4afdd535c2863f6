"""Corruption processes q_D(x~ | x) for denoising autoencoders.

A denoising autoencoder is trained to reconstruct a clean image x from a randomly corrupted copy
x~ ~ q_D(x~ | x) (Vincent et al. 2008, section 2.3; Vincent et al. 2010, section 3). Every function
here takes a batch x of shape (B, D) (any shape works: the noise is drawn per entry), returns a NEW
tensor of the same shape, dtype and device, leaves x untouched, and draws fresh noise on every call
from `generator` (a torch.Generator on x's device) or, when it is None, from torch's global generator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(x: torch.Tensor, name: str, value: float, low: float, high: float | None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor (pixel intensities in [0, 1]), got {x.dtype}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (value >= low and (high is None or value <= high)):  # also rejects NaN
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {'in ' if high is not None else ''}{bounds}, got {value}")


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def masking_noise(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise: set each entry of x to 0 independently with probability `fraction`.

    x: (B, D) floating tensor, e.g. pixel intensities in [0, 1]. Returns x~ of the same shape, with
    x~_d = 0 with probability `fraction` and x~_d = x_d otherwise: on average a `fraction` of each
    image's pixels is erased; noise never adds ink. Vincent et al. 2008, section 2.3 ("destroyed"
    components set to 0); Vincent et al. 2010 (masking noise, MN; the 2008 paper erases a fixed number
    round(fraction * D) of pixels per image, the same on average).

    Raises ValueError if x is not a floating-point tensor or fraction is not in [0, 1].
    """
    _check(x, "fraction", fraction, 0.0, 1.0)
    keep = _uniform(x, generator) >= fraction
    return x * keep


def gaussian_noise(x: torch.Tensor, std: float, clip: bool = True,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive isotropic Gaussian noise: x~ = x + std * eps, eps ~ N(0, I), clipped to [0, 1] if `clip`.

    x: (B, D) floating tensor; std: noise standard deviation in pixel units (>= 0). Returns x~ of the
    same shape. Vincent et al. 2010 (additive isotropic Gaussian noise, GS).

    Raises ValueError if x is not a floating-point tensor or std < 0.
    """
    _check(x, "std", std, 0.0, None)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noisy = x + float(std) * eps
    return noisy.clamp(0.0, 1.0) if clip else noisy


def salt_and_pepper(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper noise: each entry is, with probability `fraction`, replaced by 0 or 1 (a fair coin).

    x: (B, D) floating tensor in [0, 1]. Returns x~ of the same shape. Vincent et al. 2010
    (salt-and-pepper noise, SP).

    Raises ValueError if x is not a floating-point tensor or fraction is not in [0, 1].
    """
    _check(x, "fraction", fraction, 0.0, 1.0)
    hit = _uniform(x, generator) < fraction
    salt = (_uniform(x, generator) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def random_translation(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each square image by a random whole number of pixels, up to `max_shift` in each direction.

    x: (B, D) floating tensor of B flattened square images (D = side * side, e.g. 784 for 28 x 28).
    Every image gets its own shift (dx, dy), each uniform on {-max_shift, ..., max_shift}; the pixels
    moved in from outside the frame are 0 and the ones moved out are lost. Returns x~ of the same shape.
    A corruption of geometry rather than of intensities: the standard augmentation of digit images
    (LeCun et al. 1998, section III.C, distortions; Simard et al. 2003).

    Raises ValueError if x is not a floating (B, D) tensor of square images, or max_shift is not an
    integer in [0, side).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a (B, D) tensor of flattened square images, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"x's rows have {x.shape[1]} entries, not a square image (side * side)")
    if isinstance(max_shift, bool) or int(max_shift) != max_shift:
        raise ValueError(f"max_shift must be a whole number of pixels, got {max_shift!r}")
    _check(x, "max_shift", max_shift, 0, side - 1)
    k, b = int(max_shift), x.shape[0]
    if k == 0:
        return x.clone()
    padded = F.pad(x.reshape(b, side, side), (k, k, k, k))            # (B, side + 2k, side + 2k)
    offsets = torch.randint(0, 2 * k + 1, (2, b, 1), generator=generator, device=x.device)
    grid = torch.arange(side, device=x.device)
    rows, cols = offsets[0] + grid, offsets[1] + grid                  # (B, side) each
    out = padded[torch.arange(b, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.reshape(b, side * side)
