"""The verdict every exercise checker returns, and the helpers the checkers share.

A checker is a function decorated with :func:`checker`. It stops at the first problem it finds: it either
returns a :class:`Feedback` itself, or one of the helpers below raises :class:`NotYet`, which the decorator
turns into the Feedback it carries. So a checker holds only its reference answer and its list of known
mistakes; the helpers do the rest:

* :func:`call_learner` is the one guarded path by which a checker runs learner code (a function, or a
  method of a learner's object). It says plainly what happened: the function raised (and what), returned
  None (a missing ``return``), or returned something of the wrong type. :func:`unrefused` uses the same
  path to check that invalid inputs are refused with an exception;
* :func:`as_number` and :func:`as_vector` turn a learner's answer (a tensor, array, list or number) into a
  float or a float64 vector of the expected length, naming a wrong shape (one value per pixel, a single
  number for the whole batch...);
* :func:`close` and :func:`name_mistake` compare with a tolerance: the second raises NotYet with the message
  of the first known mistake whose value matches the answer (:func:`name_fraction_mistake` knows the usual
  slips in a fraction: a percentage, the complement, a count);
* :func:`with_deadline` wraps the training step a checker hands to ``ae_course.train`` so that the learner's
  training stops with :class:`OutOfTime` once the checker's wall-clock limit is used up;
* :func:`prefixed` puts the context in front of a message ("right for moderate logits, but at +-100: ...").
"""
from __future__ import annotations

import functools
import math
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Feedback:
    """The verdict of a checker: `passed`, and a message that explains it."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return textwrap.fill(("Correct: " if self.passed else "Not yet: ") + self.message, width=88)

    __repr__ = __str__


class NotYet(Exception):
    """A problem with the learner's answer, found by a helper; :func:`checker` returns it as a failed Feedback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def checker(check: Callable[..., Feedback]) -> Callable[..., Feedback]:
    """Decorate a checker so that a :class:`NotYet` raised inside it is returned as ``Feedback(False, message)``.

    Any other exception propagates: it is a bug of the checker or of the chapter that calls it, not a wrong
    answer.
    """
    @functools.wraps(check)
    def checked(*args, **kwargs) -> Feedback:
        try:
            return check(*args, **kwargs)
        except NotYet as problem:
            return Feedback(False, problem.message)
    return checked


class OutOfTime(Exception):
    """Raised by a step wrapped with :func:`with_deadline` once its time is up; it stops ``ae_course.train``."""


def with_deadline(step: Callable, seconds: float) -> Callable:
    """`step` (``step(model, optimizers, x, y, **extra) -> {name: loss}``, as ``ae_course.train`` calls it)
    wrapped so that every call first reads the clock: once `seconds` of wall-clock time have passed since this
    call, it raises :class:`OutOfTime` instead of stepping. The checker that catches it says what took too long.
    """
    deadline = time.perf_counter() + seconds

    def timed(*args, **kwargs):
        if time.perf_counter() > deadline:
            raise OutOfTime(f"out of the {seconds:g} s the checker allows")
        return step(*args, **kwargs)

    return timed


@contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Put `prefix` in front of the message of any NotYet raised inside, e.g. "right for moderate logits, but "."""
    try:
        yield
    except NotYet as problem:
        raise NotYet(prefix + problem.message) from None


# ------------------------------------------------------------------------------------ running learner code


def _fresh(arg):
    """A copy of a tensor or array argument, so that the learner's code cannot change the checker's data."""
    if isinstance(arg, torch.Tensor):
        return arg.clone()
    if isinstance(arg, np.ndarray):
        return arg.copy()
    return arg


def _run(fn: Callable, args: Sequence, copy: bool) -> tuple[Any, Exception | None]:
    """The only place where learner code is called: (its result, None), or (None, the exception it raised)."""
    try:
        return fn(*(map(_fresh, args) if copy else args)), None
    except Exception as err:  # the learner's code may fail in any way; the caller says how
        return None, err


def call_learner(fn: Callable, *args, call: str = "your function", when: str = "",
                 returns: type | tuple[type, ...] | None = torch.Tensor, expect: str = "a torch.Tensor",
                 copy: bool = True, detach: bool = True, hint: Callable[[Exception], str] | None = None) -> Any:
    """``fn(*args)``, or NotYet saying plainly what went wrong.

    The arguments are copied first (``copy=False`` passes them as they are, e.g. to see whether the learner's
    function changes its input). NotYet is raised if the call raises ("calling your function raised ...",
    followed by ``hint(err)`` if given), returns None ("returned None: is a `return` statement missing?") or
    returns something that is not an instance of `returns` (None: anything but None goes). `expect`
    describes what it should return, `call` what was called and `when` with which inputs, for the messages.
    A tensor result is detached from the autograd graph unless ``detach=False``.
    """
    result, err = _run(fn, args, copy)
    if err is not None:
        raise NotYet(f"calling {call}{when} raised {type(err).__name__}: {err}" + (hint(err) if hint else ""))
    if result is None:
        raise NotYet(f"{call} returned None{when} (is a `return` statement missing?); return {expect}.")
    if returns is not None and not isinstance(result, returns):
        raise NotYet(f"{call} returned a {type(result).__name__}{when}; return {expect}.")
    if detach and isinstance(result, torch.Tensor):
        result = result.detach()
    return result


def unrefused(fn: Callable, cases: Iterable[tuple[str, Sequence]], error: type[Exception] = ValueError) -> list[str]:
    """For each (description, args) in `cases`, inputs that `fn` must refuse by raising `error`: what it did
    instead, e.g. ["a negative label returned without an error", "5 labels raised IndexError instead of
    ValueError (...)"]; empty if every case was refused."""
    problems = []
    for what, args in cases:
        _, err = _run(fn, args, copy=True)
        if err is None:
            problems.append(f"{what} returned without an error")
        elif not isinstance(err, error):
            problems.append(f"{what} raised {type(err).__name__} instead of {error.__name__} ({err})")
    return problems


# ------------------------------------------------------------------------------------ reading answers


def _type_name(value) -> str:
    return type(value).__name__


def as_number(value, what: str, *, finite: bool = True, none: str | None = None, several: str = "") -> float:
    """`value` (a number, or a tensor or array of one element) as a float; otherwise NotYet saying why it is
    not one (None, several values, not a number, not finite unless ``finite=False``). `what` names it in the
    messages; `none`, if given, replaces the message for None, and `several` is added to the one for several
    values (the likely mistake)."""
    if value is None:
        raise NotYet(none or f"{what} is None: compute it and store it in the variable; it should be a number.")
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic, list, tuple)):
        try:
            array = np.asarray(value.detach().cpu().double() if isinstance(value, torch.Tensor) else value,
                               dtype=np.float64)
        except Exception:  # not numbers, ragged, or a learner's object that fails on float()
            raise NotYet(f"{what} should be a number, got a {_type_name(value)} of non-numbers.") from None
        if array.size != 1:
            raise NotYet(f"{what} should be a single number, got {array.size} values (shape {array.shape}){several}.")
        value = array.item()
    try:
        number = float(value)
    except Exception:  # a learner's object may fail in any way on float()
        raise NotYet(f"{what} should be a number, got {_type_name(value)} ({value!r}).") from None
    if finite and not math.isfinite(number):
        raise NotYet(f"{what} is {number}; it should be finite.")
    return number


Match = tuple[int, ...] | Callable[[torch.Tensor], bool]


def as_vector(value, length: int | None, what: str, *, per: str = "image", mistakes: Iterable[tuple[Match, str]] = (),
              flatten: bool = False, finite: bool = True, none: str | None = None, not_numbers: str | None = None,
              wrong_length: str | None = None) -> torch.Tensor:
    """`value` (a tensor, array or list from the learner) as a float64 tensor of shape (length,), one value per
    `per`; otherwise NotYet naming what is wrong.

    `mistakes` are (shape, message) pairs for the known wrong shapes, checked first (one value per pixel...),
    or (test, message) pairs where test(the float64 tensor) says whether it is that mistake (see :func:`mean_of`).
    Then: a single number, a shape other than (length,) (after flattening with ``flatten=True``; ``length=None``
    accepts any length), and entries that are not finite (unless ``finite=False``). `none` replaces the
    message for None; `not_numbers` and `wrong_length` the start of those for a value that is not numbers
    ("<not_numbers>, got <type>.") and for a wrong length ("<wrong_length>, got <number of values>.").
    """
    if value is None:
        raise NotYet(none or f"{what} is None: compute it and store it in the variable.")
    try:
        vector = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value,
                                 dtype=torch.float64).cpu()
    except Exception:  # not numbers, ragged, or a learner's object that fails on float()
        start = not_numbers or f"{what} should be {length or 'several'} numbers (a tensor or a list)"
        raise NotYet(f"{start}, got {_type_name(value)}.") from None
    for match, message in mistakes:
        if match(vector) if callable(match) else tuple(vector.shape) == tuple(match):
            raise NotYet(message)
    if flatten:
        vector = vector.flatten()
    if vector.numel() == 1 and length != 1:
        raise NotYet(f"{what} is a single number, not one value per {per}"
                     + (f" (shape ({length},))." if length else "."))
    if length is not None and tuple(vector.shape) != (length,):
        if wrong_length:
            raise NotYet(f"{wrong_length}, got {vector.numel()}.")
        raise NotYet(f"expected shape ({length},) for {what}: {length} entries, one per {per}; "
                     f"got {tuple(vector.shape)}.")
    if vector.dim() != 1:
        raise NotYet(f"{what} should be a vector, one value per {per}, got shape {tuple(vector.shape)}.")
    if finite and not torch.isfinite(vector).all():
        raise NotYet(f"{what} has entries that are not finite (NaN or inf).")
    return vector


def mean_of(expected: torch.Tensor, rtol: float = 1e-4) -> Callable[[torch.Tensor], bool]:
    """For :func:`as_vector`'s mistakes: the answer is one number, the mean of `expected` (B > 1 values)."""
    return lambda got: (len(expected) > 1 and got.numel() == 1
                        and close(got.sum().item(), expected.mean().item(), rtol, 0))


# ------------------------------------------------------------------------------------ comparing answers


def close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Whether `a` is close to `b`: numbers with math.isclose (rtol relative to the larger, or atol), tensors
    (or a tensor and a list) of the same shape with torch.allclose in float64 (|a - b| <= atol + rtol |b|;
    equal infinities are close, NaN never is)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def name_mistake(got, mistakes: Iterable[tuple[Any, str]], rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """NotYet with the message of the first (value, message) in `mistakes` whose value is close to `got`."""
    for value, message in mistakes:
        if close(got, value, rtol, atol):
            raise NotYet(message)


def name_fraction_mistake(value: float, fraction: float, n: int, *, complement: str, count: str, items: str,
                          note: str = "") -> None:
    """NotYet for the usual slips in a fraction of `n` items whose right value is `fraction` (all to within half
    an item): a percentage, the complementary fraction (`complement` is the message), and the number of `count`
    instead of the fraction of `items`. `note` is added to the message for a percentage."""
    name_mistake(value, [(100 * fraction, f"that is a percentage; give the fraction, between 0 and 1{note}.")],
                 rtol=0, atol=50 / n)
    name_mistake(value, [(1 - fraction, complement)], rtol=0, atol=0.5 / n)
    name_mistake(value, [(fraction * n, f"that is the number of {count}; divide by the number of {items}, {n}.")],
                 rtol=0, atol=0.5)


def max_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest absolute difference between two tensors of the same shape, in float64."""
    return (got.double() - expected.double()).abs().max().item()
