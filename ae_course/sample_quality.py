r"""Scores of generated images judged by an independent classifier.

A generative model of digits should produce images that a classifier trained on *real* digits
recognizes (each sample is confidently one digit, not a blend of two) and should produce every class
about equally often (no class is missing). Both properties can be read off the classifier's predicted
class probabilities p(y | x_i) of N samples x_1, ..., x_N, whatever classifier produced them:

* **confidence**: the mean over samples of max_y p(y | x_i), in [1/K, 1];
* **entropy**: the mean over samples of the predictive entropy H[p(y | x_i)] = -sum_y p log p, in nats,
  in [0, log K]; low when each sample is confidently one class;
* **class balance** of the predicted classes argmax_y p(y | x_i): their histogram h (fractions), its
  entropy H(h) in [0, log K] (log K when every class is predicted equally often), the KL divergence
  KL(h || uniform) = log K - H(h) in nats (0 for a perfectly balanced set), and the fraction of the
  most frequent class, max_y h_y, in [1/K, 1];
* the **Inception score** formula of Salimans et al. (2016, section 4), exp(E_i KL(p(y | x_i) || p(y)))
  with p(y) = mean_i p(y | x_i), which equals exp(H[p(y)] - E_i H[p(y | x_i)]): it combines both
  properties, lies in [1, K], and is K only for confident predictions spread evenly over the classes.
  (Salimans et al. used the Inception network on natural images; here the same formula is applied to
  whatever classifier produced the probabilities.)

This module takes the probabilities, not a classifier, so it depends on no particular one: pass
``predict_proba`` of a scikit-learn model or the softmax of a network. Arrays may be NumPy arrays or
torch tensors; all computations are in float64 and all results are Python floats (histograms: NumPy
arrays). Entropies use the natural logarithm with the convention 0 log 0 = 0.

The classifier-based evaluation of samples follows the use of a pretrained classifier in Salimans et
al. (2016); see also Lopez-Paz & Oquab (2017) for classifiers as two-sample tests.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import xlogy

__all__ = ["as_probabilities", "predictive_entropy", "class_histogram", "class_balance", "classifier_scores"]

#: Tolerance on the row sums of a probability matrix (float32 softmax outputs sum to 1 within ~1e-6).
ROW_SUM_ATOL = 1e-4


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def as_probabilities(probabilities) -> np.ndarray:
    """Validate a matrix of predicted class probabilities and return it as float64, shape (N, K).

    probabilities: (N, K) array or tensor, N >= 1 samples, K >= 2 classes; every row a probability vector.
    The rows are divided by their sums, so that float32 outputs (a softmax, or scikit-learn's
    ``predict_proba`` on float32 inputs, whose rows sum to 1 only within ~1e-7) give the same scores as
    exactly normalized ones, and as ``scipy.stats.entropy``, which normalizes too.
    Raises:
        ValueError: if it is not two-dimensional, has no row or fewer than 2 columns, holds non-finite or
            negative entries, or a row does not sum to 1 within :data:`ROW_SUM_ATOL` (e.g. logits or
            unnormalized scores were passed instead of probabilities).
    """
    p = _to_numpy(probabilities)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (N >= 1, K >= 2), got {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
        raise ValueError(f"probabilities must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError("probabilities contain NaN or infinite values")
    if (p < 0).any():
        raise ValueError(f"probabilities must be non-negative, got a minimum of {p.min():.3g} "
                         "(logits? apply a softmax first)")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > ROW_SUM_ATOL:
        raise ValueError(f"every row must sum to 1, but row {worst} sums to {sums[worst]:.6g} "
                         "(unnormalized scores? apply a softmax first)")
    return p / sums[:, None]


def predictive_entropy(probabilities) -> np.ndarray:
    r"""The entropy of each row, H[p(y | x_i)] = -sum_y p(y | x_i) log p(y | x_i), shape (N,), in nats.

    In [0, log K]: 0 for a one-hot row, log K for the uniform row; 0 log 0 = 0.
    Raises ValueError as :func:`as_probabilities`.
    """
    p = as_probabilities(probabilities)
    return -xlogy(p, p).sum(axis=1)


def class_histogram(predicted, n_classes: int) -> np.ndarray:
    """The fraction of the samples predicted as each class: predicted (N,) ints in 0..n_classes-1 -> (n_classes,).

    The fractions sum to 1. Raises ValueError for n_classes < 2, an empty or non-1-D `predicted`,
    non-integer values, or labels outside 0..n_classes-1.
    """
    labels = _to_numpy(predicted)
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"predicted must be a non-empty 1-D array of class labels, got shape {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"predicted must hold integer class labels, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"class labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    return np.bincount(labels, minlength=int(n_classes)) / labels.size


def class_balance(histogram) -> dict[str, float]:
    r"""How evenly a set of samples covers the classes, from its class histogram.

    histogram: (K,) non-negative counts or fractions (normalized here), K >= 2, with a positive sum.
    Returns a dict of floats:

    * ``class_entropy``: H(h) = -sum_y h_y log h_y in nats, in [0, log K];
    * ``kl_to_uniform``: KL(h || uniform) = sum_y h_y log(K h_y) = log K - H(h) in nats, in [0, log K];
      0 exactly when every class is equally frequent;
    * ``max_fraction``: max_y h_y, in [1/K, 1] (1/K when balanced, 1 when every sample is one class).

    Raises ValueError for a histogram that is not 1-D with K >= 2 entries, or has negative or
    non-finite entries, or sums to 0.
    """
    h = _to_numpy(histogram)
    if h.ndim != 1 or h.size < 2:
        raise ValueError(f"histogram must be 1-D with at least 2 classes, got shape {h.shape}")
    h = h.astype(np.float64)
    if not np.isfinite(h).all() or (h < 0).any() or h.sum() <= 0:
        raise ValueError("histogram must hold finite, non-negative counts with a positive sum")
    h = h / h.sum()
    entropy = float(-xlogy(h, h).sum())
    return {"class_entropy": entropy, "kl_to_uniform": math.log(h.size) - entropy, "max_fraction": float(h.max())}


def classifier_scores(probabilities) -> dict:
    r"""All the classifier-based scores of a set of N samples, from the classifier's probabilities (N, K).

    Returns a dict with

    * ``confidence``: mean_i max_y p(y | x_i), in [1/K, 1];
    * ``entropy``: mean_i H[p(y | x_i)] in nats, in [0, log K] (:func:`predictive_entropy`);
    * ``histogram``: (K,) NumPy array, the fraction of samples whose most probable class is y (ties go to the
      smallest y, as ``argmax`` does) (:func:`class_histogram`);
    * ``class_entropy``, ``kl_to_uniform``, ``max_fraction``: :func:`class_balance` of that histogram;
    * ``inception_score``: exp(E_i KL(p(y | x_i) || p(y))) = exp(H[p(y)] - E_i H[p(y | x_i)]) with
      p(y) = mean_i p(y | x_i), in [1, K] (Salimans et al. 2016, section 4; the formula, with any classifier);
    * ``n``, ``n_classes``: N and K.

    Raises ValueError as :func:`as_probabilities`.
    """
    p = as_probabilities(probabilities)
    per_sample = -xlogy(p, p).sum(axis=1)
    marginal = p.mean(axis=0)
    histogram = class_histogram(p.argmax(axis=1), p.shape[1])
    scores = {"confidence": float(p.max(axis=1).mean()), "entropy": float(per_sample.mean()),
              "histogram": histogram, **class_balance(histogram),
              "inception_score": math.exp(float(-xlogy(marginal, marginal).sum()) - float(per_sample.mean())),
              "n": int(p.shape[0]), "n_classes": int(p.shape[1])}
    return scores
