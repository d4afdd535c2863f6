"""The priors an adversarial autoencoder samples from: shapes, moments, densities, errors."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from ae_course.priors import CategoricalPrior, GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior

N = 200_000


def test_gaussian_prior_shape_moments_and_density():
    torch.manual_seed(0)
    prior = GaussianPrior(3, scale=5.0)
    z = prior.sample(N)
    assert z.shape == (N, 3) and z.dtype == torch.float32
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=0.05)
    assert torch.allclose(z.std(0), torch.full((3,), 5.0), rtol=0.01)
    point = torch.tensor([[1.0, -2.0, 0.5]])
    expected = -1.5 * math.log(2 * math.pi * 25) - (1 + 4 + 0.25) / 50
    assert prior.log_prob(point).item() == pytest.approx(expected, rel=1e-6)


def test_mixture_prior_means_on_a_circle_and_elongated_radially():
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(n_components=10, radius=4.0, radial_std=1.0, tangential_std=0.25)
    z = prior.sample(N)
    assert z.shape == (N, 2)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=0.03)       # symmetric arrangement
    # E|z|^2 = radius^2 + radial_std^2 + tangential_std^2 for every component
    assert (z ** 2).sum(1).mean().item() == pytest.approx(16 + 1 + 0.0625, rel=0.01)
    comp = torch.full((20_000,), 0)                                     # component 0 sits on the +x axis
    z0 = prior.sample_component(comp)
    assert torch.allclose(z0.mean(0), torch.tensor([4.0, 0.0]), atol=0.03)
    assert torch.allclose(z0.std(0), torch.tensor([1.0, 0.25]), rtol=0.03)
    # the density is the equal-weight mixture of the components' densities
    point = torch.tensor([[3.0, 0.5]])
    comps = [MultivariateNormal(m, c) for m, c in zip(prior._components.mean.double(),
                                                       prior._components.covariance_matrix.double())]
    mixture = torch.logsumexp(torch.stack([c.log_prob(point.double()) for c in comps]), 0) - math.log(10)
    assert prior.log_prob(point).item() == pytest.approx(mixture.item(), rel=1e-6)


def test_swiss_roll_prior_lies_on_the_curve():
    torch.manual_seed(0)
    prior = SwissRollPrior(scale=2.0, noise=0.0)
    z = prior.sample(10_000)
    assert z.shape == (10_000, 2)
    radius = z.norm(dim=1) * 2.0                                        # = t for noise 0
    assert radius.min() >= SwissRollPrior.T_MIN - 1e-4 and radius.max() <= SwissRollPrior.T_MAX + 1e-4
    direction = z / z.norm(dim=1, keepdim=True)                         # = (cos t, sin t)
    assert torch.allclose(direction, torch.stack([radius.cos(), radius.sin()], 1), atol=1e-3)
    # t is uniform on [1.5 pi, 4.5 pi]: mean 3 pi
    assert radius.mean().item() == pytest.approx(3 * math.pi, rel=0.01)
    with pytest.raises(NotImplementedError, match="no closed-form density"):
        prior.log_prob(z)


def test_categorical_prior_is_uniform_one_hot():
    torch.manual_seed(0)
    prior = CategoricalPrior(10)
    y = prior.sample(N)
    assert y.shape == (N, 10)
    assert torch.equal(y.sum(1), torch.ones(N)) and set(y.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(y.mean(0), torch.full((10,), 0.1), atol=0.003)
    assert prior.log_prob(y[:3]).tolist() == pytest.approx([-math.log(10)] * 3)


def test_samples_are_seeded_and_land_on_the_device():
    for prior in (GaussianPrior(2, 5.0), MixtureOfGaussiansPrior(), SwissRollPrior(), CategoricalPrior(4)):
        torch.manual_seed(3)
        a = prior.sample(5)
        torch.manual_seed(3)
        assert torch.equal(a, prior.sample(5, device="cpu"))
        assert a.shape == (5, prior.dim)


@pytest.mark.parametrize("make", [lambda: GaussianPrior(0), lambda: GaussianPrior(2, scale=0.0),
                                  lambda: MixtureOfGaussiansPrior(0), lambda: MixtureOfGaussiansPrior(radius=-1),
                                  lambda: SwissRollPrior(scale=0), lambda: SwissRollPrior(noise=-0.1),
                                  lambda: CategoricalPrior(1)])
def test_bad_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="integer >= 1"):
        GaussianPrior(2).sample(0)
    with pytest.raises(ValueError, match="integer >= 1"):
        SwissRollPrior().sample(2.5)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        GaussianPrior(2).log_prob(torch.zeros(4, 3))
    prior = MixtureOfGaussiansPrior(n_components=4)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        prior.sample_component(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="integer"):
        prior.sample_component(torch.tensor([0.0, 1.0]))
