"""Automatic checkers for the exercises at the end of each chapter, one module per chapter.

A checker never raises on a wrong answer: it returns a :class:`Feedback` that says *what* is wrong
(a shape, a missing sum over pixels, a sign, an overflow) so that a learner can fix it. It is truthy
only when the answer is right, so a solution cell can simply ``assert check_...(answer)``.
"""
from .autoencoder import check_bernoulli_nll, check_mean_image_baseline, check_pca_error
from .feedback import Feedback, as_number
