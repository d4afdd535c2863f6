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
        "is not T*(1)": 0.3,
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
        "T* = 1 on p's support": (-LOG4, LOG2, 0.3),
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
        "with respect to T": -1 / (1 - d),
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


# --------------------------------------------------------------------------- the three phases of an AAE step
from ae_course.exercises.adversarial_checks import check_adversarial_step  # noqa: E402
from ae_course.training import update  # noqa: E402

from helpers import binary_data  # noqa: E402

SOFTPLUS = F.softplus


def aae_step(*, detach=True, saturating=False, reversed_generator=False, swap=False, flip=False,
             skip_reconstruction=False, wrong_optimizer=False, pixel_mean=False, squared=False, summed=None,
             randn_prior=False, returns="tensor", keys=("reconstruction", "discriminator", "generator"), bce=False):
    """A step of the three phases, right by default, with one typical mistake switched on."""
    def reduce(loss, phase):
        return loss.sum() if summed == phase else loss.mean()

    def step(model, optimizers, x, y=None):
        losses = {}
        if not skip_reconstruction:
            logits = model.decode(model.encode(x))
            if squared:
                per_image = ((torch.sigmoid(logits) - x) ** 2).sum(1) / 2
            elif bce:
                per_image = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
            else:
                per_image = -model.log_likelihood(x, logits)
            loss = per_image.mean() / x.shape[1] if pixel_mean else reduce(per_image, "reconstruction")
            losses["reconstruction"] = update(model, optimizers["reconstruction"], loss)
        z_prior = torch.randn(len(x), 2) if randn_prior else model.prior.sample(len(x), device=x.device)
        if detach:
            with torch.no_grad():
                z = model.encode(x)
        else:
            z = model.encode(x)
        s_prior, s_code = model.discriminator(z_prior), model.discriminator(z)
        per_pair = SOFTPLUS(s_prior) + SOFTPLUS(-s_code) if swap else SOFTPLUS(-s_prior) + SOFTPLUS(s_code)
        loss = reduce(-per_pair if flip else per_pair, "discriminator")
        losses["discriminator"] = update(model, optimizers["generator" if wrong_optimizer else "discriminator"], loss)
        s = model.discriminator(model.encode(x))
        per_code = -SOFTPLUS(s) if saturating else SOFTPLUS(s) if reversed_generator else SOFTPLUS(-s)
        losses["generator"] = update(model, optimizers["generator"], reduce(per_code, "generator"))
        if returns == "float":
            losses = {k: v.item() for k, v in losses.items()}
        elif returns == "wrong":
            losses["generator"] = losses["generator"] + 1
        return {k: v for k, v in losses.items() if k in keys}
    return step


TINY = dict(steps=6, batch_size=32, warmup=3)


@pytest.fixture(scope="module")
def images():
    return binary_data(n=96, d=16, seed=3).float()


@pytest.mark.usefixtures("seed_and_one_thread")
def test_adversarial_step_accepts_the_right_step(images):
    feedback = check_adversarial_step(aae_step(), images, **TINY)
    assert feedback and "bit for bit the same parameters" in feedback.message, feedback
    close_enough = check_adversarial_step(aae_step(bce=True), images, **TINY)   # the same loss, other rounding
    assert close_enough, close_enough


@pytest.mark.usefixtures("seed_and_one_thread")
def test_adversarial_step_accepts_the_package_step_on_the_bare_model(images):
    from ae_course.aae import discriminator_loss, generator_loss

    def step(model, optimizers, x, y=None):
        rec = update(model, optimizers["reconstruction"], -model.log_likelihood(x, model(x)).mean())
        with torch.no_grad():
            z = model.encode(x)
        z_prior = model.prior.sample(len(x), device=x.device)
        disc = update(model, optimizers["discriminator"],
                      discriminator_loss(model.discriminator(z_prior), model.discriminator(z)).mean())
        gen = update(model, optimizers["generator"], generator_loss(model.discriminator(model.encode(x))).mean())
        return {"reconstruction": rec, "discriminator": disc, "generator": gen}
    assert check_adversarial_step(step, images, **TINY)


@pytest.mark.usefixtures("seed_and_one_thread")
@pytest.mark.parametrize("needle, mistake", [
    ("not detached", dict(detach=False)),
    ("saturating generator loss", dict(saturating=True)),
    ("*away* from the prior", dict(reversed_generator=True)),
    ("labels are swapped", dict(swap=True)),
    ("wrong sign", dict(flip=True)),
    ("reconstruction phase is missing", dict(skip_reconstruction=True)),
    ("stepped in the order ['reconstruction', 'generator', 'generator']", dict(wrong_optimizer=True)),
    ("mean over pixels", dict(pixel_mean=True)),
    ("squared error", dict(squared=True)),
    ("reconstruction loss is a sum over the batch", dict(summed="reconstruction")),
    ("discriminator's loss is a sum over the batch", dict(summed="discriminator")),
    ("generator loss is a sum over the batch", dict(summed="generator")),
    ("model.prior.sample", dict(randn_prior=True)),
    ("0-d tensor", dict(returns="float")),
    ("not the mean loss that phase minimized", dict(returns="wrong")),
    ("has no generator", dict(keys=("reconstruction", "discriminator"))),
])
def test_adversarial_step_names_each_mistake(images, needle, mistake):
    feedback = check_adversarial_step(aae_step(**mistake), images, **TINY)
    assert not feedback and needle in feedback.message, feedback.message


@pytest.mark.usefixtures("seed_and_one_thread")
def test_adversarial_step_stubs_and_signatures(images):
    def stub(model, optimizers, x, y=None):
        raise NotImplementedError("write the three phases")
    feedback = check_adversarial_step(stub, images, **TINY)
    assert not feedback and "raised NotImplementedError" in feedback.message
    feedback = check_adversarial_step(lambda model, optimizers, x, y=None: None, images, **TINY)
    assert not feedback and "returned None" in feedback.message
    feedback = check_adversarial_step(lambda model, optimizers, x: {}, images, **TINY)
    assert not feedback and "y=None" in feedback.message

    def own_optimizer(model, optimizers, x, y=None):
        optimizer = torch.optim.Adam(model.parameters())
        return {"reconstruction": update(model, optimizer, -model.log_likelihood(x, model(x)).mean())}
    feedback = check_adversarial_step(own_optimizer, images, **TINY)
    assert not feedback and "none of the optimizers" in feedback.message


@pytest.mark.usefixtures("seed_and_one_thread")
def test_the_loss_methods_are_refused(images):
    def lazy(model, optimizers, x, y=None):
        return {"reconstruction": update(model, optimizers["reconstruction"], model.reconstruction_loss(x).mean())}
    feedback = check_adversarial_step(lazy, images, **TINY)
    assert not feedback and "write this phase's loss yourself" in feedback.message


@pytest.mark.usefixtures("seed_and_one_thread")
def test_adversarial_step_time_limit(images):
    feedback = check_adversarial_step(aae_step(), images, **TINY, time_limit=0.0)
    assert not feedback and "took more than 0 s" in feedback.message
