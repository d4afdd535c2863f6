"""Checkers for the exercises of the chapter "Semi-supervised adversarial autoencoders".

* :func:`check_error_rate`: the test error rate (a fraction) of a classifier from its logits;
* :func:`check_class_discriminator`: the optimal discriminator T*(e_c) on the vertices of the simplex
  when the encoder outputs one-hot class codes with frequencies pi (the categorical prior's game);
* :func:`check_choose_labelled`: a class-balanced, reproducible choice of labelled examples without
  duplicates, that refuses impossible requests;
* :func:`check_semi_supervised_step`: one training step of the semi-supervised AAE written by the learner
  (the regularization and classification phases), run against the package's step phase by phase and for a
  few hundred steps on MNIST.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
Makhzani et al. 2016, section 5 (the semi-supervised AAE).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from .feedback import (Feedback, NotYet, as_number, as_vector, call_learner, checker, close, name_fraction_mistake,
                       name_mistake, unrefused, OutOfTime, with_deadline)

__all__ = ["check_error_rate", "check_class_discriminator", "optimal_class_discriminator",
           "check_choose_labelled", "check_semi_supervised_step"]


# ------------------------------------------------------------------------------------ the error rate


@checker
def check_error_rate(answer, y_logits: torch.Tensor, labels: torch.Tensor) -> Feedback:
    """Check `answer`: the fraction (in [0, 1]) of examples whose predicted class argmax_k y_logits[n, k]
    differs from labels[n].

    y_logits: (N, C) class logits (or probabilities: the argmax is the same); labels: (N,) true classes.
    Names the typical mistakes: the accuracy instead of the error, a percentage, the number of errors,
    the *balanced* error (the mean over classes of the per-class error), and the argmax over the wrong
    dimension (dim 0, the examples).
    """
    value = as_number(answer, "the error rate")
    y_logits, labels = torch.as_tensor(y_logits), torch.as_tensor(labels).flatten()
    if y_logits.dim() != 2 or y_logits.shape[0] != len(labels):
        return Feedback(False, f"y_logits should be (N, C) with N = {len(labels)} labels, got "
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
        along_0 = y_logits.argmax(dim=0)           # (C,) indices of examples: a classic slip
        if len(along_0) <= n and close(value, (along_0 != labels[:len(along_0)]).double().mean().item(), 0, tol):
            return Feedback(False, "you took the argmax over dim 0 (over the examples); the predicted class of "
                                   "example n is the argmax of row n: y_logits.argmax(dim=1).")
    if not 0 <= value <= 1:
        return Feedback(False, f"{value} is not a fraction between 0 and 1.")
    return Feedback(False, f"{value:.4f} is not the fraction of misclassified examples; compute "
                           "(y_logits.argmax(dim=1) != labels).float().mean().")


# ------------------------------------------------------------------------------------ the y-discriminator


def optimal_class_discriminator(pi) -> torch.Tensor:
    r"""T*(e_c) = (1/C) / (1/C + pi_c) for c = 0..C-1, float64 (C,).

    The best discriminator between the uniform categorical prior (label 1), whose samples are the one-hot
    vectors e_c with probability 1/C each, and one-hot class codes that the encoder puts at e_c with
    frequency pi_c (label 0): T*(z) = p(z) / (p(z) + q(z)) on the common support (Goodfellow et al. 2014,
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
    r"""Check `answer`: the C values T*(e_c) of the optimal y-discriminator at the C vertices e_c, when
    the prior puts 1/C on each vertex and the (one-hot) codes put pi_c on vertex c.

    Names the typical mistakes: the labels swapped (pi_c / (pi_c + 1/C), the probability that a code came
    from the *encoder*), the density ratio p / q instead of p / (p + q), the logit log p - log q instead
    of T, 1/2 everywhere (true only at the equilibrium pi = 1/C), and a wrong number of values.
    """
    pi = torch.as_tensor(pi, dtype=torch.float64).flatten()
    expected = optimal_class_discriminator(pi)
    got = as_vector(answer, len(pi), "answer", per="vertex", flatten=True, finite=False, mistakes=[
        (lambda v: v.numel() == 1, f"give one value per vertex, C = {len(pi)} numbers, not a single number: the "
                                   "discriminator's output depends on which vertex e_c it sees."),
    ], none="answer is None: give a tensor of C values, T*(e_c) for c = 0..C-1.",
        not_numbers=f"give C = {len(pi)} numbers (a tensor or a list)",
        wrong_length=f"expected C = {len(pi)} values, one per class")
    if close(got, expected, rtol=1e-3, atol=1e-4):  # equal infinities count as close
        return Feedback(True, "T*(e_c) = (1/C) / (1/C + pi_c): below 1/2 on the classes the encoder "
                              "over-uses, above 1/2 on those it under-uses, 1/2 only when pi_c = 1/C.")
    prior = 1.0 / len(pi)
    name_mistake(got, [
        (pi / (pi + prior), "the labels are swapped: pi_c / (pi_c + 1/C) is the probability that the vertex came "
                            "from the *encoder*. T is the probability of the *prior* (label 1): p / (p + q)."),
        (prior / pi, "that is the probability ratio p / q; the discriminator outputs the probability p / (p + q), "
                     "which lies in [0, 1]."),                # inf where pi_c = 0, matched by an inf answer
        (torch.log(prior / pi), "that is the optimal *logit* log p - log q; apply the sigmoid to get T*."),
    ], rtol=1e-3, atol=1e-4)
    if not torch.isfinite(got).all():
        return Feedback(False, "some values are not finite; every vertex has prior probability 1/C > 0, so "
                               "T*(e_c) is a probability in (0, 1].")
    if close(got, torch.full_like(pi, 0.5), rtol=1e-3, atol=1e-4):
        return Feedback(False, "1/2 everywhere is the discriminator at the equilibrium, when the codes already "
                               "use each class with frequency 1/C; here they do not (pi is not uniform).")
    if ((got < 0) | (got > 1)).any():
        return Feedback(False, "some values lie outside [0, 1]; T* is a probability.")
    return Feedback(False, "not T*(e_c) = p(e_c) / (p(e_c) + q(e_c)) with p(e_c) = 1/C (the prior) and "
                           "q(e_c) = pi_c (the codes).")


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

    labels: (N,) int64 classes 0..C-1. The result must be a 1-D integer tensor of per_class * C distinct
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
        return Feedback(False, f"expected per_class * C = {per_class} * {n_classes} = {expected_n} indices, got "
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


# ------------------------------------------------------------------------------------ the semi-supervised step

PHASES = ("reconstruction", "discriminator", "generator", "classification")
_NETWORKS = ("encoder", "decoder", "discriminator_y", "discriminator_z")
# which networks each phase of the package's step sends gradients into (the ones it steps, plus the
# discriminators in the generator phase, whose outputs the encoder's loss goes through)
_EXPECTED_GRADIENTS = {"reconstruction": {"encoder", "decoder"}, "discriminator": {"discriminator_y", "discriminator_z"},
                       "generator": {"encoder", "discriminator_y", "discriminator_z"},
                       "classification": {"encoder"}}


class _OwnStreamPrior:
    """A prior that draws from a generator of its own, so that two steps that sample the class prior and the
    style prior in different orders still see the same samples; it returns the model's dtype."""

    def __init__(self, dim: int, seed: int, dtype: torch.dtype, categorical: bool):
        self.dim, self.categorical, self.dtype = dim, categorical, dtype
        self.n_classes = dim
        self._generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int, device=None) -> torch.Tensor:
        if self.categorical:
            draws = torch.randint(self.dim, (int(n),), generator=self._generator)
            return torch.nn.functional.one_hot(draws, self.dim).to(self.dtype).to(device)
        return torch.randn(int(n), self.dim, generator=self._generator, dtype=self.dtype).to(device)


class _RecordedOptimizer:
    """Wraps an optimizer of the step: records, at every step(), the phase's name, which networks received
    gradients since the previous step() (the backward pass of this phase) and the parameters after the step."""

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, model, log: list):
        self._name, self._optimizer, self._model, self._log = name, optimizer, model, log

    def __getattr__(self, attribute):
        return getattr(self._optimizer, attribute)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        grads = {net: [None if p.grad is None else p.grad.detach().clone()
                       for p in getattr(self._model, net).parameters()] for net in _NETWORKS}
        before = self._log[-1]["grads"] if self._log else {net: [None] * len(g) for net, g in grads.items()}
        fresh = {net for net in _NETWORKS
                 if any(g is not None and (old is None or not torch.equal(g, old))
                        for g, old in zip(grads[net], before[net]))}
        result = self._optimizer.step() if closure is None else self._optimizer.step(closure)
        self._log.append({"phase": self._name, "fresh": fresh, "grads": grads,
                          "params": [p.detach().clone() for p in self._model.parameters()]})
        return result


def _checking_model(hidden, style_dim: int, discriminator_hidden, dtype: torch.dtype, seed: int):
    from ..semi_supervised import SemiSupervisedAAE

    torch.manual_seed(seed)
    model = SemiSupervisedAAE(n_classes=10, style_dim=style_dim, hidden=hidden,
                              discriminator_hidden=discriminator_hidden).to(dtype)
    model.class_prior = _OwnStreamPrior(10, seed + 1, dtype, categorical=True)
    model.prior = _OwnStreamPrior(style_dim, seed + 2, dtype, categorical=False)
    return model


def _mistaken_step(mistake: str | None):
    """The package's step written from the networks, with one typical mistake (None: no mistake)."""
    import torch.nn.functional as F

    from ..aae import discriminator_loss, generator_loss
    from ..training import update

    def reduce(loss, phase):
        return loss.sum() if mistake == f"sum {phase}" else loss.mean()

    def step(model, optimizers, x, y=None, labelled=None):
        losses = {"reconstruction": update(model, optimizers["reconstruction"], model.reconstruction_loss(x).mean(),
                                           "reconstruction")}
        with torch.no_grad():
            y_logits, z = model.encode(x)
        y_code = y_logits if mistake == "logits to T_y" else y_logits.softmax(dim=1)
        y_prior, z_prior = model.class_prior.sample(len(x)), model.prior.sample(len(x))
        games = [(model.discriminator_y, y_prior, y_code), (model.discriminator_z, z_prior, z)]
        games = games[1:] if mistake == "no T_y" else games[:1] if mistake == "no T_z" else games
        if mistake == "swapped discriminator":
            loss = sum(discriminator_loss(T(code), T(prior)) for T, prior, code in games)
        else:
            loss = sum(discriminator_loss(T(prior), T(code)) for T, prior, code in games)
        losses["discriminator"] = update(model, optimizers["discriminator"], reduce(loss, "discriminator"),
                                         "discriminator")
        y_logits, z = model.encode(x)
        y_code = y_logits if mistake == "logits to T_y" else y_logits.softmax(dim=1)
        codes = [(model.discriminator_y, y_code), (model.discriminator_z, z)]
        codes = codes[1:] if mistake == "no T_y" else codes[:1] if mistake == "no T_z" else codes
        if mistake == "saturating":
            loss = sum(generator_loss(T(code), saturating=True) for T, code in codes)
        elif mistake == "swapped generator":
            loss = sum(F.softplus(T(code)) for T, code in codes)              # -log(1 - T): away from the prior
        else:
            loss = sum(generator_loss(T(code)) for T, code in codes)
        losses["generator"] = update(model, optimizers["generator"], reduce(loss, "generator"), "generator")
        x_l, y_l = labelled
        y_logits, _ = model.encode(x_l)
        if mistake == "softmax twice":
            loss = F.cross_entropy(y_logits.softmax(dim=1), y_l, reduction="none")
        elif mistake == "nll of logits":
            loss = F.nll_loss(y_logits, y_l, reduction="none")
        elif mistake == "nll of probabilities":
            loss = F.nll_loss(y_logits.softmax(dim=1), y_l, reduction="none")
        else:
            loss = F.cross_entropy(y_logits, y_l, reduction="none")
        losses["classification"] = update(model, optimizers["classification"], reduce(loss, "classification"),
                                          "classification")
        return losses

    return step


_MISTAKES = {
    "discriminator": {
        "swapped discriminator": "the discriminators' labels are swapped: the prior samples are label 1 and the "
                                 "codes label 0, discriminator_loss(T(prior sample), T(code)), so that T is the "
                                 "probability that its input came from the prior.",
        "logits to T_y": "T_y was given the class logits a; its input is the class code softmax(a), a point of the "
                         "simplex like the one-hot prior samples it is compared with.",
        "no T_y": "only T_z was trained: the regularization phase plays two games, the class code against the "
                  "categorical prior (T_y) and the style against the Gaussian (T_z); add both losses.",
        "no T_z": "only T_y was trained: the regularization phase plays two games, the class code against the "
                  "categorical prior (T_y) and the style against the Gaussian (T_z); add both losses.",
        "sum discriminator": "the discriminator phase sums its loss over the minibatch; the package takes the mean "
                             "per example (.mean()), as every loss of the book.",
    },
    "generator": {
        "saturating": "the generator phase minimizes the saturating loss log(1 - T); use the non-saturating "
                      "-log T = generator_loss(logits), whose gradient does not vanish while T rejects the codes.",
        "swapped generator": "the generator's labels are swapped: it minimizes -log(1 - T) and so pushes the codes "
                             "*away* from the prior; the encoder wants T = 1 on its codes: generator_loss(logits) "
                             "= -log T.",
        "sum generator": "the generator phase sums its loss over the minibatch; the package takes the mean per "
                         "example (.mean()).",
    },
    "classification": {
        "softmax twice": "the classification loss applies the softmax twice: F.cross_entropy takes the class "
                         "*logits* a (it applies log_softmax itself), not the probabilities softmax(a).",
        "nll of logits": "F.nll_loss expects log-probabilities, and the logits are not: use F.cross_entropy(a, y), "
                         "or F.nll_loss(a.log_softmax(dim=1), y).",
        "nll of probabilities": "F.nll_loss expects log-probabilities, not probabilities: use "
                                "F.cross_entropy(a, y) on the logits.",
        "sum classification": "the classification phase sums its loss over the labelled minibatch; the package "
                              "takes the mean per example (.mean()).",
    },
}
_HINTS = {
    "reconstruction": "the reconstruction phase: update(model, optimizers['reconstruction'], "
                      "model.reconstruction_loss(x).mean()).",
    "discriminator": "the discriminator phase: the codes (softmax(a), z) of x without gradient, as many samples of "
                     "model.class_prior and model.prior, and one update of optimizers['discriminator'] on the mean "
                     "of discriminator_loss(T_y(y prior), T_y(softmax(a))) + discriminator_loss(T_z(z prior), T_z(z)).",
    "generator": "the generator phase: encode x again (with gradient) and take one update of optimizers['generator'] "
                 "on the mean of generator_loss(T_y(softmax(a))) + generator_loss(T_z(z)).",
    "classification": "the classification phase: the class logits a of the labelled images and one update of "
                      "optimizers['classification'] on the mean of F.cross_entropy(a, y).",
}


def _run_step(step, model, x, labelled, call: str):
    log: list = []
    optimizers = {name: _RecordedOptimizer(name, opt, model, log) for name, opt in model.make_optimizers().items()}
    model.zero_grad(set_to_none=True)

    def hint(err: Exception) -> str:
        text = str(err)
        if "does not require grad" in text:
            return (" A loss had no gradient: in the generator and classification phases encode x again, outside "
                    "torch.no_grad(), so that the loss reaches the encoder.")
        if "modified by an inplace operation" in text or "backward through the graph a second time" in text:
            return (" Compute each phase's loss after the previous phase's update: encode x again for the "
                    "generator phase and pass the codes through the *updated* discriminators.")
        if isinstance(err, KeyError):
            return f" The optimizers are named {', '.join(PHASES)}."
        return ""

    losses = call_learner(functools.partial(step, labelled=labelled), model, optimizers, x, None, call=call, copy=False, returns=dict, detach=False,
                          expect="a dict of the phases' mean losses, e.g. {'reconstruction': ..., ...}", hint=hint)
    return losses, log


def _differing(log_a: dict, log_b: dict, model) -> list[str]:
    """The networks whose parameters differ between two snapshots of the same model."""
    index, names = 0, []
    for net in _NETWORKS:
        n = len(list(getattr(model, net).parameters()))
        if not all(close(a, b, rtol=1e-7, atol=1e-9) for a, b in zip(log_a["params"][index:index + n],
                                                                      log_b["params"][index:index + n])):
            names.append(net)
        index += n
    return names


def _one_step(step, x, labelled, settings) -> tuple[torch.nn.Module, dict, list]:
    model = _checking_model(**settings)
    losses, log = _run_step(step, model, x, labelled, "your step")
    return model, losses, log


@checker
def check_semi_supervised_step(step: Callable, x_train: torch.Tensor, y_train: torch.Tensor,
                               x_test: torch.Tensor, y_test: torch.Tensor, steps: int = 150,
                               labels_per_class: int = 10, batch_size: int = 50, time_limit: float = 60.0,
                               hidden=(64, 32), style_dim: int = 5, discriminator_hidden=(32, 32),
                               seed: int = 0) -> Feedback:
    """Check `step(model, optimizers, x, y=None, labelled=(x_l, y_l)) -> dict of losses`, one minibatch of the
    semi-supervised AAE (Makhzani et al. 2016, section 5), against :func:`ae_course.aae.adversarial_step`,
    the package's step, from the same initial weights, minibatches and prior samples.

    First one step, in float64, phase by phase: the step must call ``step()`` on the optimizers it is given,
    ``optimizers[name]`` for the phases reconstruction, discriminator, generator, classification in this
    order; the discriminator phase must send no gradient into the encoder (detached codes); the parameters
    after each phase must equal the package's (to 1e-7 relative); and the returned losses must be the
    package's mean losses per example. Then `steps` steps with :func:`ae_course.train` on the first images of
    x_train (all used as unlabelled images), `labels_per_class` labelled images per class (a seeded balanced
    choice), and the same for the package's step: the test error on (x_test, y_test) and the
    reconstruction error of both runs must agree (to 0.02 and 0.5 %), each run in less than `time_limit`
    seconds of wall-clock time (on one CPU thread: the networks are too small to gain from more). The model
    is a small ``SemiSupervisedAAE(hidden=hidden, style_dim=style_dim,
    discriminator_hidden=discriminator_hidden)``, 10 classes; its priors draw from generators of their own.

    Names the typical mistakes: a phase missing, in another order, or stepping another phase's optimizer;
    codes not detached in the discriminator phase; the discriminators' labels swapped; T_y given the
    logits a instead of softmax(a); one of the two games missing; the saturating or label-swapped
    generator loss; the softmax applied twice (cross-entropy of probabilities); nll_loss of logits or of
    probabilities; sums instead of means; losses returned with their graph or under other names.
    """
    from ..aae import adversarial_step

    settings = {"hidden": tuple(hidden), "style_dim": int(style_dim),
                "discriminator_hidden": tuple(discriminator_hidden), "seed": seed}
    x_train, y_train = torch.as_tensor(x_train), torch.as_tensor(y_train).long()
    gen = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.nonzero(y_train == k).flatten()[torch.randperm(int((y_train == k).sum()), generator=gen)
                      [:labels_per_class]] for k in range(10)])
    x_l, y_l = x_train[rows], y_train[rows]
    pick = torch.randint(len(rows), (min(batch_size, len(rows)),), generator=gen)
    batch = torch.randperm(len(x_train), generator=gen)[:batch_size]
    one_step = {**settings, "dtype": torch.float64}
    x64, labelled64 = x_train[batch].double(), (x_l[pick].double(), y_l[pick])

    # ---- one step, phase by phase
    model, losses, log = _one_step(step, x64, labelled64, one_step)
    reference_model = _checking_model(**one_step)
    reference_losses, reference_log = _run_step(adversarial_step, reference_model, x64, labelled64, "the package")
    sequence = [entry["phase"] for entry in log]
    if not sequence:
        return Feedback(False, "your step did not call step() on any of the optimizers it was given: each phase is "
                               "one update (ae_course.training.update) with its own optimizer, optimizers[name].")
    if sequence != list(PHASES):
        missing = [phase for phase in PHASES if phase not in sequence]
        if sequence == [phase for phase in PHASES if phase in sequence] and missing:
            return Feedback(False, f"your step runs the phases {', '.join(sequence)} only; the "
                                   f"{' and the '.join(missing)} phase{'s are' if len(missing) > 1 else ' is'} missing. "
                                   + " ".join(_HINTS[phase][0].upper() + _HINTS[phase][1:] for phase in missing))
        if sequence.count("discriminator") == 2 and [p for p in sequence if p != "discriminator"] == [
                p for p in PHASES if p != "discriminator"]:
            return Feedback(False, "your step updates the discriminators twice, one game after the other; the "
                                   "package takes one step of optimizers['discriminator'] (over both T_y and T_z) on "
                                   "the sum of both games' losses.")
        if len(sequence) == len(PHASES) and set(sequence) != set(PHASES):
            slot = next(i for i, (a, b) in enumerate(zip(sequence, PHASES)) if a != b)
            return Feedback(False, f"the {PHASES[slot]} phase stepped optimizers['{sequence[slot]}']; it has its own, "
                                   f"optimizers['{PHASES[slot]}']. Each phase's optimizer holds exactly the "
                                   "parameters the phase may change, with its own learning rate (and beta1 = 0.5 "
                                   "for the two adversarial phases).")
        if sorted(sequence) == sorted(PHASES):
            return Feedback(False, f"your step runs the phases in the order {', '.join(sequence)}; run them as "
                                   f"the paper and the package do: {', '.join(PHASES)} (reconstruction, then "
                                   "regularization, then the semi-supervised phase).")
        return Feedback(False, f"your step called step() on the optimizers {', '.join(sequence)}; expected one "
                               f"update per phase: {', '.join(PHASES)}.")
    for entry in log:
        extra = entry["fresh"] - _EXPECTED_GRADIENTS[entry["phase"]]
        if entry["phase"] == "discriminator" and "encoder" in extra:
            return Feedback(False, "the discriminator phase sent gradients into the encoder: compute the codes "
                                   "under torch.no_grad() (or .detach() them). Only the discriminators' optimizer "
                                   "steps here, so the result is the same, but the backward pass through the "
                                   "encoder is wasted, and with an optimizer over the whole model it would train "
                                   "the encoder to *help* the discriminators.")
    for i, phase in enumerate(PHASES):
        networks = _differing(log[i], reference_log[i], model)
        if not networks:
            continue
        for mistake, message in _MISTAKES.get(phase, {}).items():
            _, _, mistaken_log = _one_step(_mistaken_step(mistake), x64, labelled64, one_step)
            if not _differing(log[i], mistaken_log[i], model):
                raise NotYet(message)
        return Feedback(False, f"after the {phase} phase of one step, the parameters of {' and '.join(networks)} "
                               f"differ from the package's (the phases before it agree). Expected " + _HINTS[phase])
    missing = [phase for phase in PHASES if phase not in losses]
    if missing:
        return Feedback(False, f"the parameters are right, but the returned dict has no "
                               f"{', '.join(repr(m) for m in missing)}: return each phase's mean loss under its "
                               f"name ({', '.join(PHASES)}), as ae_course.train records them.")
    for phase in PHASES:
        value = losses[phase]
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return Feedback(False, f"the {phase} loss was returned with its autograd graph; return it detached "
                                   "(update returns the loss detached), or the graph of every step is kept alive.")
        got, expected = as_number(value, f"the returned {phase} loss"), reference_losses[phase].item()
        if not close(got, expected, rtol=1e-6, atol=1e-9):
            name_mistake(got, [(expected * len(x64), f"the returned {phase} loss is a sum over the minibatch; "
                                                     "return the mean per example.")], rtol=1e-6)
            return Feedback(False, f"the parameters are right, but the returned {phase} loss is {got:.6g}, the "
                                   f"package's {expected:.6g}: return the mean loss of the update.")

    # ---- a few hundred steps on the real data, the learner's step and the package's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcomes = _train_both(step, adversarial_step, settings, x_train, (x_l, y_l), x_test, y_test, steps,
                               batch_size, time_limit, seed)
    finally:
        torch.set_num_threads(threads)
    if isinstance(outcomes, str):
        return Feedback(False, outcomes)
    (error, recon, seconds), (ref_error, ref_recon, ref_seconds) = outcomes.values()
    summary = (f"after {steps} steps on MNIST ({len(rows)} labels), test error {error:.3f} (the package's step: "
               f"{ref_error:.3f}), reconstruction error {recon:.1f} nats ({ref_recon:.1f}), {seconds:.1f} s "
               f"({ref_seconds:.1f} s)")
    if abs(error - ref_error) > 0.02 or abs(recon - ref_recon) > 0.005 * abs(ref_recon):
        return Feedback(False, f"one step agrees with the package's phase by phase, but {summary}: does your step "
                               "keep a state of its own between calls?")
    return Feedback(True, "one step agrees with the package's, phase by phase; " + summary + ".")


def _train_both(step, reference, settings, x_train, labelled, x_test, y_test, steps, batch_size, time_limit, seed):
    """(test error, reconstruction error, seconds) of `steps` steps of training with `step` and with
    `reference`, by name; or a message if a run takes longer than `time_limit` seconds."""
    import time

    from ..training import train

    outcomes = {}
    for who, fn in (("your step", step), ("the package's step", reference)):
        model = _checking_model(**settings, dtype=torch.float32)
        start = time.perf_counter()
        try:
            train(model, x_train.float(), labelled=(labelled[0].float(), labelled[1]), steps=steps,
                  batch_size=batch_size, seed=seed, step=with_deadline(fn, time_limit), progress=False,
                  device="cpu")
        except OutOfTime:
            return (f"{who} took longer than {time_limit:.0f} s for {steps} steps of a small model; the "
                    "package's step takes a fraction of that.")
        seconds = time.perf_counter() - start
        error = (model.classify(x_test.float()) != torch.as_tensor(y_test)).double().mean().item()
        with torch.no_grad():
            recon = model.reconstruction_loss(x_test.float()).mean().item()
        outcomes[who] = (error, recon, seconds)
    return outcomes
