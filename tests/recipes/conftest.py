"""Fixtures: a tiny embedded corpus in a temporary cache, and Hydra composition."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from toolkit.paths import CONF_DIR


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One temporary cache for the session; the sdist download itself is cached per machine."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def compose_cfg(tiny_cache, monkeypatch):
    monkeypatch.setenv("ATTN_TOOLKIT_CACHE", str(tiny_cache))

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()
