"""ae_course: the models, losses and evaluators of the executable autoencoder textbook."""
from .losses import (binary_cross_entropy, bernoulli_log_likelihood, gaussian_kl, gaussian_log_likelihood,
                     reparameterize, squared_error, standard_normal)
from .models import ACTIVATIONS, LIKELIHOODS, Autoencoder, mlp, mlp_decoder, mlp_encoder
from .training import History, adam, evaluate, get_device, load_checkpoint, save_checkpoint, train
from .vae import VAE, ConditionalVAE
from .evaluation import (active_units, estimate_elbo, importance_sampled_log_likelihood, off_data_fraction,
                         posterior_mean_variance, two_sample_accuracy)
from .denoising import DenoisingAutoencoder
from .aae import AdversarialAutoencoder, Discriminator
from .semi_supervised import SemiSupervisedAAE
from .priors import CategoricalPrior, GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior

__version__ = "0.2.0"
