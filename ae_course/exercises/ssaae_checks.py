"""Checkers for the exercises of the chapter "Semi-supervised adversarial autoencoders".

* :func:`check_error_rate`: the test error rate (a fraction) of a classifier from its logits;
* :func:`check_class_discriminator`: the optimal discriminator D*(e_k) on the vertices of the simplex
  when the encoder outputs one-hot class codes with frequencies pi (the categorical prior's game);
* :func:`check_choose_labelled`: a class-balanced, reproducible choice of labelled examples without
  duplicates, that refuses impossible requests.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
Makhzani et al. 2016, section 5 (the semi-supervised AAE).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, name_fraction_mistake,
                       name_mistake, unrefused)

__all__ = ["check_error_rate", "check_class_discriminator", "optimal_class_discriminator",
           "check_choose_labelled"]


# ------------------------------------------------------------------------------------ the error rate


@checker
def check_error_rate(answer, y_logits: torch.Tensor, labels: torch.Tensor) -> Feedback:
    """Check `answer`: the fraction (in [0, 1]) of examples whose predicted class argmax_k y_logits[n, k]
    differs from labels[n].

    y_logits: (N, K) class logits (or probabilities: the argmax is the same); labels: (N,) true classes.
    Names the typical mistakes: the accuracy instead of the error, a percentage, the number of errors,
    the *balanced* error (the mean over classes of the per-class error), and the argmax over the wrong
    dimension (dim 0, the examples).
    """
    value = as_number(answer, "the error rate")
    y_logits, labels = torch.as_tensor(y_logits), torch.as_tensor(labels).flatten()
    if y_logits.dim() != 2 or y_logits.shape[0] != len(labels):
        return Feedback(False, f"y_logits should be (N, K) with N = {len(labels)} labels, got "
                               f"{tuple(y_logits.shape)}: pass the logits of the same examples as the labels.")
    n = len(labels)
    wrong = y_logits.argmax(dim=1) != labels
    right = wrong.double().mean().item()
    tol = 0.5 / n
    if close(value, right, rtol=0, atol=tol):
        return Feedback(True, f"{right:.4f} of the {n} examples are misclassified ({100 * right:.2f} %).")
    name_fraction_mistake(value, right, n, count="misclassified examples", items="examples",
                          note=" (the chapter prints percentages only in its tables)", complement=(
                              "that is the accuracy, the fraction classified *correctly*; the error rate is 1 minus "
                              "it: (predictions != labels).float().mean()."))
    classes = labels.unique()
    balanced = torch.stack([wrong[labels == k].double().mean() for k in classes]).mean().item()
    if close(value, balanced, rtol=0, atol=tol) and not close(balanced, right, rtol=0, atol=tol):
        return Feedback(False, "that is the *balanced* error rate, the mean over classes of each class's "
                               "error; the error rate the papers report is the plain fraction of test "
                               "examples misclassified (the two differ when the classes have different sizes).")
    if y_logits.shape[1] > 1 and n > 1:
        along_0 = y_logits.argmax(dim=0)           # (K,) indices of examples: a classic slip
        if len(along_0) <= n and close(value, (along_0 != labels[:len(along_0)]).double().mean().item(), 0, tol):
            return Feedback(False, "you took the argmax over dim 0 (over the examples); the predicted class of "
                                   "example n is the argmax of row n: y_logits.argmax(dim=1).")
    if not 0 <= value <= 1:
        return Feedback(False, f"{value} is not a fraction between 0 and 1.")
    return Feedback(False, f"{value:.4f} is not the fraction of misclassified examples; compute "
                           "(y_logits.argmax(dim=1) != labels).float().mean().")


# ------------------------------------------------------------------------------------ the y-discriminator


def optimal_class_discriminator(pi) -> torch.Tensor:
    r"""D*(e_k) = (1/K) / (1/K + pi_k) for k = 0..K-1, float64 (K,).

    The best discriminator between the uniform categorical prior (label 1), whose samples are the one-hot
    vectors e_k with probability 1/K each, and one-hot class codes that the encoder puts at e_k with
    frequency pi_k (label 0): D*(z) = p(z) / (p(z) + q(z)) on the common support (Goodfellow et al. 2014,
    Proposition 1, with probabilities in place of densities). Raises ValueError unless pi is a 1-D
    probability vector (nonnegative, summing to 1).
    """
    pi = torch.as_tensor(pi, dtype=torch.float64).flatten()
    if len(pi) < 2 or (pi < 0).any() or abs(pi.sum().item() - 1) > 1e-6:
        raise ValueError(f"pi must be a probability vector over >= 2 classes, got {pi.tolist()}")
    prior = 1.0 / len(pi)
    return prior / (prior + pi)


@checker
def check_class_discriminator(answer, pi) -> Feedback:
    r"""Check `answer`: the K values D*(e_k) of the optimal y-discriminator at the K vertices e_k, when
    the prior puts 1/K on each vertex and the (one-hot) codes put pi_k on vertex k.

    Names the typical mistakes: the labels swapped (pi_k / (pi_k + 1/K), the probability that a code came
    from the *encoder*), the density ratio p / q instead of p / (p + q), the logit log p - log q instead
    of D, 1/2 everywhere (true only at the equilibrium pi = 1/K), and a wrong number of values.
    """
    pi = torch.as_tensor(pi, dtype=torch.float64).flatten()
    expected = optimal_class_discriminator(pi)
    got = as_vector(answer, len(pi), "answer", per="vertex", flatten=True, finite=False, mistakes=[
        (lambda v: v.numel() == 1, f"give one value per vertex, K = {len(pi)} numbers, not a single number: the "
                                   "discriminator's output depends on which vertex e_k it sees."),
    ], none="answer is None: give a tensor of K values, D*(e_k) for k = 0..K-1.",
        not_numbers=f"give K = {len(pi)} numbers (a tensor or a list)",
        wrong_length=f"expected K = {len(pi)} values, one per class")
    if close(got, expected, rtol=1e-3, atol=1e-4):  # equal infinities count as close
        return Feedback(True, "D*(e_k) = (1/K) / (1/K + pi_k): below 1/2 on the classes the encoder "
                              "over-uses, above 1/2 on those it under-uses, 1/2 only when pi_k = 1/K.")
    prior = 1.0 / len(pi)
    name_mistake(got, [
        (pi / (pi + prior), "the labels are swapped: pi_k / (pi_k + 1/K) is the probability that the vertex came "
                            "from the *encoder*. D is the probability of the *prior* (label 1): p / (p + q)."),
        (prior / pi, "that is the probability ratio p / q; the discriminator outputs the probability p / (p + q), "
                     "which lies in [0, 1]."),                # inf where pi_k = 0, matched by an inf answer
        (torch.log(prior / pi), "that is the optimal *logit* log p - log q; apply the sigmoid to get D*."),
    ], rtol=1e-3, atol=1e-4)
    if not torch.isfinite(got).all():
        return Feedback(False, "some values are not finite; every vertex has prior probability 1/K > 0, so "
                               "D*(e_k) is a probability in (0, 1].")
    if close(got, torch.full_like(pi, 0.5), rtol=1e-3, atol=1e-4):
        return Feedback(False, "1/2 everywhere is the discriminator at the equilibrium, when the codes already "
                               "use each class with frequency 1/K; here they do not (pi is not uniform).")
    if ((got < 0) | (got > 1)).any():
        return Feedback(False, "some values lie outside [0, 1]; D* is a probability.")
    return Feedback(False, "not D*(e_k) = p(e_k) / (p(e_k) + q(e_k)) with p(e_k) = 1/K (the prior) and "
                           "q(e_k) = pi_k (the codes).")


# ------------------------------------------------------------------------------------ the labelled subset


def _as_index_array(result, n_rows: int) -> np.ndarray:
    """The learner's result as a 1-D int64 numpy array of row indices, or NotYet saying why it is not one."""
    if isinstance(result, torch.Tensor) and result.is_floating_point():
        raise NotYet(f"the indices have dtype {result.dtype}; indices must be integers (int64).")
    got = result.detach().cpu().numpy() if isinstance(result, torch.Tensor) else result
    try:
        got = np.asarray(got) if isinstance(got, (list, tuple, np.ndarray)) else None
    except ValueError:  # a ragged list
        got = None
    if got is None or got.ndim != 1:
        raise NotYet("return a 1-D tensor of row indices, got "
                     + (f"shape {got.shape}." if got is not None else f"{type(result).__name__}."))
    if got.dtype == bool:
        raise NotYet("you returned a boolean mask; return the row *indices* (e.g. torch.nonzero(mask).flatten()), "
                     "so that x[indices] picks the examples.")
    if not np.issubdtype(got.dtype, np.integer):
        raise NotYet(f"the indices have dtype {got.dtype}; indices must be integers.")
    if len(got) and (got.min() < 0 or got.max() >= n_rows):
        raise NotYet(f"some indices lie outside 0..{n_rows - 1}: return row numbers of `labels`.")
    return got.astype(np.int64)


def _labels_for_checking(seed: int = 0) -> torch.Tensor:
    """600 shuffled labels of 6 classes with unequal sizes (the smallest has 40 rows)."""
    sizes = [160, 130, 110, 90, 70, 40]
    labels = torch.cat([torch.full((s,), k) for k, s in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@checker
def check_choose_labelled(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> Feedback:
    """Check `fn(labels, per_class, seed) -> indices`: a class-balanced random choice of labelled examples.

    labels: (N,) int64 classes 0..K-1. The result must be a 1-D integer tensor of per_class * K distinct
    row indices with exactly per_class rows of each class, random (not simply the first rows of each
    class), reproducible (the same seed gives the same rows) and different for another seed; and `fn`
    must raise ValueError when a class has fewer than per_class rows (``randperm(n)[:per_class]`` silently
    returns fewer) or per_class < 1. Names each typical mistake: duplicates (sampling with replacement),
    a random subset of the whole set (balanced only on average), labels returned instead of indices, a
    boolean mask, the global RNG instead of a seeded generator, the seed ignored, the first rows of each
    class (biased by the file order).
    """
    labels = _labels_for_checking()
    n_classes, per_class = int(labels.max()) + 1, 12
    n_rows = len(labels)

    def choose(seed: int, when: str) -> np.ndarray:
        return _as_index_array(call_learner(fn, labels, per_class, seed, call=f"fn(labels, per_class={per_class}, "
                                            f"seed={seed})", when=when, returns=None,
                                            expect="a 1-D tensor of row indices"), n_rows)

    got = choose(0, " on valid inputs")
    expected_n = per_class * n_classes
    if len(got) == expected_n and got.max(initial=0) < n_classes:
        return Feedback(False, "these look like class labels, not row indices: return the indices of the "
                               "chosen rows (so that x[indices] and labels[indices] pick them).")
    if len(np.unique(got)) < len(got):
        return Feedback(False, f"{len(got) - len(np.unique(got))} indices appear more than once: you sampled "
                               "with replacement (torch.randint?). Draw without replacement, e.g. the first "
                               "per_class entries of a random permutation of each class's rows.")
    counts = np.bincount(labels.numpy()[got], minlength=n_classes)
    if len(got) != expected_n:
        return Feedback(False, f"expected per_class * K = {per_class} * {n_classes} = {expected_n} indices, got "
                               f"{len(got)} (per class: {counts.tolist()}).")
    if (counts != per_class).any():
        return Feedback(False, f"the classes are not balanced: per class {counts.tolist()}, expected "
                               f"{per_class} each. A random subset of the whole set is balanced only on "
                               "average; choose per_class rows inside each class.")
    first = np.concatenate([np.nonzero(labels.numpy() == k)[0][:per_class] for k in range(n_classes)])
    if set(got.tolist()) == set(first.tolist()):
        return Feedback(False, "you took the first per_class rows of each class: not a random choice, and "
                               "biased by whatever order the file has (e.g. by writer). Permute each class's "
                               "rows with a generator seeded by `seed` first.")
    again, other = choose(0, " a second time"), choose(1, "")
    if set(again.tolist()) != set(got.tolist()):
        return Feedback(False, "two calls with the same seed chose different rows: the choice is not "
                               "reproducible. Use a torch.Generator seeded with `seed` (torch.Generator()"
                               ".manual_seed(seed)) and pass it to randperm.")
    if set(other.tolist()) == set(got.tolist()):
        return Feedback(False, "seeds 0 and 1 chose the same rows: the seed is ignored. Seed the generator "
                               "with `seed`.")
    smallest = int(np.bincount(labels.numpy()).min())
    problems = unrefused(fn, [(f"per_class = {smallest + 1}, more than the smallest class has ({smallest})",
                               (labels, smallest + 1, 0)), ("per_class = 0", (labels, 0, 0))])
    if problems:
        return Feedback(False, "the choice is right, but impossible requests must raise ValueError: "
                               + "; ".join(problems) + ". (randperm(n)[:per_class] silently returns fewer "
                               "than per_class rows when a class is small, and the model would then be "
                               "trained on an unbalanced set without anyone noticing.)")
    return Feedback(True, f"{per_class} distinct rows of each of the {n_classes} classes, random, reproducible "
                          "for a seed, and impossible requests are refused.")
