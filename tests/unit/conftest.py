"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def seed_and_one_thread():
    """Seed 0 and one thread for the test (tiny tensors: thread hand-offs cost more than the
    maths, badly so on a busy machine); the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
