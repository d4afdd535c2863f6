"""The checkers of the semi-supervised AAE chapter accept the right answers and name each typical mistake."""
import numpy as np
import pytest
import torch

from helpers import choose_labelled
from ae_course.aae import discriminator_loss, optimal_discriminator
from ae_course.exercises.ssaae_checks import (_mistaken_step, check_choose_labelled, check_class_discriminator,
                                              check_error_rate, check_semi_supervised_step,
                                              optimal_class_discriminator)

# ------------------------------------------------------------------------------------ error rate


@pytest.fixture
def logits_and_labels():
    gen = torch.Generator().manual_seed(0)
    sizes = [300, 150, 50]                                    # unequal classes: balanced error != error
    labels = torch.cat([torch.full((s,), k) for k, s in enumerate(sizes)])
    logits = torch.randn(len(labels), 3, generator=gen)
    logits[torch.arange(len(labels)), labels] += torch.tensor([2.5, 0.5, 0.0])[labels]
    return logits, labels


def test_error_rate_accepts_the_fraction(logits_and_labels):
    logits, labels = logits_and_labels
    wrong = (logits.argmax(1) != labels).float().mean()
    assert check_error_rate(wrong, logits, labels)
    assert check_error_rate(wrong.item(), logits, labels)
    assert check_error_rate((logits.softmax(1).argmax(1) != labels).double().mean(), logits.softmax(1), labels)


def _balanced(logits, labels):
    wrong = logits.argmax(1) != labels
    return torch.stack([wrong[labels == k].float().mean() for k in range(3)]).mean()


@pytest.mark.parametrize("needle, answer", [
    ("percentage", lambda l, y: 100 * (l.argmax(1) != y).float().mean()),
    ("accuracy", lambda l, y: (l.argmax(1) == y).float().mean()),
    ("number of misclassified", lambda l, y: (l.argmax(1) != y).sum()),
    ("balanced", _balanced),
    ("argmax over dim 0", lambda l, y: (l.argmax(0) != y[:3]).float().mean()),
    ("should be a number", lambda l, y: None),
    ("single number", lambda l, y: (l.argmax(1) != y).float()),
    ("not a fraction", lambda l, y: 7.5),
    ("not the fraction of misclassified", lambda l, y: 0.123),
])
def test_error_rate_names_each_mistake(logits_and_labels, needle, answer):
    logits, labels = logits_and_labels
    feedback = check_error_rate(answer(logits, labels), logits, labels)
    assert not feedback and needle in feedback.message, feedback.message


def test_error_rate_refuses_mismatched_inputs(logits_and_labels):
    logits, labels = logits_and_labels
    feedback = check_error_rate(0.1, logits[:10], labels)
    assert not feedback and "(N, C)" in feedback.message


# ------------------------------------------------------------------------------------ the y-discriminator

PI = torch.tensor([0.3, 0.1, 0.1, 0.2, 0.3])


def test_optimal_class_discriminator_agrees_with_the_package():
    prior = torch.full((5,), 0.2, dtype=torch.float64)
    d_star = optimal_class_discriminator(PI)
    assert torch.allclose(d_star, optimal_discriminator(prior.log(), PI.double().log()))
    # T* maximizes the value: a perturbed discriminator has a larger expected loss
    def expected_loss(d):
        logit = torch.logit(d)
        return (prior * torch.nn.functional.softplus(-logit) + PI * torch.nn.functional.softplus(logit)).sum()
    assert expected_loss(d_star) < expected_loss((d_star + 0.05).clamp(max=0.99))
    assert expected_loss(d_star) < expected_loss(d_star - 0.05)
    # and the expected loss at T* is log 4 - 2 JS(pi || uniform)
    m = (prior + PI) / 2
    js = 0.5 * (PI * (PI / m).log()).sum() + 0.5 * (prior * (prior / m).log()).sum()
    assert torch.isclose(expected_loss(d_star), torch.log(torch.tensor(4.0, dtype=torch.float64)) - 2 * js)
    assert discriminator_loss(torch.zeros(1), torch.zeros(1)).item() == pytest.approx(np.log(4))


@pytest.mark.parametrize("bad", [[0.5, 0.6], [1.0], [-0.1, 1.1]])
def test_optimal_class_discriminator_refuses_non_probabilities(bad):
    with pytest.raises(ValueError):
        optimal_class_discriminator(bad)


MERGED = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.0])   # the chapter's example


@pytest.mark.parametrize("needle, answer", [
    ("ratio p / q", 0.1 / MERGED),
    ("logit", torch.log(0.1 / MERGED)),
    ("swapped", MERGED / (MERGED + 0.1)),
    ("not finite", torch.where(MERGED > 0, 0.1 / (0.1 + MERGED), torch.tensor(float("nan")))),
])
def test_class_discriminator_with_an_unused_class(needle, answer):
    assert check_class_discriminator(0.1 / (0.1 + MERGED), MERGED)
    feedback = check_class_discriminator(answer, MERGED)
    assert not feedback and needle in feedback.message, feedback.message


def test_class_discriminator_accepts_right_answers():
    right = 0.2 / (0.2 + PI)
    assert check_class_discriminator(right, PI)
    assert check_class_discriminator(right.tolist(), PI)
    assert check_class_discriminator(torch.sigmoid(torch.log(0.2 / PI)), PI)


@pytest.mark.parametrize("needle, answer", [
    ("swapped", PI / (PI + 0.2)),
    ("ratio p / q", 0.2 / PI),
    ("logit", torch.log(0.2 / PI)),
    ("equilibrium", torch.full((5,), 0.5)),
    ("one value per vertex", 0.5),
    ("expected C = 5", torch.full((4,), 0.5)),
    ("answer is None", None),
    ("outside [0, 1]", torch.tensor([1.2, 0.5, 0.5, 0.5, 0.5])),
    ("not finite", torch.tensor([float("nan"), 0.5, 0.5, 0.5, 0.5])),
    ("not T*(e_c)", torch.full((5,), 0.3)),
    ("give C = 5 numbers", "half"),
])
def test_class_discriminator_names_each_mistake(needle, answer):
    feedback = check_class_discriminator(answer, PI)
    assert not feedback and needle in feedback.message, feedback.message


# ------------------------------------------------------------------------------------ the labelled subset




def numpy_choice(labels, per_class, seed):
    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    out = []
    for k in np.unique(y):
        rows = np.flatnonzero(y == k)
        if len(rows) < per_class:
            raise ValueError("too few")
        out.append(rng.choice(rows, per_class, replace=False))
    return np.concatenate(out)


def test_choose_labelled_accepts_right_answers():
    assert check_choose_labelled(choose_labelled)
    assert check_choose_labelled(numpy_choice)


def unchecked(labels, per_class, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.nonzero(labels == k).flatten()[torch.randperm(int((labels == k).sum()), generator=gen)]
                      [:per_class] for k in range(int(labels.max()) + 1)])


def global_rng(labels, per_class, seed):
    return torch.cat([torch.nonzero(labels == k).flatten()[torch.randperm(int((labels == k).sum()))][:per_class]
                      for k in range(int(labels.max()) + 1)])


def with_replacement(labels, per_class, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.nonzero(labels == k).flatten()[torch.randint(int((labels == k).sum()), (per_class,),
                                                                         generator=gen)]
                      for k in range(int(labels.max()) + 1)])


def whole_set(labels, per_class, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=gen)[:per_class * (int(labels.max()) + 1)]


def first_rows(labels, per_class, seed):
    return torch.cat([torch.nonzero(labels == k).flatten()[:per_class] for k in range(int(labels.max()) + 1)])


def seed_ignored(labels, per_class, seed):
    return choose_labelled(labels, per_class, 0) if per_class >= 1 else choose_labelled(labels, per_class, seed)


def mask(labels, per_class, seed):
    out = torch.zeros(len(labels), dtype=torch.bool)
    out[choose_labelled(labels, per_class, seed)] = True
    return out


def raises_index_error(labels, per_class, seed):
    if per_class > int(torch.bincount(labels).min()) or per_class < 1:
        raise IndexError("too few")
    return choose_labelled(labels, per_class, seed)


@pytest.mark.parametrize("needle, fn", [
    ("must raise ValueError", unchecked),
    ("not reproducible", global_rng),
    ("more than once", with_replacement),
    ("not balanced", whole_set),
    ("first per_class rows", first_rows),
    ("seed is ignored", seed_ignored),
    ("boolean mask", mask),
    ("class labels, not row indices", lambda y, n, s: y[choose_labelled(y, n, s)]),
    ("dtype torch.float32", lambda y, n, s: choose_labelled(y, n, s).float()),
    ("outside 0..599", lambda y, n, s: choose_labelled(y, n, s) + 600),
    ("expected per_class * C", lambda y, n, s: choose_labelled(y, n, s)[:-1]),
    ("raised IndexError instead of ValueError", raises_index_error),
    ("raised ZeroDivisionError", lambda y, n, s: 1 / 0),
    ("return a 1-D tensor", lambda y, n, s: None),
    ("shape", lambda y, n, s: choose_labelled(y, n, s)[None]),
])
def test_choose_labelled_names_each_mistake(needle, fn):
    feedback = check_choose_labelled(fn)
    assert not feedback and needle in feedback.message, feedback.message


def test_choose_labelled_lists_each_unrefused_request():
    message = check_choose_labelled(unchecked).message
    assert "smallest class" in message and "per_class = 0" in message, message


# ------------------------------------------------------------------------------------ the semi-supervised step

import torch.nn.functional as F  # noqa: E402

from helpers import binary_data  # noqa: E402
from ae_course.aae import generator_loss  # noqa: E402
from ae_course.aae import discriminator_loss as game_loss  # noqa: E402
from ae_course.training import update  # noqa: E402

TINY = {"steps": 3, "labels_per_class": 2, "batch_size": 20, "hidden": (16,), "style_dim": 2,
        "discriminator_hidden": (8,)}


@pytest.fixture(scope="module")
def digits():
    """Stand-in data: 200 binary 'images' with 10 classes, and 50 test images."""
    x = binary_data(250, seed=3)
    y = torch.arange(250) % 10
    return x[:200], y[:200], x[200:], y[200:]


def check(step, digits, **settings):
    return check_semi_supervised_step(step, *digits, **{**TINY, **settings})


def regularization(model, optimizers, x, detach=True):
    """The discriminator phase and the generator phase, right (codes detached unless detach=False)."""
    if detach:
        with torch.no_grad():
            a, z = model.encode(x)
    else:
        a, z = model.encode(x)
    y_prior, z_prior = model.class_prior.sample(len(x)), model.prior.sample(len(x))
    T_y, T_z = model.discriminator_y, model.discriminator_z
    loss = game_loss(T_y(y_prior), T_y(a.softmax(dim=1))) + game_loss(T_z(z_prior), T_z(z))
    losses = {"discriminator": update(model, optimizers["discriminator"], loss.mean())}
    a, z = model.encode(x)
    loss = generator_loss(T_y(a.softmax(dim=1))) + generator_loss(T_z(z))
    losses["generator"] = update(model, optimizers["generator"], loss.mean())
    return losses


def reconstruction(model, optimizers, x):
    return {"reconstruction": update(model, optimizers["reconstruction"], model.reconstruction_loss(x).mean())}


def classification(model, optimizers, labelled, name="classification"):
    a, _ = model.encode(labelled[0])
    return {"classification": update(model, optimizers[name], F.cross_entropy(a, labelled[1]))}


def right_step(model, optimizers, x, y=None, labelled=None):
    return {**reconstruction(model, optimizers, x), **regularization(model, optimizers, x),
            **classification(model, optimizers, labelled)}


def zero_grad_step(model, optimizers, x, y=None, labelled=None):
    """Right, written with optimizer.zero_grad() / backward() / step() instead of update."""
    def phase(name, loss):
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()
        return loss.detach()
    losses = {"reconstruction": phase("reconstruction", model.reconstruction_loss(x).mean())}
    losses["discriminator"] = phase("discriminator", model.discriminator_loss(x).mean())
    losses["generator"] = phase("generator", model.generator_loss(x).mean())
    losses["classification"] = phase("classification", model.classification_loss(*labelled).mean())
    return losses


def test_semi_supervised_step_accepts_right_steps(digits):
    feedback = check(right_step, digits)
    assert feedback, feedback.message
    assert "phase by phase" in feedback.message and "test error" in feedback.message
    assert check(zero_grad_step, digits)
    assert check(_mistaken_step(None), digits)


@pytest.mark.parametrize("mistake, needle", [
    ("swapped discriminator", "labels are swapped"),
    ("logits to T_y", "class logits a"),
    ("no T_y", "only T_z was trained"),
    ("no T_z", "only T_y was trained"),
    ("sum discriminator", "discriminator phase sums"),
    ("saturating", "saturating loss"),
    ("swapped generator", "generator's labels are swapped"),
    ("sum generator", "generator phase sums"),
    ("softmax twice", "softmax twice"),
    ("nll of logits", "the logits are not"),
    ("nll of probabilities", "not probabilities"),
    ("sum classification", "classification phase sums"),
])
def test_semi_supervised_step_names_each_mistaken_phase(digits, mistake, needle):
    feedback = check(_mistaken_step(mistake), digits)
    assert not feedback and needle in feedback.message, feedback.message


def wrong_optimizer(model, optimizers, x, y=None, labelled=None):
    return {**reconstruction(model, optimizers, x), **regularization(model, optimizers, x),
            **classification(model, optimizers, labelled, name="generator")}


def wrong_order(model, optimizers, x, y=None, labelled=None):
    return {**reconstruction(model, optimizers, x), **classification(model, optimizers, labelled),
            **regularization(model, optimizers, x)}


def not_detached(model, optimizers, x, y=None, labelled=None):
    return {**reconstruction(model, optimizers, x), **regularization(model, optimizers, x, detach=False),
            **classification(model, optimizers, labelled)}


def discriminators_twice(model, optimizers, x, y=None, labelled=None):
    losses = reconstruction(model, optimizers, x)
    with torch.no_grad():
        a, z = model.encode(x)
    for T, prior, code in [(model.discriminator_y, model.class_prior, a.softmax(dim=1)),
                           (model.discriminator_z, model.prior, z)]:
        update(model, optimizers["discriminator"], game_loss(T(prior.sample(len(x))), T(code)).mean())
    a, z = model.encode(x)
    loss = generator_loss(model.discriminator_y(a.softmax(dim=1))) + generator_loss(model.discriminator_z(z))
    losses["generator"] = update(model, optimizers["generator"], loss.mean())
    return {**losses, **classification(model, optimizers, labelled)}


def skeleton(model, optimizers, x, y=None, labelled=None):
    return reconstruction(model, optimizers, x)


def stub(model, optimizers, x, y=None, labelled=None):
    raise NotImplementedError("write the phases")


def graph_kept(model, optimizers, x, y=None, labelled=None):
    losses = right_step(model, optimizers, x, y, labelled)
    a, _ = model.encode(labelled[0])
    losses["classification"] = F.cross_entropy(a, labelled[1])          # recomputed, with its graph
    return losses


def renamed(model, optimizers, x, y=None, labelled=None):
    losses = right_step(model, optimizers, x, y, labelled)
    losses["supervised"] = losses.pop("classification")
    return losses


def stateful():
    """Right on its first call; afterwards it only returns the first call's losses."""
    first = {}

    def step(model, optimizers, x, y=None, labelled=None):
        if not first:
            first.update(right_step(model, optimizers, x, y, labelled))
        return dict(first)
    return step


@pytest.mark.parametrize("step, needle", [
    (stub, "NotImplementedError"),
    (lambda model, optimizers, x, y=None, labelled=None: None, "returned None"),
    (lambda model, optimizers, x, y=None, labelled=None: {}, "did not call step()"),
    (skeleton, "the discriminator and the generator and the classification phases are missing"),
    (wrong_optimizer, "stepped optimizers['generator']"),
    (wrong_order, "in the order"),
    (not_detached, "sent gradients into the encoder"),
    (discriminators_twice, "updates the discriminators twice"),
    (graph_kept, "autograd graph"),
    (renamed, "no 'classification'"),
])
def test_semi_supervised_step_names_each_structural_mistake(digits, step, needle):
    feedback = check(step, digits)
    assert not feedback and needle in feedback.message, feedback.message
    assert str(feedback).startswith("Not yet")


def test_semi_supervised_step_runs_a_few_steps_against_the_package(digits):
    feedback = check(stateful(), digits, steps=20)
    assert not feedback and "keep a state" in feedback.message, feedback.message
    feedback = check(right_step, digits, time_limit=0.0)
    assert not feedback and "took longer than" in feedback.message, feedback.message
