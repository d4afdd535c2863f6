"""Data the unit tests share."""
import torch


def binary_data(n=64, d=784, seed=0):
    """(n, d) float tensor of 0/1 pixels, each on with probability U(0, 0.6): a stand-in for binarized digits."""
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, d, generator=gen) * 0.6, generator=gen)
