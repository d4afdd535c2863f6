"""Checkers for the exercises of the chapter "Conditional VAEs".

* :func:`check_condition`: one-hot encode class labels and concatenate them to a batch of inputs, the
  input of a conditional encoder q(z|x, y) or decoder p(x|z, y) (Sohn, Lee & Yan 2015);
* :func:`check_generation_accuracy`: the fraction of generated images that a classifier assigns to the
  class they were generated for;
* :func:`check_cvae_loss`: the negative conditional ELBO written from a conditional VAE's two networks,
  compared with ``VAE(n_classes=10).loss`` on one batch and over a short training run on MNIST.

Each checker returns a :class:`~ae_course.exercises.feedback.Feedback` and never raises on a wrong answer.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from .feedback import (Feedback, as_number, as_vector, call_learner, checker, close, max_difference, mean_of,
                       name_fraction_mistake, name_mistake, unrefused, OutOfTime,
                       with_deadline)

__all__ = ["CVAENetworks", "check_condition", "check_cvae_loss", "check_generation_accuracy"]


@checker
def check_condition(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Feedback:
    """Check `fn(x, y, n_classes) -> (B, D + n_classes)`: x with one_hot(y) appended as its last columns.

    x: floating (B, D); y: integer class indices (B,). The result must be floating (the dtype of x), have
    x in its first D columns and the one-hot code in the last n_classes, and `fn` must raise ValueError for
    labels outside 0..n_classes-1 (negative ones included), for floating labels and for a number of labels
    different from B. Names the typical mistakes: the one-hot code of the wrong width (``F.one_hot``
    without ``num_classes`` infers it from the largest label in the batch), an integer result, the
    labels appended as one column instead of one-hot, the code put first, a concatenation along dim 0.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 5, generator=gen)
    y = torch.tensor([3, 0, 2, 3, 1, 2])           # the largest label (3) is below n_classes - 1
    n_classes = 6
    expected = torch.cat([x, F.one_hot(y, n_classes).float()], dim=1)
    got = call_learner(fn, x, y, n_classes, call="fn(x, y, n_classes)", when=" on valid inputs")
    if got.dim() > 0 and got.shape[0] == 12:
        return Feedback(False, "you concatenated along dim 0 (more rows); the label is extra *columns* of each "
                               "row: torch.cat([x, one_hot], dim=1).")
    if got.shape == (6, 5 + 4):
        return Feedback(False, "the one-hot part has 4 columns, not n_classes = 6: F.one_hot(y) without "
                               "num_classes takes its width from the largest label in the batch, so it changes "
                               "from batch to batch. Pass num_classes=n_classes.")
    if got.shape == (6, 6):
        return Feedback(False, "you appended the label as a single number; append its one-hot code, "
                               "n_classes columns with a 1 in column y.")
    if got.shape != expected.shape:
        return Feedback(False, f"expected shape (B, D + n_classes) = {tuple(expected.shape)}, got {tuple(got.shape)}.")
    if not got.is_floating_point():
        return Feedback(False, f"the result has dtype {got.dtype}; a network's input must be floating. F.one_hot "
                               "returns int64: convert it with .to(x.dtype) before concatenating.")
    if close(got, torch.cat([F.one_hot(y, n_classes).float(), x], dim=1)):
        return Feedback(False, "you put the one-hot code first; the book's convention (and ConditionalVAE's) "
                               "is [x, one_hot(y)]: x in the first D columns.")
    if not close(got, expected):
        if close(got[:, :5], x):
            return Feedback(False, "the first D columns are x, but the last n_classes are not one_hot(y): row i "
                                   "should have a 1 in column D + y[i] and 0 elsewhere.")
        return Feedback(False, "the first D columns should be x unchanged, followed by one_hot(y).")
    problems = unrefused(fn, [(what, (x, bad_y, n_classes)) for what, bad_y in [
        ("a label equal to n_classes", torch.tensor([3, 0, 2, 6, 1, 2])),
        ("a negative label", torch.tensor([3, 0, -1, 3, 1, 2])),
        ("floating-point labels", y.float()),
        ("5 labels for 6 rows", y[:5])]])
    if problems:
        return Feedback(False, "the values are right, but invalid labels must raise ValueError with a clear "
                               "message: " + "; ".join(problems) + ". (F.one_hot maps -1 to the last class "
                               "silently in some versions, and a wrong label count only fails later, far from "
                               "the cause.)")
    return Feedback(True, "x followed by one_hot(y) of width n_classes, floating, and invalid labels are refused.")


@checker
def check_generation_accuracy(answer, predictions: torch.Tensor, requested: torch.Tensor) -> Feedback:
    """Check `answer`: the fraction (in [0, 1]) of generated images whose predicted class equals the class
    requested for them, i.e. mean(predictions == requested).

    predictions, requested: (N,) class indices, in the same order (row i of the generated batch was
    generated for class requested[i]). Names the typical mistakes: a percentage, the error rate, a count,
    and the requested labels built with ``arange(10).repeat(n)`` (0,1,...,9,0,1,...) where the batch was
    generated with ``repeat_interleave`` (0,0,...,1,1,...).
    """
    value = as_number(answer, "the accuracy")
    predictions, requested = torch.as_tensor(predictions).flatten(), torch.as_tensor(requested).flatten()
    if predictions.shape != requested.shape:
        return Feedback(False, f"predictions {tuple(predictions.shape)} and requested {tuple(requested.shape)} "
                               "must have the same length (one requested class per generated image).")
    n = len(requested)
    right = (predictions == requested).double().mean().item()
    tol = 0.5 / n
    if close(value, right, rtol=0, atol=tol):
        return Feedback(True, f"{right:.3f} of the generated images are classified as requested.")
    name_fraction_mistake(value, right, n, count="matches", items="images", complement=(
        "that is the error rate, the fraction classified as a *different* class; give the fraction that matches the "
        "requested class."))
    classes = int(requested.max().item()) + 1 if n else 0
    if classes > 1 and n % classes == 0:
        per = n // classes
        tiled = torch.arange(classes).repeat(per)
        interleaved = torch.arange(classes).repeat_interleave(per)
        for wrong_order, name in [(tiled, "arange(K).repeat(n)"), (interleaved, "arange(K).repeat_interleave(n)")]:
            if torch.equal(wrong_order, requested):
                continue
            other = (predictions == wrong_order).double().mean().item()
            if close(value, other, rtol=0, atol=tol):
                return Feedback(False, f"you compared the predictions with labels in the order of {name}, but the "
                                       "images were generated in the order of `requested`: compare with the labels "
                                       "the images were actually generated for.")
    if not 0 <= value <= 1:
        return Feedback(False, f"{value} is not a fraction between 0 and 1.")
    return Feedback(False, f"{value:.4f} is not the fraction of images with predictions == requested; compute "
                           "(predictions == requested).float().mean().")


# ------------------------------------------------------------------------------ the conditional loss, trained


class CVAENetworks:
    """What the learner's conditional loss may use of a conditional VAE: its two networks and its sizes.

    ``encoder``: the MLP of q_phi(z|x, y), from [x, e_y] (B, D + C) to (B, 2 d), the means then the
    log-variances; ``decoder``: the MLP of p_theta(x|z, y), from [z, e_y] (B, d + C) to (B, D) logits;
    ``input_dim`` (D), ``latent_dim`` (d), ``n_classes`` (C). The model's own ``encode``, ``decode`` and
    ``loss`` are what the checker compares with, so they are not offered here.
    """

    def __init__(self, model):
        self.encoder, self.decoder = model.encoder, model.decoder
        self.input_dim, self.latent_dim, self.n_classes = model.input_dim, model.latent_dim, model.n_classes

    def __getattr__(self, name):
        raise AttributeError(f"the model passed to your loss offers only encoder, decoder, input_dim, latent_dim "
                             f"and n_classes, not {name!r}: write the loss from the two networks")

    def __repr__(self) -> str:
        return (f"CVAENetworks(input_dim={self.input_dim}, latent_dim={self.latent_dim}, "
                f"n_classes={self.n_classes})")



def _cvae_variant(nets: CVAENetworks, x: torch.Tensor, y: torch.Tensor, seed: int, *, sign: float = -1.0,
                  kl_weight: float = 1.0, pixel_mean: bool = False, sample: bool = True, log_std: bool = False,
                  label_first: tuple[bool, bool] = (False, False), swap_outputs: bool = False,
                  double_sigmoid: bool = False, detach_z: bool = False) -> torch.Tensor:
    """The per-example loss -(log p(x|z, y) - KL) with one of the typical mistakes switched on (defaults: right)."""
    e_y = F.one_hot(y, nets.n_classes).to(x.dtype)
    join = lambda t, first: torch.cat([e_y, t] if first else [t, e_y], dim=1)  # noqa: E731
    mu, log_var = nets.encoder(join(x, label_first[0])).chunk(2, dim=1)
    if swap_outputs:
        mu, log_var = log_var, mu
    torch.manual_seed(seed)
    eps = torch.randn_like(mu)
    z = mu + (torch.exp(log_var) if log_std else torch.exp(0.5 * log_var)) * eps if sample else mu
    if detach_z:
        z = z.detach()
    logits = nets.decoder(join(z, label_first[1]))
    if double_sigmoid:
        logits = torch.sigmoid(logits)
    log_px = (x * logits - F.softplus(logits))
    log_px = log_px.mean(dim=1) if pixel_mean else log_px.sum(dim=1)
    kl = 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0).sum(dim=1)
    return sign * (log_px - kl_weight * kl)


_CVAE_MISTAKES = [
    (dict(sign=1.0), "that is the ELBO itself; the loss is its negative, -log p(x|z, y) + KL, which training "
                     "minimizes."),
    (dict(kl_weight=0.0), "the KL term is missing: the loss is -log p(x|z, y) + KL(q(z|x, y) || p(z)). Without it "
                          "nothing keeps the codes near the prior, and nothing pushes the class out of z."),
    (dict(kl_weight=-1.0), "the KL term has the wrong sign: it is *added* to the reconstruction loss "
                           "(-log p(x|z, y) + KL), because the ELBO subtracts it."),
    (dict(kl_weight=2.0), "the KL is twice too large: KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum_j (mu_j^2 + sigma_j^2 "
                          "- log sigma_j^2 - 1), with the factor 1/2."),
    (dict(pixel_mean=True), "the reconstruction term is a mean over the pixels; log p(x|z, y) is a sum over the D "
                            "pixels (reduction='none' then .sum(dim=1)), else the KL outweighs it D times."),
    (dict(sample=False), "the decoder reads mu, not a sample z = mu + sigma * eps: without the noise the first term "
                         "is not an estimate of E_q[log p(x|z, y)]."),
    (dict(log_std=True), "you used exp(log_var) as the standard deviation; the encoder's second half is log sigma^2, "
                         "so sigma = exp(log_var / 2)."),
    (dict(swap_outputs=True), "mu and log_var are swapped: the encoder's output is [mu, log_var] (the first "
                              "latent_dim numbers are the means), split it with .chunk(2, dim=1)."),
    (dict(label_first=(True, True)), "you put the one-hot label first; the package's networks read [x, e_y] and "
                                     "[z, e_y]: the label is the *last* n_classes inputs."),
    (dict(label_first=(True, False)), "the encoder's input has the one-hot label first; it reads [x, e_y]: the "
                                      "label is the last n_classes inputs."),
    (dict(label_first=(False, True)), "the decoder's input has the one-hot label first; it reads [z, e_y]: the "
                                      "label is the last n_classes inputs."),
    (dict(double_sigmoid=True), "the sigmoid is applied twice: the decoder returns logits, and the Bernoulli "
                                "log-likelihood from logits (F.binary_cross_entropy_with_logits, or x * l - "
                                "softplus(l)) applies the sigmoid itself."),
]


def _shape_hint(nets: CVAENetworks) -> Callable[[Exception], str]:
    def hint(err: Exception) -> str:
        text = str(err)
        if "shapes cannot be multiplied" in text or "size mismatch" in text:
            return (f". The encoder reads x and the one-hot label, {nets.input_dim} + {nets.n_classes} numbers, and "
                    f"the decoder z and the label, {nets.latent_dim} + {nets.n_classes}: concatenate "
                    f"F.one_hot(y, num_classes={nets.n_classes}) (converted to x's dtype) to the input of *both* "
                    "networks. (F.one_hot(y) without num_classes takes its width from the largest label in the "
                    "batch; this batch has no 9.)")
        return ""
    return hint


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}


def _differing_modules(got: dict, expected: dict, rtol: float = 1e-4, atol: float = 1e-6) -> list[str]:
    """The top-level modules (encoder, decoder, ...) whose gradients differ between two gradient dicts."""
    modules = []
    for name, g in expected.items():
        other = got[name]
        same = (g is None and other is None) or (g is not None and other is not None and close(other, g, rtol, atol))
        if not same and name.split(".")[0] not in modules:
            modules.append(name.split(".")[0])
    return modules


@checker
def check_cvae_loss(loss_fn: Callable, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                    steps: int = 200, batch_size: int = 100, seed: int = 0, time_limit: float = 60.0,
                    hidden: tuple[int, ...] = (128,)) -> Feedback:
    r"""Check ``loss_fn(model, x, y) -> (B,)``: the negative conditional ELBO of a conditional VAE,
    -log p_theta(x|z, y) + KL(q_phi(z|x, y) || N(0, I)), one reparameterized sample, in nats, written from the
    two networks (Sohn, Lee & Yan 2015, eq. 4; Kingma et al. 2014, eq. 6).

    `model` is a :class:`CVAENetworks` view of an ``ae_course.VAE(n_classes=10, latent_dim=2, hidden=hidden)``:
    its ``encoder`` (input [x, e_y]) and ``decoder`` (input [z, e_y]). Two stages:

    1. one batch of 16 binarized images (none of class 9): the values and the gradients of every parameter are
       compared with the package's ``model.loss(x, y)`` at the same seed (torch is seeded before each call, so
       ``eps = torch.randn_like(mu)`` is the same noise). Names: the ELBO instead of its negative, the KL
       missing, of the wrong sign or without its 1/2, a mean over pixels, no sampling, exp(log_var) as the
       standard deviation, mu and log_var swapped, the label first, a doubled sigmoid, a detached sample, a
       single number, a loss without gradient, and (from the error) a missing or too narrow one-hot label.
    2. `steps` steps of Adam on x, y (default: the first 10,000 MNIST training digits, dynamically binarized) in
       minibatches of `batch_size`, once with ``loss_fn`` and once with ``model.loss`` (:func:`ae_course.train`,
       same seed): the last epoch's mean losses must agree to 1e-3 (relative). The learner's run stops after
       `time_limit` seconds of wall-clock time (Not yet, then).
    x: (N, D) images in [0, 1]; y: (N,) labels in 0..9.
    """
    from ..data import binarize_static, load_mnist
    from ..vae import VAE

    if x is None or y is None:
        data = load_mnist("train")
        x, y = data.images[:10_000], data.labels[:10_000]
    torch.manual_seed(seed)
    reference = VAE(input_dim=x.shape[1], latent_dim=2, hidden=hidden, n_classes=10)
    learner = VAE(input_dim=x.shape[1], latent_dim=2, hidden=hidden, n_classes=10)
    learner.load_state_dict(reference.state_dict())
    nets = CVAENetworks(learner)

    rows = torch.nonzero(y != 9).flatten()[:16]
    xb, yb = binarize_static(x[rows], seed=seed), y[rows]
    torch.manual_seed(seed + 1)
    expected = reference.loss(xb, yb)
    expected.mean().backward()
    expected_grads, expected = _gradients(reference), expected.detach().double()

    torch.manual_seed(seed + 1)
    got_tensor = call_learner(loss_fn, nets, xb, yb, call="your loss", detach=False, hint=_shape_hint(nets),
                              when=f" (model = {nets!r}, x: {tuple(xb.shape)}, y: {tuple(yb.shape)})")
    got = as_vector(got_tensor, len(xb), "your loss", mistakes=[(mean_of(expected), "you returned one number, the "
                                                                 "mean over the batch; return one loss per image, "
                                                                 "shape (B,) (train takes the mean).")])
    if not close(got, expected, rtol=1e-4, atol=1e-3):
        with torch.no_grad():
            name_mistake(got, [(_cvae_variant(nets, xb, yb, seed + 1, **variant).double(), message)
                               for variant, message in _CVAE_MISTAKES], rtol=1e-4, atol=1e-3)
        return Feedback(False, f"your losses differ from the package's model.loss(x, y) by up to "
                               f"{max_difference(got, expected):.4g} nats (they are about {expected.mean():.0f}). "
                               "Draw eps = torch.randn_like(mu) once, after the encoder (the checker seeds torch "
                               "before each call, so the same eps gives the same value).")
    if not got_tensor.requires_grad:
        return Feedback(False, "the values are right but carry no gradient (computed under torch.no_grad(), or "
                               "with .detach() or .item()): training could not change the networks.")
    learner.zero_grad()
    got_tensor.mean().backward()
    got_grads = _gradients(learner)
    differing = _differing_modules(got_grads, expected_grads)
    if differing:
        learner.zero_grad()
        _cvae_variant(nets, xb, yb, seed + 1, detach_z=True).mean().backward()
        if not _differing_modules(got_grads, _gradients(learner)):
            return Feedback(False, "the values are right, but the sample z is detached: the reconstruction term "
                                   "then sends no gradient to the encoder. z = mu + sigma * eps must stay a "
                                   "differentiable function of mu and log_var (the reparameterization trick).")
        return Feedback(False, f"the values are right but the gradients differ in the {' and '.join(differing)}: "
                               "is part of the loss detached or computed under torch.no_grad()?")
    return _train_both(loss_fn, reference, learner, x, y, steps=steps, batch_size=batch_size, seed=seed,
                       time_limit=time_limit)


def _train_both(loss_fn: Callable, reference, learner, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                batch_size: int, seed: int, time_limit: float) -> Feedback:
    """Train the reference with model.loss and the learner's copy with loss_fn, same seed; compare."""
    from ..data import binarize_dynamic
    from ..training import train, update

    learner.load_state_dict(reference.state_dict())

    def your_step(model, optimizers, xb, yb=None):
        loss = call_learner(loss_fn, CVAENetworks(model), xb, yb, call="your loss", detach=False,
                            when=" during training")
        return {"loss": update(model, optimizers["loss"], loss.mean())}

    settings = dict(steps=steps, batch_size=batch_size, seed=seed, transform=binarize_dynamic, device="cpu",
                    progress=False)
    start = time.perf_counter()
    ours = train(reference, x, y, **settings)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        yours = train(learner, x, y, step=with_deadline(your_step, time_limit), **settings)
    except OutOfTime:
        return Feedback(False, f"one batch is right, but {steps} training steps with your loss took more than "
                               f"{time_limit:.0f} s (the package's loss: {ours_seconds:.1f} s); is it doing "
                               "more work than one pass through each network?")
    except FloatingPointError as err:
        return Feedback(False, f"one batch is right, but training with your loss stopped: {err}")
    yours_seconds = time.perf_counter() - start
    ours_loss, yours_loss = ours.losses["loss"][-1], yours.losses["loss"][-1]
    difference = max((a - b).abs().max().item() for a, b in zip(learner.parameters(), reference.parameters()))
    if not close(yours_loss, ours_loss, rtol=1e-3, atol=0.0):
        return Feedback(False, f"one batch is right, but after {steps} training steps your loss is {yours_loss:.2f} "
                               f"nats per image against {ours_loss:.2f} with the package's loss.")
    same = ("bit for bit the same parameters" if difference == 0 else
            f"the same up to rounding: the losses differ by {abs(yours_loss - ours_loss):.1e} nats")
    return Feedback(True, f"the values and gradients match model.loss(x, y), and {steps} Adam steps on "
                          f"{len(x):,} digits with your loss ({yours_seconds:.1f} s) end at a -ELBO of "
                          f"{yours_loss:.2f} nats per image, the package's loss at {ours_loss:.2f} ({same}).")
