"""Fixtures shared by the unit tests."""
import pytest
import torch


@pytest.fixture
def seed_and_one_thread():
    """Seed, and use one thread: the test models are tiny, and on a shared CPU spinning OpenMP threads cost
    more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)

