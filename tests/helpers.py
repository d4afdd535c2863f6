"""Data the unit tests share."""
import torch


def binary_data(n=64, d=784, seed=0):
    """(n, d) float tensor of 0/1 pixels, each on with probability U(0, 0.6): a stand-in for binarized digits."""
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, d, generator=gen) * 0.6, generator=gen)


def choose_labelled(labels, per_class, seed):
    """A right answer to the semi-supervised chapter's exercise: per_class examples of each class, chosen
    without replacement by a seeded generator."""
    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(int(labels.max()) + 1):
        rows = torch.nonzero(labels == k).flatten()
        if len(rows) < per_class:
            raise ValueError(f"class {k} has only {len(rows)} examples")
        chosen.append(rows[torch.randperm(len(rows), generator=gen)[:per_class]])
    return torch.cat(chosen)


def snapshot(module):
    """A copy of every parameter of `module`, by name."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed_modules(module, before):
    """The top-level submodules of `module` with a parameter that differs from the `before` snapshot."""
    return {name.split(".")[0] for name, p in module.named_parameters() if not torch.equal(p, before[name])}


def record_phases(model, optimizers):
    """Hook every optimizer: per phase (in the order they step), the top-level modules its step changed.
    Returns (changed, handles); remove the handles when done."""
    changed, before, handles = {}, {}, []
    for phase, opt in optimizers.items():
        def pre(optimizer, args, kwargs, phase=phase):
            before[phase] = snapshot(model)

        def post(optimizer, args, kwargs, phase=phase):
            changed[phase] = changed_modules(model, before.pop(phase))
        handles += [opt.register_step_pre_hook(pre), opt.register_step_post_hook(post)]
    return changed, handles
