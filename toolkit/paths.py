"""Where the toolkit's files are: the one place that names the Hydra config folder.

``CONF_DIR`` is the ``conf/`` folder of the entry points (``python -m toolkit.train``,
``toolkit.evaluate``, ``toolkit.predict``, ``toolkit.export``, ``toolkit.compare``) and of
``hydra.compose`` callers. The installed package reaches it as ``toolkit/conf`` (a link to
the repository's ``conf/``).
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent / "conf")
