"""Checkers for the exercises of the chapter "The adversarial autoencoder in practice".

* :func:`check_ring_prior`: a prior of one's own behind the :class:`ae_course.priors.Prior` interface
  (``dim``, ``sample(n, device=None) -> (n, dim)``), here a noisy ring, the kind of prior an adversarial
  autoencoder can impose because it only needs samples (Makhzani et al. 2016, section 2);
* :func:`check_two_sample_test`: a classifier two-sample test written by the learner (Lopez-Paz & Oquab
  2017), compared with :func:`ae_course.evaluation.two_sample_accuracy` on pairs of samples whose answer
  is known and on the chapter's codes;
* :func:`check_null_two_sample_accuracy`: the mean and standard deviation of the classifier two-sample
  accuracy when both samples come from one distribution (Lopez-Paz & Oquab 2017, section 3);
* :func:`check_occupied_fraction`: for each digit, the fraction of the mixture prior's components that
  hold at least a given share of its codes.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .feedback import Feedback, NotYet, as_number, as_vector, call_learner, checker, close, name_mistake

__all__ = ["check_ring_prior", "check_two_sample_test", "check_null_two_sample_accuracy", "component_of",
           "check_occupied_fraction"]


# ----------------------------------------------------------------------------------------- a ring prior


@checker
def check_ring_prior(prior, radius: float = 4.0, width: float = 0.3) -> Feedback:
    """Check `prior`, an object with ``dim`` and ``sample(n, device=None)``, against the ring prior

        z = r (cos t, sin t),  t ~ Uniform[0, 2 pi),  r ~ N(radius, width^2),

    sampled with torch's global generator (so that ``torch.manual_seed`` makes it reproducible).

    Checks, in this order, and names the mistake of the first that fails: ``dim == 2``; ``sample(n)``
    returns a torch tensor (not numpy) of shape (n, 2) (not (2, n)) and dtype float32 (the networks'
    dtype), accepts ``device="cpu"``, and is reproducible under ``torch.manual_seed`` (numpy's or
    Python's generator is not); then, on 20,000 samples, that the angles cover the whole circle (not
    [0, pi) nor [0, 1) radians), that the mean radius is `radius` and that the radial standard deviation
    is `width` (not width squared, not its square root), all with tolerances of many standard errors.
    """
    dim = getattr(prior, "dim", None)
    if dim is None:
        return Feedback(False, "the prior has no attribute `dim`; the AAE reads prior.dim to check it against "
                               "latent_dim. Set self.dim = 2 in __init__.")
    if dim != 2:
        return Feedback(False, f"prior.dim is {dim!r}; a ring lives in the plane, dim = 2.")
    if not callable(getattr(prior, "sample", None)):
        return Feedback(False, "the prior has no method sample(n, device=None).")
    n = 20000

    def interface(err: Exception) -> str:
        return " The interface is sample(self, n, device=None)." if isinstance(err, TypeError) else ""

    def sample(call: str, *args, **kwargs):
        return call_learner(functools.partial(prior.sample, **kwargs), *args, call=call, returns=None,
                            expect="a torch tensor of shape (n, 2)", hint=interface)

    torch.manual_seed(0)
    z = sample("prior.sample(n)", n)
    torch.manual_seed(0)
    again = sample("prior.sample(n)", n)
    on_cpu = sample("prior.sample(5, device='cpu')", 5, device="cpu")
    if isinstance(z, np.ndarray):
        return Feedback(False, "sample returned a numpy array; return a torch tensor (torch.stack, or "
                               "torch.from_numpy), since the discriminator is a torch network.")
    if not isinstance(z, torch.Tensor):
        return Feedback(False, f"sample should return a torch.Tensor, got {type(z).__name__}.")
    if tuple(z.shape) == (2, n):
        return Feedback(False, "sample(n) returned shape (2, n); the interface is one sample per row, (n, 2): "
                               "stack the coordinates with dim=1.")
    if tuple(z.shape) != (n, 2):
        return Feedback(False, f"sample({n}) returned shape {tuple(z.shape)}, expected ({n}, 2).")
    if z.dtype != torch.float32:
        return Feedback(False, f"the samples have dtype {z.dtype}; return float32 (.float()), the dtype of the "
                               "networks' weights.")
    if not isinstance(on_cpu, torch.Tensor) or tuple(on_cpu.shape) != (5, 2) or on_cpu.device.type != "cpu":
        return Feedback(False, "sample(5, device='cpu') should return a (5, 2) tensor on the CPU; move the result "
                               "with .to(device).")
    if not torch.isfinite(z).all():
        return Feedback(False, "some samples are not finite.")
    if not torch.equal(z, again):
        return Feedback(False, "two calls after torch.manual_seed(0) gave different samples: draw with torch's "
                               "global generator (torch.rand, torch.randn), not numpy's or Python's random, so "
                               "that torch.manual_seed makes training reproducible.")
    z = z.double()
    r = z.norm(dim=1)
    angle = torch.atan2(z[:, 1], z[:, 0])                                    # (-pi, pi]
    quadrant = ((angle + math.pi) / (math.pi / 2)).floor().clamp(0, 3).long()
    shares = torch.bincount(quadrant, minlength=4).double() / n
    if (shares < 0.2).any():
        if (angle.abs() < 1.1).double().mean().item() > 0.97:
            return Feedback(False, "the samples cover only a small arc: torch.rand gives numbers in [0, 1); "
                                   "multiply by 2 pi to get an angle in radians on [0, 2 pi).")
        upper = (z[:, 1] >= 0).double().mean().item()
        if upper > 0.97 or upper < 0.03:
            return Feedback(False, "all samples lie in one half-plane: the angle must be uniform on [0, 2 pi), "
                                   "not [0, pi).")
        return Feedback(False, "the angles are not uniform around the circle: the four quadrants hold "
                               + ", ".join(f"{s:.2f}" for s in shares.tolist()) + " of the samples, not 0.25 each.")
    mean_r, std_r = r.mean().item(), r.std().item()
    if abs(mean_r - radius) > max(0.05, 10 * width / math.sqrt(n)) and abs(mean_r - radius) > 0.02 * radius:
        return Feedback(False, f"the mean radius is {mean_r:.3f}, expected {radius}: centre the radius at "
                               "`radius`, r = radius + width * eps.")
    if std_r < 0.01 * width:
        return Feedback(False, f"all samples have the same radius ({mean_r:.3f}): add the radial noise "
                               "width * eps, eps ~ N(0, 1).")
    for wrong, name in [(width ** 2, "width squared (a variance)"), (math.sqrt(width), "the square root of width")]:
        if abs(wrong - width) > 0.2 * width and abs(std_r - wrong) < 0.1 * abs(wrong - width):
            return Feedback(False, f"the radial standard deviation is {std_r:.3f}, which is {name}; multiply eps ~ "
                                   f"N(0, 1) by the standard deviation width = {width}.")
    if abs(std_r / width - 1) > 0.1:
        return Feedback(False, f"the radial standard deviation is {std_r:.3f}, expected {width}.")
    return Feedback(True, f"dim 2, (n, 2) float32 samples, reproducible; angles uniform, radius {mean_r:.3f} "
                          f"+- {std_r:.3f}.")


# ----------------------------------------------------------------------------------------- the two-sample test


def _in_sample_accuracy(a: torch.Tensor, b: torch.Tensor, seed: int = 0, k: int = 25) -> float:
    """The typical mistake: the k-NN classifier fitted on all points and scored on the same points."""
    from sklearn.neighbors import KNeighborsClassifier

    features = torch.cat([a, b]).detach().double().numpy()
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    return float(KNeighborsClassifier(n_neighbors=k).fit(features, labels).score(features, labels))


@checker
def check_two_sample_test(fn, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
                          n_seeds: int = 5) -> Feedback:
    """Check `fn(a, b, seed) -> accuracy`, a classifier two-sample test (Lopez-Paz & Oquab 2017, section 2):
    label the rows of a 0 and those of b 1, split both at random (reproducibly for `seed`) into a half that
    fits a k-nearest-neighbours classifier (k = 25) and a half that scores it, and return the accuracy on
    the second half.

    It is compared with the package's :func:`ae_course.evaluation.two_sample_accuracy`, as the mean over
    seeds 0..n_seeds-1 (the splits may differ, so single values differ by sampling noise), on three pairs of
    1,000 + 1,000 two-dimensional Gaussian points whose answer is known (the same distribution: 0.5; means
    one standard deviation apart: about 0.67; six apart: 1.0), and on the pair (a, b) if given (e.g. the
    chapter's codes and prior samples). Tolerance: 0.04, about four standard errors of a mean of five.

    Names the typical mistakes: the classifier scored on the points it was fitted on (an accuracy above
    0.5 for two samples of one distribution), a split that is not shuffled (the fitting half holds only
    the first sample), the error rate instead of the accuracy, a percentage, a seed that is ignored or a
    result that is not reproducible.
    """
    from ..evaluation import two_sample_accuracy

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1000, 2, generator=gen)
    pairs = {"two samples of N(0, I)": (base, torch.randn(1000, 2, generator=gen)),
             "N(0, I) vs N((1, 0), I)": (base, torch.randn(1000, 2, generator=gen) + torch.tensor([1.0, 0.0])),
             "N(0, I) vs N((6, 0), I)": (base, torch.randn(1000, 2, generator=gen) + torch.tensor([6.0, 0.0]))}
    if a is not None and b is not None:
        pairs["your pair (a, b)"] = (torch.as_tensor(a).detach().cpu(), torch.as_tensor(b).detach().cpu())
    tolerance, seeds = 0.04, range(int(n_seeds))
    results = []
    for what, (first, second) in pairs.items():
        got = []
        for seed in seeds:
            value = call_learner(fn, first, second, seed, call="fn(a, b, seed)", when=f" on {what}", returns=None,
                                 expect="the accuracy, a number between 0 and 1")
            got.append(as_number(value, f"the accuracy on {what}", several=" (return one accuracy for the pair)"))
        mean = float(np.mean(got))
        expected = float(np.mean([two_sample_accuracy(first, second, seed=seed) for seed in seeds]))
        if close(mean, expected, rtol=0, atol=tolerance):
            results.append((what, mean, expected))
            continue
        name_mistake(mean, [(100 * expected, "that is a percentage; return the accuracy as a fraction.")],
                     rtol=0, atol=100 * tolerance)
        if mean < 0.1 and expected > 0.4:
            raise NotYet(f"on {what} the accuracy is {mean:.3f}: the fitting part seems to hold only the first "
                         "sample (label 0) and the scoring part only the second. Split each sample at random, "
                         "e.g. train_test_split(..., shuffle=True, stratify=labels, random_state=seed).")
        if abs(expected - 0.5) > 2 * tolerance and close(mean, 1 - expected, rtol=0, atol=tolerance):
            raise NotYet(f"on {what} you return {mean:.3f} and the reference {expected:.3f}: that is the error "
                         "rate; return the accuracy, the fraction of held-out points classified right.")
        in_sample = _in_sample_accuracy(first, second)
        if close(mean, in_sample, rtol=0, atol=tolerance / 2) and in_sample > expected + tolerance / 2:
            raise NotYet(f"on {what} you get {mean:.3f}, the reference {expected:.3f}: the classifier was scored "
                         f"on the points it was fitted on (that gives {in_sample:.3f}). A nearest-neighbours "
                         "classifier counts each point among its own neighbours, so even two samples of one "
                         "distribution look different. Score it on held-out points.")
        return Feedback(False, f"on {what} your test gives {mean:.3f} (mean over seeds "
                               f"0..{len(seeds) - 1}), the package's {expected:.3f}: label a 0 and b 1, fit "
                               "KNeighborsClassifier(n_neighbors=25) on a random half of each sample and "
                               "score it on the other half.")
    first, second = pairs["N(0, I) vs N((1, 0), I)"]
    # three calls: two different random splits can give the same accuracy by chance (it is a count / n)
    again = [as_number(call_learner(fn, first, second, 0, call="fn(a, b, seed)", returns=None), "the accuracy")
             for _ in range(3)]
    other = as_number(call_learner(fn, first, second, 1, call="fn(a, b, seed)", returns=None), "the accuracy")
    if len(set(again)) > 1:
        return Feedback(False, "calls with seed 0 gave different accuracies, so a result is not "
                               "reproducible: pass the seed to the split (random_state=seed).")
    if other == again[0]:
        return Feedback(False, "seeds 0 and 1 give the same accuracy: the seed is ignored; pass it to the split "
                               "(random_state=seed).")
    return Feedback(True, "your test agrees with the package's (means over seeds): "
                          + "; ".join(f"{what} {mean:.3f} ({expected:.3f})" for what, mean, expected in results) + ".")


# ----------------------------------------------------------------------------------------- the null accuracy


@checker
def check_null_two_sample_accuracy(mean, std, n_test: int) -> Feedback:
    """Check a prediction of the classifier two-sample accuracy when both samples come from the same
    distribution: its expected value `mean` (0.5) and its standard deviation `std` over repetitions,
    sqrt(0.25 / n_test), for a balanced test set of `n_test` points (the held-out part of both samples).

    Under the null hypothesis every held-out point is classified right with probability 1/2,
    independently of the others, so the number right is Binomial(n_test, 1/2) (Lopez-Paz & Oquab 2017,
    section 3). Names the typical mistakes: a percentage, 1 or 0 for the mean, the variance instead
    of the standard deviation, and n_test replaced by the size of one sample's test part or by all points.
    """
    value = as_number(mean, "the expected accuracy")
    name_mistake(value, [
        (50.0, "that is a percentage; accuracies are fractions here, between 0 and 1."),
        (1.0, "1 would mean the classifier always tells the samples apart; when both come from one distribution "
              "nothing tells them apart, and it can only guess."),
        (0.0, "an accuracy of 0 would be as informative as 1 (flip every answer); a classifier that can only guess "
              "is right half of the time."),
    ], rtol=0.02, atol=0.02)
    if not close(value, 0.5, rtol=0, atol=0.005):
        return Feedback(False, f"the expected accuracy is not {value}: with two samples of one distribution each "
                               "held-out point is labelled right with probability 1/2.")
    spread = as_number(std, "the standard deviation")
    right = math.sqrt(0.25 / n_test)
    if close(spread, right, rtol=0.02, atol=0):
        return Feedback(True, f"mean 0.5 and standard deviation sqrt(0.25 / {n_test}) = {right:.4f}: an "
                              f"accuracy above 0.5 + 2 x {right:.4f} = {0.5 + 2 * right:.3f} is a real difference.")
    coin_flips = "the standard deviation of a mean of n coin flips is sqrt(p (1 - p) / n), with p = 1/2."
    name_mistake(spread, [
        (0.25 / n_test, "that is the variance p (1 - p) / n; the standard deviation is its square root."),
        (math.sqrt(0.25 / (n_test / 2)), f"you used n = {n_test // 2}, one sample's share of the test set; the "
                                         f"accuracy averages over all {n_test} held-out points of both samples."),
        (math.sqrt(0.25 / (2 * n_test)), f"you used n = {2 * n_test}, all points; only the {n_test} held-out points "
                                         "are scored, the others train the classifier."),
        (0.5 / n_test, coin_flips),
        (0.5, coin_flips),
    ], rtol=0.02, atol=0)
    return Feedback(False, f"the standard deviation is not {spread:.4g}: the number of right answers is "
                           f"Binomial({n_test}, 1/2); divide its standard deviation by {n_test}.")


# ----------------------------------------------------------------------------------------- mixture components


def component_of(z: torch.Tensor, n_components: int = 10) -> torch.Tensor:
    """The mixture component whose mean is nearest in angle to each code: (N, 2) -> (N,) in 0..K-1.

    Component k of :class:`ae_course.priors.MixtureOfGaussiansPrior` has its mean at angle 2 pi k / K,
    so k = round(atan2(z_2, z_1) / (2 pi / K)) mod K.
    """
    angle = torch.atan2(z[:, 1].double(), z[:, 0].double())
    return torch.remainder(torch.round(angle / (2 * math.pi / n_components)), n_components).long()


def _occupied(components: torch.Tensor, labels: torch.Tensor, n_components: int, threshold: float,
              n_classes: int, normalize: str = "row", share: bool = True) -> torch.Tensor:
    counts = torch.zeros(n_classes, n_components, dtype=torch.float64)
    counts.index_put_((labels, components), torch.ones(len(labels), dtype=torch.float64), accumulate=True)
    if normalize == "row":
        shares = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    else:
        shares = counts / counts.sum(dim=0, keepdim=True).clamp_min(1)
    held = (shares >= threshold) if share else (counts >= threshold)
    return held.double().mean(dim=1)


@checker
def check_occupied_fraction(answer, z: torch.Tensor, labels: torch.Tensor, n_components: int = 10,
                            threshold: float = 0.1) -> Feedback:
    """Check `answer`, a (n_classes,) vector: for each digit d, the fraction of the K mixture components
    that hold at least `threshold` of the codes of digit d.

    z: (N, 2) codes; labels: (N,) digits. A code belongs to the component nearest in angle
    (:func:`component_of`). Names the typical mistakes: the number of components instead of the
    fraction, floor instead of round in the assignment (a shift by half a sector), the share taken
    per component (columns) instead of per digit, the threshold applied to counts, a transposed or
    wrongly shaped answer.
    """
    labels = torch.as_tensor(labels).long().flatten()
    n_classes = int(labels.max().item()) + 1
    got = as_vector(answer, n_classes, "your answer", per="digit", flatten=True, mistakes=[
        (lambda v: v.numel() == n_classes * n_components,
         f"that is a {n_classes} x {n_components} table; reduce each digit's row to one number: the fraction of "
         "components holding at least the threshold share."),
    ], not_numbers=f"give a vector of {n_classes} numbers (one per digit)",
        wrong_length=f"expected {n_classes} numbers (one per digit)")
    components = component_of(z, n_components)
    right = _occupied(components, labels, n_components, threshold, n_classes)
    tol = 0.5 / n_components
    if close(got, right, rtol=0, atol=tol):
        return Feedback(True, "per digit, the fraction of components holding at least "
                              f"{threshold:.0%} of its codes: " + ", ".join(f"{v:.1f}" for v in right.tolist()) + ".")
    name_mistake(got, [(right * n_components, f"those are numbers of components; divide by K = {n_components} for "
                                              "the fraction.")], rtol=0, atol=0.5)
    angle = torch.atan2(z[:, 1].double(), z[:, 0].double())
    floored = torch.remainder(torch.floor(angle / (2 * math.pi / n_components)), n_components).long()
    occupied = functools.partial(_occupied, labels=labels, n_components=n_components, threshold=threshold,
                                 n_classes=n_classes)
    name_mistake(got, [
        (occupied(floored), "you assigned codes with floor(angle / (2 pi / K)); component k's mean sits at angle "
                            "2 pi k / K, in the middle of its sector, so round to the nearest k."),
        (occupied(components, normalize="column"), "you divided by the number of codes in each component (column "
                                                   "shares); the share should be of the codes of each *digit*: "
                                                   "divide each row by its sum."),
        (occupied(components, share=False), "you compared the threshold with counts of codes; compare it with the "
                                            "share of the digit's codes in each component (counts / row total)."),
    ], rtol=0, atol=tol)
    if ((got < 0) | (got > 1)).any():
        return Feedback(False, "fractions lie between 0 and 1.")
    return Feedback(False, "not yet: for each digit, count its codes in each component (component_of), divide "
                           "by the digit's total, and take the fraction of components where the share is at "
                           f"least {threshold}.")
