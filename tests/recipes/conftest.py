"""Fixtures: a tiny embedded corpus in a temporary cache, and Hydra composition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from toolkit.paths import CONF_DIR


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One temporary cache for the session, shared by the xdist workers of the session (their
    base folders' common parent): each corpus is built once, under the cache's build lock
    (``toolkit.data.cache.locked_build``), by whichever worker needs it first."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    cache = base / "tiny-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture
def compose_cfg(tiny_cache, monkeypatch):
    monkeypatch.setenv("ATTN_TOOLKIT_CACHE", str(tiny_cache))

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()
