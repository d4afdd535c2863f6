"""The verdict every exercise checker returns, and small helpers the checkers share."""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

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


def as_number(value, what: str) -> float | Feedback:
    """`value` as a float, or a Feedback saying why it is not a finite number (None, a tensor of many values...)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return Feedback(False, f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return Feedback(False, f"{what} should be a number, got {type(value).__name__} ({value!r}).")
    if not math.isfinite(value):
        return Feedback(False, f"{what} is {value}; it should be finite.")
    return value


def call_learner(fn, *args: torch.Tensor) -> torch.Tensor | Feedback:
    """fn(*copies of args), detached, or a Feedback saying that the learner's function raised or did not
    return a tensor (the learner's code may fail in any way; the checker reports it instead of raising)."""
    try:
        got = fn(*(a.clone() for a in args))
    except Exception as err:
        return Feedback(False, f"calling your function raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor):
        return Feedback(False, f"return a torch.Tensor, got {type(got).__name__}.")
    return got.detach()
