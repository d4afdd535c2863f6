"""The checkers of the chapter "The adversarial autoencoder in practice" accept the right answers and name
each typical mistake."""
import itertools
import math

import numpy as np
import pytest
import torch

from ae_course.aae import AdversarialAutoencoder
from ae_course.evaluation import two_sample_accuracy
from ae_course.exercises.aae_checks import (check_null_two_sample_accuracy, check_occupied_fraction,
                                            check_ring_prior, check_two_sample_test, component_of)
from ae_course.priors import MixtureOfGaussiansPrior, Prior


# ----------------------------------------------------------------------------------------- the ring prior


class Ring(Prior):
    """A configurable ring prior; the defaults are right, each option is one typical mistake."""

    def __init__(self, radius=4.0, width=0.3, dim=2, span=2 * math.pi, noise="std", layout="rows",
                 dtype=torch.float32, rng="torch", kind="tensor", device_arg=True):
        self.dim, self.radius, self.width, self.span, self.noise = dim, radius, width, span, noise
        self.layout, self.dtype, self.rng, self.kind, self.device_arg = layout, dtype, rng, kind, device_arg

    def _draw(self, n):
        if self.rng == "numpy":
            return torch.from_numpy(np.random.rand(n)), torch.from_numpy(np.random.randn(n))
        return torch.rand(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)

    def sample(self, n, device=None):
        u, eps = self._draw(n)
        t = self.span * u
        scale = {"std": self.width, "var": self.width ** 2, "sqrt": math.sqrt(self.width), "none": 0.0}[self.noise]
        r = self.radius + scale * eps
        z = torch.stack([r * t.cos(), r * t.sin()], dim=0 if self.layout == "columns" else 1).to(self.dtype)
        if self.kind == "numpy":
            return z.numpy()
        return z.to(device)


class NoDevice(Ring):
    def sample(self, n):  # the interface's device argument is missing
        return super().sample(n)


def test_ring_accepts_right_answers():
    assert check_ring_prior(Ring())
    assert check_ring_prior(Ring(radius=2.0, width=0.5), radius=2.0, width=0.5)


@pytest.mark.parametrize("needle, prior", [
    ("dim = 2", Ring(dim=3)),
    ("half-plane", Ring(span=math.pi)),
    ("multiply by 2 pi", Ring(span=1.0)),
    ("variance", Ring(noise="var")),
    ("square root of width", Ring(noise="sqrt")),
    ("same radius", Ring(noise="none")),
    ("mean radius", Ring(radius=3.0)),
    ("(2, n)", Ring(layout="columns")),
    ("float32", Ring(dtype=torch.float64)),
    ("numpy array", Ring(kind="numpy")),
    ("torch's global generator", Ring(rng="numpy")),
    ("sample(self, n, device=None)", NoDevice()),
])
def test_ring_names_each_mistake(needle, prior):
    feedback = check_ring_prior(prior)
    assert not feedback and needle in feedback.message, feedback.message


def test_ring_without_dim_or_sample():
    class Bare:
        pass

    assert "no attribute `dim`" in check_ring_prior(Bare()).message
    bare = Bare()
    bare.dim = 2
    assert "no method sample" in check_ring_prior(bare).message


def test_ring_prior_works_in_an_aae():
    torch.manual_seed(0)
    model = AdversarialAutoencoder(input_dim=16, latent_dim=2, hidden=(8,), prior=Ring(), discriminator_hidden=(8,))
    assert model.discriminator_loss(torch.rand(5, 16)).shape == (5,)


# ----------------------------------------------------------------------------------------- the two-sample test


def two_sample(a, b, seed, shuffle=True, held_out=True, k=25, seeded=True, flip=False, scale=1.0):
    """A configurable classifier two-sample test; the defaults are right, each option is one typical mistake."""
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    features = torch.cat([a, b]).double().numpy()
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    if not held_out:
        accuracy = KNeighborsClassifier(k).fit(features, labels).score(features, labels)
    else:
        split = train_test_split(features, labels, test_size=0.5, shuffle=shuffle,
                                 random_state=(seed if seeded else 0) if shuffle else None,
                                 stratify=labels if shuffle else None)
        x_fit, x_test, y_fit, y_test = split
        accuracy = KNeighborsClassifier(k).fit(x_fit, y_fit).score(x_test, y_test)
    return scale * ((1 - accuracy) if flip else accuracy)


def permuted_halves(a, b, seed):
    """Right, written by hand: a seeded permutation of each sample, half of each to fit, half to score."""
    from sklearn.neighbors import KNeighborsClassifier

    gen = torch.Generator().manual_seed(seed)
    pa, pb = torch.randperm(len(a), generator=gen), torch.randperm(len(b), generator=gen)
    half_a, half_b = len(a) // 2, len(b) // 2
    x_fit = torch.cat([a[pa[:half_a]], b[pb[:half_b]]]).numpy()
    x_test = torch.cat([a[pa[half_a:]], b[pb[half_b:]]]).numpy()
    y_fit = np.r_[np.zeros(half_a), np.ones(half_b)]
    y_test = np.r_[np.zeros(len(a) - half_a), np.ones(len(b) - half_b)]
    return KNeighborsClassifier(25).fit(x_fit, y_fit).score(x_test, y_test)


def test_two_sample_test_accepts_right_answers():
    feedback = check_two_sample_test(two_sample)
    assert feedback and "0.5" in feedback.message, feedback.message
    assert check_two_sample_test(lambda a, b, seed: two_sample_accuracy(a, b, seed=seed))
    assert check_two_sample_test(permuted_halves)
    torch.manual_seed(0)
    a, b = MixtureOfGaussiansPrior().sample(600), MixtureOfGaussiansPrior(radius=3.0).sample(600)
    feedback = check_two_sample_test(permuted_halves, a, b)
    assert feedback and "your pair" in feedback.message, feedback.message


_calls = itertools.count()


def unreproducible(a, b, seed):
    """A new split on every call (deterministic across test runs, so the test cannot flake)."""
    return two_sample(a, b, seed + 1000 * (1 + next(_calls)))


@pytest.mark.parametrize("needle, fn", [
    ("scored on the points it was fitted on", lambda a, b, s: two_sample(a, b, s, held_out=False)),
    ("hold only the first sample", lambda a, b, s: two_sample(a, b, s, shuffle=False)),
    ("error rate", lambda a, b, s: two_sample(a, b, s, flip=True)),
    ("percentage", lambda a, b, s: two_sample(a, b, s, scale=100)),
    ("the seed is ignored", lambda a, b, s: two_sample(a, b, s, seeded=False)),
    ("not reproducible", unreproducible),
    ("KNeighborsClassifier(n_neighbors=25)", lambda a, b, s: two_sample(a, b, s, k=1)),
    ("returned None", lambda a, b, s: None),
    ("raised NotImplementedError", lambda a, b, s: (_ for _ in ()).throw(NotImplementedError())),
    ("one accuracy for the pair", lambda a, b, s: [0.5, 0.5]),
])
def test_two_sample_test_names_each_mistake(needle, fn):
    feedback = check_two_sample_test(fn)
    assert not feedback and needle in feedback.message, feedback.message


# ----------------------------------------------------------------------------------------- the null accuracy


def test_null_accepts_right_answer():
    assert check_null_two_sample_accuracy(0.5, math.sqrt(0.25 / 1000), 1000)
    assert check_null_two_sample_accuracy(torch.tensor(0.5), 0.5 / math.sqrt(400), 400)


@pytest.mark.parametrize("needle, mean, std", [
    ("percentage", 50, 0.0158),
    ("always tells", 1.0, 0.0158),
    ("as informative as 1", 0.0, 0.0158),
    ("probability 1/2", 0.6, 0.0158),
    ("variance", 0.5, 0.25 / 1000),
    ("n = 500", 0.5, math.sqrt(0.25 / 500)),
    ("n = 2000", 0.5, math.sqrt(0.25 / 2000)),
    ("sqrt(p (1 - p) / n)", 0.5, 0.5),
    ("Binomial(1000, 1/2)", 0.5, 0.03),
    ("should be a number", None, 0.0158),
    ("standard deviation should be a number", 0.5, "small"),
    ("always tells", 1.0, None),                          # the mean is diagnosed before a missing std
])
def test_null_names_each_mistake(needle, mean, std):
    feedback = check_null_two_sample_accuracy(mean, std, 1000)
    assert not feedback and needle in feedback.message, feedback.message


# ----------------------------------------------------------------------------------------- occupancy


@pytest.fixture
def codes():
    """Codes from a mixture prior with digits tied loosely to components, so the answers differ per digit."""
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior()
    labels = torch.repeat_interleave(torch.arange(10), 20 + 12 * torch.arange(10))   # unequal class sizes
    n = len(labels)
    components = torch.where(torch.rand(n) < 0.7, labels, (labels + torch.randint(1, 4, (n,))) % 10)
    z = prior.sample_component(components)
    # rotate by a third of a sector so that floor and round assign differently
    angle = 2 * math.pi / 10 / 3
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return z @ rotation.T, labels


def reference(z, labels, normalize="row", share=True, assign="round", threshold=0.1):
    angle = torch.atan2(z[:, 1], z[:, 0]) / (2 * math.pi / 10)
    comp = torch.remainder(torch.round(angle) if assign == "round" else torch.floor(angle), 10).long()
    counts = torch.zeros(10, 10)
    for d, k in zip(labels.tolist(), comp.tolist()):
        counts[d, k] += 1
    shares = counts / (counts.sum(1, keepdim=True) if normalize == "row" else counts.sum(0, keepdim=True))
    held = shares >= threshold if share else counts >= threshold
    return held.float().mean(dim=1)


def test_component_of_matches_the_means():
    prior = MixtureOfGaussiansPrior()
    ks = torch.arange(10)
    means = 4.0 * torch.stack([torch.cos(2 * math.pi * ks / 10), torch.sin(2 * math.pi * ks / 10)], dim=1)
    assert torch.equal(component_of(means), ks)
    torch.manual_seed(0)
    assert (component_of(prior.sample_component(ks.repeat(20))) == ks.repeat(20)).float().mean() > 0.9


def test_occupancy_accepts_right_answers(codes):
    z, labels = codes
    right = reference(z, labels)
    assert right.min() < right.max()                      # the fixture makes digits differ
    assert check_occupied_fraction(right, z, labels)
    assert check_occupied_fraction(right.numpy(), z, labels)
    assert check_occupied_fraction(right.tolist(), z, labels)


@pytest.mark.parametrize("needle, make", [
    ("numbers of components", lambda z, y: 10 * reference(z, y)),
    ("floor", lambda z, y: reference(z, y, assign="floor")),
    ("column shares", lambda z, y: reference(z, y, normalize="column")),
    ("compared the threshold with counts", lambda z, y: reference(z, y, share=False)),
    ("10 x 10 table", lambda z, y: torch.zeros(10, 10)),
    ("expected 10 numbers", lambda z, y: torch.zeros(9)),
    ("give a vector", lambda z, y: {"a": 1}),
    ("not yet", lambda z, y: torch.full((10,), 0.95)),
])
def test_occupancy_names_each_mistake(codes, needle, make):
    z, labels = codes
    feedback = check_occupied_fraction(make(z, labels), z, labels)
    assert not feedback and needle in feedback.message, feedback.message
