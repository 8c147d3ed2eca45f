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
    * ``export_graph(module)``: a :class:`toolkit.export.ExportGraph` (the traced module,
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
from pathlib import Path
from types import ModuleType
from typing import Any

_MISSING = object()


def recipe_package(module: Any) -> str:
    """The package of the module's class (``recipes.asr`` for ``recipes.asr.module.ASRModule``)."""
    return type(module).__module__.rpartition(".")[0]


def config_package(cfg: Any) -> str:
    """The recipe package of a config: ``recipe.module`` without its module and class
    (``recipes.asr`` for ``recipes.asr.module.ASRModule``)."""
    return str(cfg["recipe"]["module"]).rpartition(".")[0].rpartition(".")[0]


def named_package(name: str, conf_dir: str | None = None) -> str:
    """The recipe package of ``name``: the package of ``recipe.module`` in
    ``conf/recipe/<name>.yaml``, else ``name`` itself when it is an importable package
    (a recipe from elsewhere, given by its dotted package name)."""
    from omegaconf import OmegaConf

    if conf_dir is None:
        from toolkit.paths import CONF_DIR as conf_dir
    path = Path(conf_dir) / "recipe" / f"{name}.yaml"
    if path.is_file():
        return config_package(OmegaConf.load(path))
    try:
        if name and importlib.util.find_spec(name) is not None:
            return name
    except (ImportError, ValueError):
        pass
    known = sorted(p.stem for p in (Path(conf_dir) / "recipe").glob("*.yaml"))
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
