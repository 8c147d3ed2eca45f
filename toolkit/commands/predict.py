"""Run a trained checkpoint on new inputs:
``python -m toolkit.predict ckpt=PATH input=<file|folder|-> [plot=true] [output=-]``.

Writes ``predictions.jsonl`` (one object per input: ``input``, ``source`` = file:line, and
the recipe's fields, e.g. ``prediction`` + ``scores``, ``translation`` + ``score``,
``caption`` or ``transcript``) and ``attention/`` (npz per input, PNG with ``plot=true``)
into ``hydra.run.dir``.

The recipe's ``predict`` hooks (``toolkit/recipe_hooks.py``) say what an input is (text
lines, image or audio files) and turn inputs into records; this module only reads the
inputs and writes the records. ``+options.<key>=<value>`` reaches the recipe's
``predict_records`` as a keyword argument (e.g. ``+options.beam_size=1``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from toolkit.commands.overrides import run_with_key_help
from toolkit.data.cache import DataError
from toolkit.paths import CONF_DIR
from toolkit.recipe_hooks import hook
from toolkit.runs import to_jsonable, write_text_atomic
from toolkit.training.checkpoints import load_module

TEXT_SUFFIXES = (".txt",)


def _read(path: Path) -> str:
    """A text input file, with the readers' limits (file size, line length, UTF-8)."""
    from toolkit.data.labelled import read_utf8_text

    return read_utf8_text(path)


def _lines(source: str, text: str) -> list[tuple[str, str]]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(line.rstrip("\r"), f"{source}:{i}") for i, line in enumerate(lines, start=1)]


def _manifest(path: Path, kind: str) -> list[tuple[str, str]]:
    """A JSONL manifest of files: one object a line whose ``kind`` (``audio``/``image``)
    or ``path`` field names a file, relative to the manifest's folder; other fields (a
    reference ``text``, a ``duration``) are ignored. Blank lines are skipped."""
    pairs = []
    from toolkit.data.labelled import jsonl_objects

    for line_no, row in jsonl_objects(path, _read(path)):
        value = row.get(kind, row.get("path"))
        if not isinstance(value, str) or not value:
            raise DataError(path, line_no, kind, f"missing or not a string (a {kind} path)")
        full = Path(value) if Path(value).is_absolute() else path.parent / value
        pairs.append((str(full.resolve()), f"{path}:{line_no}"))
    if not pairs:
        raise DataError(path, None, None, "manifest has no entries")
    return pairs


def read_inputs(
    spec: str, kind: str = "text", suffixes: tuple[str, ...] | None = None
) -> list[tuple[str, str]]:
    """``(input, where)`` pairs from a file, a folder or ``-`` (stdin).

    Text: one input per line (blank lines are inputs too, so output line i answers input
    line i). Image/audio: file paths (a folder's files, those with one of ``suffixes`` when
    given; a .txt list of paths; a .jsonl manifest with an ``audio``/``image`` field).
    """
    if spec == "-":
        from toolkit.data.labelled import check_line_lengths

        return _lines("<stdin>", check_line_lengths("<stdin>", sys.stdin.read()))
    path = Path(spec)
    if not path.exists():
        raise DataError(path, None, None, "input not found")
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        for p in entries:  # a dangling link or a link loop: named, not silently passed over
            if p.is_symlink() and not p.exists():
                raise DataError(p, None, None, "a link that leads nowhere (dangling or a loop)")
        # one level only: sub-folders (and links to folders) are not walked into
        files = [p for p in entries if p.is_file()]
        if kind == "text":
            files = [p for p in files if p.suffix.lower() in TEXT_SUFFIXES]
            if not files:
                raise DataError(path, None, None, "no .txt files in this folder")
            return [pair for p in files for pair in _lines(str(p), _read(p))]
        if suffixes:
            files = [p for p in files if p.suffix.lower() in suffixes]
            if not files:
                raise DataError(path, None, None, f"no {kind} files ({', '.join(suffixes)}) "
                                "in this folder")  # fmt: skip
        if not files:
            raise DataError(path, None, None, "folder is empty")
        return [(str(p), str(p)) for p in files]
    if kind != "text" and path.suffix.lower() == ".jsonl":
        return _manifest(path, kind)
    if kind == "text" or path.suffix.lower() in TEXT_SUFFIXES:
        pairs = _lines(str(path), _read(path))
        if kind != "text":  # a list of paths, relative to the list file
            pairs = [(str((path.parent / p).resolve()), w) for p, w in pairs if p.strip()]
        return pairs
    return [(str(path), str(path))]


def recipe_inputs(module, spec: str) -> list[tuple[str, str]]:
    """``read_inputs`` as the recipe's hooks ask: its own ``read_inputs(spec)`` when it has
    one, else the common reader for its ``INPUT_KIND`` and ``INPUT_SUFFIXES``."""
    reader = hook(module, "predict", "read_inputs", None)
    if reader is not None:
        return reader(spec)
    suffixes = hook(module, "predict", "INPUT_SUFFIXES", None)
    return read_inputs(spec, module.input_kind, tuple(suffixes) if suffixes else None)


def predict(cfg: DictConfig, run_dir: Path) -> list[dict[str, Any]]:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    module = load_module(cfg.ckpt)
    inputs = recipe_inputs(module, str(cfg.input))
    out_dir = run_dir / "attention" if cfg.get("save_attention", True) else None
    options = cfg.get("options")
    options = OmegaConf.to_container(options, resolve=True) if options else {}
    records = module.predict_records(
        [x for x, _ in inputs], out_dir, bool(cfg.get("plot")), **options
    )
    rows = [
        {"input": x, "source": where, **record}
        for (x, where), record in zip(inputs, records, strict=True)
    ]
    text = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in rows)
    output = cfg.get("output")
    if output == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(output) if output else run_dir / "predictions.jsonl", text)
    return rows


@hydra.main(config_path=CONF_DIR, config_name="predict", version_base="1.3")
def command(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    rows = predict(cfg, run_dir)
    if cfg.get("output") != "-":
        where = cfg.get("output") or run_dir / "predictions.jsonl"
        print(f"[toolkit.predict] {len(rows)} predictions -> {where}", file=sys.stderr)


def main() -> None:
    """``python -m toolkit.predict key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "predict")
