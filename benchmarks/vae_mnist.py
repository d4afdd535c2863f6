"""Benchmark: a VAE on binarized MNIST under a wall-clock training budget (or for a fixed number of epochs).

Trains :class:`ae_course.VAE` with the package's :func:`ae_course.train` one epoch at a time until the
budget (``--minutes``) is spent, with Adam and a learning rate decayed toward ``--lr-final`` as a function of
elapsed time (or, with ``--epochs N``, for exactly N epochs with the schedule a function of the epoch). Two
data settings (``--data``):

* ``dynamic`` (default): the 60,000 grey-level MNIST training digits, re-binarized for every minibatch
  (x ~ Bernoulli(grey level), dynamic binarization); the test digits binarized once with
  ``ae_course.data.binarize_static(x, seed=--test-binarization-seed)``;
* ``static``: the statically binarized MNIST of Larochelle & Murray (2011), read with
  ``ae_course.data.load_binarized_mnist``: trained on its 50,000-digit ``train`` split as is (no
  re-binarization; ``--static-train train+valid`` adds the 10,000 ``valid`` digits), tested on its 10,000-digit
  ``test`` split as is. The IWAE code (github.com/yburda/iwae, ``datasets.py``) also trains on the 50,000 and
  holds the ``valid`` split out.

It then evaluates on the test digits:

* the test negative ELBO (single-sample estimate averaged over ``--elbo-samples`` draws of z),
* the importance-sampled negative log-likelihood with k samples (Burda et al. 2016, eq. 8),
* the number of active units (Burda et al. 2016, §5.2, threshold 0.01),

prints a table and writes JSON to ``benchmarks/results/``. Not a test: run it by hand, e.g.

    python benchmarks/vae_mnist.py --minutes 10
    python benchmarks/vae_mnist.py --data static --n-test 10000

Data: ``--data-dir`` (default $AE_COURSE_DATA, else ``../shared/data`` relative to the repository) must
contain ``mnist/{train,t10k}-images-idx3-ubyte.gz`` (``--data dynamic``) or
``binarized-mnist/binarized_mnist_{train,valid,test}.amat[.gz]`` (``--data static``). There is no fallback to
the package's small embedded subset: the script stops and says what is missing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from common import atomic_write  # benchmarks/common.py: the script's folder is on sys.path

# On a shared CPU, OpenMP threads that spin while waiting for a descheduled sibling slow training down
# by 10-50x; passive waiting avoids it. Must be set before torch (and its OpenMP runtime) is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ae_course import VAE, History, adam, get_device, load_checkpoint, save_checkpoint, train  # noqa: E402
from ae_course.data import binarize_dynamic, binarize_static, load_binarized_mnist, load_mnist  # noqa: E402
from ae_course.evaluation import active_units, estimate_elbo, importance_sampled_log_likelihood, posterior_mean_variance  # noqa: E402


def load_images(split: str, data_dir: Path) -> tuple[torch.Tensor, str]:
    """Grey-level MNIST images of a split ("train" or "test") from the IDX files in data_dir/mnist, with
    ``ae_course.data.load_mnist(split, source="local")``: it never falls back to the small embedded subset."""
    try:
        ds = load_mnist(split, source="local", data_dir=data_dir)
    except (FileNotFoundError, NotADirectoryError) as err:
        sys.exit(f"full MNIST not found ({err}).\nThis benchmark needs the 60,000/10,000 MNIST IDX files in "
                 f"{data_dir}/mnist/: set --data-dir or $AE_COURSE_DATA to a folder laid out like ../shared/data "
                 "(the package's 4,000-digit embedded subset is not used: its numbers would not be comparable).")
    return ds.images, f"ae_course.data.load_mnist: {ds.source}"


def load_static(splits: list[str], data_dir: Path) -> tuple[torch.Tensor, str]:
    """Statically binarized MNIST (Larochelle & Murray 2011): the given splits of
    ``ae_course.data.load_binarized_mnist``, concatenated, 0/1 float32 (N, 784)."""
    try:
        parts = [load_binarized_mnist(split, data_dir=data_dir) for split in splits]
    except (FileNotFoundError, NotADirectoryError) as err:
        sys.exit(f"statically binarized MNIST not found ({err}).\nThis benchmark needs "
                 f"{data_dir}/binarized-mnist/binarized_mnist_{{train,valid,test}}.amat[.gz]: set --data-dir or "
                 "$AE_COURSE_DATA to a folder laid out like ../shared/data.")
    return torch.cat(parts), (f"ae_course.data.load_binarized_mnist({' + '.join(splits)}) from "
                              f"{data_dir / 'binarized-mnist'}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    default_data = os.environ.get("AE_COURSE_DATA") or str(REPO / ".." / "shared" / "data")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget (ignored with --epochs)")
    p.add_argument("--epochs", type=int, default=None,
                   help="train exactly this many epochs instead of a wall-clock budget; the learning-rate schedule "
                        "(and KL warm-up) is then a function of the fraction of epochs done (the GPU schedule)")
    p.add_argument("--data", choices=["dynamic", "static"], default="dynamic",
                   help="dynamic: grey-level MNIST re-binarized per minibatch, test binarized once; static: the "
                        "fixed binarization of Larochelle & Murray (2011), train and test splits used as they are")
    p.add_argument("--static-train", choices=["train", "train+valid"], default="train",
                   help="with --data static: train on the 50,000 'train' digits (as the IWAE code does) or on "
                        "'train' + 'valid' (60,000)")
    p.add_argument("--k", type=int, default=1000, help="importance samples for the test NLL")
    p.add_argument("--n-test", type=int, default=1000, help="evaluate on the first N test digits (10000 = all)")
    p.add_argument("--data-dir", default=default_data, help="folder holding mnist/*.gz and binarized-mnist/*.amat.gz")
    p.add_argument("--device", default=None,
                   help="default: ae_course.get_device() ($AE_COURSE_DEVICE, else CUDA if available, else CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    # model
    p.add_argument("--hidden", default="500,500", help="comma-separated hidden widths (decoder mirrors)")
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--activation", default="elu")
    p.add_argument("--init-output-bias", action=argparse.BooleanOptionalAction, default=True,
                   help="set the decoder's output bias to the logit of the mean training pixel")
    # optimization
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-final", type=float, default=1e-4, help="learning rate at the end of the budget")
    p.add_argument("--schedule", choices=["exp", "cosine", "constant", "iwae"], default="exp",
                   help="lr as a function of the elapsed fraction t of the budget (or of --epochs): exp: "
                        "lr*(lr_final/lr)^t; cosine: lr_final + (lr-lr_final)(1+cos(pi t))/2; iwae: the IWAE "
                        "paper's stages, lr*round(10^(1-i/7), 1)/10 for 3^i of every 3280 epochs, i = 0..7 "
                        "(--lr-final ignored)")
    p.add_argument("--adam-eps", type=float, default=1e-8, help="Adam's epsilon (the IWAE code uses 1e-4)")
    p.add_argument("--warmup-fraction", type=float, default=0.0,
                   help="KL warm-up: beta rises linearly from 0 to 1 over this fraction of the budget")
    p.add_argument("--max-epochs", type=int, default=10_000)
    p.add_argument("--ema-decay", type=float, default=0.999,
                   help="if > 0, evaluate an exponential moving average of the weights, updated after every "
                        "Adam step with this decay (Polyak averaging); 0 evaluates the final weights")
    p.add_argument("--eval-raw", action="store_true", help="with --ema-decay, also evaluate the final (raw) weights")
    # evaluation
    p.add_argument("--elbo-samples", type=int, default=10, help="z draws averaged in the test ELBO")
    p.add_argument("--test-binarization-seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=1)
    p.add_argument("--chunk", type=int, default=100, help="importance samples per pass")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--evaluate", metavar="CHECKPOINT", default=None,
                   help="train nothing: evaluate the weights of a checkpoint this script saved (e.g. its _ema.pt) "
                        "with --k and --n-test; the architecture options must match the run that saved it")
    return p.parse_args(argv)


IWAE_EPOCHS = 3280  # = 3^0 + 3^1 + ... + 3^7 epochs: the IWAE training schedule (github.com/yburda/iwae, experiments.py)


def lr_at(t: float, args) -> float:
    t = min(max(t, 0.0), 1.0)
    if args.schedule == "iwae":
        # stage i (i = 0..7) lasts 3^i of the 3280 epochs, at lr * round(10^(1 - i/7), 1) / 10
        # (github.com/yburda/iwae, experiments.py: 1e-4 * round(10^(1 - (i-1)/7), 1) for 3^(i-1) epochs, i = 1..8)
        epoch, stage = t * IWAE_EPOCHS, 0
        while stage < 7 and epoch >= (3 ** (stage + 1) - 1) / 2:
            stage += 1
        return args.lr * round(10 ** (1 - stage / 7), 1) / 10
    if args.schedule == "exp":
        return args.lr * (args.lr_final / args.lr) ** t
    if args.schedule == "cosine":
        return args.lr_final + (args.lr - args.lr_final) * 0.5 * (1 + math.cos(math.pi * t))
    return args.lr


def evaluate_vae(model, x, args, device) -> dict:
    """Test -ELBO, importance-sampled log-likelihood per digit, posterior-mean variances and active units."""
    t0 = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(args.eval_seed)
    neg_elbo = -estimate_elbo(model, x, n_samples=args.elbo_samples, batch_size=100, generator=gen).mean().item()
    nll = -importance_sampled_log_likelihood(model, x, k=args.k, batch_size=100, chunk=args.chunk, generator=gen)
    return {"neg_elbo": neg_elbo, "nll": nll, "variances": posterior_mean_variance(model, x),
            "active_units": active_units(model, x), "seconds": time.perf_counter() - t0}


def build_vae(args, hidden: tuple[int, ...], beta: float = 1.0) -> VAE:
    """The benchmark's VAE: 784-hidden-latent_dim with a Bernoulli decoder (the architecture options)."""
    return VAE(input_dim=784, latent_dim=args.latent_dim, hidden=hidden, activation=args.activation,
               likelihood="bernoulli", beta=beta)


def nll_summary(nll: torch.Tensor) -> dict:
    """Mean IS-NLL per digit, its standard error over digits, and the mean over the first 1,000 digits."""
    return {"test_is_nll": nll.mean().item(), "test_is_nll_standard_error": (nll.std() / math.sqrt(len(nll))).item(),
            "test_is_nll_first_1000_of_these": nll[:1000].mean().item()}


def evaluate_checkpoint(checkpoint: Path, x_test: torch.Tensor, hidden: tuple[int, ...], args, device) -> dict:
    """Evaluate saved weights (``ae_course.load_checkpoint``, read with weights_only=True) on x_test: -ELBO,
    IS-NLL with ``args.k`` samples, active units; print them and write ``<checkpoint>_eval_k<k>_n<n>.json``."""
    model = build_vae(args, hidden)
    load_checkpoint(checkpoint, model, restore_rng=False)
    model.to(device).eval()
    e = evaluate_vae(model, x_test, args, device)
    nll = e["nll"]
    result = {"checkpoint": str(checkpoint), "k": args.k, "n_test": len(x_test), "eval_seed": args.eval_seed,
              "test_negative_elbo": e["neg_elbo"], **nll_summary(nll), "active_units": e["active_units"],
              "eval_seconds": round(e["seconds"], 1), "threads": torch.get_num_threads(), "load": os.getloadavg()}
    print(f"{checkpoint.name}: {len(x_test)} test digits, -ELBO {e['neg_elbo']:.2f}, IS-NLL (k={args.k}) "
          f"{result['test_is_nll']:.2f} +- {result['test_is_nll_standard_error']:.2f} nats, "
          f"{e['active_units']} active units, {e['seconds']:.0f} s")
    path = checkpoint.with_name(f"{checkpoint.stem}_eval_k{args.k}_n{len(x_test)}.json")
    atomic_write(path, lambda f: f.write(json.dumps(result, indent=2).encode()))
    print(f"wrote {path}")
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    data_dir = Path(args.data_dir).resolve()
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.epochs is None and not args.minutes > 0:
        raise ValueError(f"--minutes must be > 0 unless --epochs is given, got {args.minutes}")
    if args.data == "dynamic":
        x_train, train_source = load_images("train", data_dir)
        x_test_all, test_source = load_images("test", data_dir)
        transform = binarize_dynamic
        train_note = "dynamic binarization per minibatch"
        test_note = f"binarized once with seed {args.test_binarization_seed}"
    else:
        x_train, train_source = load_static(args.static_train.split("+"), data_dir)
        x_test_all, test_source = load_static(["test"], data_dir)
        transform = None
        train_note = "static binarization, used as is"
        test_note = "statically binarized (Larochelle & Murray), used as is"
    if not 1 <= args.n_test <= len(x_test_all):
        raise ValueError(f"--n-test must be in [1, {len(x_test_all)}], got {args.n_test}")
    x_test = x_test_all[:args.n_test]
    if args.data == "static" and args.n_test < len(x_test_all):
        print(f"WARNING: the static test split is ordered by digit class (its first 1,000 digits are almost all "
              f"zeros), so its first {args.n_test} digits are not a representative subset; use --n-test "
              f"{len(x_test_all)}", flush=True)
    if args.data == "dynamic":
        x_test = binarize_static(x_test, seed=args.test_binarization_seed)
    hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())

    if args.evaluate is not None:
        return evaluate_checkpoint(Path(args.evaluate), x_test.to(device), hidden, args, device)

    torch.manual_seed(args.seed)
    model = build_vae(args, hidden, beta=0.0 if args.warmup_fraction > 0 else 1.0)
    if args.init_output_bias:
        p = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            model.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))
    model.to(device)
    if device.type != "cpu":
        x_train = x_train.to(device)  # train() then shuffles and slices on the device: no per-batch copies
    opt = adam(model.parameters(), lr=args.lr, eps=args.adam_eps)   # the package's fused Adam
    ema_model = None
    if args.ema_decay > 0:
        ema_model = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay))
        opt.register_step_post_hook(lambda optimizer, a, kw: ema_model.update_parameters(model))
    budget = args.minutes * 60.0
    length = f"{args.epochs} epochs" if args.epochs is not None else f"budget {args.minutes} min"
    print(f"train: {len(x_train)} digits from {train_source}; {train_note}")
    print(f"test: first {args.n_test} test digits from {test_source}, {test_note}")
    print(f"model: 784-{'-'.join(map(str, hidden))}-{args.latent_dim} {args.activation}, Bernoulli decoder; "
          f"{sum(p.numel() for p in model.parameters())} parameters; {length} on {device}, "
          f"{torch.get_num_threads()} threads")

    train_loss, epoch_seconds = [], []
    load_before = os.getloadavg()
    start = time.perf_counter()
    epochs = 0
    while epochs < (args.epochs if args.epochs is not None else args.max_epochs):
        elapsed = time.perf_counter() - start
        mean_epoch = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0.0
        if args.epochs is None and epochs > 0 and elapsed + mean_epoch > budget:
            break  # the next epoch would not finish inside the budget
        t = epochs / args.epochs if args.epochs is not None else elapsed / budget
        for group in opt.param_groups:
            group["lr"] = lr_at(t, args)
        if args.warmup_fraction > 0:
            model.beta = min(1.0, t / args.warmup_fraction)
        t0 = time.perf_counter()
        hist = train(model, x_train, epochs=1, batch_size=args.batch_size, seed=args.seed * 100_003 + epochs,
                     device=device, transform=transform, optimizers=opt, progress=False)
        epoch_seconds.append(time.perf_counter() - t0)
        train_loss.append(hist.train_loss[-1])
        epochs += 1
        if epochs == 1 or epochs % 5 == 0:
            print(f"epoch {epochs:4d}  {time.perf_counter() - start:7.1f} s  lr {opt.param_groups[0]['lr']:.2e}  "
                  f"beta {model.beta:.2f}  train loss {train_loss[-1]:.2f}", flush=True)
    train_seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    model.beta = 1.0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"vae_mnist_{time.strftime('%Y%m%d-%H%M%S')}{('_' + args.tag) if args.tag else ''}"
    checkpoint = out / f"{stem}.pt"  # saved before the (long) evaluation, so the trained weights survive a crash
    save_checkpoint(checkpoint, model, opt, History(losses={"loss": train_loss}, seconds=train_seconds,
                                                    epochs=epochs, device=str(device)))
    if ema_model is not None:
        save_checkpoint(out / f"{stem}_ema.pt", ema_model.module)
    print(f"saved the model to {checkpoint} (ae_course.load_checkpoint)", flush=True)

    x_eval = x_test.to(device)
    evaluations = {}
    for name, evaluated in (("ema", ema_model.module if ema_model is not None else None),
                            ("final", model if ema_model is None or args.eval_raw else None)):
        if evaluated is not None:
            evaluations[name] = evaluate_vae(evaluated, x_eval, args, device)
    headline = evaluations["ema" if ema_model is not None else "final"]
    neg_elbo, nll, variances, n_active, eval_seconds = (headline[key] for key in (
        "neg_elbo", "nll", "variances", "active_units", "seconds"))

    result = {
        "config": {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(args).items()},
        "hidden": list(hidden),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "final_train_loss": train_loss[-1],
        "data": args.data,
        "train_data": f"{len(x_train)} digits from {train_source}; {train_note}",
        "test_digits": f"first {args.n_test} of the test set from {test_source}, {test_note}",
        "test_negative_elbo": neg_elbo,
        **nll_summary(nll),
        "k": args.k,
        "active_units": n_active,
        "latent_dim": args.latent_dim,
        "posterior_mean_variances": [round(v, 5) for v in variances.tolist()],
        "eval_seconds": round(eval_seconds, 1),
        "weights_evaluated": "exponential moving average" if ema_model is not None else "final",
        "all_evaluations": {name: {"test_negative_elbo": e["neg_elbo"], "test_is_nll": e["nll"].mean().item(),
                                   "active_units": e["active_units"]} for name, e in evaluations.items()},
        "train_loss_per_epoch": [round(v, 3) for v in train_loss],
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "load_average_1_5_15_min_before_training": load_before, "load_average_after_training": load_after},
    }
    rows = [
        ("model", f"784-{'-'.join(map(str, hidden))}-{args.latent_dim} {args.activation}"),
        ("data", result["train_data"]),
        ("optimizer", f"Adam, batch {args.batch_size}, lr {args.lr:g} -> "
                      f"{'(IWAE stages)' if args.schedule == 'iwae' else format(args.lr_final, 'g')} ({args.schedule})"),
        ("epochs", f"{epochs}"),
        ("train wall time", f"{train_seconds:.0f} s ({length}; load average {load_before[0]:.1f} before, "
                            f"{load_after[0]:.1f} after, on {os.cpu_count()} CPUs)"),
        ("test digits", result["test_digits"]),
        ("weights evaluated", result["weights_evaluated"] + (f" (decay {args.ema_decay})" if ema_model is not None else "")),
        ("test -ELBO", f"{neg_elbo:.2f} nats ({args.elbo_samples} samples of z)"),
        (f"test IS-NLL (k={args.k})", f"{result['test_is_nll']:.2f} +- {result['test_is_nll_standard_error']:.2f} nats (standard error over digits)"),
        ("active units", f"{n_active} / {args.latent_dim}"),
        *([("IS-NLL, first 1000 of these", f"{result['test_is_nll_first_1000_of_these']:.2f} nats")] if len(nll) > 1000 else []),
        ("eval wall time", f"{eval_seconds:.0f} s"),
    ]
    if len(evaluations) > 1:
        final = result["all_evaluations"]["final"]
        rows.append(("final weights", f"-ELBO {final['test_negative_elbo']:.2f}, IS-NLL {final['test_is_nll']:.2f}, "
                                      f"{final['active_units']} active units"))
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    path = out / f"{stem}.json"
    atomic_write(path, lambda f: f.write(json.dumps(result, indent=2).encode()))
    print(f"\nwrote {path}")
    return result




if __name__ == "__main__":
    main()
