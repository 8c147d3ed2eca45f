"""Where the toolkit's files are, named in this one place.

* ``CONF_DIR``: the Hydra ``conf/`` folder of every command (``python -m toolkit.<command>``)
  and of ``hydra.compose`` callers. The installed package reaches it as ``toolkit/conf`` (a
  link to the repository's ``conf/``).
* ``PACKAGE_DIR``: the ``toolkit/`` package folder; ``REPO_ROOT``: the folder holding it (the
  repository in a checkout, with ``recipes/`` beside it).
* :func:`cache_root`: the corpus cache, ``$ATTN_TOOLKIT_CACHE`` or
  ``~/.cache/attention-toolkit``.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONF_DIR = str(PACKAGE_DIR / "conf")

CACHE_ENV = "ATTN_TOOLKIT_CACHE"
DEFAULT_CACHE = Path("~/.cache/attention-toolkit")


def cache_root() -> Path:
    """Return the cache folder (``$ATTN_TOOLKIT_CACHE`` or ``~/.cache/attention-toolkit``).

    The folder is not created here; builders create what they need.
    """
    env = os.environ.get(CACHE_ENV)
    root = Path(env) if env else DEFAULT_CACHE
    return root.expanduser()
