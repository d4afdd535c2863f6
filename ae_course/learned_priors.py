"""Learned priors for the VAE: a mixture of Gaussians and the VampPrior (Tomczak & Welling 2018).

The ELBO averaged over the data, E_x[ E_q[log p(x|z)] - KL(q(z|x) || p(z)) ], depends on the prior p(z) only
through the cross-entropy -E_{q(z)}[log p(z)] of the *aggregate posterior* q(z) = E_x[q(z|x)]; it is largest
for p(z) = q(z) (Tomczak & Welling 2018, eq. 6-8; Hoffman & Johnson 2016). A learned prior moves p(z)
towards q(z) instead of pulling every q(z|x) towards N(0, I). Both priors here are equal- or learned-weight
mixtures of K diagonal Gaussians,

    p(z) = sum_k pi_k N(z; m_k, diag(exp(v_k))),

* :class:`LearnedMixturePrior`: pi = softmax(logits), m_k and v_k free parameters (a Gaussian-mixture prior,
  as in the GMM-prior VAEs, e.g. Dilokthanakul et al. 2016, and Tomczak & Welling 2018, section 3.1);
* :class:`VampPrior`: pi_k = 1/K and (m_k, v_k) = the encoder's q(z|u_k) at K learned pseudo-inputs u_k,
  p(z) = 1/K sum_k q(z|u_k) (Tomczak & Welling 2018, eq. 9), the aggregate posterior of K learned images.

A prior module is handed to :class:`ae_course.vae.VAE` as ``VAE(..., prior=...)``; the model's ``prior``
property then returns ``prior.distribution(model)``, a :class:`torch.distributions.MixtureSameFamily` with
event shape (L,) whose ``log_prob(z)`` takes z of shape (..., L), and the KL term of the ELBO is estimated
by Monte Carlo, log q(z|x) - log p(z) at the reparameterized sample (no closed form exists for a mixture).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

__all__ = ["MixtureComponents", "GaussianMixturePrior", "LearnedMixturePrior", "VampPrior"]


class MixtureComponents(NamedTuple):
    """The parameters of a diagonal-Gaussian mixture: logits (K,) of the weights, mu and log_var (K, L)."""

    logits: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor


class GaussianMixturePrior(nn.Module):
    """Base class: a prior p(z) = sum_k softmax(logits)_k N(z; mu_k, diag(exp(log_var_k))) whose parameters
    :meth:`components` computes (possibly from the model that owns it, as the VampPrior does)."""

    n_components: int

    def components(self, model: nn.Module) -> MixtureComponents:
        raise NotImplementedError

    @property
    def config(self) -> dict:
        """The constructor's arguments (with the class name), stored in the owning model's config."""
        raise NotImplementedError

    def distribution(self, model: nn.Module | None = None) -> MixtureSameFamily:
        """p(z) as a torch distribution with event shape (L,): ``log_prob(z)`` maps (..., L) to (...) nats,
        differentiably in the prior's parameters (and, for the VampPrior, the encoder's)."""
        logits, mu, log_var = self.components(model)
        component = Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)
        weights = Categorical(logits=logits, validate_args=False)
        return MixtureSameFamily(weights, component, validate_args=False)

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes z ~ p(z), (n, L): a component k ~ softmax(logits), then z = mu_k + exp(log_var_k / 2) eps.
        `generator` (on the model's device) makes the draw reproducible. Raises ValueError for n < 1."""
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        logits, mu, log_var = self.components(model)
        k = torch.multinomial(torch.softmax(logits, dim=0), int(n), replacement=True, generator=generator)
        eps = torch.randn(int(n), mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
        return mu[k] + torch.exp(0.5 * log_var[k]) * eps

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items() if key != "class")


class LearnedMixturePrior(GaussianMixturePrior):
    r"""A learnable mixture of K diagonal Gaussians in L dimensions: weights softmax(logits), means,
    log-variances.

    The means start at N(0, init_scale^2) draws (from torch's global generator: seed it for reproducible
    models), the log-variances at 0 and the weights equal, so that the untrained prior is close to a
    blurred N(0, I). Everything is trained with the rest of the model by the ELBO's gradient.

    Args:
        latent_dim: L; n_components: K; init_scale: the spread of the initial means.
    Raises:
        ValueError: for latent_dim < 1, n_components < 1 or init_scale < 0.
    """

    def __init__(self, latent_dim: int, n_components: int = 10, init_scale: float = 1.0):
        super().__init__()
        if int(latent_dim) < 1 or int(n_components) < 1 or not init_scale >= 0:
            raise ValueError(f"need latent_dim >= 1, n_components >= 1 and init_scale >= 0, got "
                             f"{latent_dim}, {n_components}, {init_scale}")
        self.latent_dim, self.n_components = int(latent_dim), int(n_components)
        self.init_scale = float(init_scale)
        self.logits = nn.Parameter(torch.zeros(self.n_components))
        self.mu = nn.Parameter(self.init_scale * torch.randn(self.n_components, self.latent_dim))
        self.log_var = nn.Parameter(torch.zeros(self.n_components, self.latent_dim))

    @property
    def config(self) -> dict:
        return {"class": type(self).__name__, "latent_dim": self.latent_dim,
                "n_components": self.n_components, "init_scale": self.init_scale}

    def components(self, model: nn.Module | None = None) -> MixtureComponents:
        """(logits (K,), mu (K, L), log_var (K, L)); the model is not needed."""
        return MixtureComponents(self.logits, self.mu, self.log_var)


class VampPrior(GaussianMixturePrior):
    r"""The VampPrior p(z) = 1/K sum_k q_phi(z | u_k) with K learned pseudo-inputs u_k (Tomczak & Welling
    2018, eq. 9): the aggregate posterior of K images that are trained, like the weights, by the ELBO's
    gradient.

    The components are the owning model's encoder at the pseudo-inputs, so the prior shares the encoder's
    weights and follows it as it learns. The pseudo-inputs live in pixel space, (K, input_dim); they start
    at the rows of `init` (e.g. K random training images, as Tomczak & Welling do) or, if None, at
    0.5 + 0.1 N(0, 1) noise drawn from torch's global generator. Only for unconditional models.

    Args:
        n_components: K; input_dim: D, the number of pixels; init: optional (K, D) starting pseudo-inputs.
    Raises:
        ValueError: for n_components < 1, input_dim < 1, or an `init` that is not a finite (K, D) tensor.
    """

    def __init__(self, n_components: int = 50, input_dim: int = 784, init: torch.Tensor | None = None):
        super().__init__()
        if int(n_components) < 1 or int(input_dim) < 1:
            raise ValueError(f"need n_components >= 1 and input_dim >= 1, got {n_components}, {input_dim}")
        self.n_components, self.input_dim = int(n_components), int(input_dim)
        if init is None:
            init = 0.5 + 0.1 * torch.randn(self.n_components, self.input_dim)
        if (not isinstance(init, torch.Tensor) or tuple(init.shape) != (self.n_components, self.input_dim)
                or not bool(torch.isfinite(init).all())):
            raise ValueError(f"init must be a finite ({self.n_components}, {self.input_dim}) tensor, got "
                             f"{tuple(getattr(init, 'shape', ()))}")
        self.pseudo_inputs = nn.Parameter(init.detach().clone().float())

    @property
    def config(self) -> dict:
        return {"class": type(self).__name__, "n_components": self.n_components, "input_dim": self.input_dim}

    def components(self, model: nn.Module) -> MixtureComponents:
        """Equal weights and the encoder's (mu, log_var) at the pseudo-inputs: (K,), (K, L), (K, L).
        Raises ValueError without a model, or as ``model.encode`` does (e.g. another number of pixels)."""
        if model is None:
            raise ValueError("a VampPrior's components are the encoder at its pseudo-inputs: give the model")
        mu, log_var = model.encode(self.pseudo_inputs.to(next(model.parameters()).dtype))
        return MixtureComponents(torch.full((self.n_components,), -math.log(self.n_components),
                                            device=mu.device, dtype=mu.dtype), mu, log_var)
