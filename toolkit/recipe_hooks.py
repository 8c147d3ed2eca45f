"""How the toolkit finds a recipe's own code (inference, export, data checks), without
knowing any recipe by name.

A recipe is a package (``recipes/<name>/``) whose LightningModule class is named in the
config (``recipe.module``). Next to it, optional modules provide the hooks:

``<package>/predict.py``
    * ``INPUT_KIND``: ``"text"`` (one input per line), ``"image"`` or ``"audio"`` (files);
    * ``INPUT_SUFFIXES`` (optional): the file suffixes a folder input is filtered by;
    * ``read_inputs(spec)`` (optional): ``[(input, where), ...]`` for a command-line
      ``input=`` value, when the recipe reads more than the common file/folder/list forms
      (e.g. a JSONL manifest);
    * ``predict_records(module, inputs, out_dir=None, plot=False, **options)``: one JSON-able
      record per input, attention maps as npz (and PNG with ``plot``) under ``out_dir``;
    * ``predict_arrays(module, inputs, **options)``: one dict per input with the answer
      (``output``), the recipe's fields, and ``attention``, a 2-D numpy array (rows: output
      steps, columns: input positions; every row sums to 1) with its axis labels in
      ``rows`` and ``columns``.

``<package>/export.py``
    * ``export_graph(module)``: a :class:`toolkit.commands.export.ExportGraph` (the traced module,
      its input/output names, dynamic axes, example inputs and the metadata that goes into
      ``export.json``);
    * ``max_decode_len(module, n)`` (optional): the length limit of an exported step graph.

``<package>/validate.py`` (``python -m toolkit.data validate`` and the check
``toolkit.train`` runs on own data first, :mod:`toolkit.data.validate`)
    * ``validate_files(files, options, report)``: add every problem of ``files`` (split or
      ``path<i>`` -> path, or a list of paths) to ``report`` (a
      :class:`toolkit.data.validate.Report`), with the checks of that module;
    * without it the files are checked as audio/image files or folders.

A method of the same name on the recipe's module class wins over the package function
(:func:`call_hook`), and a class attribute over a package constant (:func:`hook`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

_MISSING = object()
#: config folders of recipes kept outside the toolkit (``os.pathsep``-separated)
CONF_PATH_ENV = "ATTN_TOOLKIT_CONF_PATH"


def extra_conf_dirs() -> list[Path]:
    """The config folders of recipes from elsewhere: those in ``$ATTN_TOOLKIT_CONF_PATH``
    and the ``file://`` entries of the running Hydra command's ``hydra.searchpath``. Their
    ``recipe.module`` and ``_target_`` values may be imported from a checkpoint like the
    toolkit's own (:func:`toolkit.training.checkpoints.allowed_targets`)."""
    found = [Path(p) for p in os.environ.get(CONF_PATH_ENV, "").split(os.pathsep) if p]
    if "hydra" in sys.modules:  # a Hydra command is running: its search path counts
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            for entry in HydraConfig.get().searchpath or ():
                if str(entry).startswith("file://"):
                    found.append(Path(str(entry)[len("file://") :]))
    return [p for p in dict.fromkeys(found) if p.is_dir()]


def recipe_package(module: Any) -> str:
    """The package of the module's class (``recipes.asr`` for ``recipes.asr.module.ASRModule``)."""
    return type(module).__module__.rpartition(".")[0]


def config_package(cfg: Any) -> str:
    """The recipe package of a config: ``recipe.module`` without its module and class
    (``recipes.asr`` for ``recipes.asr.module.ASRModule``)."""
    return str(cfg["recipe"]["module"]).rpartition(".")[0].rpartition(".")[0]


def named_package(name: str, conf_dir: str | None = None) -> str:
    """The recipe package of ``name``: the package of ``recipe.module`` in
    ``conf/recipe/<name>.yaml`` (the toolkit's conf, then :func:`extra_conf_dirs`), else
    ``name`` itself when it is an importable package (given by its dotted name)."""
    import yaml

    if conf_dir is None:
        from toolkit.paths import CONF_DIR as conf_dir
    dirs = [Path(conf_dir), *extra_conf_dirs()]
    for folder in dirs:
        path = folder / "recipe" / f"{name}.yaml"
        if name and path.is_file():
            return config_package(yaml.safe_load(path.read_text(encoding="utf-8")))
    try:
        if name and importlib.util.find_spec(name) is not None:
            return name
    except (ImportError, ValueError):
        pass
    known = sorted({p.stem for d in dirs for p in (d / "recipe").glob("*.yaml")})
    raise ValueError(f"unknown recipe {name!r}; valid choices: {', '.join(known)} "
                     "(or the dotted name of a recipe package)")  # fmt: skip


def package_hook_module(package: str, kind: str) -> ModuleType | None:
    """``<package>.<kind>``, or None when the recipe package has none."""
    name = f"{package}.{kind}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if not (name == missing or name.startswith(missing + ".")):
            raise  # the hook module exists but one of its own imports is missing
        return None


def hook_module(module: Any, kind: str) -> ModuleType | None:
    """``<package>.<kind>`` (``predict`` or ``export``) of the module's recipe, or None when
    the recipe has none."""
    return package_hook_module(recipe_package(module), kind)


def _own_attribute(module: Any, name: str) -> Any:
    """``name`` as defined by the recipe's class (not by the common base classes)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith(("toolkit.", "lightning.", "torch.")) or cls is object:
            break
        if name in cls.__dict__:
            return getattr(module, name)
    return _MISSING


def hook(module: Any, kind: str, name: str, default: Any = _MISSING) -> Any:
    """The recipe's ``name`` hook: the module class's own attribute, else ``name`` in
    ``<package>.<kind>``; ``default`` when absent, else a ``NotImplementedError`` that says
    which function the recipe would need."""
    own = _own_attribute(module, name)
    if own is not _MISSING:
        return own
    helper = hook_module(module, kind)
    found = getattr(helper, name, _MISSING) if helper is not None else _MISSING
    if found is not _MISSING:
        return found
    if default is not _MISSING:
        return default
    package = recipe_package(module)
    raise NotImplementedError(
        f"{type(module).__name__} has no {kind} hook {name!r} ({package}.{kind}.{name}): "
        f"this recipe does not support toolkit.{kind} yet"
    )


def call_hook(module: Any, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the recipe's ``name`` hook: ``module.name(*args)`` when the recipe's class
    defines it, else ``<package>.<kind>.name(module, *args)``."""
    own = _own_attribute(module, name)
    if own is not _MISSING:
        return own(*args, **kwargs)
    return hook(module, kind, name)(module, *args, **kwargs)
