"""``key=value`` overrides, the one command-line style of every command: say which keys are
valid when an override names one that does not exist (Hydra alone only says it is "not in
struct"). The Hydra commands go through :func:`run_with_key_help`; the commands that read
their few keys themselves (``toolkit.interpret``, ``toolkit.data``) print the same message
with :func:`unknown_key_message`."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def unknown_key_message(
    key: str, valid: Iterable[str], parent: str = "", can_add: bool = False
) -> str:
    """The message of an override whose key does not exist: the closest valid key, then all
    of them (``parent``: the config node the key was looked up in, empty for the top)."""
    valid = sorted(valid)
    leaf = key.rpartition(".")[2]
    close = difflib.get_close_matches(leaf, valid, n=1)
    prefix = f"{parent}." if parent else ""
    hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    where = f" under '{parent}'" if parent else ""
    message = f"Unknown config key '{key}'.{hint} Valid keys{where}: {', '.join(valid)}."
    if can_add:
        message += f" (Use '+{key}=...' to add a new key on purpose.)"
    return message


def _key_overrides(argv: list[str]) -> list[tuple[str, str]]:
    out = []
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if not key.startswith("hydra.") and "@" not in key:
            out.append((key, value))
    return out


def _groups(config_dir: str) -> set[str]:
    """The config groups of ``config_dir`` (its sub-folders): ``recipe=...`` picks one, it
    is not a key."""
    return {p.name for p in Path(config_dir).iterdir() if p.is_dir()} | {"hydra"}


def explain_unknown_keys(config_dir: str, config_name: str, argv: list[str]) -> list[str]:
    """Messages for overrides whose key is not in the composed config, with valid keys."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = _groups(config_dir)
    keyed = [(k, v) for k, v in _key_overrides(argv) if "." in k or k not in groups]
    names = {k for k, _ in keyed}
    rest = [
        a for a in argv if not a.startswith("-") and "=" in a and a.split("=", 1)[0] not in names
    ]
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
        valid = [str(k) for k in parent]  # with the `???` ones, which `in` leaves out
        if leaf in valid:
            continue
        messages.append(unknown_key_message(key, valid, parent_key, can_add=True))
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
