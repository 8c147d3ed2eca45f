"""Checkpoint files: atomic writes, loading with clear errors (missing, truncated, foreign,
or naming code outside the toolkit's configs), safetensors exports, the newest checkpoint of
a folder, and the recipe module rebuilt from a checkpoint."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from toolkit.paths import CONF_DIR
from toolkit.recipe_hooks import extra_conf_dirs
from toolkit.runs import import_object


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, truncated, or not ours."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


SAFETENSORS_WEIGHTS = "model.safetensors"


def read_safetensors_export(path: Path) -> dict[str, Any]:
    """A ``toolkit.export format=safetensors`` folder (or its ``model.safetensors``) as the
    parts of a checkpoint that loading uses: ``state_dict`` and ``hyper_parameters`` (``cfg``
    from ``config.yaml``, ``data_state`` from ``data_state.json``). Nothing in it is code:
    tensors, YAML and JSON."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    weights = folder / SAFETENSORS_WEIGHTS if path.is_dir() else path
    parts = {"weights": weights, "config": folder / "config.yaml",
             "data_state": folder / "data_state.json"}  # fmt: skip
    for what, file in parts.items():
        if not file.is_file():
            raise CheckpointError(file, f"missing: a safetensors export needs its {what} file")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights, f"unreadable safetensors file: {err}") from None
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(parts["config"]), resolve=True)
    except Exception as err:  # noqa: BLE001 - any YAML error: one message naming the file
        raise CheckpointError(parts["config"], f"unreadable YAML: {err}") from None
    try:
        data_state = json.loads(parts["data_state"].read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(parts["data_state"], f"unreadable JSON: {err}") from None
    return {"state_dict": state, "hyper_parameters": {"cfg": cfg, "data_state": data_state}}


def read_checkpoint(path: str | os.PathLike[str], require_recipe: bool = True) -> dict[str, Any]:
    """Load a checkpoint file (or a safetensors export folder), failing with a message that
    names the file when it is missing, empty, truncated (e.g. a write killed half-way) or
    foreign (not a Lightning checkpoint of a toolkit recipe)."""
    path = Path(path)
    if (path.is_dir() and (path / SAFETENSORS_WEIGHTS).is_file()) or path.suffix == ".safetensors":
        raw = read_safetensors_export(path)
        check_stored_targets(path, raw["hyper_parameters"]["cfg"])
        return raw
    if not path.exists():
        raise CheckpointError(path, "checkpoint not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file (expected a .ckpt checkpoint)")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (a write was interrupted?)")
    try:
        # weights_only: the unpickler builds tensors and plain containers only, so a file
        # can never run code while it is read (a toolkit checkpoint holds nothing else)
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors differ by corruption; one message for all
        text = str(err)
        if "Unsupported global" in text or "GLOBAL " in text:  # a pickle that would act
            found = text.split("GLOBAL ", 1)[1].split(" ", 1)[0] if "GLOBAL " in text else "?"
            raise CheckpointError(
                path, f"refused: its pickle asks for {found}, which is not a tensor or a plain "
                "value; a checkpoint is read with torch.load(weights_only=True) and never runs "
                "code (re-export the weights with python -m toolkit.export format=safetensors)",
            ) from None  # fmt: skip
        reason = text.splitlines()[0][:200] if text else type(err).__name__
        raise CheckpointError(
            path, f"unreadable checkpoint (truncated, corrupt or not a PyTorch file): {reason}"
        ) from None
    if not isinstance(raw, dict) or "state_dict" not in raw:
        kind = type(raw).__name__
        raise CheckpointError(
            path, f"not a Lightning checkpoint (a {kind} without 'state_dict'); "
            "expected a file from a toolkit run's checkpoints/ folder",
        )  # fmt: skip
    cfg = (raw.get("hyper_parameters") or {}).get("cfg") or {}
    if require_recipe:
        module = cfg.get("recipe", {}) if isinstance(cfg, dict) else {}
        if not isinstance(module, dict) or not module.get("module"):
            raise CheckpointError(path, "not a toolkit checkpoint (no recipe in its config)")
    check_stored_targets(path, cfg)
    return raw


def allowed_targets() -> frozenset[str]:
    """Every class or function the shipped configs name (``_target_`` values and the
    recipes' ``recipe.module``): the only code a checkpoint's stored config may import.
    Config folders of recipes from elsewhere count too (``$ATTN_TOOLKIT_CONF_PATH``, the
    command's ``hydra.searchpath``: :func:`toolkit.recipe_hooks.extra_conf_dirs`)."""
    return _targets_in((CONF_DIR, *map(str, extra_conf_dirs())))


@functools.lru_cache(maxsize=8)
def _targets_in(folders: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("_target_", "module"):
            found.add(node)

    for folder in folders:
        for f in sorted(Path(folder).rglob("*.yaml")):
            walk(OmegaConf.to_container(OmegaConf.load(f), resolve=False))
    return frozenset(found)


# the parts of a stored config that loading a checkpoint imports from (evaluate, predict,
# export rebuild the recipe module, its model and its data module); callbacks, logger and
# trainer are always taken from the current command, never from a file
IMPORTED_SECTIONS = ("recipe", "model", "data")


def check_stored_targets(path: str | os.PathLike[str], cfg: Any) -> None:
    """Refuse a stored config that would import anything but a registered recipe or one of
    the toolkit's configured classes (``recipe.module`` and every ``_target_`` under
    ``model`` and ``data``, the sections loading imports from), before anything is imported.

    Raises:
        CheckpointError: naming the file, the key and the refused dotted path.
    """
    allowed = allowed_targets()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                here = f"{where}.{k}" if where else str(k)
                is_target = k == "_target_" or (where == "recipe" and k == "module")
                if is_target and not (isinstance(v, str) and v in allowed):
                    raise CheckpointError(
                        path, f"refused: its config names {here}={v!r}, which is not a "
                        "registered recipe or a class of the toolkit's configs; a checkpoint "
                        "may only name those (nothing from it is imported or run)",
                    )  # fmt: skip
                walk(v, here)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    if isinstance(cfg, dict):
        for section in IMPORTED_SECTIONS:
            if section in cfg:
                walk({section: cfg[section]}, "")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file in the same folder and renamed into
    place, so a crash mid-write leaves the previous file intact, never a truncated one;
    loading names the file when it is truncated or foreign."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None):
        return read_checkpoint(path, require_recipe=False)


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest ``*.ckpt`` in ``folder`` (by modification time; temp files ignored)."""
    folder = Path(folder)
    found = [p for p in folder.glob("*.ckpt") if not p.name.startswith(".") and p.is_file()]
    if not found:
        return None
    # last.ckpt wins a tie: it is written right after the checkpoint it copies
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


def build_datamodule(data_cfg: Any, state: dict[str, Any] | None = None) -> Any:
    """Instantiate a recipe's datamodule from its ``data`` config with a saved data state
    (a checkpoint's ``data_state``: vocabulary, labels, tokenizer) passed as it is.

    Passed through ``hydra.utils.instantiate`` as a keyword, the state would become an
    OmegaConf node, where a vocabulary entry such as ``???`` (a token of the sentiment
    corpus) reads as a missing value and ``${...}`` as an interpolation; the config is
    instantiated as a partial and the state given to it afterwards instead.
    """
    from hydra.utils import instantiate

    return instantiate(data_cfg, _partial_=True, _recursive_=False)(state=state)


def load_module(ckpt: str | os.PathLike[str]) -> pl.LightningModule:
    """Rebuild the recipe module saved in ``ckpt`` (a checkpoint file or a safetensors
    export folder), in eval mode.

    Raises:
        CheckpointError: (a ValueError) naming the file when it is missing, truncated or
            not a toolkit checkpoint.
    """
    ckpt = Path(ckpt)
    raw = read_checkpoint(ckpt)
    module_cls = import_object(raw["hyper_parameters"]["cfg"]["recipe"]["module"])
    hparams = raw["hyper_parameters"]
    module = module_cls(cfg=hparams["cfg"], data_state=hparams.get("data_state"))
    try:
        module.load_state_dict(raw["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(ckpt, f"weights do not fit the recipe's model: {err}") from None
    module.eval()
    return module
