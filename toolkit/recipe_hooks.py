"""How ``toolkit.predict``, ``toolkit.export`` and ``toolkit.api`` find a recipe's inference
code, without knowing any recipe by name.

A recipe is a package (``recipes/<name>/``) whose LightningModule class is named in the
config (``recipe.module``). Next to it, two optional modules provide the hooks:

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

A method of the same name on the recipe's module class wins over the package function
(:func:`call_hook`), and a class attribute over a package constant (:func:`hook`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_MISSING = object()


def recipe_package(module: Any) -> str:
    """The package of the module's class (``recipes.asr`` for ``recipes.asr.module.ASRModule``)."""
    return type(module).__module__.rpartition(".")[0]


def hook_module(module: Any, kind: str) -> ModuleType | None:
    """``<package>.<kind>`` (``predict`` or ``export``), or None when the recipe has none."""
    name = f"{recipe_package(module)}.{kind}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if not (name == missing or name.startswith(missing + ".")):
            raise  # the hook module exists but one of its own imports is missing
        return None


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
