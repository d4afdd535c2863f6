"""Benchmark: ``ae_course.train`` against the plain PyTorch loop a reader would write, on full MNIST.

The model is the VAE of the official PyTorch example (github.com/pytorch/examples, ``vae/main.py``):
784-400-20 with ReLU, a Bernoulli decoder, Adam with learning rate 1e-3, batch 128, the loss
binary cross-entropy summed over pixels plus the closed-form KL, on grey-level (non-binarized) MNIST in
[0, 1]. It is trained two ways:

A. ``ae_course``: ``VAE(784, latent_dim=20, hidden=(400,), activation="relu")`` trained by
   ``ae_course.train`` (one call per epoch, the package's Adam, ``ae_course.adam``, passed back in);
B. ``plain``: a self-contained copy of the example's ``nn.Module`` (fc1, fc21, fc22, fc3, fc4), its loss
   function and its loop over ``DataLoader(TensorDataset(x), batch_size=128, shuffle=True)``. It does not
   use ``ae_course`` at all: it is the reference the package is measured against.

Both start from the same initial weights (the plain module's default initialization, copied into the
``ae_course`` model), train on the same data tensors for the same number of epochs, and run
**interleaved** in one process: epoch 1 of A, epoch 1 of B, epoch 2 of B, epoch 2 of A, ... (the order
alternates, so a drift in machine load hits both equally), for ``--repeats`` seeds. Each epoch is timed
(``torch.cuda.synchronize()`` before reading the clock on a GPU). After the last epoch both are scored by
the *same* code on the 10,000 MNIST test digits: the mean over digits of BCE (summed over pixels, from the
decoder's logits) + KL, averaged over ``--eval-draws`` draws of z from a fixed generator (the same noise for
both models).

    python benchmarks/speed_vs_plain_loop.py            # 5 epochs x 3 seeds, ~4-8 minutes on a 2-core CPU
    python benchmarks/speed_vs_plain_loop.py --device cuda

Data: ``--data-dir`` (default $AE_COURSE_DATA, else ``../shared/data`` relative to the repository) must hold
``mnist/{train,t10k}-images-idx3-ubyte.gz`` (read with ``ae_course.data.load_mnist(split, source="local")``).
Without it the script stops and says so; ``--allow-embedded`` runs on the 4,000/1,000 embedded digits
instead (timings per epoch and losses are then not comparable with full-MNIST figures).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from common import atomic_write  # benchmarks/common.py: the script's folder is on sys.path

# As in vae_mnist.py: on a shared CPU, OpenMP threads that spin while waiting for a descheduled sibling
# slow training down many times; passive waiting avoids it. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ae_course  # noqa: E402
from ae_course.data import load_mnist  # noqa: E402


# ----------------------------------------------------------------------------------------------------
# B. The plain loop: the PyTorch example's VAE, written the way its vae/main.py writes it. No ae_course.
# ----------------------------------------------------------------------------------------------------
class PlainVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def plain_loss_function(recon_x, x, mu, logvar):
    # Reconstruction + KL divergence losses summed over all elements and batch
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    # see Appendix B from VAE paper: Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def plain_train_epoch(model, optimizer, train_loader, device):
    model.train()
    train_loss = 0
    for batch_idx, (data,) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = plain_loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(train_loader.dataset)


# ----------------------------------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------------------------------
def copy_plain_into_package(plain: PlainVAE, vae: "ae_course.VAE") -> None:
    """Give the ae_course VAE exactly the plain model's weights (encoder[2] holds fc21 and fc22 stacked:
    its output is split into mu and log_var)."""
    with torch.no_grad():
        vae.encoder[0].weight.copy_(plain.fc1.weight), vae.encoder[0].bias.copy_(plain.fc1.bias)
        vae.encoder[2].weight.copy_(torch.cat([plain.fc21.weight, plain.fc22.weight]))
        vae.encoder[2].bias.copy_(torch.cat([plain.fc21.bias, plain.fc22.bias]))
        vae.decoder[0].weight.copy_(plain.fc3.weight), vae.decoder[0].bias.copy_(plain.fc3.bias)
        vae.decoder[2].weight.copy_(plain.fc4.weight), vae.decoder[2].bias.copy_(plain.fc4.bias)


def package_as_plain(vae: "ae_course.VAE") -> PlainVAE:
    """The inverse of copy_plain_into_package: a PlainVAE holding the ae_course model's weights, so that
    both trained models are scored by literally the same module code."""
    plain = PlainVAE().to(vae.encoder[0].weight.device)
    with torch.no_grad():
        plain.fc1.weight.copy_(vae.encoder[0].weight), plain.fc1.bias.copy_(vae.encoder[0].bias)
        w21, w22 = vae.encoder[2].weight.chunk(2, dim=0)
        b21, b22 = vae.encoder[2].bias.chunk(2, dim=0)
        plain.fc21.weight.copy_(w21), plain.fc22.weight.copy_(w22)
        plain.fc21.bias.copy_(b21), plain.fc22.bias.copy_(b22)
        plain.fc3.weight.copy_(vae.decoder[0].weight), plain.fc3.bias.copy_(vae.decoder[0].bias)
        plain.fc4.weight.copy_(vae.decoder[2].weight), plain.fc4.bias.copy_(vae.decoder[2].bias)
    return plain


@torch.no_grad()
def score_test_loss(model: PlainVAE, x: torch.Tensor, draws: int, seed: int, device) -> dict:
    """Mean over the rows of x of BCE(summed over pixels) + KL, averaged over `draws` draws of z.

    The noise eps comes from a generator seeded with `seed`, batch by batch in the same order, so two models
    scored with the same seed see the same eps. BCE is computed from the logits (fc4's output), which is exact;
    ``bce_plain_formula`` is the example's F.binary_cross_entropy on sigmoid outputs (it clamps log(0) at -100
    where the sigmoid saturates in float32), reported for reference. Also returns the range of log_var, to show
    that ae_course's clamp of log_var to [-30, 20] was inactive."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total = total_plain = 0.0
    lv_min, lv_max = float("inf"), float("-inf")
    for _ in range(draws):
        for start in range(0, len(x), 1000):
            batch = x[start:start + 1000].to(device)
            mu, logvar = model.encode(batch)
            lv_min, lv_max = min(lv_min, logvar.min().item()), max(lv_max, logvar.max().item())
            eps = torch.randn(mu.shape, generator=gen, device=device)
            z = mu + eps * torch.exp(0.5 * logvar)
            logits = model.fc4(F.relu(model.fc3(z)))
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            total += (F.binary_cross_entropy_with_logits(logits, batch, reduction="sum") + kl).item()
            total_plain += (F.binary_cross_entropy(torch.sigmoid(logits), batch, reduction="sum") + kl).item()
    n = draws * len(x)
    return {"loss": total / n, "loss_plain_formula": total_plain / n, "log_var_range": [lv_min, lv_max]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(args) -> tuple[torch.Tensor, torch.Tensor, str]:
    data_dir = Path(args.data_dir).expanduser().resolve()
    files = [data_dir / "mnist" / f for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")]
    if all(f.exists() or f.with_suffix("").exists() for f in files):
        train, test = (load_mnist(split, source="local", data_dir=data_dir) for split in ("train", "test"))
        return train.images, test.images, f"full MNIST: {train.source}"
    message = (f"full MNIST not found: {data_dir}/mnist/ lacks train-images-idx3-ubyte.gz or t10k-images-idx3-ubyte.gz "
               "(set --data-dir or $AE_COURSE_DATA to a folder laid out like ../shared/data)")
    if not args.allow_embedded:
        sys.exit(f"{message}.\nRerun with --allow-embedded to time the 4,000/1,000 embedded digits instead "
                 "(figures not comparable with full MNIST).")
    print(f"WARNING: {message}; --allow-embedded: using the embedded subset instead. Its timings and losses "
          "are NOT comparable with full-MNIST figures.", flush=True)
    train, test = (load_mnist(split, source="embedded") for split in ("train", "test"))
    return train.images, test.images, f"EMBEDDED SUBSET ({len(train)} train / {len(test)} test): {train.source}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    default_data = os.environ.get("AE_COURSE_DATA") or str(REPO / ".." / "shared" / "data")
    p.add_argument("--epochs", type=int, default=5, help="epochs per implementation and seed")
    p.add_argument("--repeats", type=int, default=3, help="seeds (0, 1, ...): independent pairs of runs")
    p.add_argument("--eval-draws", type=int, default=5, help="draws of z per test digit in the test loss")
    p.add_argument("--data-dir", default=default_data, help="folder holding mnist/*.gz")
    p.add_argument("--allow-embedded", action="store_true",
                   help="if the full MNIST files are absent, run on the embedded 4,000/1,000 digits")
    p.add_argument("--device", default=None, help="default: ae_course.get_device() ($AE_COURSE_DEVICE, else CUDA if available, else CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="ae_course.train's tqdm bar (on by default, as a reader would have it)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ae_course.get_device(args.device)
    x_train, x_test, source = load_data(args)
    batch_size, lr = 128, 1e-3
    print(f"data: {source}; {len(x_train)} train / {len(x_test)} test digits, grey levels in [0, 1]")
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.epochs} epochs x "
          f"{args.repeats} seeds, interleaved; load average {os.getloadavg()[0]:.2f}", flush=True)

    load_before = os.getloadavg()
    runs = []
    for seed in range(args.repeats):
        torch.manual_seed(seed)
        plain = PlainVAE().to(device)
        vae = ae_course.VAE(784, latent_dim=20, hidden=(400,), activation="relu")
        copy_plain_into_package(plain.cpu(), vae)
        plain.to(device), vae.to(device)
        plain_opt = torch.optim.Adam(plain.parameters(), lr=lr)
        vae_opt = ae_course.adam(vae.parameters(), lr=lr)   # what ae_course.train builds by default
        train_loader = DataLoader(TensorDataset(x_train), batch_size=batch_size, shuffle=True)
        # The plain loop owns torch's global generator as in the example (seeded once, above);
        # ae_course.train reseeds it on every call, so the harness keeps the plain loop's state aside.
        plain_rng = torch.get_rng_state()
        plain_cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        seconds = {"ae_course": [], "plain": []}
        cpu_seconds = {"ae_course": [], "plain": []}  # CPU time of this process: less sensitive to other jobs
        train_loss = {"ae_course": [], "plain": []}
        for epoch in range(args.epochs):
            order = ("ae_course", "plain") if (epoch + seed) % 2 == 0 else ("plain", "ae_course")
            for name in order:
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                if name == "ae_course":
                    hist = ae_course.train(vae, x_train, epochs=1, batch_size=batch_size, lr=lr,
                                           seed=1000 * seed + epoch, device=device, optimizers=vae_opt,
                                           progress=args.progress)
                    loss = hist.train_loss[-1]
                else:
                    torch.set_rng_state(plain_rng)
                    if plain_cuda_rng is not None:
                        torch.cuda.set_rng_state_all(plain_cuda_rng)
                    loss = plain_train_epoch(plain, plain_opt, train_loader, device)
                    plain_rng = torch.get_rng_state()
                    plain_cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
                sync(device)
                seconds[name].append(time.perf_counter() - t0)
                cpu_seconds[name].append(time.process_time() - c0)
                train_loss[name].append(loss)
            print(f"seed {seed} epoch {epoch + 1}: ae_course {seconds['ae_course'][-1]:6.2f} s "
                  f"(train loss {train_loss['ae_course'][-1]:7.2f}), plain {seconds['plain'][-1]:6.2f} s "
                  f"(train loss {train_loss['plain'][-1]:7.2f}); load {os.getloadavg()[0]:.2f}", flush=True)
        scored = {name: score_test_loss(model, x_test, args.eval_draws, seed=12345, device=device)
                  for name, model in (("ae_course", package_as_plain(vae)), ("plain", plain))}
        runs.append({"seed": seed, "seconds_per_epoch": seconds, "cpu_seconds_per_epoch": cpu_seconds,
                     "train_loss_per_epoch": train_loss,
                     "test": scored})
        print(f"seed {seed}: test loss per image ae_course {scored['ae_course']['loss']:.2f}, "
              f"plain {scored['plain']['loss']:.2f} nats", flush=True)
    load_after = os.getloadavg()

    def median_epoch(name):
        return statistics.median(s for run in runs for s in run["seconds_per_epoch"][name])

    med = {name: median_epoch(name) for name in ("ae_course", "plain")}
    # The headline ratio pairs each epoch of A with the epoch of B run right before or after it (same seed,
    # same epoch number), so a change in machine load between epochs cancels out; the median over these pairs.
    pair_ratios = sorted(a / b for r in runs for a, b in zip(r["seconds_per_epoch"]["ae_course"], r["seconds_per_epoch"]["plain"]))
    ratio = statistics.median(pair_ratios)
    quartiles = statistics.quantiles(pair_ratios, n=4) if len(pair_ratios) > 1 else [ratio, ratio, ratio]
    cpu_med = {name: statistics.median(s for run in runs for s in run["cpu_seconds_per_epoch"][name])
               for name in ("ae_course", "plain")}
    cpu_ratio = statistics.median(a / b for r in runs for a, b in zip(r["cpu_seconds_per_epoch"]["ae_course"],
                                                                      r["cpu_seconds_per_epoch"]["plain"]))
    per_seed_ratio = [statistics.median(r["seconds_per_epoch"]["ae_course"]) / statistics.median(r["seconds_per_epoch"]["plain"])
                      for r in runs]
    losses = {name: [r["test"][name]["loss"] for r in runs] for name in ("ae_course", "plain")}
    diffs = [a - b for a, b in zip(losses["ae_course"], losses["plain"])]
    mean = {name: statistics.fmean(v) for name, v in losses.items()}
    sd = {name: (statistics.stdev(v) if len(v) > 1 else float("nan")) for name, v in losses.items()}
    diff_mean = statistics.fmean(diffs)
    diff_se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    lv = [x for r in runs for x in r["test"]["ae_course"]["log_var_range"]]

    result = {
        "data": source, "n_train": len(x_train), "n_test": len(x_test),
        "config": {**vars(args), "device": str(device), "model": "784-400-20 relu VAE, Bernoulli decoder",
                   "optimizer": f"Adam lr {lr}", "batch_size": batch_size},
        "median_seconds_per_epoch": med,
        "ratio_ae_course_over_plain": ratio,
        "ratio_definition": "median over (seed, epoch) of ae_course epoch seconds / adjacent plain epoch seconds",
        "ratio_quartiles": [quartiles[0], quartiles[2]],
        "ratio_of_pooled_medians": med["ae_course"] / med["plain"],
        "median_cpu_seconds_per_epoch": cpu_med,
        "cpu_time_ratio": cpu_ratio,
        "cpu_time_ratio_definition": "the same median over adjacent pairs, of process CPU time (time.process_time) "
                                     "instead of wall time; on a GPU it measures only the host side",
        "ratio_per_seed": per_seed_ratio,
        "test_loss_mean": mean, "test_loss_sd_over_seeds": sd,
        "test_loss_difference_ae_course_minus_plain": {"per_seed": diffs, "mean": diff_mean, "standard_error": diff_se},
        "test_loss_definition": f"mean over the {len(x_test)} test digits of BCE summed over pixels (from logits) + "
                                f"closed-form KL, averaged over {args.eval_draws} draws of z (same noise for both)",
        "ae_course_log_var_range_on_test": [min(lv), max(lv)],
        "runs": runs,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_1_5_15_min_before": load_before, "load_average_after": load_after},
    }
    rows = [
        ("", "ae_course.train", "plain loop", "ae_course - plain"),
        ("median s / epoch", f"{med['ae_course']:.2f}", f"{med['plain']:.2f}",
         f"ratio {ratio:.3f} (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}; per seed "
         f"{', '.join(f'{r:.3f}' for r in per_seed_ratio)})"),
        ("median CPU s / epoch", f"{cpu_med['ae_course']:.2f}", f"{cpu_med['plain']:.2f}", f"ratio {cpu_ratio:.3f}"),
        (f"test loss after {args.epochs} ep.", f"{mean['ae_course']:.2f} +- {sd['ae_course']:.2f}",
         f"{mean['plain']:.2f} +- {sd['plain']:.2f}", f"{diff_mean:+.2f} +- {diff_se:.2f} (s.e., paired by seed)"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"(ratio: median over the {len(pair_ratios)} adjacent (ae_course, plain) epoch pairs; test loss: nats per "
          f"image, mean +- sd over {args.repeats} seeds; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs)")
    print(f"requirement ratio <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"speed_vs_plain_loop_{time.strftime('%Y%m%d-%H%M%S')}{('_' + args.tag) if args.tag else ''}.json"
    atomic_write(path, json.dumps(result, indent=2).encode())
    print(f"wrote {path}")
    return result




if __name__ == "__main__":
    main()
