r"""Checkers for the exercises of the chapter "Comparing the family".

* :func:`check_class_balance`: KL(h || uniform) in nats of the histogram h of the classes a classifier
  predicts for a set of samples (:func:`ae_course.sample_quality.class_balance`);
* :func:`check_likelihood_models`: which of the five models are trained on a bound of a log-likelihood
  and come with their own importance-sampling proposal q(z|x) (Burda, Grosse & Salakhutdinov 2016);
* :func:`check_inception_score`: the Inception-score formula exp(E_x KL(p(y|x) || p(y))) of Salimans et
  al. (2016, section 4), from a matrix of predicted class probabilities;
* :func:`check_elbo_gap`: the gap between a VAE's test -ELBO and its importance-sampled NLL, read off the
  chapter's table;
* :func:`check_active_units_function`: a learner's ``active_units(model, x, threshold=0.01)``, the number of
  latent coordinates j with Var_x(E_q[z_j | x]) > threshold (Burda, Grosse & Salakhutdinov 2016, section 5.2),
  run on a linear VAE built so that each typical mistake gives its own count, and on trained models, against
  :func:`ae_course.evaluation.active_units`.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Callable

import numpy as np
import torch
from scipy.special import xlogy

from ..evaluation import active_units
from ..sample_quality import class_balance, classifier_scores
from ..vae import VAE
from .feedback import Feedback, as_number, call_learner, checker, close, name_mistake, prefixed

__all__ = ["MODELS", "check_class_balance", "check_likelihood_models", "check_inception_score", "check_elbo_gap",
           "check_active_units_function"]

#: The five models of the chapter, by the names the checkers accept.
MODELS = ("AE", "DAE", "VAE", "CVAE", "AAE")


_close = functools.partial(close, rtol=1e-3, atol=1e-6)


@checker
def check_class_balance(answer, counts) -> Feedback:
    r"""Check `answer` = KL(h || uniform) = sum_y h_y log(C h_y), in nats, for the class counts `counts` (C,).

    h = counts / counts.sum(); empty classes contribute 0 (0 log 0 = 0). Names the typical mistakes: the
    entropy H(h) instead of log C - H(h), a logarithm in base 2, unnormalized counts, the reversed divergence
    KL(uniform || h) (infinite when a class is empty), the normalized entropy H(h) / log C or one minus it,
    the fraction of the most frequent class, and a NaN from log 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.size
    h = counts / counts.sum()
    balance = class_balance(counts)
    expected, entropy = balance["kl_to_uniform"], balance["class_entropy"]
    value = as_number(answer, "the KL divergence", finite=False, several=": sum h_y log(C h_y) over the classes",
                      none="answer is None: compute h = counts / counts.sum(), then sum_y h_y log(C h_y) over the "
                           "classes with h_y > 0.")
    if not math.isfinite(value):
        if (counts == 0).any():
            return Feedback(False, f"your answer is {value}. Some class is never predicted (h_y = 0): either you took "
                                   "log 0 (use the convention 0 log 0 = 0, e.g. scipy.special.xlogy or sum only over "
                                   "h_y > 0), or you computed KL(uniform || h), which is infinite when a class is "
                                   "missing. The balance score is KL(h || uniform) = sum_y h_y log(C h_y).")
        return Feedback(False, f"your answer is {value}; it should be a finite number of nats.")
    if _close(value, expected):
        return Feedback(True, f"KL(h || uniform) = {expected:.4f} nats = log {k} - H(h) = {math.log(k):.4f} - "
                              f"{entropy:.4f}; 0 would be a perfectly balanced set of samples.")
    if _close(value, expected / math.log(2)):
        return Feedback(False, "that is the divergence in bits (log base 2); the book's unit is the nat: use the "
                               "natural logarithm.")
    diagnoses = [
        (entropy, f"that is the entropy H(h) of the histogram ({entropy:.4f} nats), which is *largest* for a "
                  f"balanced set. The divergence from uniform is log C - H(h)."),
        (entropy / math.log(2), "that is the entropy H(h), in bits; the divergence from uniform is log C - H(h), "
                                "in nats."),
        (-expected, "the sign is flipped: KL(h || uniform) = sum_y h_y log(h_y / (1/C)) is >= 0."),
        (math.log(k) + entropy, "you added the entropy: KL(h || uniform) = log C - H(h)."),
        (entropy / math.log(k), "that is the normalized entropy H(h) / log C; the question asks for the KL "
                                "divergence in nats, log C - H(h)."),
        (1 - entropy / math.log(k), "that is 1 - H(h) / log C, a normalized score; the question asks for the KL "
                                    "divergence in nats, log C - H(h)."),
        (float(h.max()), "that is the fraction of the most frequent class, another balance score; the question "
                         "asks for KL(h || uniform) in nats."),
        (float(xlogy(counts, k * counts).sum()), "you used the raw counts instead of the fractions: normalize "
                                                 "h = counts / counts.sum() first."),
    ]
    if (counts > 0).all():
        reverse = float(np.sum(np.log((1 / k) / h)) / k)
        diagnoses.append((reverse, "that is KL(uniform || h), the divergence in the other direction (it is "
                                   "infinite as soon as one class is never predicted). Use KL(h || uniform) = "
                                   "sum_y h_y log(C h_y)."))
    name_mistake(value, diagnoses, rtol=1e-3, atol=1e-6)
    return Feedback(False, f"expected KL(h || uniform) = sum_y h_y log(C h_y) with h = counts / counts.sum(), "
                           f"in nats; got {value:.6g}.")


@checker
def check_likelihood_models(answer) -> Feedback:
    r"""Check `answer`, the set of models among :data:`MODELS` that are trained by maximizing a lower bound
    on a log-likelihood (the ELBO) and whose encoder is a distribution q(z|x) that serves as the
    importance-sampling proposal for that likelihood. The right answer is {"VAE", "CVAE"} (the CVAE's is the
    conditional log p(x|y)). Accepts any iterable of names, case-insensitive. Explains the mistakes: the
    AE and DAE have no prior (a Gaussian fitted afterwards is our addition, not the model's); the AAE has a
    prior and a Bernoulli decoder, so p(x) exists, but it is trained on no bound of it and its encoder is
    deterministic; leaving out the CVAE.
    """
    if isinstance(answer, str) or answer is None:
        return Feedback(False, "answer with a set of model names, e.g. {\"AE\", \"VAE\"}, chosen from "
                               + ", ".join(MODELS) + ".")
    try:
        items = list(answer)
    except Exception:  # not iterable, or a learner's object that fails when iterated
        return Feedback(False, f"answer with a set of model names, got {type(answer).__name__}.")
    if not all(isinstance(item, str) for item in items):
        return Feedback(False, "the set should hold model names (strings) from " + ", ".join(MODELS) + ".")
    names = {item.strip().upper() for item in items}
    unknown = names - set(MODELS)
    if unknown:
        return Feedback(False, f"unknown model name(s) {sorted(unknown)}; choose from " + ", ".join(MODELS) + ".")
    expected = {"VAE", "CVAE"}
    if names == expected:
        return Feedback(True, "the VAE and the conditional VAE maximize the ELBO of log p(x) and of log p(x|y); "
                              "their encoders q(z|x) (q(z|x, y)) are the proposals of the importance-sampled "
                              "estimate. For the others the chapter had to *add* a proposal, and for the AE and DAE "
                              "a prior.")
    messages = []
    if names & {"AE", "DAE"}:
        messages.append("the AE and the DAE have no prior p(z): they define no distribution over images. The "
                        "Gaussian fitted to their codes after training is our addition, and their loss is a "
                        "reconstruction error, not a bound on log p(x).")
    if "AAE" in names:
        messages.append("the AAE does have a prior and a Bernoulli decoder, so log p(x) = log E_p(z)[p(x|z)] "
                        "exists; but it is trained on the reconstruction error plus a GAN game, not on a bound "
                        "of log p(x), and its encoder is deterministic: a point mass has KL = infinity to the "
                        "prior (its ELBO is -infinity) and is no importance-sampling proposal.")
    if "VAE" not in names:
        messages.append("the VAE is missing: it maximizes the ELBO, a lower bound on log p(x), and its q(z|x) "
                        "is the proposal of the importance-sampled estimate.")
    if "CVAE" not in names:
        messages.append("the conditional VAE is missing: it maximizes the ELBO of the conditional likelihood "
                        "log p(x|y), a likelihood too, with q(z|x, y) as its proposal.")
    return Feedback(False, " Also, ".join(messages))


def _inception(p: np.ndarray) -> float:
    return float(classifier_scores(p)["inception_score"])


@checker
def check_inception_score(fn: Callable[[np.ndarray], float]) -> Feedback:
    r"""Check `fn(probabilities) -> float`: exp(mean_i KL(p(y|x_i) || p(y))) with p(y) = mean_i p(y|x_i).

    probabilities: a NumPy array (N, C) whose rows are the classifier's predictions (some with exact zeros).
    Salimans et al. 2016, section 4. Names the typical mistakes: the exponential missing, the marginal taken
    from the histogram of argmax predictions, the divergence reversed, logarithms in base 2, one value per
    sample instead of the mean, the exponential of the mean entropy, and NaN from 0 log 0.
    """
    gen = np.random.default_rng(0)
    logits = 2.5 * gen.normal(size=(300, 10)) + 2.0 * np.eye(10)[gen.integers(0, 4, size=300)]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[:5] = np.eye(10)[[0, 1, 2, 0, 1]]                    # confident predictions: exact zeros
    expected = _inception(p)
    value = as_number(call_learner(fn, p, returns=(numbers.Number, np.ndarray, np.generic, torch.Tensor),
                                   expect="a number"),
                      "your function's result", finite=False, several=": the score is one number, the exponential "
                      "of the MEAN over samples of KL(p(y|x_i) || p(y))")
    if math.isnan(value):
        return Feedback(False, "your function returned NaN: some predictions have p(y|x) = 0 exactly, and "
                               "0 * log 0 is NaN in floating point. Use the convention 0 log 0 = 0 "
                               "(scipy.special.xlogy or scipy.stats.entropy).")
    if math.isinf(value):
        return Feedback(False, "your function returned infinity: probably KL(p(y) || p(y|x_i)), the divergence "
                               "reversed, which is infinite when a prediction gives some class probability 0. Use "
                               "KL(p(y|x_i) || p(y)), the prediction for the sample first.")
    if _close(value, expected):
        return Feedback(True, f"Inception score {expected:.4f}, between 1 (every sample predicted alike, or no sample "
                              "confidently anything) and C = 10 (confident and balanced).")
    marginal = p.mean(axis=0)
    per_sample = -xlogy(p, p).sum(axis=1)
    mean_kl = float(-xlogy(marginal, marginal).sum() - per_sample.mean())
    hist = np.bincount(p.argmax(axis=1), minlength=10) / len(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_hist = float(np.mean(np.sum(xlogy(p, p) - xlogy(p, hist), axis=1)))
        reversed_kl = float(np.mean(np.sum(xlogy(marginal, marginal) - xlogy(marginal, p), axis=1)))
    diagnoses = [
        (mean_kl, "that is the mean KL divergence; the score is its exponential, exp(mean_i KL(p(y|x_i) || p(y)))."),
        (math.exp(mean_kl / math.log(2)), "you used logarithms in base 2 inside the exponential; use natural "
                                          "logarithms (the score is exp of a KL in nats)."),
        (math.exp(kl_hist), "you took p(y) from the histogram of the predicted classes (argmax); the marginal is "
                            "the mean of the predicted probability vectors, p(y) = mean_i p(y|x_i)."),
        (math.exp(reversed_kl), "the divergence is reversed: use KL(p(y|x_i) || p(y)), the prediction for the "
                                "sample first, then the marginal."),
        (math.exp(float(per_sample.mean())), "that is exp of the mean predictive entropy; the score is "
                                             "exp(H[p(y)] - mean_i H[p(y|x_i)])."),
        (math.exp(float(-xlogy(marginal, marginal).sum())), "that is exp(H[p(y)]), the balance part only; subtract "
                                                            "the mean entropy of the predictions inside the exp."),
    ]
    name_mistake(value, diagnoses, rtol=1e-3, atol=1e-6)
    return Feedback(False, f"expected exp(mean_i KL(p(y|x_i) || p(y))) = {expected:.4f} for the test "
                           f"probabilities, got {value:.6g}.")


@checker
def check_elbo_gap(answer, neg_elbo: float, is_nll: float) -> Feedback:
    r"""Check `answer` = neg_elbo - is_nll, in nats: how much the importance-sampled estimate improves on the
    ELBO (both as negative numbers of nats per image, from the chapter's table).

    The gap is >= 0 in expectation (Burda et al. 2016, Thm. 1) and estimates the mean of
    KL(q(z|x) || p(z|x)) as k grows. Names the flipped sign, a ratio or percentage, and the ELBO or NLL
    itself given instead of the difference.
    """
    neg_elbo, is_nll = float(neg_elbo), float(is_nll)
    value = as_number(answer, "the gap")
    expected = neg_elbo - is_nll
    if close(value, expected, rtol=0, atol=0.051):
        return Feedback(True, f"-ELBO - IS-NLL = {neg_elbo:.2f} - {is_nll:.2f} = {expected:.2f} nats: an estimate "
                              "(from below, since k is finite) of the mean KL(q(z|x) || p(z|x)), the price of "
                              "the Gaussian q.")
    name_mistake(value, [(-expected, "the sign is flipped: the importance-sampled NLL is the *smaller* number (a "
                                     "tighter bound), so -ELBO - NLL >= 0.")], rtol=0, atol=0.051)
    name_mistake(value, [(neg_elbo / is_nll, "that is a ratio; the question asks for a difference in nats."),
                         (100 * expected / is_nll, "that is a percentage; give the difference in nats."),
                         (100 * expected / neg_elbo, "that is a percentage; give the difference in nats."),
                         (neg_elbo, "that is the -ELBO itself; subtract the importance-sampled NLL from it."),
                         (is_nll, "that is the NLL itself; the question asks for -ELBO minus the NLL.")],
                 rtol=1e-3, atol=0.01)
    return Feedback(False, f"read the VAE's row: -ELBO minus the importance-sampled NLL, in nats; got {value:.4g}.")


# ------------------------------------------------------------------------------------ active units

#: The probe VAE of :func:`check_active_units_function`: Var_x(mu_j(x)) of its ten latent coordinates ...
PROBE_MEAN_VARIANCE = (2.0, 0.5, 0.1, 0.03, 0.006, 0.002, 8e-4, 3e-4, 2e-5, 1e-7)
#: ... its posterior variances sigma_j^2 (times exp(0.2 * x) for the last three, whose log-variance varies) ...
PROBE_POSTERIOR_VARIANCE = (1e-3, 0.05, 1e-3, 1e-3, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0)
PROBE_LOG_VAR_SLOPE = (0.0,) * 7 + (0.2,) * 3
#: ... and the number of digits (rows of x) it is evaluated on.
PROBE_ROWS = 2000


def probe_vae() -> tuple[VAE, torch.Tensor]:
    """A VAE with a linear encoder, and inputs x (PROBE_ROWS, 12), such that the posterior mean mu_j(x) of
    coordinate j has population variance exactly PROBE_MEAN_VARIANCE[j] over x, and log sigma_j^2(x) =
    log PROBE_POSTERIOR_VARIANCE[j] + PROBE_LOG_VAR_SLOPE[j] * x_10. Active (Var > 0.01): 4 of 10 coordinates;
    each typical mistake counts differently (std > 0.01: 8, inactive: 6, mean posterior variance > 0.01: 7,
    variance of sampled z: 10, variance of log sigma^2: 3, threshold 0.001 ignored: 4 instead of 6)."""
    latent, dim = len(PROBE_MEAN_VARIANCE), len(PROBE_MEAN_VARIANCE) + 2
    with torch.random.fork_rng(devices=[]):  # the VAE's initialization must not move the caller's random stream
        model = VAE(input_dim=dim, latent_dim=latent, hidden=())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_ROWS, dim, generator=gen, dtype=torch.float64)
    x = x - x.mean(dim=0)
    x = torch.linalg.solve_triangular(torch.linalg.cholesky(x.T @ x / len(x)), x.T, upper=False).T  # covariance I
    weight = torch.zeros(2 * latent, dim, dtype=torch.float64)
    weight[:latent, :latent] = torch.diag(torch.tensor(PROBE_MEAN_VARIANCE, dtype=torch.float64).sqrt())
    weight[latent:, latent] = torch.tensor(PROBE_LOG_VAR_SLOPE, dtype=torch.float64)
    bias = torch.cat([torch.zeros(latent, dtype=torch.float64),
                      torch.tensor(PROBE_POSTERIOR_VARIANCE, dtype=torch.float64).log()])
    with torch.no_grad():
        model.encoder[0].weight.copy_(weight)
        model.encoder[0].bias.copy_(bias)
    return model.eval(), x.float()


def _probe_mistakes(model, x: torch.Tensor, threshold: float, latent: int) -> list[tuple[float, str]]:
    """(count, message) for the typical mistakes of an active-unit count, evaluated on `model` and `x`."""
    with torch.no_grad():
        mu, log_var = model.encode(x)
    gen = torch.Generator().manual_seed(0)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=gen)
    count = lambda values: float((values > threshold).sum())
    return [
        (count(z.var(dim=0)), "you took the variance of samples z ~ q(z|x). A sample adds the posterior "
                              "variance sigma_j^2, which is about 1 for a collapsed coordinate (q = the prior), so "
                              "every coordinate looks active. The activity is the variance of the posterior MEAN "
                              "over the data, Var_x(E_q[z_j | x]) = Var_x(mu_j(x)): use mu, not a sample."),
        (count(log_var.exp().mean(dim=0)), "you thresholded the mean posterior variance E_x[sigma_j^2(x)], how "
                                           "uncertain q is about z_j. The activity is how much the posterior "
                                           "MEAN mu_j(x) varies from digit to digit, Var_x(mu_j(x))."),
        (count(log_var.var(dim=0)), "you took the variance of the log-variance (the second output of encode); "
                                    "the activity is the variance of the posterior mean mu_j(x), the first."),
        (count(mu.std(dim=0)), "you thresholded the standard deviation of mu_j; the criterion is on the "
                               "VARIANCE, Var_x(mu_j(x)) > 0.01 (a standard deviation of 0.1)."),
        (latent - count(mu.var(dim=0)), "you counted the INACTIVE coordinates, Var_x(mu_j) <= threshold; count "
                                        "those with Var_x(mu_j) > threshold."),
        (count(mu.var(dim=0)) / latent, f"that is the fraction of active coordinates; give their number (out "
                                        f"of d = {latent})."),
    ]


@checker
def check_active_units_function(fn: Callable, models: dict | None = None, x: torch.Tensor | None = None) -> Feedback:
    r"""Check `fn(model, x, threshold=0.01) -> int`: the number of active latent coordinates of a VAE, those j with

        A_j = Var_x( E_{q(z|x)}[z_j] ) = Var_x( mu_j(x) ) > threshold     (Burda et al. 2016, section 5.2),

    the variance taken over the rows of x, coordinate by coordinate (divisor N or N - 1: both are accepted).

    First on a VAE with a linear encoder built so that each typical mistake gives its own count (see
    :func:`probe_vae`), at threshold 0.01 and 0.001; then, if given, on each of the trained `models` (a dict
    name -> VAE) with the inputs `x` (N, 784), against :func:`ae_course.evaluation.active_units`. Names the
    typical mistakes: the variance of sampled z instead of the posterior means, the mean posterior variance,
    the variance of log sigma^2, a threshold on the standard deviation, the variance over the wrong axis (a
    count larger than d), the inactive count, a fraction, a mask instead of a count, and a threshold
    argument that is ignored. Each call of `fn` runs a few milliseconds on the probe; on a trained
    784-400-16 VAE and 1,000 digits, some tens of milliseconds.
    """
    probe, x_probe = probe_vae()
    latent = probe.latent_dim
    for threshold in (0.01, 0.001):
        when = f" at threshold {threshold}"
        result = call_learner(fn, probe, x_probe, threshold, when=when, returns=None,
                              expect="an int, the number of active coordinates")
        value = as_number(result, "your function's result", several=": count the active coordinates, e.g. "
                          "int((variance > threshold).sum()), rather than returning the mask or the variances")
        expected = active_units(probe, x_probe, threshold=threshold)
        if value == expected:
            continue
        if value > latent:
            return Feedback(False, f"your function counted {value:g} active coordinates{when}, more than the "
                                   f"d = {latent} coordinates the code has: the variance was taken over the wrong "
                                   "axis (across the coordinates of each digit). Take it over the digits, "
                                   "mu.var(dim=0), one variance per coordinate.")
        if threshold != 0.01 and value == active_units(probe, x_probe, threshold=0.01):
            return Feedback(False, f"right at threshold 0.01, but at threshold {threshold} your function still "
                                   f"counts {value:g} coordinates instead of {expected}: use the `threshold` "
                                   "argument rather than the number 0.01.")
        with prefixed(f"on a test VAE{when} your function counts {value:g} active coordinates of {latent}, "
                      f"not {expected}: "):
            name_mistake(value, _probe_mistakes(probe, x_probe, threshold, latent), rtol=0, atol=1e-6)
        return Feedback(False, f"on a test VAE{when} your function counts {value:g} active coordinates of "
                               f"{latent}; the number of coordinates j with Var_x(mu_j(x)) > {threshold} is "
                               f"{expected}.")
    counts = []
    for name, model in (models or {}).items():
        result = call_learner(fn, model, x, when=f" on the model {name}", returns=None,
                              expect="an int, the number of active coordinates")
        value = as_number(result, "your function's result")
        expected = active_units(model, x)
        if value != expected:
            return Feedback(False, f"right on the test VAE, but on the model {name} your function counts "
                                   f"{value:g} active coordinates and ae_course.evaluation.active_units "
                                   f"{expected}. Does your function depend on anything but model.encode(x)?")
        counts.append((str(name), str(expected)))
    where = (f"; on the trained models {', '.join(n for n, _ in counts)}: {', '.join(c for _, c in counts)} "
             "active units" if counts else "")
    return Feedback(True, f"your function counts the coordinates whose posterior mean varies across the data, "
                          f"Var_x(mu_j(x)) > threshold, as ae_course.evaluation.active_units does{where}.")
