"""The helpers every exercise checker shares, and the one guarded path by which checkers run learner code:
whatever the learner's function does (raise on any call, return None, return the wrong type or a tensor that
requires grad), the checker returns a Feedback that says so, and never raises."""
import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ae_course.exercises as exercises
from helpers import choose_labelled
from ae_course.exercises.aae_checks import check_occupied_fraction, check_ring_prior
from ae_course.exercises.adversarial_checks import check_discriminator_loss
from ae_course.exercises.autoencoder_checks import check_bernoulli_nll
from ae_course.exercises.comparison_checks import check_inception_score
from ae_course.exercises.cvae_checks import check_condition
from ae_course.exercises.denoising_checks import check_masking_noise
from ae_course.exercises.elbo_checks import check_linear_gaussian_elbo
from ae_course.exercises.feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close,
                                          name_fraction_mistake, name_mistake, unrefused)
from ae_course.exercises.kl_checks import check_gaussian_kl, check_general_gaussian_kl
from ae_course.exercises.reparameterization_checks import check_reparameterize, check_score_function_1d
from ae_course.exercises.ssaae_checks import check_choose_labelled
from ae_course.exercises.vae_checks import check_log_likelihood_bound, check_negative_elbo

# ------------------------------------------------------------------------------------ right answers


def bernoulli_nll(x, logits):
    return (F.softplus(logits) - x * logits).sum(1)


def gaussian_kl(mu, log_var):
    return 0.5 * (mu ** 2 + log_var.exp() - log_var - 1).sum(1)


def negative_elbo(x, logits, mu, log_var):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1) + gaussian_kl(mu, log_var)


def log_likelihood_bound(log_w):
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def masking(x, fraction):
    return x * (torch.rand_like(x) >= fraction)


def discriminator_loss(prior_logits, code_logits):
    return F.softplus(-prior_logits) + F.softplus(code_logits)




def score_with_baseline(f, mu, log_var, eps):   # accepted only after a second call on 200,000 samples
    sigma = math.exp(log_var / 2)
    v = f(mu + sigma * eps) - 1.0
    return v * eps / sigma, v * (eps ** 2 - 1) / 2


class RingPrior:
    dim = 2

    def sample(self, n, device=None):
        angle, radius = 2 * math.pi * torch.rand(n), 4.0 + 0.3 * torch.randn(n)
        return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1).to(device)


def failing_from(call: int, right, outcome="raise"):
    """`right`, except that from its `call`-th call on it raises RuntimeError("boom") (or returns None)."""
    calls = []

    def learner(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            if outcome == "raise":
                raise RuntimeError("boom")
            return None
        return right(*args, **kwargs)
    return learner


# (checker, a right answer, how many calls a right answer gets before the last one)
MULTI_CALL = {
    "bernoulli_nll": (check_bernoulli_nll, bernoulli_nll, 2),
    "gaussian_kl": (check_gaussian_kl, gaussian_kl, 2),
    "negative_elbo": (check_negative_elbo, negative_elbo, 2),
    "log_likelihood_bound": (check_log_likelihood_bound, log_likelihood_bound, 3),
    "linear_gaussian_elbo": (check_linear_gaussian_elbo, lambda model, x, mu, log_var: model.elbo(x, mu, log_var), 2),
    "masking_noise": (check_masking_noise, masking, 4),
    "discriminator_loss": (check_discriminator_loss, discriminator_loss, 2),
    "choose_labelled": (check_choose_labelled, choose_labelled, 2),
    "score_function_1d": (check_score_function_1d, score_with_baseline, 2),
}


@pytest.mark.parametrize("name", MULTI_CALL)
def test_right_answers_pass(name):
    check, right, _ = MULTI_CALL[name]
    assert check(right)


@pytest.mark.parametrize("outcome, needle", [("raise", "raised RuntimeError: boom"), ("none", "returned None")])
@pytest.mark.parametrize("name", MULTI_CALL)
def test_a_later_call_that_fails_gets_feedback(name, outcome, needle):
    check, right, later = MULTI_CALL[name]
    feedback = check(failing_from(later, right, outcome))
    assert isinstance(feedback, Feedback) and not feedback and needle in feedback.message, feedback.message


def test_bernoulli_nll_second_call_raising_is_feedback_not_a_crash():
    """Bug: the call at logits of +-100 was not guarded, so an exception there crashed the notebook cell."""
    feedback = check_bernoulli_nll(failing_from(2, bernoulli_nll))
    assert not feedback
    assert feedback.message == ("correct for moderate logits, but at logits = +-100: calling your function raised "
                                "RuntimeError: boom")


def test_gaussian_kl_exception_is_reported_as_an_exception():
    """Bug: an exception in the extreme-input call was reported as a KL that is "not finite"."""
    def kl_for_float64_only(mu, log_var):
        if mu.dtype != torch.float64:
            raise TypeError("expected float64 inputs")
        return gaussian_kl(mu, log_var)

    feedback = check_gaussian_kl(kl_for_float64_only)
    assert not feedback and "not finite" not in feedback.message
    assert feedback.message == ("right for moderate inputs, but at log_var = -120 in float32: calling your function "
                                "raised TypeError: expected float64 inputs")


def test_inception_score_function_returning_none_is_not_called_nan():
    """Bug: None went through np.asarray(None, dtype=float64), which is NaN, and was diagnosed as 0 log 0."""
    feedback = check_inception_score(lambda p: None)
    assert not feedback and "NaN" not in feedback.message
    assert feedback.message == ("your function returned None (is a `return` statement missing?); return a number.")


def test_occupied_fraction_of_none_says_none():
    feedback = check_occupied_fraction(None, torch.randn(40, 2), torch.arange(40) % 4)
    assert not feedback and "is None" in feedback.message


FUNCTION_CHECKERS = [check_bernoulli_nll, check_gaussian_kl, check_general_gaussian_kl, check_negative_elbo,
                     check_log_likelihood_bound, check_linear_gaussian_elbo, check_masking_noise, check_condition,
                     check_discriminator_loss, check_inception_score, check_reparameterize,
                     check_score_function_1d, check_choose_labelled]


class Unconvertible:
    def __float__(self):
        raise RuntimeError("no float")


@pytest.mark.parametrize("check", FUNCTION_CHECKERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("returned, needle", [
    (None, "returned None"),
    ("text", "str"),
    (Unconvertible(), "Unconvertible"),
    ({}, "dict"),
])
def test_every_function_checker_says_what_was_returned(check, returned, needle):
    feedback = check(lambda *args: returned)
    assert isinstance(feedback, Feedback) and not feedback and needle in feedback.message, feedback.message
    if returned is None:
        assert "(is a `return` statement missing?)" in feedback.message


@pytest.mark.parametrize("check", FUNCTION_CHECKERS, ids=lambda c: c.__name__)
def test_every_function_checker_reports_an_exception(check):
    feedback = check(lambda *args: 1 / 0)
    assert not feedback and "raised ZeroDivisionError: division by zero" in feedback.message, feedback.message


@pytest.mark.parametrize("check, right", [(check_bernoulli_nll, bernoulli_nll), (check_gaussian_kl, gaussian_kl),
                                          (check_discriminator_loss, discriminator_loss)])
def test_a_result_that_requires_grad_is_accepted(check, right):
    assert check(lambda *args: right(*(a.clone().requires_grad_(True) for a in args)))


def test_ring_prior_sample_failures_are_feedback():
    class Failing(RingPrior):
        def __init__(self, call, outcome):
            self.sample = failing_from(call, super().sample, outcome)

    assert check_ring_prior(RingPrior())
    for call, what in [(1, "prior.sample(n)"), (2, "prior.sample(n)"), (3, "prior.sample(5, device='cpu')")]:
        raised = check_ring_prior(Failing(call, "raise"))
        assert not raised and raised.message == f"calling {what} raised RuntimeError: boom"
        returned = check_ring_prior(Failing(call, "none"))
        assert not returned and returned.message.startswith(f"{what} returned None")


def test_noise_that_lands_on_one_is_not_called_salt_and_pepper():
    def gaussian_noise(x, fraction):
        noisy = x + 0.1 * torch.randn_like(x)
        noisy[0, 0] = 1.0  # by chance, in float32, about once in 70 calls
        return noisy

    feedback = check_masking_noise(gaussian_noise)
    assert not feedback and "does not add noise" in feedback.message


def test_condition_with_a_zero_dimensional_result():
    feedback = check_condition(lambda x, y, k: torch.tensor(1.0))
    assert not feedback and "expected shape" in feedback.message


def test_every_checker_is_guarded():
    """Every check_* of every exercise module goes through @checker, which turns NotYet into Feedback."""
    names = [m.name for m in pkgutil.iter_modules(exercises.__path__) if m.name.endswith("_checks")]
    assert len(names) == 15   # one module per chapter
    for name in names:
        module = importlib.import_module(f"ae_course.exercises.{name}")
        checks = [f for n, f in inspect.getmembers(module, inspect.isfunction) if n.startswith("check_")
                  and f.__module__ == module.__name__]
        assert checks, name
        for check in checks:
            assert getattr(check, "__wrapped__", None) is not None, f"{name}.{check.__name__} lacks @checker"


# ------------------------------------------------------------------------------------ the helpers


def test_checker_turns_not_yet_into_feedback_and_lets_bugs_through():
    @checker
    def check(answer):
        """doc"""
        if answer == "bug":
            raise KeyError("a bug of the checker")
        raise NotYet(f"not {answer}")

    assert check.__doc__ == "doc"
    assert check("x") == Feedback(False, "not x")
    with pytest.raises(KeyError):
        check("bug")


def test_call_learner_says_what_happened():
    with pytest.raises(NotYet, match=r"^calling your function raised ValueError: bad$"):
        call_learner(lambda: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(NotYet, match=r"^fn\(x\) returned None with x = 1 \(is a `return` statement missing\?\); "
                                     r"return a torch.Tensor\.$"):
        call_learner(lambda x: None, 1, call="fn(x)", when=" with x = 1")
    with pytest.raises(NotYet, match=r"^your function returned a float; return a torch.Tensor\.$"):
        call_learner(lambda: 1.0)
    assert call_learner(lambda: 1.0, returns=None) == 1.0
    with pytest.raises(NotYet, match="raised TypeError: no Hint$"):
        call_learner(lambda: (_ for _ in ()).throw(TypeError("no")), hint=lambda err: " Hint")


def test_call_learner_copies_the_arguments_and_detaches_the_result():
    x = torch.zeros(3, requires_grad=True)
    array = np.zeros(2)
    got = call_learner(lambda t, a: (a.fill(5), t * 2)[1], x, array)
    assert not got.requires_grad and array.tolist() == [0.0, 0.0]
    data = torch.zeros(2)
    call_learner(lambda t: t.add_(1), data)
    assert data.tolist() == [0.0, 0.0]
    call_learner(lambda t: t.add_(1), data, copy=False)
    assert data.tolist() == [1.0, 1.0]
    assert call_learner(lambda t: t * 2, x, detach=False).requires_grad


def test_unrefused():
    def refuses(n):
        if n < 0:
            raise ValueError("negative")
        if n == 0:
            raise IndexError("zero")
        return n

    assert unrefused(refuses, [("-1", (-1,))]) == []
    assert unrefused(refuses, [("-1", (-1,)), ("0", (0,)), ("1", (1,))]) == [
        "0 raised IndexError instead of ValueError (zero)", "1 returned without an error"]


@pytest.mark.parametrize("value, expected", [(3, 3.0), (torch.tensor(2.5, requires_grad=True), 2.5),
                                             (np.float32(1.5), 1.5), ([4.0], 4.0), (torch.ones(1, 1), 1.0)])
def test_as_number_accepts_numbers(value, expected):
    assert as_number(value, "x") == expected


@pytest.mark.parametrize("value, needle", [
    (None, "x is None: compute it and store it in the variable; it should be a number."),
    (torch.ones(3), "x should be a single number, got 3 values (shape (3,))"),
    ("three", "x should be a number, got str ('three')"),
    (Unconvertible(), "x should be a number, got Unconvertible"),
    (["a"], "x should be a number"),
    (float("nan"), "x is nan; it should be finite."),
    (torch.tensor(float("inf")), "x is inf; it should be finite."),
])
def test_as_number_says_why_not(value, needle):
    with pytest.raises(NotYet) as problem:
        as_number(value, "x")
    assert needle in problem.value.message


def test_as_number_options():
    assert math.isnan(as_number(float("nan"), "x", finite=False))
    with pytest.raises(NotYet, match="^custom$"):
        as_number(None, "x", none="custom")
    with pytest.raises(NotYet, match=r"got 2 values \(shape \(2,\)\): sum them\.$"):
        as_number([1, 2], "x", several=": sum them")


def test_as_vector():
    got = as_vector([1, 2, 3], 3, "v")
    assert got.dtype == torch.float64 and got.tolist() == [1.0, 2.0, 3.0]
    assert as_vector(torch.ones(1, 3, requires_grad=True), 3, "v", flatten=True).shape == (3,)
    cases = [
        (dict(value=None), "v is None: compute it and store it in the variable."),
        (dict(value={}), "v should be 3 numbers (a tensor or a list), got dict."),
        (dict(value=5.0), "v is a single number, not one value per image (shape (3,))."),
        (dict(value=torch.ones(2)), "expected shape (3,) for v: 3 entries, one per image; got (2,)."),
        (dict(value=torch.ones(3, 4)), "expected shape (3,) for v: 3 entries, one per image; got (3, 4)."),
        (dict(value=[1, float("nan"), 2]), "v has entries that are not finite (NaN or inf)."),
        (dict(value=torch.ones(3, 4), mistakes=[((3, 4), "per pixel")]), "per pixel"),
        (dict(value=[6.0], mistakes=[(lambda v: v.sum() == 6, "the sum")]), "the sum"),
        (dict(value="x", not_numbers="give three numbers"), "give three numbers, got str."),
        (dict(value=[1.0, 2.0], wrong_length="expected three numbers"), "expected three numbers, got 2."),
        (dict(value=None, none="nothing"), "nothing"),
    ]
    for kwargs, message in cases:
        with pytest.raises(NotYet) as problem:
            as_vector(length=3, what="v", **kwargs)
        assert problem.value.message == message, kwargs
    assert as_vector([1, float("inf"), 2], 3, "v", finite=False)[1] == math.inf
    assert len(as_vector(list(range(7)), None, "v")) == 7


def test_close_and_name_mistake():
    assert close(1.0, 1.00001) and not close(1.0, 1.1)
    assert close(torch.tensor([1.0, math.inf]), [1.0, math.inf])       # equal infinities are close
    assert not close(torch.ones(2), torch.ones(3)) and not close(torch.tensor([math.nan]), [math.nan])
    name_mistake(1.0, [(2.0, "two")])                                   # no match: returns
    with pytest.raises(NotYet, match="^two$"):
        name_mistake(2.0, [(3.0, "three"), (2.0, "two"), (2.0, "later")])


@pytest.mark.parametrize("value, message", [
    (30.0, "that is a percentage; give the fraction, between 0 and 1 (a note)."), (0.7, "the complement"),
    (3, "that is the number of hits; divide by the number of trials, 10.")])
def test_name_fraction_mistake(value, message):
    with pytest.raises(NotYet) as problem:
        name_fraction_mistake(value, 0.3, 10, complement="the complement", count="hits", items="trials",
                              note=" (a note)")
    assert problem.value.message == message
    name_fraction_mistake(0.32, 0.3, 10, complement="the complement", count="hits", items="trials")
