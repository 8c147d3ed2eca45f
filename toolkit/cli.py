"""Start-up helpers shared by the Hydra entry points: say which keys are valid when an
override names one that does not exist (Hydra alone only says it is "not in struct")."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf


def _key_overrides(argv: list[str]) -> list[tuple[str, str]]:
    out = []
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if "." in key and not key.startswith("hydra."):
            out.append((key, value))
    return out


def explain_unknown_keys(config_dir: str, config_name: str, argv: list[str]) -> list[str]:
    """Messages for overrides whose key is not in the composed config, with valid keys."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    keyed = _key_overrides(argv)
    rest = [a for a in overrides if a.split("=", 1)[0] not in {k for k, _ in keyed}]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=rest)
    except Exception:  # the rest is wrong too: Hydra's own message already says how
        return []
    finally:
        GlobalHydra.instance().clear()
    messages = []
    for key, _ in keyed:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig):
            continue
        if leaf in parent:
            continue
        valid = sorted(str(k) for k in parent)
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" Did you mean '{parent_key}.{close[0]}'?" if close else ""
        messages.append(
            f"Unknown config key '{key}'.{hint} Valid keys under '{parent_key}': "
            f"{', '.join(valid)}. (Use '+{key}=...' to add a new key on purpose.)"
        )
    return messages


def run_with_key_help(main: Callable[[], object], config_dir: str, config_name: str) -> None:
    """Run a ``@hydra.main`` function; on a start-up failure, list valid keys if we can."""
    try:
        main()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            for message in explain_unknown_keys(config_dir, config_name, sys.argv[1:]):
                print(message, file=sys.stderr)
        raise
