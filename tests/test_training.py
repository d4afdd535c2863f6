"""The one training loop (ae_course.train) and checkpoints: same numbers as a hand-written loop, clear errors
for bad input before any step, a model left usable after an interrupt, and runs that resume identically."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ae_course
from ae_course.aae import AdversarialAutoencoder
from ae_course.training import History, load_checkpoint, loss_step, save_checkpoint, train, update

import ae_course.training as train_module  # noqa: E402


def small_vae(seed: int = 0, latent_dim: int = 3) -> ae_course.VAE:
    torch.manual_seed(seed)
    return ae_course.VAE(input_dim=12, latent_dim=latent_dim, hidden=(16,))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(50, 12, generator=torch.Generator().manual_seed(1))


def params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ----------------------------------------------------------------------------------------- the loop


def test_train_equals_the_hand_written_loop_bit_for_bit(x):
    """seed, shuffle without replacement each epoch, the mean loss, Adam (fused): the loop adds nothing else."""
    model, reference = small_vae(), small_vae()
    history = train(model, x, epochs=3, batch_size=16, lr=1e-2, seed=7, progress=False)
    torch.manual_seed(7)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2, fused=True)
    epoch_means = []
    for _ in range(3):
        order, total = torch.randperm(len(x)), 0.0
        for i in range(0, len(x), 16):
            batch = x[order[i:i + 16]]
            loss = reference.loss(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        epoch_means.append(total / len(x))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert history.train_loss == pytest.approx(epoch_means, rel=1e-6)
    assert (history.steps, history.epochs) == (12, 3)
    assert not model.training


def test_the_package_adam_is_torch_default_adam_up_to_rounding(x):
    """ae_course.adam (one fused kernel per tensor) against torch's default Adam, 50 steps on the same batches."""
    fused, default = small_vae(), small_vae()
    opt_fused = ae_course.adam(fused.parameters(), lr=1e-2)
    opt_default = torch.optim.Adam(default.parameters(), lr=1e-2)
    assert opt_fused.defaults["fused"] and not opt_default.defaults["fused"]
    for step in range(50):
        batch = x[step % 3::3]
        for model, opt in ((fused, opt_fused), (default, opt_default)):
            torch.manual_seed(step)                          # the same z for both models
            update(model, opt, model.loss(batch).mean())
    for a, b in zip(fused.parameters(), default.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_steps_budget_and_a_partial_last_epoch(x):
    history = train(small_vae(), x, steps=5, batch_size=16, progress=False)
    assert (history.steps, history.epochs, len(history.train_loss)) == (5, 2, 2)   # 4 steps per epoch, then 1


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"epochs": 0}, ">= 1"),
    ({"epochs": 1, "steps": 3}, "exactly one of epochs and steps"),
    ({"epochs": 1, "batch_size": 2.5}, "batch_size must be a whole number"),
    ({"epochs": 1, "x_val": torch.empty(0, 12)}, "x_val is empty"),
    ({"epochs": 1, "y": torch.zeros(3, dtype=torch.long)}, "50 rows but y has 3 labels"),
    ({"epochs": 1, "labelled": (torch.rand(4, 12), torch.zeros(3, dtype=torch.long))}, "labelled must be"),
])
def test_bad_budgets_and_arguments_fail_before_any_step(x, kwargs, match):
    model = small_vae()
    before = params(model)
    with pytest.raises(ValueError, match=match):
        train(model, x, progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_float64_data_gets_a_clear_error_with_the_cast(x):
    with pytest.raises(ValueError, match=r"x is torch.float64 but the model's parameters are torch.float32.*x.to"):
        train(small_vae(), x.double(), epochs=1, progress=False)


@pytest.mark.parametrize("name", ["x", "x_val"])
def test_non_finite_data_is_refused_naming_the_argument(x, name):
    bad = x.clone()
    bad[3, 4] = float("nan")
    kwargs = {"x": bad} if name == "x" else {"x": x, "x_val": bad}
    with pytest.raises(ValueError, match=f"^{name} has 1 NaN or infinite entries"):
        train(small_vae(), epochs=1, progress=False, **kwargs)


def test_raw_byte_images_are_refused_with_a_hint(x):
    with pytest.raises(ValueError, match="divide by 255"):
        train(small_vae(), x * 255, epochs=1, progress=False)


def test_a_nan_loss_names_epoch_and_step_keeps_the_history_and_the_last_finite_parameters(x):
    model = small_vae()
    calls = {"n": 0}

    def step(model, optimizers, batch, y=None):
        calls["n"] += 1
        loss = model.loss(batch).mean() * (float("nan") if calls["n"] == 6 else 1.0)
        return {"loss": update(model, optimizers["loss"], loss)}

    with pytest.raises(FloatingPointError, match=r"^the loss is nan.*\(epoch 2, step 2; global step 6\)") as info:
        train(model, x, epochs=3, batch_size=16, step=step, progress=False)
    assert info.value.history.epochs == 1 and len(info.value.history.train_loss) == 1
    assert info.value.history.steps == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not model.training


def test_an_interrupt_leaves_the_model_in_eval_mode_and_the_finished_epochs_reachable(x):
    model = small_vae()
    calls = {"n": 0}

    def step(model, optimizers, batch, y=None):
        calls["n"] += 1
        if calls["n"] == 9:                       # during the third epoch (4 steps per epoch)
            raise KeyboardInterrupt
        return loss_step(model, optimizers, batch)

    with pytest.raises(KeyboardInterrupt) as info:
        train(model, x, epochs=5, batch_size=16, step=step, progress=False)
    assert not model.training
    assert info.value.history.epochs == 2 and len(info.value.history.train_loss) == 2
    assert info.value.history.seconds > 0


def test_the_progress_bar_is_closed_after_an_error(x, monkeypatch):
    closed = []

    class RecordingBar(train_module.tqdm):
        def close(self):
            closed.append(True)
            super().close()

    monkeypatch.setattr(train_module, "tqdm", RecordingBar)

    def step(model, optimizers, batch, y=None):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_vae(), x, epochs=2, step=step, progress=False)
    assert closed


def test_validation_loss_per_epoch_equals_evaluate(x):
    model = small_vae()
    history = train(model, x[:40], epochs=2, batch_size=16, x_val=x[40:], progress=False)
    assert len(history.val_loss) == 2
    torch.manual_seed(123)
    expected = ae_course.evaluate(model, x[40:])
    torch.manual_seed(123)
    assert ae_course.evaluate(model, x[40:]) == pytest.approx(expected)
    assert history.val_loss[-1] == pytest.approx(expected, rel=0.2)   # one reparameterized draw each


def test_history_of_a_multi_loss_model_points_to_its_losses():
    history = History(losses={"reconstruction": [1.0], "generator": [0.7]})
    with pytest.raises(AttributeError, match="history.losses"):
        history.train_loss


# ----------------------------------------------------------------------------------------- checkpoints


def test_a_run_resumed_from_a_checkpoint_continues_identically(x, tmp_path):
    straight = small_vae()
    straight_history = train(straight, x, epochs=4, batch_size=16, seed=3, progress=False,
                             optimizers=torch.optim.Adam(straight.parameters(), lr=1e-2))

    first = small_vae()
    opt = torch.optim.Adam(first.parameters(), lr=1e-2)
    history = train(first, x, epochs=2, batch_size=16, seed=3, optimizers=opt, progress=False)
    path = save_checkpoint(tmp_path / "run.pt", first, opt, history)
    torch.manual_seed(999)                                  # anything in between must not matter

    resumed = small_vae(seed=42)                            # other initial weights: all are overwritten
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    loaded = load_checkpoint(path, resumed, resumed_opt)
    assert loaded.train_loss == history.train_loss and loaded.epochs == 2
    resumed_history = train(resumed, x, epochs=2, batch_size=16, seed=None, optimizers=resumed_opt,
                            history=loaded, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))
    assert resumed_history.train_loss == straight_history.train_loss
    assert (resumed_history.steps, resumed_history.epochs) == (16, 4)


def test_an_adversarial_autoencoder_round_trips_with_all_its_optimizers(tmp_path):
    torch.manual_seed(0)
    model = AdversarialAutoencoder(input_dim=12, latent_dim=2, hidden=(16,), discriminator_hidden=(8,))
    opts = model.make_optimizers(lr=1e-3)
    history = train(model, torch.rand(40, 12), epochs=1, batch_size=10, optimizers=opts, progress=False)
    save_checkpoint(tmp_path / "aae.pt", model, opts, history)
    torch.manual_seed(1)
    other = AdversarialAutoencoder(input_dim=12, latent_dim=2, hidden=(16,), discriminator_hidden=(8,))
    other_opts = other.make_optimizers(lr=1e-3)
    loaded = load_checkpoint(tmp_path / "aae.pt", other, other_opts)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert loaded.losses.keys() == {"reconstruction", "discriminator", "generator"}
    for name in opts:
        assert other_opts[name].state_dict()["state"].keys() == opts[name].state_dict()["state"].keys()
        first = next(iter(opts[name].state_dict()["state"].values()))["exp_avg"]
        assert torch.equal(first, next(iter(other_opts[name].state_dict()["state"].values()))["exp_avg"])


def test_a_checkpoint_of_another_architecture_is_refused_and_nothing_changes(x, tmp_path):
    save_checkpoint(tmp_path / "vae.pt", small_vae(latent_dim=3))
    model = small_vae(latent_dim=4)
    before = params(model)
    with pytest.raises(ValueError, match="another architecture: latent_dim = 3 in the checkpoint, 4 in the model"):
        load_checkpoint(tmp_path / "vae.pt", model)
    with pytest.raises(ValueError, match="class = 'VAE' in the checkpoint, 'Autoencoder' in the model"):
        load_checkpoint(tmp_path / "vae.pt", ae_course.Autoencoder(input_dim=12, latent_dim=3, hidden=(16,)))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_missing_corrupt_and_foreign_files_get_clear_errors_and_stay_untouched(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt", small_vae())
    good = save_checkpoint(tmp_path / "good.pt", small_vae())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(truncated, small_vae())
    assert truncated.stat().st_size == 100
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an ae_course checkpoint"):
        load_checkpoint(foreign, small_vae())


class _Payload:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_checkpoints_are_read_with_weights_only(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"format": 1, "config": _Payload()}, path)
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(path, small_vae())


def test_an_interrupted_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "run.pt", small_vae(seed=0))
    before = path.read_bytes()

    def failing_save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, small_vae(seed=1))
    assert path.read_bytes() == before
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["run.pt"]


def test_missing_optimizer_state_is_refused(tmp_path):
    model = small_vae()
    save_checkpoint(tmp_path / "no_opt.pt", model)
    with pytest.raises(ValueError, match=r"no state for the optimizers \['loss'\]"):
        load_checkpoint(tmp_path / "no_opt.pt", model, torch.optim.Adam(model.parameters()))
