"""Checkers for the exercises of the chapter "Adversarial regularization" (the GAN game in code space)."""
from __future__ import annotations

import copy
import functools
import math
import time
from typing import Callable

import torch
from torch.distributions import Normal

from ..aae import discriminator_loss, optimal_discriminator
from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, name_mistake,
                       prefixed, OutOfTime, with_deadline)

# The setting of the optimal-discriminator exercise: the prior p = N(0, 1), the codes q = N(2, 0.5^2)
# (standard deviation 0.5), evaluated at z = 1.
PRIOR_MEAN, PRIOR_STD = 0.0, 1.0
CODE_MEAN, CODE_STD = 2.0, 0.5
POINT = 1.0
# The logit of the saturating-gradient exercise.
REJECTING_LOGIT = -6.0


_close = functools.partial(close, rtol=1e-3, atol=1e-3)


def _log_density(z: float, mean: float, std: float) -> float:
    return Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)).log_prob(
        torch.tensor(z, dtype=torch.float64)).item()


def optimal_discriminator_at_point() -> float:
    """T*(z) = p(z) / (p(z) + q(z)) for p = N(0, 1), q = N(2, 0.5^2) at z = 1 (about 0.691).

    Computed with :func:`ae_course.aae.optimal_discriminator` from torch.distributions log-densities.
    """
    log_p = torch.tensor([_log_density(POINT, PRIOR_MEAN, PRIOR_STD)], dtype=torch.float64)
    log_q = torch.tensor([_log_density(POINT, CODE_MEAN, CODE_STD)], dtype=torch.float64)
    return optimal_discriminator(log_p, log_q).item()


@checker
def check_optimal_discriminator(answer) -> Feedback:
    r"""Check T*(z) at z = 1 for the prior p = N(0, 1) (label 1) and the codes q = N(2, 0.5^2) (label 0).

    T*(z) = p(z) / (p(z) + q(z)) (Goodfellow et al. 2014, Proposition 1), about 0.691. Diagnoses: p and q
    swapped (1 - T*), the density ratio p/q or the log-ratio without the sigmoid, 0.5^2 read as the standard
    deviation (variance 0.0625) or 0.5 read as the variance, and densities without their normalizing
    1 / (sqrt(2 pi) sigma) (which matters because the two standard deviations differ). Tolerance 1e-3.
    """
    value = as_number(answer, "T*(1)")
    expected = optimal_discriminator_at_point()
    if _close(value, expected):
        return Feedback(True, f"T*(1) = p(1) / (p(1) + q(1)) = {expected:.4f}: a point of the prior is a bit more "
                              "likely than a code there, so T leans towards 'prior'.")
    log_p = _log_density(POINT, PRIOR_MEAN, PRIOR_STD)
    log_q = _log_density(POINT, CODE_MEAN, CODE_STD)
    sig = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
    unnormalized = (-(POINT - PRIOR_MEAN) ** 2 / (2 * PRIOR_STD ** 2)) - (-(POINT - CODE_MEAN) ** 2 / (2 * CODE_STD ** 2))
    diagnoses = [
        (1 - expected, "that is q / (p + q) = 1 - T*: you swapped p and q. T(z) is the probability that z came "
                       "from the prior (label 1), so the prior density is in the numerator."),
        (math.exp(log_p - log_q), "that is the density ratio p(z) / q(z), which can exceed 1; T* = p / (p + q) "
                                  "= sigmoid(log p - log q)."),
        (log_p - log_q, "that is the log-ratio log p(z) - log q(z), the optimal *logit*; apply the sigmoid to get "
                        "the probability T*(z)."),
        (sig(log_p - _log_density(POINT, CODE_MEAN, CODE_STD ** 2)),
         "you used 0.25 as the standard deviation of q; its standard deviation is 0.5 (variance 0.25)."),
        (sig(log_p - _log_density(POINT, CODE_MEAN, math.sqrt(CODE_STD))),
         "you used 0.5 as the variance of q; 0.5 is its standard deviation (q = N(2, 0.5^2))."),
        (sig(unnormalized), "you left out the normalizing constants 1 / (sqrt(2 pi) sigma); they cancel only when "
                            "the two standard deviations are equal, and here q's is half of p's."),
    ]
    name_mistake(value, diagnoses, rtol=1e-3, atol=1e-3)
    swapped = (" And p and q are swapped: T(z) is the probability of the prior (label 1), so p(z) belongs in the "
               "numerator.")
    name_mistake(value, [(1 - wrong, message + swapped) for wrong, message in diagnoses[3:]],  # the density mistakes
                 rtol=1e-3, atol=1e-3)                                                           # with p and q swapped
    if not 0 <= value <= 1:
        return Feedback(False, f"{value:.4g} is not a probability; T*(z) = p(z) / (p(z) + q(z)) lies in [0, 1].")
    return Feedback(False, f"{value:.4g} is not T*(1). Evaluate both Gaussian densities at z = 1 (q has standard "
                           "deviation 0.5) and form p / (p + q).")


@checker
def check_game_values(value_equal, js_disjoint, value_disjoint) -> Feedback:
    r"""Check three numbers in nats: V(T*, q) when q = p (-log 4), JS(q || p) when q and p have disjoint
    supports (log 2), and V(T*, q) then (2 log 2 - log 4 = 0). V(T*, q) = 2 JS(q || p) - log 4 (Goodfellow
    et al. 2014, Theorem 1).

    Diagnoses: logarithms in base 2 (-2, 1 bit), the discriminator's loss log 4 - 2 JS in place of the value,
    JS(q || p) = 0 at q = p taken for the value, an infinite JS (the KL to p is infinite, the KL to the
    mixture m is not), 2 JS in place of JS, the missing factor 2 (log 2 - log 4), and JS in bits mixed with
    log 4 in nats.
    """
    log2, log4 = math.log(2), math.log(4)
    equal = as_number(value_equal, "the value at q = p")
    if math.isinf(as_number(js_disjoint, "JS for disjoint supports", finite=False)):
        return Feedback(False, "JS of disjoint distributions is finite: KL(q || p) would be infinite, but JS measures "
                               "KL(q || m) and KL(p || m) to the mixture m = (p + q) / 2, which is positive wherever "
                               "q or p is; there q / m = 2.")
    js = as_number(js_disjoint, "JS for disjoint supports")
    disjoint = as_number(value_disjoint, "the value for disjoint supports")
    if not _close(equal, -log4):
        name_mistake(equal, [
            (-2.0, "-2 is -log_2 4: you used base-2 logarithms; the game is in nats (natural logs): -log 4."),
            (log4, "log 4 is the discriminator's loss at q = p (minus the value); the value V(T*, q) = "
                   "E_p[log T*] + E_q[log(1 - T*)] with T* = 1/2 is 2 log(1/2) = -log 4."),
            (0.0, "JS(q || p) = 0 at q = p, but the value is 2 JS - log 4 = -log 4, not 0."),
            (-log2, "with T* = 1/2 both expectations contribute log(1/2): the value is 2 log(1/2) = -log 4, "
                    "not -log 2."),
        ], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"the value at q = p is not {equal:.4g}: there T* = 1/2 everywhere, so "
                               "V = E_p[log 1/2] + E_q[log 1/2].")
    if not _close(js, log2):
        name_mistake(js, [
            (1.0, "1 is log_2 2, JS in bits; in nats (natural logs) it is log 2 = 0.693."),
            (log4, "log 4 is 2 JS; JS itself is (KL(q || m) + KL(p || m)) / 2 = (log 2 + log 2) / 2."),
            (0.0, "disjoint supports make JS maximal, not zero: where q > 0, m = q / 2, so "
                  "KL(q || m) = log 2, and likewise KL(p || m) = log 2."),
        ], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"JS for disjoint supports is not {js:.4g}: compute KL(q || m) and KL(p || m) with "
                               "m = (p + q) / 2, which is q / 2 where q lives and p / 2 where p lives.")
    if not _close(disjoint, 0.0):
        name_mistake(disjoint, [
            (log2 - log4, "you dropped the factor 2: V(T*, q) = 2 JS(q || p) - log 4 = 2 log 2 - log 4 = 0."),
            (2.0 - log4, "you mixed bases: 2 JS in bits (2) minus log 4 in nats. In nats, 2 log 2 - log 4 = 0."),
            (-log4, "-log 4 is the value at q = p, the minimum; disjoint supports give the maximum, "
                    "2 log 2 - log 4 = 0 (T* = 1 on p's support and 0 on q's: log 1 + log 1 = 0)."),
            (-log4 + 2 * log4, "you used 2 JS = 2 log 4; JS = log 2, so the value is 2 log 2 - log 4 = 0."),
        ], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"the value for disjoint supports is not {disjoint:.4g}: use V = 2 JS - log 4 with "
                               "your JS, or directly: T* = 1 on p's support and 0 on q's.")
    return Feedback(True, "-log 4 at q = p (the minimum), and 2 log 2 - log 4 = 0 for disjoint supports (the "
                          "maximum): V(T*, q) always lies in [-log 4, 0].")


def _inputs(seed: int = 0, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(batch, generator=gen), 3 * torch.randn(batch, generator=gen)


@checker
def check_discriminator_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check ``fn(prior_logits, code_logits) -> (B,)``: -log T(z') - log(1 - T(z)) per pair, in nats, from logits.

    Compared with :func:`ae_course.aae.discriminator_loss` (softplus(-s') + softplus(s)) on random float32
    logits, then on logits of +-100, where log(sigmoid(s)) computed naively is log 0 = -inf and an added
    epsilon caps the loss near -log(eps). Diagnoses: the labels swapped, the sign flipped (the value V in
    place of the loss), a missing term, a mean over the batch, base-2 logarithms, non-finite or capped
    values at extreme logits.
    """
    prior_logits, code_logits = _inputs()
    got = as_vector(call_learner(fn, prior_logits, code_logits), len(prior_logits), "your result", per="pair",
                    finite=False, mistakes=[((), "you returned a single number (a mean or sum over the batch); return "
                                                 "one loss per pair, shape (B,).")])
    expected = discriminator_loss(prior_logits, code_logits).double()
    softplus = torch.nn.functional.softplus
    if not close(got, expected, rtol=1e-4, atol=1e-4):
        name_mistake(got, [
            (softplus(prior_logits) + softplus(-code_logits),
             "you swapped the labels: the prior samples z' have label 1 (loss -log T(z')) and the codes label 0 "
             "(loss -log(1 - T(z)))."),
            (-expected, "the sign is flipped: that is the value log T(z') + log(1 - T(z)), which the discriminator "
                        "maximizes; its loss is the negative, a cross-entropy >= 0."),
            (softplus(-prior_logits), "only the prior term -log T(z') is there; add the codes' term -log(1 - T(z))."),
            (softplus(code_logits), "only the codes' term -log(1 - T(z)) is there; add the prior term -log T(z')."),
            (expected / math.log(2), "the values are in bits (base-2 logarithms); use natural logarithms (nats)."),
            (expected / 2, "the values are half the loss: sum the two cross-entropy terms, do not average them."),
        ], rtol=1e-4, atol=1e-4)
        if not torch.isfinite(got).all():
            return Feedback(False, "the loss is not finite even for moderate logits; compute it from the logits with "
                                   "softplus: -log sigmoid(s) = softplus(-s), -log(1 - sigmoid(s)) = softplus(s).")
        return Feedback(False, "values differ from -log T(z') - log(1 - T(z)) by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    extreme_prior = torch.tensor([-100.0, 100.0, -100.0, 0.0])
    extreme_code = torch.tensor([100.0, -100.0, -100.0, 100.0])
    with prefixed("right for moderate logits, but at logits of +-100: "):
        extreme = call_learner(fn, extreme_prior, extreme_code)
    reference = discriminator_loss(extreme_prior, extreme_code).double()
    if extreme.shape != reference.shape or not torch.isfinite(extreme).all():
        return Feedback(False, "right for moderate logits, but not finite at logits of +-100: in float32 "
                               "sigmoid(-100) rounds to 0 and log(0) = -inf. Compute from the logits: "
                               "-log sigmoid(s) = softplus(-s) and -log(1 - sigmoid(s)) = softplus(s).")
    if not close(extreme, reference, rtol=1e-4, atol=1e-4):
        return Feedback(False, f"right for moderate logits, but at logits of +-100 you get "
                               f"{[round(v, 2) + 0.0 for v in extreme.double().tolist()]} instead of "
                               f"{[round(v, 2) + 0.0 for v in reference.tolist()]}: an added epsilon or a clamp caps the "
                               "loss near -log(eps), so a confidently wrong discriminator is not told how wrong it "
                               "is. Use softplus, which needs no epsilon.")
    return Feedback(True, "matches softplus(-s') + softplus(s) and stays exact at logits of +-100.")


def saturating_gradient() -> float:
    """d/ds log(1 - sigmoid(s)) at s = -6, which is -sigmoid(-6), about -0.00247 (autograd on the package's loss)."""
    from ..aae import generator_loss
    logit = torch.tensor([REJECTING_LOGIT], dtype=torch.float64, requires_grad=True)
    generator_loss(logit, saturating=True).sum().backward()
    return logit.grad.item()


@checker
def check_saturating_gradient(answer) -> Feedback:
    r"""Check the derivative of the saturating generator loss log(1 - T(z)), T = sigmoid(s), with respect to the
    logit s at s = -6 (T rejects the code): -sigmoid(s) = -T, about -0.00247.

    Diagnoses: the non-saturating loss's derivative -(1 - T), the sign flipped, the derivative with respect
    to T (-1 / (1 - T)) instead of the logit, and T's own derivative T (1 - T). Tolerance 1e-3 relative
    (and 1e-6 absolute).
    """
    value = as_number(answer, "the derivative")
    d = 1.0 / (1.0 + math.exp(-REJECTING_LOGIT))
    expected = saturating_gradient()
    if close(value, expected, rtol=1e-3, atol=1e-6):
        return Feedback(True, f"d/ds log(1 - sigmoid(s)) = -sigmoid(s) = -T = {expected:.5f}: the gradient is as small "
                              "as T itself, so it vanishes exactly when the discriminator rejects the codes.")
    name_mistake(value, [
        (-(1 - d), "that is the derivative of the non-saturating loss -log T, which is -(1 - T); the saturating "
                   "loss log(1 - T) has derivative -T."),
        (d, "the sign is flipped: log(1 - sigmoid(s)) decreases as s grows, so its derivative is negative."),
        (-1 / (1 - d), "that is the derivative with respect to T, -1 / (1 - T); multiply by dT/ds = T (1 - T) to "
                       "get the derivative with respect to the logit."),
        (d * (1 - d), "that is dT/ds = T (1 - T), the sigmoid's derivative; multiply it by d log(1 - T)/dT = "
                      "-1 / (1 - T)."),
    ], rtol=1e-3, atol=1e-6)
    return Feedback(False, f"{value:.4g} is not the derivative. Write log(1 - sigmoid(s)) = -softplus(s) and "
                           "differentiate: softplus'(s) = sigmoid(s).")


# ------------------------------------------------------------------------------ the three phases, trained

PHASES = ("reconstruction", "discriminator", "generator")
_OWNS = {"reconstruction": ("encoder", "decoder"), "discriminator": ("discriminator",), "generator": ("encoder",)}



def _bare_model_class():
    """AdversarialAutoencoder without its three loss methods, so that the learner writes the phases."""
    from ..aae import AdversarialAutoencoder

    def refuse(name):
        def method(self, *args, **kwargs):
            raise AttributeError(f"the checker's model has no {name}: write this phase's loss yourself from "
                                 "model.encode, model.decode (or model(x)), model.discriminator and model.prior")
        return method

    return type("AdversarialAutoencoder", (AdversarialAutoencoder,), {
        "__doc__": "An AdversarialAutoencoder whose phase losses the learner writes.",
        "reconstruction_loss": refuse("reconstruction_loss"), "discriminator_loss": refuse("discriminator_loss"),
        "generator_loss": refuse("generator_loss")})


class _PhaseRecorder:
    """Hooks on every optimizer of a dict: for each step, in order, the optimizer's name, the gradients and the
    parameters just before the step (by parameter name)."""

    def __init__(self, model: torch.nn.Module, optimizers):
        self.model, self.steps, self.handles = model, [], []
        for name, optimizer in optimizers.items():
            self.handles.append(optimizer.register_step_pre_hook(
                lambda opt, args, kwargs, name=name: self._record(name)))

    def _record(self, name: str) -> None:
        self.steps.append({"optimizer": name,
                           "grads": {n: None if p.grad is None else p.grad.detach().clone()
                                     for n, p in self.model.named_parameters()},
                           "params": {n: p.detach().clone() for n, p in self.model.named_parameters()}})

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _owned(grads: dict, phase: str) -> torch.Tensor:
    """The gradients of the parameters `phase` updates, flattened into one vector (None counts as zeros)."""
    return torch.cat([torch.zeros(1) if g is None else g.flatten() for n, g in grads.items()
                      if n.split(".")[0] in _OWNS[phase]]).double()


def _reached(grads: dict) -> list[str]:
    """The top-level modules with a nonzero gradient."""
    modules = []
    for name, g in grads.items():
        module = name.split(".")[0]
        if g is not None and g.abs().sum() > 0 and module not in modules:
            modules.append(module)
    return modules


def _phase_candidates(phase: str) -> list[tuple[Callable, str]]:
    """(loss(model, x, z_prior), message) for the typical mistakes of a phase; each loss is a scalar."""
    softplus = torch.nn.functional.softplus
    recon = lambda m, x, zp: -m.log_likelihood(x, m.decode(m.encode(x)))  # noqa: E731
    prior_s = lambda m, x, zp: m.discriminator(zp)  # noqa: E731
    code_s = lambda m, x, zp: m.discriminator(m.encode(x).detach())  # noqa: E731
    encoder_s = lambda m, x, zp: m.discriminator(m.encode(x))  # noqa: E731
    summed = ("a sum over the batch; adversarial_step takes the mean, so the gradient (and Adam's step size "
              "relative to its epsilon) does not grow with the batch size.")
    if phase == "reconstruction":
        return [(lambda m, x, zp: recon(m, x, zp).mean() / x.shape[1],
                 "the reconstruction loss is a mean over pixels; -log p(x|z) is a *sum* over the D pixels (then a "
                 "mean over the batch)."),
                (lambda m, x, zp: recon(m, x, zp).sum(), "the reconstruction loss is " + summed),
                (lambda m, x, zp: ((torch.sigmoid(m.decode(m.encode(x))) - x) ** 2).sum(1).mean() / 2,
                 "the reconstruction loss is a squared error; the decoder's pixels are Bernoulli: -log p(x|z) = "
                 "sum_i [softplus(l_i) - x_i l_i] from its logits l.")]
    if phase == "discriminator":
        return [(lambda m, x, zp: (softplus(prior_s(m, x, zp)) + softplus(-code_s(m, x, zp))).mean(),
                 "the labels are swapped: prior samples z' are labelled 1 (loss -log T(z') = softplus(-s(z'))) and "
                 "codes 0 (loss -log(1 - T(z)) = softplus(s(z))); with prior = 0 the discriminator learns to call "
                 "the codes 'prior' and the game runs backwards."),
                (lambda m, x, zp: -(softplus(-prior_s(m, x, zp)) + softplus(code_s(m, x, zp))).mean(),
                 "the discriminator's loss has the wrong sign: it *descends* the cross-entropy softplus(-s(z')) + "
                 "softplus(s(z)), which is ascending the value V."),
                (lambda m, x, zp: (softplus(-prior_s(m, x, zp)) + softplus(code_s(m, x, zp))).sum(),
                 "the discriminator's loss is " + summed)]
    return [(lambda m, x, zp: -softplus(encoder_s(m, x, zp)).mean(),
             "that is the saturating generator loss log(1 - T(z)) = -softplus(s(z)) (the minimax form, or minus "
             "the discriminator's loss): its gradient is -T(z), which vanishes while the discriminator rejects "
             "the codes. Use the non-saturating -log T(z) = softplus(-s(z)) (Goodfellow et al. 2014, section 3)."),
            (lambda m, x, zp: softplus(encoder_s(m, x, zp)).mean(),
             "the generator loss pushes the codes *away* from the prior: it is the discriminator's own loss on the "
             "codes, -log(1 - T(z)); the encoder wants T(z) = 1: minimize -log T(z) = softplus(-s(z))."),
            (lambda m, x, zp: softplus(-encoder_s(m, x, zp)).sum(), "the generator loss is " + summed)]


def _candidate_gradients(model_class, config: dict, params: dict, loss, x: torch.Tensor, z_prior: torch.Tensor,
                         phase: str) -> torch.Tensor:
    scratch = model_class(**config)
    scratch.load_state_dict(params)
    loss(scratch, x, z_prior).backward()
    return _owned({n: p.grad for n, p in scratch.named_parameters()}, phase)


def _signature_hint(err: Exception) -> str:
    if isinstance(err, TypeError) and "positional argument" in str(err):
        return (". ae_course.train calls step(model, optimizers, x, y) with y = None for unlabelled data: "
                "define def step(model, optimizers, x, y=None).")
    return ""


def _aae_config(input_dim: int) -> dict:
    return dict(input_dim=input_dim, latent_dim=2, hidden=(128,), discriminator_hidden=(64, 64))


@checker
def check_adversarial_step(step: Callable, x: torch.Tensor | None = None, steps: int = 200,
                           batch_size: int = 100, seed: int = 0, time_limit: float = 60.0,
                           warmup: int = 20) -> Feedback:
    r"""Check ``step(model, optimizers, x, y=None) -> dict`` of losses: one minibatch of AAE training, the three
    phases of :func:`ae_course.aae.adversarial_step` (Makhzani et al. 2016, section 2), usable as
    ``ae_course.train(model, x, step=step)``.

    The model is an ``AdversarialAutoencoder(latent_dim=2, hidden=(128,), discriminator_hidden=(64, 64))``
    without its three loss methods (the learner writes the losses from ``model.encode``, ``model.decode``,
    ``model.discriminator`` and ``model.prior``); `optimizers` is :func:`ae_course.aae.make_optimizers`'s dict.
    Two stages, on x (default: the first 10,000 MNIST training digits), dynamically binarized:

    1. after `warmup` steps of the package's step, one minibatch from the same state and seed through both
       steps, with hooks on the optimizers that record, at each optimizer step, its name and every gradient.
       Names: no optimizer stepped, the reconstruction phase skipped, optimizers stepping in another order or
       another phase's parameters, the codes not detached in the discriminator phase (the encoder receives a
       gradient), and per phase the first gradient that differs from adversarial_step's, compared with the
       typical mistakes: labels swapped (prior = 0), the discriminator's loss with the wrong sign, the saturating
       or reversed generator loss, a mean over pixels, a squared error, a sum over the batch; then the returned
       losses (a dict of the three phases' detached mean losses, as adversarial_step returns).
    2. `steps` steps from a fresh model with :func:`ae_course.train` (same seed), once with the learner's step
       and once with adversarial_step: the last epoch's mean loss of each phase must agree to 1e-3 (relative),
       and the learner's run stops after `time_limit` seconds of wall-clock time (Not yet, then).
    """
    from ..aae import AdversarialAutoencoder, adversarial_step, make_optimizers
    from ..data import binarize_dynamic, binarize_static, load_mnist
    from ..training import train

    if x is None:
        x = load_mnist("train").images[:10_000]
    config, bare = _aae_config(x.shape[1]), _bare_model_class()
    torch.manual_seed(seed)
    reference = AdversarialAutoencoder(**config)
    reference_optimizers = make_optimizers(reference)
    train(reference, x, steps=warmup, batch_size=batch_size, seed=seed, transform=binarize_dynamic,
          optimizers=reference_optimizers, device="cpu", progress=False)
    learner = bare(**config)
    learner.load_state_dict(reference.state_dict())
    learner_optimizers = make_optimizers(learner)
    for name, optimizer in learner_optimizers.items():
        optimizer.load_state_dict(copy.deepcopy(reference_optimizers[name].state_dict()))  # no shared state
    xb = binarize_static(x[:batch_size], seed=seed)

    ours, theirs = _PhaseRecorder(reference, reference_optimizers), _PhaseRecorder(learner, learner_optimizers)
    torch.manual_seed(seed + 1)
    expected = adversarial_step(reference, reference_optimizers, xb)
    torch.manual_seed(seed + 1)
    try:
        got = call_learner(step, learner, learner_optimizers, xb, None, call="your step", returns=dict,
                           expect="a dict of the losses of the three phases", when=" on one minibatch",
                           hint=_signature_hint)
    finally:
        ours.remove()
        theirs.remove()
    torch.manual_seed(seed + 1)
    z_prior = learner.prior.sample(len(xb))

    order = [record["optimizer"] for record in theirs.steps]
    if not order:
        return Feedback(False, "none of the optimizers in `optimizers` took a step: each phase updates through its "
                               "own optimizers[phase] (update(model, optimizers['reconstruction'], loss), ...). "
                               "An optimizer built inside the step would lose Adam's state at every call.")
    if "reconstruction" not in order:
        return Feedback(False, "the reconstruction phase is missing (optimizers['reconstruction'] never stepped): "
                               "without it the decoder never learns and the encoder's codes carry no information "
                               "about x; the adversarial phases alone only shape the distribution of the codes.")
    if tuple(order) != PHASES:
        return Feedback(False, f"the optimizers stepped in the order {order}; expected reconstruction, "
                               "discriminator, generator, each once. Each phase steps its own optimizer, which "
                               "holds exactly the parameters that phase may change: 'reconstruction' the encoder "
                               "and decoder, 'discriminator' the discriminator, 'generator' the encoder only.")
    for phase, mine, yours in zip(PHASES, ours.steps, theirs.steps):
        if phase == "discriminator" and "encoder" in _reached(yours["grads"]):
            return Feedback(False, "in the discriminator phase the gradient reached the encoder: the codes were "
                                   "not detached (compute them under torch.no_grad() or with .detach()). The "
                                   "discriminator's loss would otherwise be backpropagated through the encoder, "
                                   "wasted work at best, and with any gradient left on the encoder, a push "
                                   "to make the codes *easier* to tell from the prior.")
        expected_grad, got_grad = _owned(mine["grads"], phase), _owned(yours["grads"], phase)
        if close(got_grad, expected_grad, rtol=1e-3, atol=1e-6):
            continue
        for loss, message in _phase_candidates(phase):
            candidate = _candidate_gradients(bare, config, yours["params"], loss, xb, z_prior, phase)
            if close(got_grad, candidate, rtol=1e-3, atol=1e-6):
                return Feedback(False, f"{phase} phase: {message}")
        hint = {"reconstruction": "its loss is the mean over the batch of -log p(x|z), z = model.encode(x), summed "
                                  "over pixels (model.log_likelihood(x, model.decode(z)) gives log p(x|z)).",
                "discriminator": "draw the prior samples with model.prior.sample(len(x), device=x.device), once per "
                                 "step, and take the mean of softplus(-s(z')) + softplus(s(z)) over the batch.",
                "generator": "its loss is the mean over the batch of softplus(-s(model.encode(x))). Zero the "
                             "model's gradients before each backward (update does), or an earlier phase's "
                             "gradients are added to this one's."}[phase]
        return Feedback(False, f"the {phase} phase's gradient differs from adversarial_step's by up to "
                               f"{max_difference(got_grad, expected_grad):.3g}: {hint}")
    missing = [phase for phase in PHASES if phase not in got]
    if missing:
        return Feedback(False, f"the updates are right, but the returned dict has no {', '.join(missing)}: return "
                               "{'reconstruction': ..., 'discriminator': ..., 'generator': ...}, each phase's mean "
                               "loss (ae_course.train averages them per epoch).")
    for phase in PHASES:
        value = got[phase]
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            what = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                    else f"a {type(value).__name__}")
            return Feedback(False, f"the updates are right, but the returned {phase} loss is {what}: return each "
                                   "phase's mean loss as a 0-d tensor, detached, as update returns it "
                                   "(ae_course.train adds them up per epoch).")
        if not close(value.detach(), expected[phase], rtol=1e-4, atol=1e-5):
            return Feedback(False, f"the updates are right, but the returned {phase} loss is {value.item():.4f}, "
                                   f"not the mean loss that phase minimized, {expected[phase].item():.4f}.")
    return _train_both_aae(step, bare, config, x, steps=steps, batch_size=batch_size, seed=seed,
                           time_limit=time_limit)


def _train_both_aae(step: Callable, bare, config: dict, x: torch.Tensor, *, steps: int, batch_size: int,
                    seed: int, time_limit: float) -> Feedback:
    """Train a fresh model with adversarial_step and a copy with the learner's step, same seed; compare."""
    from ..aae import AdversarialAutoencoder
    from ..data import binarize_dynamic
    from ..training import train

    torch.manual_seed(seed)
    reference = AdversarialAutoencoder(**config)
    learner = bare(**config)
    learner.load_state_dict(reference.state_dict())

    def your_step(model, optimizers, xb, yb=None):
        return call_learner(step, model, optimizers, xb, yb, call="your step", returns=dict,
                            expect="a dict of the losses of the three phases", when=" during training")

    settings = dict(steps=steps, batch_size=batch_size, seed=seed, transform=binarize_dynamic, device="cpu",
                    progress=False)
    start = time.perf_counter()
    ours = train(reference, x, **settings)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        yours = train(learner, x, step=with_deadline(your_step, time_limit), **settings)
    except OutOfTime:
        return Feedback(False, f"one step is right, but {steps} training steps with your step took more than "
                               f"{time_limit:.0f} s (adversarial_step: {ours_seconds:.1f} s).")
    except FloatingPointError as err:
        return Feedback(False, f"one step is right, but training with your step stopped: {err}")
    yours_seconds = time.perf_counter() - start
    last = {phase: (yours.losses[phase][-1], ours.losses[phase][-1]) for phase in PHASES}
    off = [f"{phase} {a:.4f} instead of {b:.4f}" for phase, (a, b) in last.items() if not close(a, b, 1e-3, 0.0)]
    if off:
        return Feedback(False, f"one step is right, but after {steps} steps the last epoch's mean losses differ: "
                               + "; ".join(off) + ".")
    difference = max((a - b).abs().max().item() for a, b in zip(learner.parameters(), reference.parameters()))
    largest = max(abs(a - b) for a, b in last.values())
    same = ("bit for bit the same parameters" if difference == 0 else
            f"the same up to rounding: the losses differ by at most {largest:.1e} nats")
    return Feedback(True, f"each phase steps its own optimizer with adversarial_step's gradients, and {steps} "
                          f"steps on {len(x):,} digits with your step ({yours_seconds:.1f} s) end where "
                          f"adversarial_step's do ({same}): last epoch's mean losses reconstruction "
                          f"{last['reconstruction'][0]:.2f}, discriminator {last['discriminator'][0]:.3f}, "
                          f"generator {last['generator'][0]:.3f} nats.")
