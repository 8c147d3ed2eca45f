"""Shared test fixtures: a fixed RNG seed for every test, the repository paths and the
sentiment corpora's pinned sdist."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def sdist_path() -> Path:
    """The pinned vaderSentiment sdist, fetched at most once per machine into the user's cache."""
    from toolkit.data.vader import vader_sdist

    try:
        return vader_sdist()
    except RuntimeError as e:  # no network to PyPI: the other tests still run
        pytest.skip(f"vaderSentiment sdist unavailable: {e}")
