"""Checkers for the exercises of the chapter "Conditional VAEs".

* :func:`check_condition`: one-hot encode class labels and concatenate them to a batch of inputs, the
  input of a conditional encoder q(z|x, y) or decoder p(x|z, y) (Sohn, Lee & Yan 2015);
* :func:`check_generation_accuracy`: the fraction of generated images that a classifier assigns to the
  class they were generated for.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .feedback import Feedback, as_number, call_learner, checker, close, name_fraction_mistake, unrefused

__all__ = ["check_condition", "check_generation_accuracy"]


@checker
def check_condition(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Feedback:
    """Check `fn(x, y, n_classes) -> (B, D + n_classes)`: x with one_hot(y) appended as its last columns.

    x: floating (B, D); y: integer class indices (B,). The result must be floating (the dtype of x), have
    x in its first D columns and the one-hot code in the last n_classes, and `fn` must raise ValueError for
    labels outside 0..n_classes-1 (negative ones included), for floating labels and for a number of labels
    different from B. Names the typical mistakes: the one-hot code of the wrong width (``F.one_hot``
    without ``num_classes`` infers it from the largest label in the batch), an integer result, the
    labels appended as one column instead of one-hot, the code put first, a concatenation along dim 0.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 5, generator=gen)
    y = torch.tensor([3, 0, 2, 3, 1, 2])           # the largest label (3) is below n_classes - 1
    n_classes = 6
    expected = torch.cat([x, F.one_hot(y, n_classes).float()], dim=1)
    got = call_learner(fn, x, y, n_classes, call="fn(x, y, n_classes)", when=" on valid inputs")
    if got.dim() > 0 and got.shape[0] == 12:
        return Feedback(False, "you concatenated along dim 0 (more rows); the label is extra *columns* of each "
                               "row: torch.cat([x, one_hot], dim=1).")
    if got.shape == (6, 5 + 4):
        return Feedback(False, "the one-hot part has 4 columns, not n_classes = 6: F.one_hot(y) without "
                               "num_classes takes its width from the largest label in the batch, so it changes "
                               "from batch to batch. Pass num_classes=n_classes.")
    if got.shape == (6, 6):
        return Feedback(False, "you appended the label as a single number; append its one-hot code, "
                               "n_classes columns with a 1 in column y.")
    if got.shape != expected.shape:
        return Feedback(False, f"expected shape (B, D + n_classes) = {tuple(expected.shape)}, got {tuple(got.shape)}.")
    if not got.is_floating_point():
        return Feedback(False, f"the result has dtype {got.dtype}; a network's input must be floating. F.one_hot "
                               "returns int64: convert it with .to(x.dtype) before concatenating.")
    if close(got, torch.cat([F.one_hot(y, n_classes).float(), x], dim=1)):
        return Feedback(False, "you put the one-hot code first; the book's convention (and ConditionalVAE's) "
                               "is [x, one_hot(y)]: x in the first D columns.")
    if not close(got, expected):
        if close(got[:, :5], x):
            return Feedback(False, "the first D columns are x, but the last n_classes are not one_hot(y): row i "
                                   "should have a 1 in column D + y[i] and 0 elsewhere.")
        return Feedback(False, "the first D columns should be x unchanged, followed by one_hot(y).")
    problems = unrefused(fn, [(what, (x, bad_y, n_classes)) for what, bad_y in [
        ("a label equal to n_classes", torch.tensor([3, 0, 2, 6, 1, 2])),
        ("a negative label", torch.tensor([3, 0, -1, 3, 1, 2])),
        ("floating-point labels", y.float()),
        ("5 labels for 6 rows", y[:5])]])
    if problems:
        return Feedback(False, "the values are right, but invalid labels must raise ValueError with a clear "
                               "message: " + "; ".join(problems) + ". (F.one_hot maps -1 to the last class "
                               "silently in some versions, and a wrong label count only fails later, far from "
                               "the cause.)")
    return Feedback(True, "x followed by one_hot(y) of width n_classes, floating, and invalid labels are refused.")


@checker
def check_generation_accuracy(answer, predictions: torch.Tensor, requested: torch.Tensor) -> Feedback:
    """Check `answer`: the fraction (in [0, 1]) of generated images whose predicted class equals the class
    requested for them, i.e. mean(predictions == requested).

    predictions, requested: (N,) class indices, in the same order (row i of the generated batch was
    generated for class requested[i]). Names the typical mistakes: a percentage, the error rate, a count,
    and the requested labels built with ``arange(10).repeat(n)`` (0,1,...,9,0,1,...) where the batch was
    generated with ``repeat_interleave`` (0,0,...,1,1,...).
    """
    value = as_number(answer, "the accuracy")
    predictions, requested = torch.as_tensor(predictions).flatten(), torch.as_tensor(requested).flatten()
    if predictions.shape != requested.shape:
        return Feedback(False, f"predictions {tuple(predictions.shape)} and requested {tuple(requested.shape)} "
                               "must have the same length (one requested class per generated image).")
    n = len(requested)
    right = (predictions == requested).double().mean().item()
    tol = 0.5 / n
    if close(value, right, rtol=0, atol=tol):
        return Feedback(True, f"{right:.3f} of the generated images are classified as requested.")
    name_fraction_mistake(value, right, n, count="matches", items="images", complement=(
        "that is the error rate, the fraction classified as a *different* class; give the fraction that matches the "
        "requested class."))
    classes = int(requested.max().item()) + 1 if n else 0
    if classes > 1 and n % classes == 0:
        per = n // classes
        tiled = torch.arange(classes).repeat(per)
        interleaved = torch.arange(classes).repeat_interleave(per)
        for wrong_order, name in [(tiled, "arange(K).repeat(n)"), (interleaved, "arange(K).repeat_interleave(n)")]:
            if torch.equal(wrong_order, requested):
                continue
            other = (predictions == wrong_order).double().mean().item()
            if close(value, other, rtol=0, atol=tol):
                return Feedback(False, f"you compared the predictions with labels in the order of {name}, but the "
                                       "images were generated in the order of `requested`: compare with the labels "
                                       "the images were actually generated for.")
    if not 0 <= value <= 1:
        return Feedback(False, f"{value} is not a fraction between 0 and 1.")
    return Feedback(False, f"{value:.4f} is not the fraction of images with predictions == requested; compute "
                           "(predictions == requested).float().mean().")
