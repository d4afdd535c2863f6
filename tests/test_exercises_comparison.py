"""The checkers of the comparison chapter accept the right answers and name each typical mistake."""
import math

import numpy as np
import pytest
import torch
from scipy.special import xlogy
from scipy.stats import entropy

from ae_course.exercises.comparison_checks import (check_class_balance, check_elbo_gap, check_inception_score,
                                                   check_likelihood_models)

COUNTS = np.array([10, 60, 130, 90, 250, 40, 0, 120, 200, 100])   # one class never predicted
FULL = np.array([95, 105, 80, 120, 100, 90, 110, 100, 98, 102])    # every class predicted


def kl_to_uniform(counts):
    h = counts / counts.sum()
    return float(entropy(h, np.full(len(h), 1 / len(h))))


@pytest.mark.parametrize("counts", [COUNTS, FULL])
def test_class_balance_accepts(counts):
    answer = kl_to_uniform(counts)
    assert check_class_balance(answer, counts)
    assert check_class_balance(torch.tensor(answer), counts)           # a 0-d tensor is fine
    assert check_class_balance(np.float32(answer), counts)


@pytest.mark.parametrize("counts, wrong, needle", [
    (COUNTS, lambda c: entropy(c / c.sum()), "entropy H(h)"),
    (COUNTS, lambda c: entropy(c / c.sum(), base=2), "in bits"),
    (COUNTS, lambda c: kl_to_uniform(c) / math.log(2), "bits"),
    (COUNTS, lambda c: -kl_to_uniform(c), "sign is flipped"),
    (COUNTS, lambda c: entropy(c / c.sum()) / math.log(10), "normalized entropy"),
    (COUNTS, lambda c: 1 - entropy(c / c.sum()) / math.log(10), "1 - H(h) / log C"),
    (COUNTS, lambda c: (c / c.sum()).max(), "most frequent class"),
    (COUNTS, lambda c: float(xlogy(c, 10 * c).sum()), "raw counts"),
    (COUNTS, lambda c: float(np.sum(c / c.sum() * np.log(10 * c / c.sum()))), "log 0"),         # NaN
    (COUNTS, lambda c: entropy(np.full(10, 0.1), c / c.sum()), "KL(uniform || h)"),            # inf
    (FULL, lambda c: entropy(np.full(10, 0.1), c / c.sum()), "other direction"),
    (COUNTS, lambda c: 0.123, "expected KL"),
    (COUNTS, lambda c: None, "None"),
    (COUNTS, lambda c: "a lot", "should be a number"),
    (COUNTS, lambda c: torch.ones(3), "single number"),
])
def test_class_balance_names_each_mistake(counts, wrong, needle):
    with np.errstate(divide="ignore", invalid="ignore"):
        answer = wrong(counts)
    feedback = check_class_balance(answer, counts)
    assert not feedback and needle in feedback.message, feedback.message


@pytest.mark.parametrize("answer", [{"VAE", "CVAE"}, ["cvae", "vae"], ("VAE", " CVAE "), frozenset({"VAE", "CVAE"})])
def test_likelihood_models_accepts(answer):
    assert check_likelihood_models(answer)


@pytest.mark.parametrize("answer, needles", [
    ({"VAE", "CVAE", "AAE"}, ["AAE does have a prior", "deterministic"]),
    ({"VAE", "CVAE", "AE", "DAE"}, ["no prior"]),
    ({"VAE"}, ["conditional VAE is missing"]),
    ({"CVAE"}, ["VAE is missing"]),
    ({"AE", "AAE"}, ["no prior", "AAE does have", "VAE is missing", "conditional VAE is missing"]),
    (set(), ["VAE is missing"]),
    ({"VAE", "GAN"}, ["unknown model name"]),
    ("VAE", ["set of model names"]),
    (None, ["set of model names"]),
    (3, ["set of model names"]),
    ({1, 2}, ["strings"]),
])
def test_likelihood_models_names_each_mistake(answer, needles):
    feedback = check_likelihood_models(answer)
    assert not feedback
    for needle in needles:
        assert needle in feedback.message, feedback.message


def right_inception(p):
    marginal = p.mean(axis=0)
    return math.exp(np.mean([entropy(row, marginal) for row in p]))


def test_inception_score_accepts():
    assert check_inception_score(right_inception)
    assert check_inception_score(lambda p: np.exp(entropy(p.mean(axis=0)) - entropy(p, axis=1).mean()))
    assert check_inception_score(lambda p: torch.tensor(right_inception(p)))


def argmax_marginal(p):
    hist = np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / len(p)
    return math.exp(np.mean(np.sum(xlogy(p, p) - xlogy(p, hist), axis=1)))


@pytest.mark.parametrize("fn, needle", [
    (lambda p: np.mean([entropy(row, p.mean(axis=0)) for row in p]), "its exponential"),
    (lambda p: math.exp(np.mean([entropy(row, p.mean(axis=0), base=2) for row in p])), "base 2"),
    (argmax_marginal, "histogram of the predicted classes"),
    (lambda p: math.exp(np.mean([entropy(p.mean(axis=0), row) for row in p])), "infinity"),
    (lambda p: math.exp(entropy(p, axis=1).mean()), "mean predictive entropy"),
    (lambda p: math.exp(entropy(p.mean(axis=0))), "balance part only"),
    (lambda p: np.exp([entropy(row, p.mean(axis=0)) for row in p]), "MEAN over samples"),
    (lambda p: math.exp(np.mean(np.sum(p * np.log(p / p.mean(axis=0)), axis=1))), "NaN"),
    (lambda p: 1.0, "expected exp"),
    (lambda p: 1 / 0, "raised ZeroDivisionError"),
    (lambda p: "five", "return a number"),
])
def test_inception_score_names_each_mistake(fn, needle):
    with np.errstate(divide="ignore", invalid="ignore"):
        feedback = check_inception_score(fn)
    assert not feedback and needle in feedback.message, feedback.message


def test_elbo_gap():
    assert check_elbo_gap(3.05, 122.17, 119.12)
    assert check_elbo_gap(torch.tensor(3.05), 122.17, 119.12)
    for answer, needle in [(-3.05, "sign is flipped"), (122.17 / 119.12, "ratio"), (100 * 3.05 / 119.12, "percentage"),
                           (122.17, "-ELBO itself"), (119.12, "NLL itself"), (7.0, "read the VAE's row"),
                           (None, "should be a number")]:
        feedback = check_elbo_gap(answer, 122.17, 119.12)
        assert not feedback and needle in feedback.message, feedback.message


# ------------------------------------------------------------------------------------ active units
from ae_course import VAE  # noqa: E402
from ae_course.evaluation import active_units  # noqa: E402
from ae_course.exercises.comparison_checks import check_active_units_function, probe_vae  # noqa: E402


def counting(statistic):
    """A learner's count_active_units that thresholds `statistic(mu, log_var)`, one value per coordinate."""
    def count_active_units(model, x, threshold=0.01):
        with torch.no_grad():
            mu, log_var = model.encode(x)
        return int((statistic(mu, log_var) > threshold).sum())
    return count_active_units


def sampled(model, x, threshold=0.01):
    with torch.no_grad():
        mu, log_var = model.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    return int((z.var(dim=0) > threshold).sum())


def small_models():
    """Two untrained VAEs with different activity, and 200 inputs: stand-ins for the chapter's beta sweep."""
    torch.manual_seed(0)
    wide, narrow = VAE(input_dim=20, latent_dim=6, hidden=(8,)), VAE(input_dim=20, latent_dim=6, hidden=(8,))
    with torch.no_grad():
        narrow.encoder[-1].weight[:3].mul_(0.01)   # three coordinates whose means barely vary
    return {"wide": wide, "narrow": narrow}, 3 * torch.randn(200, 20)   # 6 and 3 active coordinates


def test_probe_vae_has_the_designed_variances():
    model, x = probe_vae()
    with torch.no_grad():
        mu, log_var = model.encode(x)
    assert torch.allclose(mu.var(dim=0, correction=0).double(),
                          torch.tensor([2.0, 0.5, 0.1, 0.03, 0.006, 0.002, 8e-4, 3e-4, 2e-5, 1e-7],
                                       dtype=torch.float64), rtol=1e-3, atol=1e-9)
    assert active_units(model, x) == 4 and active_units(model, x, threshold=0.001) == 6


def test_probe_vae_leaves_the_global_random_stream_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    probe_vae()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("statistic", [lambda mu, lv: mu.var(dim=0), lambda mu, lv: mu.var(dim=0, correction=0),
                                       lambda mu, lv: mu.double().var(dim=0)])
def test_active_units_accepts(statistic):
    models, x = small_models()
    feedback = check_active_units_function(counting(statistic), models, x)
    assert feedback, feedback.message
    assert "trained models wide, narrow: 6, 3 active units" in feedback.message


def test_active_units_accepts_a_tensor_count_and_no_models():
    def tensor_count(model, x, threshold=0.01):
        return (model.encode(x)[0].var(dim=0) > threshold).sum()
    assert check_active_units_function(tensor_count)


@pytest.mark.parametrize("fn, needle", [
    (sampled, "variance of samples z ~ q(z|x)"),
    (counting(lambda mu, lv: mu.var(dim=1)), "wrong axis"),
    (counting(lambda mu, lv: mu.std(dim=0)), "standard deviation"),
    (counting(lambda mu, lv: lv.exp().mean(dim=0)), "mean posterior variance"),
    (counting(lambda mu, lv: lv.var(dim=0)), "variance of the log-variance"),
    (counting(lambda mu, lv: -mu.var(dim=0) + 2 * 0.01), "INACTIVE"),       # var < threshold
    (lambda m, x, threshold=0.01: float((m.encode(x)[0].var(dim=0) > threshold).float().mean()), "fraction"),
    (lambda m, x, threshold=0.01: m.encode(x)[0].var(dim=0) > threshold, "rather than returning the mask"),
    (lambda m, x, threshold=0.01: int((m.encode(x)[0].var(dim=0) > 0.01).sum()), "use the `threshold` argument"),
    (lambda m, x, threshold=0.01: None, "returned None"),
    (lambda m, x, threshold=0.01: 1 / 0, "raised ZeroDivisionError"),
    (lambda m, x, threshold=0.01: int((m.encode(x)[0].var() > threshold)), "the number of coordinates j with"),
])
def test_active_units_names_each_mistake(fn, needle):
    feedback = check_active_units_function(fn)
    assert not feedback and needle in feedback.message, feedback.message


def test_active_units_stub_is_not_yet():
    def stub(model, x, threshold=0.01):
        raise NotImplementedError
    feedback = check_active_units_function(stub)
    assert not feedback and str(feedback).startswith("Not yet")


def test_active_units_compares_with_the_package_on_trained_models():
    models, x = small_models()

    def right_on_the_probe_only(model, x, threshold=0.01):
        count = int((model.encode(x)[0].var(dim=0) > threshold).sum())
        return count if model.latent_dim == 10 else count + 1
    feedback = check_active_units_function(right_on_the_probe_only, models, x)
    assert not feedback and "on the model wide" in feedback.message, feedback.message
