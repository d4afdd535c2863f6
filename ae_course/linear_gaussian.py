r"""The linear-Gaussian latent variable model (probabilistic PCA), where log p(x) is exact.

The model (Tipping & Bishop 1999) is

    p(z) = N(0, I_d),      p(x|z) = N(W z + b, sigma^2 I_D),

with W of shape (D, d). Everything a VAE has to estimate is available here in closed form
(Tipping & Bishop 1999, §3 and eq. 6; Bishop 2006, §12.2):

* the marginal likelihood  p(x) = N(b, C),  C = W W^T + sigma^2 I_D;
* the posterior  p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}),  M = W^T W + sigma^2 I_d;
* the ELBO of a diagonal-Gaussian q(z|x) = N(mu, diag(exp(log_var))),
  E_q[log p(x|z)] - KL(q || p(z)), with E_q[log p(x|z)] in closed form;
* the maximum-likelihood fit to data (Tipping & Bishop 1999, eqs. 7 and 8).

That makes it the test bed of chapter 3: ELBO <= log p(x), with equality exactly when q is the posterior,
and log p(x) - ELBO = KL(q || p(z|x)) (Kingma & Welling 2014, eqs. 1-3).

:class:`LinearGaussian` follows the VAE protocol of :mod:`ae_course.evaluation` (``encode``, ``decode``,
``log_likelihood``, prior N(0, I)), so :func:`ae_course.evaluation.importance_sampled_log_likelihood` and
:func:`ae_course.evaluation.estimate_elbo` apply to it. Computations run in the dtype of ``W``; inputs are
cast to it (use float64 for identities that should hold to 1e-6 on 784-pixel images).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch.distributions import Independent, MultivariateNormal

from .losses import gaussian_kl, reparameterize, standard_normal

Encoder = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


class LinearGaussian:
    r"""p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D): probabilistic PCA (Tipping & Bishop 1999).

    Args:
        W: (D, d) floating tensor, the loading matrix (D data dimensions, d latent dimensions).
        b: (D,) tensor, the mean of x (mu in Tipping & Bishop).
        sigma: float or 0-d tensor > 0, the noise standard deviation (not the variance).
    Raises:
        ValueError: if W is not 2-D floating point, b is not (D,), or sigma is not a finite number > 0.

    ``encode(x)`` returns the best *diagonal* Gaussian approximation of the exact posterior: its mean is
    the posterior mean and its variances are 1 / diag(posterior precision) = sigma^2 / M_jj, the minimizer
    of KL(q || p(z|x)) over diagonal Gaussians (Bishop 2006, §10.1.2). When the columns of W are
    orthogonal, M is diagonal and this *is* the exact posterior; :meth:`fit` returns such a W.
    :meth:`with_encoder` swaps in any other q for the estimators of :mod:`ae_course.evaluation`.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, sigma: float | torch.Tensor):
        W = torch.as_tensor(W)
        if W.dim() != 2 or not W.is_floating_point() or 0 in W.shape:
            raise ValueError(f"W must be a floating-point (D, d) tensor, got shape {tuple(W.shape)}, dtype {W.dtype}")
        b = torch.as_tensor(b, dtype=W.dtype, device=W.device)
        if b.shape != (W.shape[0],):
            raise ValueError(f"b must have shape ({W.shape[0]},) to match W {tuple(W.shape)}, got {tuple(b.shape)}")
        sigma = torch.as_tensor(sigma, dtype=W.dtype, device=W.device)
        if sigma.numel() != 1 or not torch.isfinite(sigma).all() or not sigma.item() > 0:
            raise ValueError(f"sigma must be a single finite number > 0, got {sigma}")
        self.W, self.b, self.sigma = W, b, sigma.reshape(())
        self._encoder: Encoder | None = None

    # ------------------------------------------------------------------ sizes and distributions
    @property
    def input_dim(self) -> int:
        """D, the dimension of x."""
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        """d, the dimension of z."""
        return self.W.shape[1]

    @property
    def training(self) -> bool:
        """Always False: there is nothing to switch to eval mode (kept for protocol symmetry with nn.Module)."""
        return False

    @property
    def prior(self) -> Independent:
        """p(z) = N(0, I_d): :func:`ae_course.losses.standard_normal` with event shape (d,), in W's dtype."""
        return standard_normal(self.latent_dim, like=self.W)

    @property
    def covariance(self) -> torch.Tensor:
        """C = W W^T + sigma^2 I_D, (D, D): the covariance of the marginal p(x)."""
        eye = torch.eye(self.input_dim, dtype=self.W.dtype, device=self.W.device)
        return self.W @ self.W.T + self.sigma ** 2 * eye

    @property
    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I) (Tipping & Bishop 1999, §3), a MultivariateNormal of event shape (D,)."""
        return MultivariateNormal(self.b, covariance_matrix=self.covariance)

    def _M(self) -> torch.Tensor:
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        return self.W.T @ self.W + self.sigma ** 2 * eye

    def _x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.input_dim or x.shape[0] == 0:
            raise ValueError(f"{name} must be a (B, {self.input_dim}) tensor with B >= 1, got {tuple(getattr(x, 'shape', ()))}")
        return x.to(dtype=self.W.dtype, device=self.W.device)

    def _z(self, z: torch.Tensor, name: str = "z") -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim or z.shape[0] == 0:
            raise ValueError(f"{name} must be a (B, {self.latent_dim}) tensor with B >= 1, got {tuple(getattr(z, 'shape', ()))}")
        return z.to(dtype=self.W.dtype, device=self.W.device)

    # ------------------------------------------------------------------ exact quantities
    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log N(x; b, W W^T + sigma^2 I): x (B, D) -> (B,) in nats.

        A density on R^D: for grey levels in [0, 1] it is not comparable with a Bernoulli log-probability.
        Raises ValueError unless x is (B, D).
        """
        return self.marginal.log_prob(self._x(x))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}), M = W^T W + sigma^2 I
        (Tipping & Bishop 1999, eq. 6).

        x: (B, D). Returns (mean (B, d), covariance (d, d)); the covariance does not depend on x.
        Raises ValueError unless x is (B, D).
        """
        x = self._x(x)
        M = self._M()
        mean = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T
        covariance = self.sigma ** 2 * torch.linalg.inv(M)
        return mean, 0.5 * (covariance + covariance.T)

    def posterior_kl(self, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        r"""KL(q || p(z|x)) for q = N(mu, diag(v)), v = exp(log_var): (B,) in nats, in closed form.

        With p(z|x) = N(m, S) (:meth:`posterior`), the KL between two Gaussians is
        1/2 [ tr(S^{-1} diag(v)) + (m - mu)^T S^{-1} (m - mu) - d + log det S - sum_j log v_j ],
        the same number as ``torch.distributions.kl_divergence`` between the two MultivariateNormals (the
        tests check it), but with one d x d matrix for the whole batch instead of one per example: S does not
        depend on x. By Kingma & Welling (2014, eq. 1) it is exactly log p(x) - ELBO(q).
        x: (B, D); mu, log_var: (B, d). Raises ValueError on bad shapes.
        """
        mean, covariance = self.posterior(x)
        mu, log_var = self._q(mu, log_var, len(mean))
        precision = self._M() / self.sigma ** 2                      # S^{-1} = M / sigma^2
        diff = mean - mu
        trace = (torch.diagonal(precision) * torch.exp(log_var)).sum(1)
        mahalanobis = ((diff @ precision) * diff).sum(1)
        return 0.5 * (trace + mahalanobis - self.latent_dim + torch.logdet(covariance) - log_var.sum(1))

    # ------------------------------------------------------------------ the VAE protocol
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) as (mu, log_var), each (B, d): the best diagonal Gaussian approximation of p(z|x).

        mu is the posterior mean, exp(log_var) = sigma^2 / diag(M), the minimizer of KL(q || p(z|x)) over
        diagonal Gaussians (Bishop 2006, eq. 10.13); exact when W has orthogonal columns. After
        :meth:`with_encoder`, the supplied encoder is used instead. Raises ValueError unless x is (B, D).
        """
        if self._encoder is not None:
            mu, log_var = self._encoder(x)
            return self._q(mu, log_var, x.shape[0])
        mean, _ = self.posterior(x)
        log_var = torch.log(self.sigma ** 2 / torch.diagonal(self._M()))
        return mean, log_var.expand_as(mean).clone()

    def with_encoder(self, encoder: Encoder) -> "LinearGaussian":
        """The same model with ``encode`` replaced by ``encoder(x) -> (mu, log_var)``, each (B, d).

        For evaluating the ELBO or the importance-sampled log p(x) with a q that is not the posterior,
        e.g. ``model.with_encoder(lambda x: (torch.zeros(len(x), d), torch.zeros(len(x), d)))`` proposes
        from the prior. W, b and sigma are shared, not copied.
        """
        other = copy.copy(self)
        other._encoder = encoder
        return other

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): z (N, d) -> W z + b, (N, D). Raises ValueError unless z is (N, d)."""
        return self._z(z) @ self.W.T + self.b

    def log_likelihood(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = log N(x; mean, sigma^2 I) with mean = decode(z): x, mean (N, D) -> (N,) in nats.

        Raises ValueError on a shape mismatch.
        """
        x = self._x(x)
        if mean.shape != x.shape:
            raise ValueError(f"x has shape {tuple(x.shape)} but mean has shape {tuple(mean.shape)}; they must match")
        var = self.sigma ** 2
        return -0.5 * (x - mean.to(x.dtype)).pow(2).sum(1) / var - 0.5 * self.input_dim * torch.log(2 * math.pi * var)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x = W z + b + sigma eps from p(x), (n, D). Raises ValueError for n < 1."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        kw = dict(generator=generator, dtype=self.W.dtype, device=self.W.device)
        z = torch.randn(int(n), self.latent_dim, **kw)
        return self.decode(z) + self.sigma * torch.randn(int(n), self.input_dim, **kw)

    # ------------------------------------------------------------------ the ELBO
    def _q(self, mu: torch.Tensor, log_var: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, self.latent_dim)
        if not isinstance(mu, torch.Tensor) or not isinstance(log_var, torch.Tensor):
            raise ValueError("mu and log_var must be tensors")
        if tuple(mu.shape) != shape or tuple(log_var.shape) != shape:
            raise ValueError(f"mu and log_var must both have shape {shape}, got {tuple(mu.shape)} and {tuple(log_var.shape)}")
        return mu.to(self.W.dtype), log_var.to(self.W.dtype)

    def expected_log_likelihood(self, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        r"""E_q[log p(x|z)] in closed form for q = N(mu, diag(v)), v = exp(log_var): (B,) in nats.

        = -D/2 log(2 pi sigma^2) - ( ||x - W mu - b||^2 + sum_j (W^T W)_jj v_j ) / (2 sigma^2),
        since E||x - W z - b||^2 = ||x - W mu - b||^2 + tr(W diag(v) W^T). x: (B, D); mu, log_var: (B, d).
        """
        x = self._x(x)
        mu, log_var = self._q(mu, log_var, len(x))
        var = self.sigma ** 2
        residual = (x - self.decode(mu)).pow(2).sum(1)
        spread = (torch.exp(log_var) * (self.W ** 2).sum(0)).sum(1)
        return -0.5 * self.input_dim * torch.log(2 * math.pi * var) - (residual + spread) / (2 * var)

    def elbo(self, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, n_samples: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        r"""ELBO(q) = E_q[log p(x|z)] - KL(q || p(z)) for q = N(mu, diag(exp(log_var))), (B,) in nats.

        Kingma & Welling (2014), eq. 3. With ``n_samples=None`` both terms are exact (closed form, see
        :meth:`expected_log_likelihood` and :func:`ae_course.gaussian_kl`); with an integer S the first term
        is the Monte Carlo average over S reparameterized samples z = mu + exp(log_var / 2) eps (eq. 10), an
        unbiased estimate of the same number. Always ELBO <= :meth:`log_marginal`, with log p(x) - ELBO =
        :meth:`posterior_kl`.

        x: (B, D); mu, log_var: (B, d). Raises ValueError on bad shapes or n_samples < 1.
        """
        x = self._x(x)
        mu, log_var = self._q(mu, log_var, len(x))
        kl = gaussian_kl(mu, log_var)
        if n_samples is None:
            return self.expected_log_likelihood(x, mu, log_var) - kl
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1 or None, got {n_samples}")
        z = reparameterize(mu, log_var, n_samples=int(n_samples), generator=generator)   # (S, B, d)
        x_rep = x.expand(int(n_samples), *x.shape).reshape(-1, self.input_dim)
        log_px_z = self.log_likelihood(x_rep, self.decode(z.reshape(-1, self.latent_dim)))
        return log_px_z.reshape(int(n_samples), len(x)).mean(0) - kl

    # ------------------------------------------------------------------ maximum likelihood
    @classmethod
    def fit(cls, x: torch.Tensor, latent_dim: int, dtype: torch.dtype = torch.float64,
            chunk: int = 10_000) -> "LinearGaussian":
        r"""Maximum-likelihood probabilistic PCA in closed form (Tipping & Bishop 1999, eqs. 7 and 8).

        With S = (1/N) sum_n (x_n - xbar)(x_n - xbar)^T and eigenvalues lambda_1 >= ... >= lambda_D,
        eigenvectors U: b = xbar, sigma^2 = mean(lambda_{d+1..D}), W = U_d (Lambda_d - sigma^2 I)^{1/2}
        (the rotation R of eq. 7 taken as I, so the columns of W are orthogonal and the posterior is diagonal).

        Args:
            x: (N, D) data, N >= 2; latent_dim: d with 1 <= d < D; dtype: of the fitted parameters;
            chunk: rows per pass when accumulating S (bounds the memory used).
        Raises:
            ValueError: for bad shapes, d out of range, or data that lie in a d-dimensional subspace (sigma = 0).
        """
        return cls.fit_many(x, [latent_dim], dtype, chunk)[int(latent_dim)]

    @classmethod
    def fit_many(cls, x: torch.Tensor, latent_dims, dtype: torch.dtype = torch.float64,
                 chunk: int = 10_000) -> "dict[int, LinearGaussian]":
        """:meth:`fit` for several latent dimensions from one eigen-decomposition: {d: model}.

        Same arguments and errors as :meth:`fit`, with ``latent_dims`` an iterable of ints.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 2:
            raise ValueError(f"x must be an (N, D) tensor with N >= 2, got {tuple(getattr(x, 'shape', ()))}")
        n, dim = x.shape
        latent_dims = [int(d) for d in latent_dims]
        for d in latent_dims:
            if not 1 <= d < dim:
                raise ValueError(f"latent_dim must satisfy 1 <= latent_dim < D = {dim}, got {d}")
        mean = x.to(dtype).mean(0)
        scatter = torch.zeros(dim, dim, dtype=dtype, device=x.device)
        for start in range(0, n, chunk):
            centred = x[start:start + chunk].to(dtype) - mean
            scatter += centred.T @ centred
        eigenvalues, eigenvectors = torch.linalg.eigh(scatter / n)       # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1)
        models = {}
        for d in latent_dims:
            noise = eigenvalues[d:].mean()
            if not noise.item() > torch.finfo(dtype).eps * dim * eigenvalues[0].item():  # 0 up to rounding
                raise ValueError(f"the data lie in a {d}-dimensional subspace: the ML noise variance is 0")
            W = eigenvectors[:, :d] * torch.sqrt((eigenvalues[:d] - noise).clamp_min(0))
            models[d] = cls(W.contiguous(), mean.clone(), torch.sqrt(noise))
        return models

    def __repr__(self) -> str:
        return f"LinearGaussian(D={self.input_dim}, d={self.latent_dim}, sigma={self.sigma.item():.4g}, dtype={self.W.dtype})"
