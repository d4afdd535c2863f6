"""The checkers of the conditional-VAE chapter accept the right answers and name each typical mistake."""
import pytest
import torch
import torch.nn.functional as F

from ae_course.models import one_hot
from ae_course.exercises.cvae_checks import check_condition, check_generation_accuracy


def right_condition(x, y, n_classes):
    if y.is_floating_point() or y.dim() != 1:
        raise ValueError("labels must be integer")
    if len(y) != len(x):
        raise ValueError("one label per row")
    if (y < 0).any() or (y >= n_classes).any():
        raise ValueError("label out of range")
    return torch.cat([x, F.one_hot(y, n_classes).to(x.dtype)], dim=1)


def test_condition_accepts_right_answers():
    assert check_condition(right_condition)
    # the package's one_hot (what the conditional models use) does the validation too
    assert check_condition(lambda x, y, k: torch.cat([x, one_hot(y, k, len(x), like=x)], dim=1))


def unvalidated(x, y, k):
    return torch.cat([x, F.one_hot(y.long(), k).to(x.dtype)], dim=1)


@pytest.mark.parametrize("needle, fn", [
    ("num_classes", lambda x, y, k: torch.cat([x, F.one_hot(y)], dim=1)),
    ("dtype torch.int64", lambda x, y, k: torch.cat([x.long(), F.one_hot(y, k)], dim=1)),
    ("single number", lambda x, y, k: torch.cat([x, y[:, None].float()], dim=1)),
    ("one-hot code first", lambda x, y, k: torch.cat([F.one_hot(y, k).float(), x], dim=1)),
    ("along dim 0", lambda x, y, k: torch.cat([x, F.one_hot(y, k).float()[:, :5]], dim=0)),
    ("last n_classes are not one_hot", lambda x, y, k: torch.cat([x, F.one_hot((y + 1) % k, k).float()], dim=1)),
    ("must raise ValueError", unvalidated),
    ("raised RuntimeError", lambda x, y, k: torch.cat([x, F.one_hot(y, k).to(x.dtype)], dim=1)),
    ("raised ZeroDivisionError", lambda x, y, k: 1 / 0),
    ("return a torch.Tensor", lambda x, y, k: None),
])
def test_condition_names_each_mistake(needle, fn):
    feedback = check_condition(fn)
    assert not feedback and needle in feedback.message, feedback.message


def test_condition_lists_each_unvalidated_case():
    message = check_condition(unvalidated).message
    for case in ("equal to n_classes", "negative", "floating", "5 labels for 6 rows"):
        assert case in message, message


@pytest.fixture
def predictions():
    gen = torch.Generator().manual_seed(0)
    requested = torch.arange(10).repeat_interleave(20)
    wrong = torch.rand(200, generator=gen) < 0.15
    return torch.where(wrong, torch.randint(0, 10, (200,), generator=gen), requested), requested


def test_generation_accuracy_accepts_the_fraction(predictions):
    pred, req = predictions
    right = (pred == req).float().mean()
    assert check_generation_accuracy(right, pred, req)
    assert check_generation_accuracy(right.item(), pred, req)


@pytest.mark.parametrize("needle, answer", [
    ("percentage", lambda p, r: 100 * (p == r).float().mean()),
    ("error rate", lambda p, r: (p != r).float().mean()),
    ("number of matches", lambda p, r: (p == r).sum()),
    ("arange(K).repeat(n)", lambda p, r: (p == torch.arange(10).repeat(20)).float().mean()),
    ("should be a number", lambda p, r: None),
    ("single number", lambda p, r: (p == r).float()),
    ("not the fraction", lambda p, r: 0.5),
])
def test_generation_accuracy_names_each_mistake(predictions, needle, answer):
    pred, req = predictions
    feedback = check_generation_accuracy(answer(pred, req), pred, req)
    assert not feedback and needle in feedback.message, feedback.message


def test_generation_accuracy_detects_the_interleaved_order_too():
    gen = torch.Generator().manual_seed(1)
    requested = torch.arange(10).repeat(20)
    pred = torch.where(torch.rand(200, generator=gen) < 0.1, torch.randint(0, 10, (200,), generator=gen), requested)
    wrong = (pred == torch.arange(10).repeat_interleave(20)).float().mean()
    feedback = check_generation_accuracy(wrong, pred, requested)
    assert not feedback and "repeat_interleave" in feedback.message


def test_generation_accuracy_length_mismatch():
    feedback = check_generation_accuracy(0.5, torch.zeros(10), torch.zeros(9))
    assert not feedback and "same length" in feedback.message
