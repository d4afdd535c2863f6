"""Benchmark: the semi-supervised adversarial autoencoder on full MNIST with 100 or 1,000 labels.

Trains :class:`ae_course.SemiSupervisedAAE` (Makhzani et al. 2016, section 5) with the package's
:func:`ae_course.train` on the 60,000 MNIST training digits, of which ``--labels`` (class-balanced, drawn
with the run's seed) keep their labels, and measures on the 10,000 test digits:

* the **test error** of the class head, argmax_y q(y|x) (Makhzani et al. 2016, Table 2: 1.90 % with 100
  labels, 1.60 % with 1,000, after far longer training on a GPU);
* the same for the **labelled-only baseline**: the same model, initialization and corruption trained on the
  classification phase alone (``--baseline-steps`` minibatches of the labelled digits), i.e. everything
  minus the unlabelled images;
* **class/style separation**: the style z of ``--n-transfer`` test digits decoded with each of the ten class
  codes, judged by the book's judge (:func:`ae_course.judge.digit_judge`, a CNN trained on the 60,000
  training digits, 98.8 % on the test digits): the fraction judged to show the requested class.

The recipe (the defaults) and what each change bought are in ``benchmarks/README.md``. Not a test: run it by
hand, e.g.

    python benchmarks/ssaae_mnist.py --labels 1000 --seeds 0 1 2
    python benchmarks/ssaae_mnist.py --labels 100 --seeds 0 1 2 --threads 1   # beside another run

Data: ``--data-dir`` (default $AE_COURSE_DATA, else ``../shared/data`` relative to the repository) must
contain ``mnist/{train,t10k}-{images,labels}-idx?-ubyte.gz``; there is no fallback to the embedded subset.
Results: one JSON per run in ``benchmarks/results/`` (``ssaae_mnist_<labels>_seed<seed>_<time>.json``).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from common import atomic_write  # benchmarks/common.py: sets OMP_WAIT_POLICY=PASSIVE before torch loads

import torch  # noqa: E402
from torch.distributions import Categorical  # noqa: E402
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

import ae_course  # noqa: E402
from ae_course import SemiSupervisedAAE, get_device  # noqa: E402
from ae_course.corruption import gaussian_noise, random_translation  # noqa: E402
from ae_course.data import load_mnist  # noqa: E402
from ae_course.judge import digit_judge  # noqa: E402
from ae_course.models import ConvEncoder  # noqa: E402
from ae_course.training import update  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    default_data = os.environ.get("AE_COURSE_DATA") or str(REPO / ".." / "shared" / "data")
    p.add_argument("--labels", type=int, default=1000, help="labelled training digits (a multiple of 10)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (labelled set, init)")
    p.add_argument("--steps", type=int, default=7000, help="minibatches of the semi-supervised AAE")
    p.add_argument("--batch-size", type=int, default=100, help="unlabelled and labelled images per step, each")
    # model
    p.add_argument("--encoder", choices=["conv", "mlp"], default="conv",
                   help="conv: ae_course.models.ConvEncoder (16 and 32 channels, 256 hidden); mlp: --hidden")
    p.add_argument("--hidden", default="512,256", help="hidden widths of the MLP encoder; the decoder mirrors them")
    p.add_argument("--discriminator-hidden", default="256,256")
    p.add_argument("--style-dim", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--noise", type=float, default=0.3, help="std of the Gaussian noise added to the encoder's input")
    p.add_argument("--shift", type=int, default=2, help="random translation of the encoder's input, in pixels")
    # optimization
    p.add_argument("--lr", type=float, default=1e-3, help="reconstruction phase (Adam)")
    p.add_argument("--lr-adversarial", type=float, default=4e-4,
                   help="both adversarial phases (Adam, beta1 0.5); the package's default is 2e-4")
    p.add_argument("--lr-classification", type=float, default=1e-3, help="semi-supervised phase (Adam)")
    p.add_argument("--lr-final-factor", type=float, default=0.1,
                   help="every learning rate decays exponentially in the step count to this fraction")
    p.add_argument("--chunk", type=int, default=250, help="steps between learning-rate updates")
    p.add_argument("--ema-decay", type=float, default=0.999,
                   help="also evaluate an exponential moving average of the weights (0: off)")
    p.add_argument("--baseline-steps", type=int, default=3000, help="0 skips the labelled-only baseline")
    # evaluation and machine
    p.add_argument("--n-transfer", type=int, default=1000, help="test styles decoded with each class code")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=default_data)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if args.labels < 10 or args.labels % 10:
        p.error(f"--labels must be a positive multiple of 10, got {args.labels}")
    if min(args.steps, args.batch_size, args.chunk, args.n_transfer) < 1 or args.baseline_steps < 0:
        p.error("--steps, --batch-size, --chunk and --n-transfer must be >= 1, --baseline-steps >= 0")
    return args


def load(split: str, data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = load_mnist(split, source="local", data_dir=data_dir)
    except (FileNotFoundError, NotADirectoryError) as err:
        sys.exit(f"full MNIST not found ({err}); set --data-dir or $AE_COURSE_DATA to a folder laid out like "
                 "../shared/data (the 4,000-digit embedded subset is not used: not comparable to the paper)")
    return ds.images, ds.labels


def choose_labelled(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` distinct random rows of each class (the chapter's rule), reproducible for a seed."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.nonzero(labels == k).flatten() for k in range(10)]
    return torch.cat([r[torch.randperm(len(r), generator=gen)[:per_class]] for r in rows])


def corrupt(x: torch.Tensor, shift: int, noise: float) -> torch.Tensor:
    """What the encoder reads in train mode: x shifted by up to `shift` pixels, plus N(0, noise^2) noise."""
    if shift:
        x = random_translation(x, shift)
    return gaussian_noise(x, noise, clip=False) if noise else x


def build(args, seed: int) -> SemiSupervisedAAE:
    torch.manual_seed(seed)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    out = 10 + args.style_dim
    encoder = ConvEncoder(784, out, dropout=args.dropout) if args.encoder == "conv" else None
    return SemiSupervisedAAE(784, 10, args.style_dim, hidden=hidden, dropout=args.dropout,
                             discriminator_hidden=tuple(int(h) for h in args.discriminator_hidden.split(",")),
                             corruption=functools.partial(corrupt, shift=args.shift, noise=args.noise),
                             encoder=encoder)


def set_lr(optimizers, base: dict, factor: float) -> None:
    for name, opt in optimizers.items():
        for group, lr in zip(opt.param_groups, base[name]):
            group["lr"] = lr * factor


def error_rate(model, x, y) -> float:
    return (model.classify(x) != y).double().mean().item()


def classification_step(model, optimizers, x, y):
    """The labelled-only baseline's step: the semi-supervised phase alone."""
    return {"classification": update(model, optimizers["classification"],
                                      model.classification_loss(x, y).mean(), "classification")}


def train_ssaae(args, model, x, xl, yl, device, seed):
    optimizers = model.make_optimizers(lr=args.lr, lr_adversarial=args.lr_adversarial)
    optimizers["classification"] = ae_course.adam(model.encoder.parameters(), lr=args.lr_classification)
    base = {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}
    ema = None
    if args.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay))
        # the classification phase is the last update of every step: average after it
        optimizers["classification"].register_step_post_hook(lambda *_: ema.update_parameters(model))
    history, done = None, 0
    while done < args.steps:
        set_lr(optimizers, base, args.lr_final_factor ** (done / args.steps))
        n = min(args.chunk, args.steps - done)
        history = ae_course.train(model, x, labelled=(xl, yl), steps=n, batch_size=args.batch_size,
                                  seed=seed if done == 0 else None, device=device, optimizers=optimizers,
                                  history=history, progress=False)
        done += n
        if done % (4 * args.chunk) == 0 or done == args.steps:
            last = ", ".join(f"{k} {v[-1]:.3f}" for k, v in history.losses.items())
            print(f"  step {done:5d}  {history.seconds:6.0f} s  {last}", flush=True)
    return history, ema


def train_baseline(args, x_l, y_l, device, seed):
    model = build(args, seed)
    optimizers = {"classification": ae_course.adam(model.encoder.parameters(), lr=args.lr_classification)}
    base = {"classification": [args.lr_classification]}
    history, done = None, 0
    while done < args.baseline_steps:
        set_lr(optimizers, base, args.lr_final_factor ** (done / args.baseline_steps))
        n = min(args.chunk, args.baseline_steps - done)
        history = ae_course.train(model, x_l, y_l, steps=n, batch_size=args.batch_size,
                                  seed=seed if done == 0 else None, device=device, optimizers=optimizers,
                                  step=classification_step, history=history, progress=False)
        done += n
    return model.cpu(), history


@torch.no_grad()
def transfer(model, judge, x_test, y_test, n: int) -> dict:
    """Style z of n test digits decoded with each class code; the judge's verdicts."""
    model.eval()
    z = torch.cat([model.encode(x_test[i:i + 500])[1] for i in range(0, n, 500)])[:n]
    images = torch.sigmoid(model.decode(z.repeat_interleave(10, dim=0), torch.arange(10).repeat(n)))
    predicted = judge.predict(images)
    return {"requested_class": (predicted == torch.arange(10).repeat(n)).double().mean().item(),
            "source_class": (predicted == y_test[:n].repeat_interleave(10)).double().mean().item()}


def run(args, seed: int, data, judge, device) -> dict:
    x, y, x_test, y_test = data
    rows = choose_labelled(y, args.labels // 10, seed)
    xl, yl = x[rows], y[rows]
    print(f"labels {args.labels}, seed {seed}: training {args.steps} steps", flush=True)
    load_before = os.getloadavg()
    model = build(args, seed)
    history, ema = train_ssaae(args, model, x, xl, yl, device, seed)
    load_after = os.getloadavg()
    model.cpu()
    result = {"labels": args.labels, "seed": seed, "steps": args.steps, "train_seconds": round(history.seconds, 1),
              "load_average_before": load_before, "load_average_after": load_after,
              "test_error": error_rate(model, x_test, y_test),
              "last_epoch_losses": {k: v[-1] for k, v in history.losses.items()}}
    if ema is not None:
        result["test_error_ema"] = error_rate(ema.module.cpu(), x_test, y_test)
    result["transfer"] = transfer(model, judge, x_test, y_test, args.n_transfer)
    if args.baseline_steps:
        baseline, base_history = train_baseline(args, xl, yl, device, seed)
        result["baseline_test_error"] = error_rate(baseline, x_test, y_test)
        result["baseline_seconds"] = round(base_history.seconds, 1)
        result["baseline_final_loss"] = base_history.losses["classification"][-1]
    with torch.no_grad():
        probs = torch.cat([model.encode(x_test[i:i + 2000])[0].softmax(dim=1) for i in range(0, len(x_test), 2000)])
    used = torch.bincount(probs.argmax(dim=1), minlength=10).double() / len(probs)
    result["class_frequency_entropy"] = Categorical(probs=used).entropy().item()
    ema_text = f" (EMA {100 * result['test_error_ema']:.2f} %)" if ema is not None else ""
    base_text = (f"; labelled only {100 * result['baseline_test_error']:.2f} %" if args.baseline_steps else "")
    print(f"labels {args.labels}, seed {seed}: test error {100 * result['test_error']:.2f} %{ema_text}{base_text}; "
          f"transfer: requested class {result['transfer']['requested_class']:.3f}, style's own class "
          f"{result['transfer']['source_class']:.3f}; {result['train_seconds']:.0f} s", flush=True)
    return result


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    x, y = load("train", args.data_dir)
    x_test, y_test = load("test", args.data_dir)
    judge = digit_judge(x, y)                 # cached after its first training (about a minute)
    judge_accuracy = judge.accuracy(x_test, y_test)
    print(f"judge: {100 * judge_accuracy:.2f} % on the {len(x_test)} test digits; device {device}, "
          f"{torch.get_num_threads()} threads", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        result = run(args, seed, (x, y, x_test, y_test), judge, device)
        result.update(config=vars(args), judge_test_accuracy=judge_accuracy,
                      machine={"platform": platform.platform(), "cpu_count": os.cpu_count(),
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "device": str(device)})
        stem = f"ssaae_mnist_{args.labels}_seed{seed}_{time.strftime('%Y%m%d-%H%M%S')}"
        stem += f"_{args.tag}" if args.tag else ""
        atomic_write(out / f"{stem}.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
        results.append(result)
    if len(results) > 1:
        errors = [100 * r["test_error"] for r in results]
        mean, sd = statistics.mean(errors), statistics.stdev(errors)
        print(f"\n{args.labels} labels, seeds {args.seeds}: test error {mean:.2f} +- {sd:.2f} % (mean +- sd), "
              f"max {max(errors):.2f} %; transfer {[round(r['transfer']['requested_class'], 3) for r in results]}")
    return results


if __name__ == "__main__":
    main()
