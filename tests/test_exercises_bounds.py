"""The checkers of the bounds-and-priors chapter accept right answers and name each typical mistake."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from ae_course.exercises.bounds_checks import check_iwae_bound, check_vamp_log_prob


def std(log_var):
    return torch.exp(0.5 * log_var)


def log_weights(model, x, eps, *, sigma=None, sigma_z=std, sigma_q=std, detach_decoder=False, stl=False,
                detach_z_in_q=False, prior=True, q=True):
    if sigma is not None:
        sigma_z = sigma_q = sigma
    k, batch, latent = eps.shape
    mu, log_var = model.encode(x)
    z = mu + sigma_z(log_var) * eps
    log_px_z = model.log_likelihood(x.repeat(k, 1), model.decode((z.detach() if detach_decoder else z)
                                                                 .reshape(-1, latent))).reshape(k, batch)
    m, lv = (mu.detach(), log_var.detach()) if stl else (mu, log_var)
    log_q = Independent(Normal(m, sigma_q(lv)), 1).log_prob(z.detach() if detach_z_in_q else z)
    return log_px_z + (model.prior.log_prob(z) if prior else 0) - (log_q if q else 0)


def right(model, x, eps):
    return torch.logsumexp(log_weights(model, x, eps), dim=0) - math.log(len(eps))


def test_iwae_bound_accepts_right_answers():
    assert check_iwae_bound(right)
    from ae_course.iwae import iwae_bound
    assert check_iwae_bound(lambda model, x, eps: iwae_bound(model, x, len(eps), eps=eps))


def lse(log_w):
    return torch.logsumexp(log_w, dim=0) - math.log(len(log_w))


@pytest.mark.parametrize("needle, fn", [
    ("mean of the log-weights", lambda m, x, e: log_weights(m, x, e).mean(0)),
    ("forgot to divide by k", lambda m, x, e: torch.logsumexp(log_weights(m, x, e), 0)),
    ("summed the log-weights", lambda m, x, e: log_weights(m, x, e).sum(0)),
    ("sign is flipped", lambda m, x, e: -right(m, x, e)),
    ("closed-form KL", lambda m, x, e: lse(
        log_weights(m, x, e, prior=False, q=False) - 0.5 * (m.encode(x)[0] ** 2 + m.encode(x)[1].exp()
                                                           - m.encode(x)[1] - 1).sum(1))),
    ("log p(z_i) is missing", lambda m, x, e: lse(log_weights(m, x, e, prior=False))),
    ("log q(z_i|x) is missing", lambda m, x, e: lse(log_weights(m, x, e, q=False))),
    ("z and q(z|x) use sigma = exp(log_var)", lambda m, x, e: lse(log_weights(m, x, e, sigma=torch.exp))),
    ("your q(z|x) uses exp(log_var)", lambda m, x, e: lse(log_weights(m, x, e, sigma_q=torch.exp))),
    ("your z uses sigma = exp(log_var)", lambda m, x, e: lse(log_weights(m, x, e, sigma_z=torch.exp))),
    ("not finite", lambda m, x, e: torch.log(log_weights(m, x, e).exp().mean(0))),
    ("shape (k, B)", lambda m, x, e: log_weights(m, x, e)),
    ("reduced over the images", lambda m, x, e: lse(log_weights(m, x, e).T)),
    ("single number", lambda m, x, e: right(m, x, e).mean()),
    ("reaches the decoder detached", lambda m, x, e: lse(log_weights(m, x, e, detach_decoder=True))),
    ("sticking the landing", lambda m, x, e: lse(log_weights(m, x, e, stl=True))),
    ("at a detached z", lambda m, x, e: lse(log_weights(m, x, e, detach_z_in_q=True))),
    ("carries no gradient", lambda m, x, e: right(m, x, e).detach()),
    ("gradients with respect to the encoder and decoder differ",   # same values, an extra gradient
     lambda m, x, e: right(m, x, e) + 0.01 * (m.encoder[0].weight.sum() - m.encoder[0].weight.sum().detach())),
    ("differ from L_k", lambda m, x, e: right(m, x, e) + 1.0),
    ("raised ZeroDivisionError", lambda m, x, e: 1 / 0),
    ("returned None", lambda m, x, e: None),
])
def test_iwae_bound_diagnoses(needle, fn):
    feedback = check_iwae_bound(fn)
    assert not feedback and needle in feedback.message, (needle, feedback.message)


def test_iwae_bound_k1_is_checked_too():
    """A function right only for k > 1 (it drops the first sample when k = 1 would be all it has) fails at k = 1."""
    def only_many(m, x, e):
        return right(m, x, e) if len(e) > 1 else right(m, x, e) + 0.5
    feedback = check_iwae_bound(only_many)
    assert not feedback and feedback.message.startswith("with k = 1: ")


def vamp_components(z, mu, log_var, scale=lambda lv: torch.exp(0.5 * lv)):
    return Independent(Normal(mu, scale(log_var)), 1).log_prob(z.unsqueeze(1))       # (N, K)


def vamp_right(z, mu, log_var):
    return torch.logsumexp(vamp_components(z, mu, log_var), dim=1) - math.log(len(mu))


def test_vamp_log_prob_accepts_right_answers():
    assert check_vamp_log_prob(vamp_right)
    from ae_course.learned_priors import MixtureComponents, GaussianMixturePrior

    class Fixed(GaussianMixturePrior):
        def components(self, model=None):
            return self._c

    def via_package(z, mu, log_var):
        prior = Fixed()
        prior._c = MixtureComponents(torch.zeros(len(mu)), mu, log_var)
        return prior.distribution(None).log_prob(z)
    assert check_vamp_log_prob(via_package)


@pytest.mark.parametrize("needle, fn", [
    ("geometric", lambda z, mu, lv: vamp_components(z, mu, lv).mean(1)),
    ("forgot the weights 1/K", lambda z, mu, lv: torch.logsumexp(vamp_components(z, mu, lv), 1)),
    ("largest component", lambda z, mu, lv: vamp_components(z, mu, lv).max(1).values),
    ("the variance, as the standard deviation", lambda z, mu, lv: torch.logsumexp(
        vamp_components(z, mu, lv, torch.exp), 1) - math.log(len(mu))),
    ("not finite", lambda z, mu, lv: torch.log(vamp_components(z, mu, lv).exp().mean(1))),
    ("shape (N, K)", lambda z, mu, lv: vamp_components(z, mu, lv)),
    ("SUM over the L", lambda z, mu, lv: Normal(mu[0], torch.exp(0.5 * lv[0])).log_prob(z)),
    ("per-component, per-dimension", lambda z, mu, lv: Normal(mu, torch.exp(0.5 * lv)).log_prob(z.unsqueeze(1))),
    ("single number", lambda z, mu, lv: vamp_right(z, mu, lv).mean()),
    ("differ from log (1/K)", lambda z, mu, lv: vamp_right(z, mu, lv) + 0.3),
    ("raised", lambda z, mu, lv: mu.foo),
])
def test_vamp_log_prob_diagnoses(needle, fn):
    feedback = check_vamp_log_prob(fn)
    assert not feedback and needle in feedback.message, (needle, feedback.message)


def test_vamp_log_prob_log_var_as_scale_is_named_when_positive():
    """log_var used as sigma is only a valid Normal where log_var > 0: the checker names it there."""
    from ae_course.exercises.bounds_checks import NotYet, _check_vamp_values

    z, mu, log_var = torch.zeros(2, 3), torch.zeros(4, 3), torch.full((4, 3), 2.0)
    got = torch.logsumexp(vamp_components(z, mu, log_var, lambda v: v), 1) - math.log(len(mu))
    with pytest.raises(NotYet, match="log_var as the standard deviation"):
        _check_vamp_values(got.double(), z, mu, log_var)
