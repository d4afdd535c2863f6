"""Classifier-based sample scores: hand-computed values, scipy.stats.entropy, and the input checks."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from ae_course.sample_quality import (as_probabilities, class_balance, class_histogram, classifier_scores,
                                      predictive_entropy)


def test_hand_computed_example():
    # three samples, two classes; argmax: 0, 1, 0 (the tie in row 3 goes to class 0, as np.argmax does)
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    scores = classifier_scores(p)
    assert scores["confidence"] == pytest.approx((0.9 + 0.8 + 0.5) / 3)
    h = [-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), math.log(2)]
    assert scores["entropy"] == pytest.approx(sum(h) / 3)
    np.testing.assert_allclose(scores["histogram"], [2 / 3, 1 / 3])
    class_entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert scores["class_entropy"] == pytest.approx(class_entropy)
    assert scores["kl_to_uniform"] == pytest.approx(2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3))
    assert scores["max_fraction"] == pytest.approx(2 / 3)
    marginal = np.array([1.6, 1.4]) / 3
    h_marginal = -(marginal * np.log(marginal)).sum()
    assert scores["inception_score"] == pytest.approx(math.exp(h_marginal - sum(h) / 3))
    assert scores["n"] == 3 and scores["n_classes"] == 2


def test_agrees_with_scipy_entropy():
    gen = np.random.default_rng(0)
    logits = 3 * gen.normal(size=(200, 10))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = classifier_scores(p)
    np.testing.assert_allclose(predictive_entropy(p), entropy(p, axis=1), rtol=1e-12)
    assert scores["entropy"] == pytest.approx(entropy(p, axis=1).mean(), rel=1e-12)
    hist = np.bincount(p.argmax(axis=1), minlength=10) / 200
    assert scores["class_entropy"] == pytest.approx(entropy(hist), rel=1e-12)
    assert scores["kl_to_uniform"] == pytest.approx(entropy(hist, np.full(10, 0.1)), rel=1e-10)
    # the Inception score is exp of the mean KL between each prediction and the marginal
    marginal = p.mean(axis=0)
    mean_kl = np.mean([entropy(row, marginal) for row in p])
    assert scores["inception_score"] == pytest.approx(math.exp(mean_kl), rel=1e-10)


def test_extremes():
    k = 10
    one_hot_balanced = np.eye(k)[np.arange(50) % k]          # confident and perfectly balanced
    s = classifier_scores(one_hot_balanced)
    assert s["confidence"] == 1 and s["entropy"] == 0
    assert s["class_entropy"] == pytest.approx(math.log(k)) and s["kl_to_uniform"] == pytest.approx(0, abs=1e-12)
    assert s["max_fraction"] == pytest.approx(0.1) and s["inception_score"] == pytest.approx(k)
    collapsed = np.eye(k)[np.zeros(50, dtype=int)]            # confident, every sample the same class
    s = classifier_scores(collapsed)
    assert s["kl_to_uniform"] == pytest.approx(math.log(k)) and s["max_fraction"] == 1
    assert s["inception_score"] == pytest.approx(1)
    uniform = np.full((50, k), 1 / k)                         # no sample is anything in particular
    s = classifier_scores(uniform)
    assert s["confidence"] == pytest.approx(0.1) and s["entropy"] == pytest.approx(math.log(k))
    assert s["inception_score"] == pytest.approx(1)


def test_torch_input_and_float32_softmax():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits, dim=1)                          # float32: rows sum to 1 within ~1e-7
    s = classifier_scores(p)
    assert s["entropy"] == pytest.approx(entropy(p.double().numpy(), axis=1).mean(), rel=1e-6)
    assert isinstance(s["confidence"], float) and isinstance(s["histogram"], np.ndarray)
    assert s["confidence"] == pytest.approx(p.double().max(dim=1).values.mean().item(), rel=1e-6)
    np.testing.assert_allclose(class_histogram(p.argmax(dim=1), 10), s["histogram"])


def test_class_balance_accepts_counts_and_fractions():
    counts = np.array([30, 10, 0, 60])
    a, b = class_balance(counts), class_balance(counts / 100)
    assert a == pytest.approx(b)
    assert a["class_entropy"] == pytest.approx(entropy(counts))   # 0 log 0 = 0
    assert a["kl_to_uniform"] == pytest.approx(math.log(4) - entropy(counts))
    assert a["max_fraction"] == pytest.approx(0.6)


@pytest.mark.parametrize("bad, needle", [
    (np.array([0.5, 0.5]), "shape"),
    (np.zeros((0, 3)), "shape"),
    (np.ones((3, 1)), "shape"),
    (np.array([[0.5, np.nan]]), "NaN"),
    (np.array([[1.5, -0.5]]), "non-negative"),
    (np.array([[2.0, 1.0]]), "sum to 1"),
    (np.array([["a", "b"]]), "real numbers"),
])
def test_rejects_what_is_not_probabilities(bad, needle):
    with pytest.raises(ValueError, match=needle):
        as_probabilities(bad)
    with pytest.raises(ValueError):
        classifier_scores(bad)


@pytest.mark.parametrize("predicted, n_classes", [
    (np.array([0, 1, 3]), 3), (np.array([-1, 0]), 3), (np.array([0.0, 1.0]), 3), (np.array([], dtype=int), 3),
    (np.array([[0, 1]]), 3), (np.array([0, 1]), 1), (np.array([True, False]), 2),
])
def test_class_histogram_rejects(predicted, n_classes):
    with pytest.raises(ValueError):
        class_histogram(predicted, n_classes)


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([[1, 2], [3, 4]]), np.array([1, -1, 2]),
                                 np.array([0, 0, 0]), np.array([1, np.inf])])
def test_class_balance_rejects(bad):
    with pytest.raises(ValueError):
        class_balance(bad)


def test_float32_rows_are_renormalized_like_scipy():
    gen = np.random.default_rng(1)
    p = gen.dirichlet(np.ones(10), size=100).astype(np.float32)   # rows sum to 1 within ~1e-7
    s = classifier_scores(p)
    q = p.astype(np.float64)                                         # scipy works in the input's dtype
    marginal = (q / q.sum(axis=1, keepdims=True)).mean(axis=0)
    assert s["inception_score"] == pytest.approx(math.exp(np.mean([entropy(r, marginal) for r in q])), rel=1e-12)
    assert s["entropy"] == pytest.approx(entropy(q, axis=1).mean(), rel=1e-12)
