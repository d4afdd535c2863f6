"""ae_course: the models, losses and evaluators of the executable autoencoder textbook."""
from .losses import binary_cross_entropy, bernoulli_log_likelihood, gaussian_log_likelihood, squared_error
from .models import ACTIVATIONS, Autoencoder, mlp, mlp_decoder, mlp_encoder
from .train import History, evaluate, get_device, train
from .losses import gaussian_kl
from .vae import VAE
from .evaluation import (active_units, estimate_elbo, importance_sampled_log_likelihood, off_data_fraction,
                         posterior_mean_variance, two_sample_accuracy)
from .cvae import ConditionalVAE
from .denoising import DenoisingAutoencoder
from .aae import AdversarialAutoencoder, Discriminator, SemiSupervisedAAE, train_adversarial
from .priors import CategoricalPrior, GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior

__version__ = "0.1.0"
