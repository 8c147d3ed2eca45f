"""Shared test set-up: a small, deterministic CPU environment for every test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state, so parameters and inputs are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def conf_dir(repo_root: Path) -> Path:
    return repo_root / "conf"
