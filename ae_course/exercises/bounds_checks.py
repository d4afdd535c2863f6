"""Checkers for the exercises of the chapter "Tighter bounds and learned priors".

* :func:`check_iwae_bound`: the importance-weighted bound L_k(x) = logsumexp_i log w_i - log k of a VAE, from
  given noise, with gradients that reach the encoder and the decoder (Burda, Grosse & Salakhutdinov 2016, eq. 8);
* :func:`check_vamp_log_prob`: the log-density of the VampPrior, log (1/K) sum_k N(z; mu_k, diag(exp(log_var_k)))
  (Tomczak & Welling 2018, eq. 9), from the encoder's outputs at the pseudo-inputs.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ..iwae import iwae_bound
from ..losses import gaussian_kl, gaussian_log_likelihood
from ..vae import VAE
from .feedback import Feedback, NotYet, as_vector, call_learner, checker, close, name_mistake, prefixed

__all__ = ["check_iwae_bound", "check_vamp_log_prob"]


# ------------------------------------------------------------------------------------ the IWAE bound

def _problem(k: int, batch: int, seed: int) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A small untrained VAE (784-32-(2x4)), `batch` binary images and standard-normal noise (k, batch, 4)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VAE(input_dim=784, latent_dim=4, hidden=(32,))
    stripes = torch.linspace(0.05, 0.95, 784).reshape(1, 784)
    x = torch.bernoulli(stripes.expand(batch, -1), generator=gen)
    eps = torch.randn(k, batch, 4, generator=gen)
    return model, x, eps


def _log_weights_variant(model: VAE, x: torch.Tensor, eps: torch.Tensor, *, decoder_z: str = "z",
                         q_at: str = "z", q_params: str = "live", prior: bool = True, q: bool = True,
                         analytic_kl: bool = False, sigma: str = "std", sigma_q: str = "std") -> torch.Tensor:
    """log w (k, B) computed right, or with one of the known slips (the checker's catalogue of mistakes)."""
    k, batch, latent = eps.shape
    mu, log_var = model.encode(x)
    scale = {"std": torch.exp(0.5 * log_var), "var": torch.exp(log_var)}[sigma]
    z = mu + scale * eps                                                     # (k, B, L)
    z_dec = z.detach() if decoder_z == "detached" else z
    logits = model.decode(z_dec.reshape(k * batch, latent))
    log_px_z = model.log_likelihood(x.repeat(k, 1), logits).reshape(k, batch)
    if analytic_kl:
        return log_px_z - gaussian_kl(mu, log_var)
    m, lv = (mu.detach(), log_var.detach()) if q_params == "detached" else (mu, log_var)
    lv = 2 * lv if sigma_q == "var" else lv                                  # exp(log_var) read as sigma in q
    z_q = z.detach() if q_at == "detached" else z
    log_q = gaussian_log_likelihood(z_q.reshape(k * batch, latent), m.repeat(k, 1), lv.repeat(k, 1)).reshape(k, batch)
    log_p = model.prior.log_prob(z)
    return log_px_z + (log_p if prior else 0) - (log_q if q else 0)


def _bound(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, dim=0) - math.log(len(log_w))


def _gradient(value: torch.Tensor, model: VAE) -> torch.Tensor | None:
    """d value.sum() / d (encoder and decoder parameters), flattened (float64); None if value has no graph."""
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        return None
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    grads = torch.autograd.grad(value.sum(), params, allow_unused=True, retain_graph=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)]).double()


def _same_gradient(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return bool((a - b).norm() <= tol * b.norm() + 1e-8)


@checker
def check_iwae_bound(fn: Callable[[VAE, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(model, x, eps) -> (B,)`: the importance-weighted bound L_k of each image, with gradients.

    model: an :class:`ae_course.VAE` (784 pixels, 4 latent dimensions, prior N(0, I)); x: (B, 784) binary;
    eps: (k, B, 4) standard-normal noise, z_i = mu + exp(log_var / 2) * eps_i. The reference is
    :func:`ae_course.iwae.iwae_bound` with the same noise (Burda et al. 2016, eq. 8): its values, and its
    gradient with respect to the encoder's and the decoder's parameters. Tried with k = 7 and k = 1 on an
    untrained model, whose log-weights (about -550 nats) underflow exp in float32.

    Named mistakes: the mean of the log-weights (the ELBO), a missing -log k, the sum over samples, a sign flip,
    the closed-form KL inside the log-sum-exp, a missing log p(z) or log q(z|x), sigma = exp(log_var),
    exp underflow, a reduction over the images or none; with right values: z cut off from the graph before the
    decoder, log q(z|x) with its mu and log_var detached (the "sticking the landing" estimator, biased for
    k > 1) or at a detached z, and no gradient at all.
    """
    for k, batch, seed in ((7, 5, 0), (1, 3, 1)):
        model, x, eps = _problem(k, batch, seed)
        with prefixed(f"with k = {k}: " if k == 1 else ""):
            result = call_learner(fn, model, x, eps, detach=False)
            got = as_vector(result, batch, "your bound", finite=False, mistakes=[
                ((k, batch), "you returned the k log-weights of each image, shape (k, B); combine them into one "
                             "bound per image: torch.logsumexp(log_w, dim=0) - log k."),
                ((k,), "you reduced over the images (dim=1); the k samples are dim 0: return one value per image."),
                ((), "you returned a single number for the batch; return the bound of each image, shape (B,)."),
            ] if k > 1 else [])
            expected_value = iwae_bound(model, x, k, eps=eps)
            expected = expected_value.detach().double()
            if not close(got, expected, rtol=1e-5, atol=2e-3):
                _name_value_mistake(got, model, x, eps, expected)
            grad, reference = _gradient(result, model), _gradient(expected_value, model)
            if grad is None:
                return Feedback(False, "the values are right but your result carries no gradient: no torch.no_grad(), "
                                       ".detach(), .item() or .sample(); the bound is a training objective.")
            if not _same_gradient(grad, reference):
                _name_gradient_mistake(grad, model, x, eps)
    return Feedback(True, "L_k = logsumexp(log w) - log k with reparameterized samples: right values for k = 7 and "
                          "k = 1, and the gradients of both networks match.")


def _name_value_mistake(got: torch.Tensor, model: VAE, x: torch.Tensor, eps: torch.Tensor,
                        expected: torch.Tensor) -> None:
    k = len(eps)
    if not torch.isfinite(got).all():
        raise NotYet("your bound is not finite: the log-weights are about -550 nats, so exp(log_w) underflows to 0 "
                     "and log(0) = -inf. Use torch.logsumexp(log_w, dim=0) - math.log(k).")
    with torch.no_grad():
        log_w = _log_weights_variant(model, x, eps).double()

        def variant(**slip):
            return _bound(_log_weights_variant(model, x, eps, **slip).double())

        mistakes = [
            (-expected, "the sign is flipped: that is the loss -L_k. Return the bound itself (the chapter's IWAE.loss "
                        "is its negative)."),
            (log_w.mean(dim=0), "that is the mean of the log-weights: the average of k single-sample ELBOs, no tighter "
                                "than the ELBO. L_k is the log of the mean WEIGHT: logsumexp(log_w, dim=0) - log k."),
            (expected + math.log(k), "you forgot to divide by k inside the log: subtract log k from the log-sum-exp."),
            (log_w.sum(dim=0), "you summed the log-weights over the samples; L_k = logsumexp(log_w, dim=0) - log k."),
            (variant(analytic_kl=True), "you used log p(x|z_i) - KL(q || p) (the closed-form KL) as log w_i. The KL is "
                                        "an expectation over z; inside the log-sum-exp each weight needs its own "
                                        "log p(z_i) - log q(z_i|x) at the same z_i."),
            (variant(prior=False), "log p(z_i) is missing from the log-weights: log w_i = log p(x|z_i) + log p(z_i) "
                                   "- log q(z_i|x) (use model.prior.log_prob(z))."),
            (variant(q=False), "log q(z_i|x) is missing from the log-weights: log w_i = log p(x|z_i) + log p(z_i) "
                               "- log q(z_i|x)."),
            (variant(sigma="var", sigma_q="var"), "your z and q(z|x) use sigma = exp(log_var), the variance; the "
                                                  "standard deviation is exp(log_var / 2)."),
            (variant(sigma="var"), "your z uses sigma = exp(log_var), the variance; the standard deviation is "
                                   "exp(log_var / 2)."),
            (variant(sigma_q="var"), "your q(z|x) uses exp(log_var), the variance, as its standard deviation; "
                                     "sigma = exp(log_var / 2)."),
        ]
    name_mistake(got, mistakes, rtol=1e-5, atol=2e-3)
    raise NotYet(f"your values differ from L_k = logsumexp(log_w, dim=0) - log k by up to "
                 f"{(got - expected).abs().max().item():.4g} nats; log w_i = log p(x|z_i) + log p(z_i) - "
                 "log q(z_i|x) with z_i = mu + exp(log_var / 2) * eps[i].")


def _name_gradient_mistake(grad: torch.Tensor, model: VAE, x: torch.Tensor, eps: torch.Tensor) -> None:
    k = len(eps)
    slips = [
        (dict(decoder_z="detached"), "the values are right but z reaches the decoder detached (.detach(), "
                                     ".sample() or torch.no_grad()), so the encoder never learns from the "
                                     "reconstruction. Keep z = mu + sigma * eps in the graph."),
        (dict(q_params="detached"), "the values are right but log q(z|x) is computed with mu and log_var detached "
                                    "(the 'sticking the landing' estimator). For k > 1 that changes the expected "
                                    "gradient: L_k needs the full gradient of log q, parameters included."),
        (dict(q_at="detached"), "the values are right but log q is evaluated at a detached z: the gradient then "
                                "misses the path through z. Use the same z (in the graph) in all three terms."),
    ]
    for slip, message in slips:
        if _same_gradient(grad, _gradient(_bound(_log_weights_variant(model, x, eps, **slip)), model), 1e-3):
            raise NotYet(message)
    raise NotYet(f"the values are right (k = {k}) but the gradients with respect to the encoder and decoder differ "
                 "from those of L_k: is something detached, or computed outside the graph?")


# ------------------------------------------------------------------------------------ the VampPrior's log p(z)

@checker
def check_vamp_log_prob(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check `fn(z, mu, log_var) -> (N,)`: log p(z) = log (1/K) sum_k N(z; mu_k, diag(exp(log_var_k))).

    z: (N, L) codes; mu, log_var: (K, L), the encoder's outputs at the K pseudo-inputs (Tomczak & Welling 2018,
    eq. 9). The reference is torch.distributions' MixtureSameFamily with equal weights. Tried on codes near the
    components and on codes 40 standard deviations away (where every density underflows exp), with K = 1.

    Named mistakes: the mean of the component log-densities, a missing -log K, the largest component only,
    exp(log_var) or log_var used as the standard deviation, the per-component log-densities (N, K) or
    per-dimension values not summed over L, one number for all codes, and underflow.
    """
    gen = torch.Generator().manual_seed(0)
    n, n_components, latent = 6, 5, 3
    mu = torch.randn(n_components, latent, generator=gen)
    log_var = 0.5 * torch.randn(n_components, latent, generator=gen)
    near = mu[torch.arange(n) % n_components] + 0.5 * torch.randn(n, latent, generator=gen)
    far = 40 * torch.ones(n, latent) + torch.randn(n, latent, generator=gen)
    for z, what in ((near, ""), (far, "for codes far from every component: ")):
        with prefixed(what):
            got = as_vector(call_learner(fn, z, mu, log_var), n, "your log p(z)", per="code", finite=False, mistakes=[
                ((n, n_components), "you returned the log-density of every component, shape (N, K); combine them: "
                                    "logsumexp over the K components, minus log K."),
                ((n, latent), "you returned one value per latent dimension; the log-density of a diagonal Gaussian "
                              "is the SUM over the L dimensions."),
                ((n, n_components, latent), "you returned per-component, per-dimension log-densities; sum over the L "
                                            "dimensions, then logsumexp over the K components, minus log K."),
            ])
            _check_vamp_values(got, z, mu, log_var)
    z = torch.randn(n, latent, generator=gen)
    with prefixed("with K = 1: "):
        got = as_vector(call_learner(fn, z, mu[:1], log_var[:1]), n, "your log p(z)", per="code", finite=False)
        _check_vamp_values(got, z, mu[:1], log_var[:1])
    return Feedback(True, "log p(z) = logsumexp_k log N(z; mu_k, sigma_k^2) - log K, stable far from every component.")


def _components(mu: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return Independent(Normal(mu.double(), scale.double()), 1).log_prob(z.double().unsqueeze(1))   # (N, K)


def _check_vamp_values(got: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> None:
    n_components = len(mu)
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(n_components, dtype=torch.float64)),
                                Independent(Normal(mu.double(), torch.exp(0.5 * log_var.double())), 1))
    expected = mixture.log_prob(z.double())
    if close(got, expected, rtol=1e-5, atol=1e-4):
        return
    if not torch.isfinite(got).all():
        raise NotYet("your log p(z) is not finite: every component's density underflows exp far from the "
                     "components. Take torch.logsumexp of the component log-densities over k, minus log K.")
    per_component = _components(mu, torch.exp(0.5 * log_var), z)
    mistakes = [
        (per_component.mean(dim=1), "that is the mean of the components' log-densities (the log of a geometric "
                                    "mean); the mixture's density is the mean of the DENSITIES: logsumexp over k, "
                                    "minus log K."),
        (expected + math.log(n_components), "you forgot the weights 1/K: subtract log K from the log-sum-exp."),
        (per_component.max(dim=1).values, "that is the largest component's log-density alone; the mixture averages "
                                          "all K densities: logsumexp over k, minus log K."),
        (torch.logsumexp(_components(mu, torch.exp(log_var), z), 1) - math.log(n_components),
         "your components use exp(log_var), the variance, as the standard deviation; sigma = exp(log_var / 2)."),
    ]
    if (log_var > 0).all():  # log_var as a scale is only a valid Normal where it is positive
        mistakes.append((torch.logsumexp(_components(mu, log_var, z), 1) - math.log(n_components),
                         "your components use log_var as the standard deviation; sigma = exp(log_var / 2)."))
    name_mistake(got, mistakes, rtol=1e-5, atol=1e-4)
    raise NotYet(f"your values differ from log (1/K) sum_k N(z; mu_k, diag(exp(log_var_k))) by up to "
                 f"{(got - expected).abs().max().item():.4g} nats.")
