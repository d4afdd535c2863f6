"""Figures the chapters share: grids of images and scatter plots of 2-D codes (matplotlib)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def image_grid(images, nrow: int = 10, image_shape: tuple[int, int] = (28, 28), ax=None,
               title: str | None = None, row_labels: Sequence[str] | None = None, pad: int = 1):
    """Draw images as one grid, row by row, and return the matplotlib Axes.

    images: (N, H*W) or (N, H, W) array or tensor, values in [0, 1], 1 = ink (drawn black on white).
    nrow: images per row. row_labels: optional text at the left of each row.
    Raises ValueError if an image does not have H*W pixels.
    """
    arr = _to_numpy(images).astype(np.float32)
    h, w = image_shape
    if arr.size % (h * w) != 0 or arr.size == 0:
        raise ValueError(f"images of shape {arr.shape} cannot be split into {h}x{w} images")
    arr = arr.reshape(-1, h, w)
    n = len(arr)
    ncol = min(nrow, n)
    nrows = int(np.ceil(n / ncol))
    canvas = np.zeros((nrows * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(arr):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(ncol * 0.6 + 0.4, nrows * 0.6 + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(row_labels))], list(row_labels))
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(z, labels, ax=None, title: str | None = None, s: float = 4.0, alpha: float = 0.7):
    """Scatter 2-D codes coloured by label (a 10-colour map with a colour bar); returns the Axes.

    z: (N, 2) codes; labels: (N,) ints 0..9. Raises ValueError if z is not (N, 2) or lengths differ.
    """
    z, labels = _to_numpy(z), _to_numpy(labels)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"latent_scatter needs (N, 2) codes, got {z.shape}; project higher-dimensional codes first")
    if len(z) != len(labels):
        raise ValueError(f"{len(z)} codes but {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=s, alpha=alpha)
    ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax
