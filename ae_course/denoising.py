"""The denoising autoencoder: an :class:`~ae_course.models.Autoencoder` trained on corrupted inputs to
reconstruct the clean ones.

Objective (Vincent et al. 2008, section 2.3; Vincent et al. 2010, section 3):

    min  E_{x ~ data} E_{x~ ~ q_D(x~ | x)} [ L(x, g(f(x~))) ]

The target of the loss is the CLEAN x; only the encoder's input is corrupted. Corruption happens in
:meth:`DenoisingAutoencoder.loss` only: `encode`, `forward` and `reconstruct` act on whatever they are
given, so at test time the model maps a (noisy or clean) input to its reconstruction deterministically.
"""
from __future__ import annotations

from typing import Callable

import torch

from .models import Autoencoder


class DenoisingAutoencoder(Autoencoder):
    """An autoencoder whose loss corrupts the input and reconstructs the clean target.

    Args:
        corruption: a callable x -> x~ of the same shape that draws fresh noise on every call, e.g.
            ``functools.partial(ae_course.corruption.masking_noise, fraction=0.5)``.
        **kwargs: as :class:`~ae_course.models.Autoencoder` (input_dim, latent_dim, hidden, activation, likelihood).
    Raises:
        ValueError: if `corruption` is not callable, or as :class:`~ae_course.models.Autoencoder`.
    """

    def __init__(self, corruption: Callable[[torch.Tensor], torch.Tensor], **kwargs):
        if not callable(corruption):
            raise ValueError(f"corruption must be a callable x -> x~, got {type(corruption).__name__}")
        super().__init__(**kwargs)
        self.corruption = corruption

    @property
    def config(self) -> dict:
        """As :attr:`Autoencoder.config`; the corruption is stored by its repr (a callable cannot be saved)."""
        return {**super().config, "corruption": repr(self.corruption)}

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Per-example denoising loss (B,): -log p(x | z = f(corruption(x))), the CLEAN x as the target.

        One fresh corruption per call, so the mean over minibatches estimates E_{q_D}[...]. Nats, as
        :meth:`Autoencoder.loss`. Raises ValueError as :meth:`Autoencoder.loss`.
        """
        return -self.log_likelihood(x, self(self.corruption(x), y))
