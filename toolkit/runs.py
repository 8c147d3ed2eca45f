"""The run folder contract (docs/run-folder.md): config.yaml, checkpoints/, metrics.json,
attention/, per_example.jsonl.gz.

``per_example.jsonl.gz`` (every recipe, written by ``toolkit.train`` and ``toolkit.evaluate``
beside ``metrics.json``, before it) holds the test set scored one example at a time, so a
comparison can pair two runs example by example (``toolkit.metrics.significance``). It is
gzip-compressed JSON Lines: the first line is a header ``{"per_example": 1, "recipe": ...,
"kind": ..., ...}``, every further line one test example with its ``id`` (its position in
the test split; for ASR the utterance's, with its ``condition``), in test order:

* ``classification`` (sentiment): ``label``, ``predicted``, ``probability`` (the softmax
  probability of the prediction), ``text``; the header lists ``labels``.
* ``translation``: ``hypothesis`` (the scored beam output) and ``reference``; the header
  has ``target_lang``, ``bleu_tokenize`` and the sacreBLEU signatures, so sacreBLEU's
  statistics can be recomputed exactly.
* ``captioning``: ``hypothesis`` and ``references`` (space-separated tokens, as scored).
* ``asr``: per utterance and test condition ``word_errors``, ``ref_words``,
  ``char_errors``, ``ref_chars`` (jiwer edit counts after the run's text normalisation,
  which the header holds with the ``conditions``), ``reference``, ``hypothesis``.
  Utterances whose normalised reference is empty are left out, as in the WER.

Corpus metrics are sums of these parts, so each ``metrics.json`` value of the primary
metric can be recomputed from the file. Older run folders have no such file.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PER_EXAMPLE_FILE = "per_example.jsonl.gz"
PER_EXAMPLE_VERSION = 1


def import_object(path: str) -> Any:
    """``"pkg.mod.Name"`` -> the object."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"cannot import {path!r}: {err}") from err


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed to ``path`` when the block ends
    without error, removed otherwise, so ``path`` is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private (0600)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    write_text_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))


def write_metrics(run_dir: Path, result: dict[str, Any]) -> None:
    write_text_atomic(run_dir / METRICS_FILE, json.dumps(to_jsonable(result), indent=2) + "\n")


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def write_per_example(run_dir: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """Write ``per_example.jsonl.gz`` atomically: the header line, then one line per example.
    Byte-for-byte reproducible (no time stamp in the gzip header)."""
    path = Path(run_dir) / PER_EXAMPLE_FILE
    head = {"per_example": PER_EXAMPLE_VERSION, **to_jsonable(header), "examples": len(records)}
    with (
        atomic_file(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write((json.dumps(head, ensure_ascii=False) + "\n").encode("utf-8"))
        for rec in records:
            line = json.dumps(to_jsonable(rec), ensure_ascii=False, separators=(",", ":"))
            gz.write((line + "\n").encode("utf-8"))
    return path


def read_per_example(
    run_dir: str | os.PathLike[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """``(header, records)`` of a run's ``per_example.jsonl.gz``; None when the run has none
    (an older run folder).

    Raises:
        ValueError: naming the file when it is unreadable or not a per-example file.
    """
    path = Path(run_dir) / PER_EXAMPLE_FILE
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path}: unreadable per-example file ({err})") from None
    if not lines or not isinstance(lines[0], dict) or "per_example" not in lines[0]:
        raise ValueError(f"{path}: no per-example header on its first line")
    return lines[0], lines[1:]


def to_jsonable(obj: Any) -> Any:
    """Tensors, numpy scalars and paths -> plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj
