"""The checkers of the chapter "Adversarial regularization" accept the right answers and name the typical mistakes."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from ae_course.exercises.adversarial_checks import (check_discriminator_loss, check_game_values, check_optimal_discriminator,
                                                    check_saturating_gradient, optimal_discriminator_at_point,
                                                    saturating_gradient)

LOG2, LOG4 = math.log(2), math.log(4)


def _density(z, mean, std):
    as64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return Normal(as64(mean), as64(std)).log_prob(as64(z)).exp().item()


def test_optimal_discriminator_checker():
    p, q = _density(1.0, 0.0, 1.0), _density(1.0, 2.0, 0.5)
    right = p / (p + q)
    assert abs(optimal_discriminator_at_point() - right) < 1e-12 and abs(right - 0.6914) < 1e-4
    assert check_optimal_discriminator(right)
    assert check_optimal_discriminator(torch.tensor(right))
    cases = {
        "swapped p and q": q / (p + q),
        "density ratio": p / q,
        "optimal *logit*": math.log(p / q),
        "used 0.25 as the standard deviation": p / (p + _density(1.0, 2.0, 0.25)),
        "used 0.5 as the variance": p / (p + _density(1.0, 2.0, math.sqrt(0.5))),
        "normalizing constants": 1 / (1 + math.exp(-(-0.5 + 2.0))),
        "not a probability": 1.7,
        "is not D*(1)": 0.3,
        "should be a number": None,
        "should be a single number": torch.ones(2),
    }
    for needle, answer in cases.items():
        feedback = check_optimal_discriminator(answer)
        assert not feedback and needle in feedback.message, (needle, feedback)
    both = check_optimal_discriminator(1 - 1 / (1 + math.exp(-(-0.5 + 2.0))))
    assert not both and "normalizing constants" in both.message and "swapped" in both.message


def test_game_values_checker():
    assert check_game_values(-LOG4, LOG2, 0.0)
    assert check_game_values(torch.tensor(-LOG4), torch.tensor(LOG2), torch.tensor(0.0))
    cases = {
        "base-2 logarithms": (-2.0, LOG2, 0.0),
        "discriminator's loss": (LOG4, LOG2, 0.0),
        "JS(q || p) = 0 at q = p": (0.0, LOG2, 0.0),
        "not -log 2": (-LOG2, LOG2, 0.0),
        "V = E_p[log 1/2]": (-1.0, LOG2, 0.0),
        "JS in bits": (-LOG4, 1.0, 0.0),
        "is 2 JS": (-LOG4, LOG4, 0.0),
        "maximal, not zero": (-LOG4, 0.0, 0.0),
        "JS of disjoint distributions is finite": (-LOG4, float("inf"), 0.0),
        "KL(q || m) and KL(p || m)": (-LOG4, 0.5, 0.0),
        "dropped the factor 2": (-LOG4, LOG2, LOG2 - LOG4),
        "mixed bases": (-LOG4, LOG2, 2.0 - LOG4),
        "the minimum": (-LOG4, LOG2, -LOG4),
        "2 JS = 2 log 4": (-LOG4, LOG2, LOG4),
        "D* = 1 on p's support": (-LOG4, LOG2, 0.3),
        "should be a number": (None, LOG2, 0.0),
    }
    for needle, answers in cases.items():
        feedback = check_game_values(*answers)
        assert not feedback and needle in feedback.message, (needle, feedback)


def right_loss(prior_logits, code_logits):
    return F.softplus(-prior_logits) + F.softplus(code_logits)


def test_discriminator_loss_checker():
    assert check_discriminator_loss(right_loss)
    assert check_discriminator_loss(lambda a, b: F.binary_cross_entropy_with_logits(a, torch.ones_like(a), reduction="none")
                                    + F.binary_cross_entropy_with_logits(b, torch.zeros_like(b), reduction="none"))
    assert check_discriminator_loss(lambda a, b: -F.logsigmoid(a) - F.logsigmoid(-b))
    cases = {
        "swapped the labels": lambda a, b: F.softplus(a) + F.softplus(-b),
        "sign is flipped": lambda a, b: -right_loss(a, b),
        "only the prior term": lambda a, b: F.softplus(-a),
        "only the codes' term": lambda a, b: F.softplus(b),
        "in bits": lambda a, b: right_loss(a, b) / math.log(2),
        "half the loss": lambda a, b: right_loss(a, b) / 2,
        "single number": lambda a, b: right_loss(a, b).mean(),
        "expected shape": lambda a, b: torch.stack([right_loss(a, b)] * 2, dim=1),
        "not finite at logits of +-100": lambda a, b: -torch.log(torch.sigmoid(a)) - torch.log(1 - torch.sigmoid(b)),
        "added epsilon": lambda a, b: (-torch.log(torch.sigmoid(a) + 1e-8) - torch.log(1 - torch.sigmoid(b) + 1e-8)),
        "not finite even for moderate": lambda a, b: right_loss(a, b) * float("nan"),
        "differ": lambda a, b: right_loss(a, b) + 0.1,
        "raised": lambda a, b: a @ torch.ones(3),
        "torch.Tensor": lambda a, b: None,
    }
    for needle, fn in cases.items():
        feedback = check_discriminator_loss(fn)
        assert not feedback and needle in feedback.message, (needle, feedback)


def test_clamped_logits_are_caught_at_the_extremes():
    feedback = check_discriminator_loss(lambda a, b: right_loss(a.clamp(-15, 15), b.clamp(-15, 15)))
    assert not feedback and "clamp" in feedback.message


def test_saturating_gradient_checker():
    d = torch.sigmoid(torch.tensor(-6.0, dtype=torch.float64)).item()
    assert abs(saturating_gradient() + d) < 1e-12
    assert check_saturating_gradient(-d)
    cases = {
        "non-saturating loss": -(1 - d),
        "sign is flipped": d,
        "with respect to D": -1 / (1 - d),
        "sigmoid's derivative": d * (1 - d),
        "is not the derivative": -0.5,
        "should be a number": "small",
    }
    for needle, answer in cases.items():
        feedback = check_saturating_gradient(answer)
        assert not feedback and needle in feedback.message, (needle, feedback)


@pytest.mark.parametrize("checker, args", [(check_optimal_discriminator, (float("nan"),)),
                                           (check_saturating_gradient, (float("-inf"),))])
def test_non_finite_answers_are_rejected_without_raising(checker, args):
    feedback = checker(*args)
    assert not feedback and "finite" in feedback.message
