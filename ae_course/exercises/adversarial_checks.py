"""Checkers for the exercises of the chapter "Adversarial regularization" (the GAN game in code space)."""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch.distributions import Normal

from ..aae import discriminator_loss, optimal_discriminator
from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, name_mistake,
                       prefixed)

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
    """D*(z) = p(z) / (p(z) + q(z)) for p = N(0, 1), q = N(2, 0.5^2) at z = 1 (about 0.691).

    Computed with :func:`ae_course.aae.optimal_discriminator` from torch.distributions log-densities.
    """
    log_p = torch.tensor([_log_density(POINT, PRIOR_MEAN, PRIOR_STD)], dtype=torch.float64)
    log_q = torch.tensor([_log_density(POINT, CODE_MEAN, CODE_STD)], dtype=torch.float64)
    return optimal_discriminator(log_p, log_q).item()


@checker
def check_optimal_discriminator(answer) -> Feedback:
    r"""Check D*(z) at z = 1 for the prior p = N(0, 1) (label 1) and the codes q = N(2, 0.5^2) (label 0).

    D*(z) = p(z) / (p(z) + q(z)) (Goodfellow et al. 2014, Proposition 1), about 0.691. Diagnoses: p and q
    swapped (1 - D*), the density ratio p/q or the log-ratio without the sigmoid, 0.5^2 read as the standard
    deviation (variance 0.0625) or 0.5 read as the variance, and densities without their normalizing
    1 / (sqrt(2 pi) sigma) (which matters because the two standard deviations differ). Tolerance 1e-3.
    """
    value = as_number(answer, "D*(1)")
    expected = optimal_discriminator_at_point()
    if _close(value, expected):
        return Feedback(True, f"D*(1) = p(1) / (p(1) + q(1)) = {expected:.4f}: a point of the prior is a bit more "
                              "likely than a code there, so D leans towards 'prior'.")
    log_p = _log_density(POINT, PRIOR_MEAN, PRIOR_STD)
    log_q = _log_density(POINT, CODE_MEAN, CODE_STD)
    sig = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
    unnormalized = (-(POINT - PRIOR_MEAN) ** 2 / (2 * PRIOR_STD ** 2)) - (-(POINT - CODE_MEAN) ** 2 / (2 * CODE_STD ** 2))
    diagnoses = [
        (1 - expected, "that is q / (p + q) = 1 - D*: you swapped p and q. D(z) is the probability that z came "
                       "from the prior (label 1), so the prior density is in the numerator."),
        (math.exp(log_p - log_q), "that is the density ratio p(z) / q(z), which can exceed 1; D* = p / (p + q) "
                                  "= sigmoid(log p - log q)."),
        (log_p - log_q, "that is the log-ratio log p(z) - log q(z), the optimal *logit*; apply the sigmoid to get "
                        "the probability D*(z)."),
        (sig(log_p - _log_density(POINT, CODE_MEAN, CODE_STD ** 2)),
         "you used 0.25 as the standard deviation of q; its standard deviation is 0.5 (variance 0.25)."),
        (sig(log_p - _log_density(POINT, CODE_MEAN, math.sqrt(CODE_STD))),
         "you used 0.5 as the variance of q; 0.5 is its standard deviation (q = N(2, 0.5^2))."),
        (sig(unnormalized), "you left out the normalizing constants 1 / (sqrt(2 pi) sigma); they cancel only when "
                            "the two standard deviations are equal, and here q's is half of p's."),
    ]
    name_mistake(value, diagnoses, rtol=1e-3, atol=1e-3)
    swapped = (" And p and q are swapped: D(z) is the probability of the prior (label 1), so p(z) belongs in the "
               "numerator.")
    name_mistake(value, [(1 - wrong, message + swapped) for wrong, message in diagnoses[3:]],  # the density mistakes
                 rtol=1e-3, atol=1e-3)                                                           # with p and q swapped
    if not 0 <= value <= 1:
        return Feedback(False, f"{value:.4g} is not a probability; D*(z) = p(z) / (p(z) + q(z)) lies in [0, 1].")
    return Feedback(False, f"{value:.4g} is not D*(1). Evaluate both Gaussian densities at z = 1 (q has standard "
                           "deviation 0.5) and form p / (p + q).")


@checker
def check_game_values(value_equal, js_disjoint, value_disjoint) -> Feedback:
    r"""Check three numbers in nats: V(D*, q) when q = p (-log 4), JS(q || p) when q and p have disjoint
    supports (log 2), and V(D*, q) then (2 log 2 - log 4 = 0). V(D*, q) = 2 JS(q || p) - log 4 (Goodfellow
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
            (log4, "log 4 is the discriminator's loss at q = p (minus the value); the value V(D*, q) = "
                   "E_p[log D*] + E_q[log(1 - D*)] with D* = 1/2 is 2 log(1/2) = -log 4."),
            (0.0, "JS(q || p) = 0 at q = p, but the value is 2 JS - log 4 = -log 4, not 0."),
            (-log2, "with D* = 1/2 both expectations contribute log(1/2): the value is 2 log(1/2) = -log 4, "
                    "not -log 2."),
        ], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"the value at q = p is not {equal:.4g}: there D* = 1/2 everywhere, so "
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
            (log2 - log4, "you dropped the factor 2: V(D*, q) = 2 JS(q || p) - log 4 = 2 log 2 - log 4 = 0."),
            (2.0 - log4, "you mixed bases: 2 JS in bits (2) minus log 4 in nats. In nats, 2 log 2 - log 4 = 0."),
            (-log4, "-log 4 is the value at q = p, the minimum; disjoint supports give the maximum, "
                    "2 log 2 - log 4 = 0 (D* = 1 on p's support and 0 on q's: log 1 + log 1 = 0)."),
            (-log4 + 2 * log4, "you used 2 JS = 2 log 4; JS = log 2, so the value is 2 log 2 - log 4 = 0."),
        ], rtol=1e-3, atol=1e-3)
        return Feedback(False, f"the value for disjoint supports is not {disjoint:.4g}: use V = 2 JS - log 4 with "
                               "your JS, or directly: D* = 1 on p's support and 0 on q's.")
    return Feedback(True, "-log 4 at q = p (the minimum), and 2 log 2 - log 4 = 0 for disjoint supports (the "
                          "maximum): V(D*, q) always lies in [-log 4, 0].")


def _inputs(seed: int = 0, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(batch, generator=gen), 3 * torch.randn(batch, generator=gen)


@checker
def check_discriminator_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    r"""Check ``fn(prior_logits, code_logits) -> (B,)``: -log D(z') - log(1 - D(z)) per pair, in nats, from logits.

    Compared with :func:`ae_course.aae.discriminator_loss` (softplus(-l') + softplus(l)) on random float32
    logits, then on logits of +-100, where log(sigmoid(l)) computed naively is log 0 = -inf and an added
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
             "you swapped the labels: the prior samples z' have label 1 (loss -log D(z')) and the codes label 0 "
             "(loss -log(1 - D(z)))."),
            (-expected, "the sign is flipped: that is the value log D(z') + log(1 - D(z)), which the discriminator "
                        "maximizes; its loss is the negative, a cross-entropy >= 0."),
            (softplus(-prior_logits), "only the prior term -log D(z') is there; add the codes' term -log(1 - D(z))."),
            (softplus(code_logits), "only the codes' term -log(1 - D(z)) is there; add the prior term -log D(z')."),
            (expected / math.log(2), "the values are in bits (base-2 logarithms); use natural logarithms (nats)."),
            (expected / 2, "the values are half the loss: sum the two cross-entropy terms, do not average them."),
        ], rtol=1e-4, atol=1e-4)
        if not torch.isfinite(got).all():
            return Feedback(False, "the loss is not finite even for moderate logits; compute it from the logits with "
                                   "softplus: -log sigmoid(l) = softplus(-l), -log(1 - sigmoid(l)) = softplus(l).")
        return Feedback(False, "values differ from -log D(z') - log(1 - D(z)) by up to "
                               f"{max_difference(got, expected):.4g} nats.")
    extreme_prior = torch.tensor([-100.0, 100.0, -100.0, 0.0])
    extreme_code = torch.tensor([100.0, -100.0, -100.0, 100.0])
    with prefixed("right for moderate logits, but at logits of +-100: "):
        extreme = call_learner(fn, extreme_prior, extreme_code)
    reference = discriminator_loss(extreme_prior, extreme_code).double()
    if extreme.shape != reference.shape or not torch.isfinite(extreme).all():
        return Feedback(False, "right for moderate logits, but not finite at logits of +-100: in float32 "
                               "sigmoid(-100) rounds to 0 and log(0) = -inf. Compute from the logits: "
                               "-log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).")
    if not close(extreme, reference, rtol=1e-4, atol=1e-4):
        return Feedback(False, f"right for moderate logits, but at logits of +-100 you get "
                               f"{[round(v, 2) + 0.0 for v in extreme.double().tolist()]} instead of "
                               f"{[round(v, 2) + 0.0 for v in reference.tolist()]}: an added epsilon or a clamp caps the "
                               "loss near -log(eps), so a confidently wrong discriminator is not told how wrong it "
                               "is. Use softplus, which needs no epsilon.")
    return Feedback(True, "matches softplus(-l') + softplus(l) and stays exact at logits of +-100.")


def saturating_gradient() -> float:
    """d/dl log(1 - sigmoid(l)) at l = -6, which is -sigmoid(-6), about -0.00247 (autograd on the package's loss)."""
    from ..aae import generator_loss
    logit = torch.tensor([REJECTING_LOGIT], dtype=torch.float64, requires_grad=True)
    generator_loss(logit, saturating=True).sum().backward()
    return logit.grad.item()


@checker
def check_saturating_gradient(answer) -> Feedback:
    r"""Check the derivative of the saturating generator loss log(1 - D(z)), D = sigmoid(l), with respect to the
    logit l at l = -6 (D rejects the code): -sigmoid(l) = -D, about -0.00247.

    Diagnoses: the non-saturating loss's derivative -(1 - D), the sign flipped, the derivative with respect
    to D (-1 / (1 - D)) instead of the logit, and D's own derivative D (1 - D). Tolerance 1e-3 relative
    (and 1e-6 absolute).
    """
    value = as_number(answer, "the derivative")
    d = 1.0 / (1.0 + math.exp(-REJECTING_LOGIT))
    expected = saturating_gradient()
    if close(value, expected, rtol=1e-3, atol=1e-6):
        return Feedback(True, f"d/dl log(1 - sigmoid(l)) = -sigmoid(l) = -D = {expected:.5f}: the gradient is as small "
                              "as D itself, so it vanishes exactly when the discriminator rejects the codes.")
    name_mistake(value, [
        (-(1 - d), "that is the derivative of the non-saturating loss -log D, which is -(1 - D); the saturating "
                   "loss log(1 - D) has derivative -D."),
        (d, "the sign is flipped: log(1 - sigmoid(l)) decreases as l grows, so its derivative is negative."),
        (-1 / (1 - d), "that is the derivative with respect to D, -1 / (1 - D); multiply by dD/dl = D (1 - D) to "
                       "get the derivative with respect to the logit."),
        (d * (1 - d), "that is dD/dl = D (1 - D), the sigmoid's derivative; multiply it by d log(1 - D)/dD = "
                      "-1 / (1 - D)."),
    ], rtol=1e-3, atol=1e-6)
    return Feedback(False, f"{value:.4g} is not the derivative. Write log(1 - sigmoid(l)) = -softplus(l) and "
                           "differentiate: softplus'(l) = sigmoid(l).")
