"""Automatic checkers for the exercises at the end of each chapter, one module ``<topic>_checks`` per chapter
(e.g. :mod:`ae_course.exercises.vae_checks` for the chapter on training a VAE), so that no module here shadows
the package module it checks (:mod:`ae_course.vae`).

A checker never raises on a wrong answer: it returns a :class:`Feedback` that says *what* is wrong
(a shape, a missing sum over pixels, a sign, an overflow) so that a learner can fix it. It is truthy
only when the answer is right, so a solution cell can simply ``assert check_...(answer)``. The helpers the
checkers share, among them the one guarded path by which they call learner code, are in
:mod:`ae_course.exercises.feedback`.
"""
from .autoencoder_checks import check_bernoulli_nll, check_mean_image_baseline, check_pca_error
from .feedback import Feedback, as_number
