"""Priors an adversarial autoencoder can impose: anything we can *sample* from.

The VAE needs a prior whose density (and KL to the posterior) it can compute; the adversarial
autoencoder only needs samples z' ~ p(z), because a discriminator compares them with the codes
(Makhzani et al. 2016, section 2). Every prior here has the same small interface:

* ``dim``: the dimension of z;
* ``sample(n, device=None) -> (n, dim)`` float32 samples, drawn with torch's global generator (seed it
  with ``torch.manual_seed`` for reproducible draws);
* ``log_prob(z) -> (n,)`` in nats, where the density has a closed form (not for :class:`SwissRollPrior`).

The Gaussian, mixture and categorical priors are thin wrappers around ``torch.distributions``.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import (Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal,
                                 OneHotCategorical)

__all__ = ["Prior", "GaussianPrior", "MixtureOfGaussiansPrior", "SwissRollPrior", "CategoricalPrior"]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"the number of samples must be an integer >= 1, got {n!r}")
    return int(n)


def _check_z(z: torch.Tensor, dim: int) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != dim:
        raise ValueError(f"z must have shape (n, {dim}), got {tuple(getattr(z, 'shape', ()))}")


class Prior:
    """The interface: ``dim``, ``sample(n, device=None) -> (n, dim)``, ``log_prob(z) -> (n,)`` (if known)."""

    dim: int

    def sample(self, n: int, device: str | torch.device | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form density; it can only be sampled")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class _FromDistribution(Prior):
    """A prior backed by a torch.distributions object ``self._dist`` with event shape (dim,)."""

    _dist: torch.distributions.Distribution

    def sample(self, n: int, device: str | torch.device | None = None) -> torch.Tensor:
        """(n, dim) float32 samples on `device` (CPU by default). Raises ValueError for n < 1."""
        return self._dist.sample((_check_n(n),)).float().to(device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): z (n, dim) -> (n,) in nats. Raises ValueError for a wrong shape."""
        _check_z(z, self.dim)
        return self._dist.log_prob(z.detach().cpu().double()).to(z.device, z.dtype)


class GaussianPrior(_FromDistribution):
    """p(z) = N(0, scale^2 I) in `dim` dimensions.

    scale = 5 is the prior of the well-known PyTorch AAE write-up; scale = 1 the VAE's prior.
    Raises ValueError for dim < 1 or scale <= 0.
    """

    def __init__(self, dim: int = 2, scale: float = 1.0):
        if int(dim) < 1 or not scale > 0:
            raise ValueError(f"need dim >= 1 and scale > 0, got dim={dim}, scale={scale}")
        self.dim, self.scale = int(dim), float(scale)
        self._dist = Independent(Normal(torch.zeros(self.dim, dtype=torch.float64),
                                        torch.full((self.dim,), self.scale, dtype=torch.float64)), 1)


class MixtureOfGaussiansPrior(_FromDistribution):
    r"""An equal-weight mixture of `n_components` 2-D Gaussians placed evenly on a circle.

    Component k has its mean at radius `radius`, angle 2 pi k / n_components, and its covariance is
    elongated along the radius (standard deviation `radial_std`) and narrow across it (`tangential_std`),
    the shape used in Makhzani et al. 2016 (Fig. 4). :meth:`sample_component` draws from chosen
    components, which the supervised "label in the prior" variant uses.

    Raises ValueError for n_components < 1 or non-positive radius or standard deviations.
    """

    def __init__(self, n_components: int = 10, radius: float = 4.0, radial_std: float = 1.0,
                 tangential_std: float = 0.25):
        if int(n_components) < 1 or not (radius > 0 and radial_std > 0 and tangential_std > 0):
            raise ValueError("need n_components >= 1 and positive radius, radial_std, tangential_std; got "
                             f"{n_components}, {radius}, {radial_std}, {tangential_std}")
        self.dim, self.n_components = 2, int(n_components)
        self.radius, self.radial_std = float(radius), float(radial_std)
        self.tangential_std = float(tangential_std)
        angle = 2 * math.pi * torch.arange(self.n_components, dtype=torch.float64) / self.n_components
        radial = torch.stack([angle.cos(), angle.sin()], dim=1)            # (K, 2) unit vectors
        tangential = torch.stack([-angle.sin(), angle.cos()], dim=1)
        means = self.radius * radial
        # Cholesky factor of R diag(s_r^2, s_t^2) R^T is R diag(s_r, s_t) up to a rotation; use the true one
        cov = (self.radial_std ** 2 * radial[:, :, None] * radial[:, None, :]
               + self.tangential_std ** 2 * tangential[:, :, None] * tangential[:, None, :])
        self._components = MultivariateNormal(means, covariance_matrix=cov)
        weights = Categorical(probs=torch.full((self.n_components,), 1.0 / self.n_components,
                                               dtype=torch.float64))
        self._dist = MixtureSameFamily(weights, self._components)

    def sample_component(self, components: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
        """One sample from each requested component: components (n,) ints in 0..n_components-1 -> (n, 2).

        Raises ValueError for a non-integer tensor, a wrong shape or an index out of range.
        """
        components = torch.as_tensor(components)
        if components.dim() != 1 or components.is_floating_point() or components.dtype == torch.bool:
            raise ValueError(f"components must be a 1-D integer tensor, got {components.dtype} {tuple(components.shape)}")
        if len(components) and (components.min() < 0 or components.max() >= self.n_components):
            raise ValueError(f"component indices must lie in 0..{self.n_components - 1}, "
                             f"got {components.min().item()}..{components.max().item()}")
        every = self._components.sample((len(components),))                 # (n, K, 2)
        return every[torch.arange(len(components)), components.cpu()].float().to(device)


class SwissRollPrior(Prior):
    r"""A 2-D swiss roll: z = (t cos t, t sin t) / scale + noise, with t uniform on [1.5 pi, 4.5 pi].

    The curve of :func:`sklearn.datasets.make_swiss_roll` (its x and z coordinates), divided by
    `scale` (default 2.0, so the roll spans about [-7, 7]) plus isotropic Gaussian noise of standard
    deviation `noise`. A prior an AAE can impose although its density has no simple closed form
    (Makhzani et al. 2016, Fig. 2). Raises ValueError for a non-positive scale or negative noise.
    """

    T_MIN, T_MAX = 1.5 * math.pi, 4.5 * math.pi

    def __init__(self, scale: float = 2.0, noise: float = 0.1):
        if not scale > 0 or not noise >= 0:
            raise ValueError(f"need scale > 0 and noise >= 0, got scale={scale}, noise={noise}")
        self.dim, self.scale, self.noise = 2, float(scale), float(noise)

    def sample(self, n: int, device: str | torch.device | None = None) -> torch.Tensor:
        """(n, 2) float32 samples. Raises ValueError for n < 1."""
        t = self.T_MIN + (self.T_MAX - self.T_MIN) * torch.rand(_check_n(n))
        z = torch.stack([t * t.cos(), t * t.sin()], dim=1) / self.scale
        return (z + self.noise * torch.randn_like(z)).to(device)


class CategoricalPrior(_FromDistribution):
    """Uniform categorical over `n_classes`, sampled as one-hot rows: (n, n_classes) float32.

    The prior on the class variable y of the semi-supervised AAE (Makhzani et al. 2016, section 5).
    Raises ValueError for n_classes < 2.
    """

    def __init__(self, n_classes: int = 10):
        if int(n_classes) < 2:
            raise ValueError(f"a categorical prior needs n_classes >= 2, got {n_classes}")
        self.dim = self.n_classes = int(n_classes)
        self._dist = OneHotCategorical(probs=torch.full((self.dim,), 1.0 / self.dim, dtype=torch.float64))
