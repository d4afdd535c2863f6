r"""Checkers for the exercises of the chapter "Comparing the family".

* :func:`check_class_balance`: KL(h || uniform) in nats of the histogram h of the classes a classifier
  predicts for a set of samples (:func:`ae_course.sample_quality.class_balance`);
* :func:`check_likelihood_models`: which of the five models are trained on a bound of a log-likelihood
  and come with their own importance-sampling proposal q(z|x) (Burda, Grosse & Salakhutdinov 2016);
* :func:`check_inception_score`: the Inception-score formula exp(E_x KL(p(y|x) || p(y))) of Salimans et
  al. (2016, section 4), from a matrix of predicted class probabilities;
* :func:`check_elbo_gap`: the gap between a VAE's test -ELBO and its importance-sampled NLL, read off the
  chapter's table.

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

from ..sample_quality import class_balance, classifier_scores
from .feedback import Feedback, as_number, call_learner, checker, close, name_mistake

__all__ = ["MODELS", "check_class_balance", "check_likelihood_models", "check_inception_score", "check_elbo_gap"]

#: The five models of the chapter, by the names the checkers accept.
MODELS = ("AE", "DAE", "VAE", "CVAE", "AAE")


_close = functools.partial(close, rtol=1e-3, atol=1e-6)


@checker
def check_class_balance(answer, counts) -> Feedback:
    r"""Check `answer` = KL(h || uniform) = sum_y h_y log(K h_y), in nats, for the class counts `counts` (K,).

    h = counts / counts.sum(); empty classes contribute 0 (0 log 0 = 0). Names the typical mistakes: the
    entropy H(h) instead of log K - H(h), a logarithm in base 2, unnormalized counts, the reversed divergence
    KL(uniform || h) (infinite when a class is empty), the normalized entropy H(h) / log K or one minus it,
    the fraction of the most frequent class, and a NaN from log 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.size
    h = counts / counts.sum()
    balance = class_balance(counts)
    expected, entropy = balance["kl_to_uniform"], balance["class_entropy"]
    value = as_number(answer, "the KL divergence", finite=False, several=": sum h_y log(K h_y) over the classes",
                      none="answer is None: compute h = counts / counts.sum(), then sum_y h_y log(K h_y) over the "
                           "classes with h_y > 0.")
    if not math.isfinite(value):
        if (counts == 0).any():
            return Feedback(False, f"your answer is {value}. Some class is never predicted (h_y = 0): either you took "
                                   "log 0 (use the convention 0 log 0 = 0, e.g. scipy.special.xlogy or sum only over "
                                   "h_y > 0), or you computed KL(uniform || h), which is infinite when a class is "
                                   "missing. The balance score is KL(h || uniform) = sum_y h_y log(K h_y).")
        return Feedback(False, f"your answer is {value}; it should be a finite number of nats.")
    if _close(value, expected):
        return Feedback(True, f"KL(h || uniform) = {expected:.4f} nats = log {k} - H(h) = {math.log(k):.4f} - "
                              f"{entropy:.4f}; 0 would be a perfectly balanced set of samples.")
    if _close(value, expected / math.log(2)):
        return Feedback(False, "that is the divergence in bits (log base 2); the book's unit is the nat: use the "
                               "natural logarithm.")
    diagnoses = [
        (entropy, f"that is the entropy H(h) of the histogram ({entropy:.4f} nats), which is *largest* for a "
                  f"balanced set. The divergence from uniform is log K - H(h)."),
        (entropy / math.log(2), "that is the entropy H(h), in bits; the divergence from uniform is log K - H(h), "
                                "in nats."),
        (-expected, "the sign is flipped: KL(h || uniform) = sum_y h_y log(h_y / (1/K)) is >= 0."),
        (math.log(k) + entropy, "you added the entropy: KL(h || uniform) = log K - H(h)."),
        (entropy / math.log(k), "that is the normalized entropy H(h) / log K; the question asks for the KL "
                                "divergence in nats, log K - H(h)."),
        (1 - entropy / math.log(k), "that is 1 - H(h) / log K, a normalized score; the question asks for the KL "
                                    "divergence in nats, log K - H(h)."),
        (float(h.max()), "that is the fraction of the most frequent class, another balance score; the question "
                         "asks for KL(h || uniform) in nats."),
        (float(xlogy(counts, k * counts).sum()), "you used the raw counts instead of the fractions: normalize "
                                                 "h = counts / counts.sum() first."),
    ]
    if (counts > 0).all():
        reverse = float(np.sum(np.log((1 / k) / h)) / k)
        diagnoses.append((reverse, "that is KL(uniform || h), the divergence in the other direction (it is "
                                   "infinite as soon as one class is never predicted). Use KL(h || uniform) = "
                                   "sum_y h_y log(K h_y)."))
    name_mistake(value, diagnoses, rtol=1e-3, atol=1e-6)
    return Feedback(False, f"expected KL(h || uniform) = sum_y h_y log(K h_y) with h = counts / counts.sum(), "
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

    probabilities: a NumPy array (N, K) whose rows are the classifier's predictions (some with exact zeros).
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
                              "confidently anything) and K = 10 (confident and balanced).")
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
