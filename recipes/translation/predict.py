"""Translation inference for ``python -m toolkit.predict``: the translation, its subword
tokens and beam score per line, the cross-attention matrix (npz, and a PNG with ``plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolkit.viz.text import attention_matrix


def _aligned(module, source: str, r: dict[str, Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """The cross-attention cut to the real tokens: ``(target + </s>, source + </s>)``."""
    tgt_tokens = module.tokenizer.id_to_piece(r["tokens"]) if r["tokens"] else []
    att = np.asarray(r["attention"])
    src_tokens = module.tokenizer.pieces(source)[: att.shape[1] - 1] + ["</s>"]
    tgt_axis = tgt_tokens + ["</s>"]
    return att[: len(tgt_axis), : len(src_tokens)], src_tokens, tgt_axis


def predict_arrays(module, inputs: list[str], beam_size: int | None = None) -> list[dict[str, Any]]:
    """``toolkit.api``: per source line the translation (``output``), ``score`` and the
    cross-attention ``(target + </s>, source + </s>)`` with its axis labels."""
    results = module.translate(list(inputs), beam_size=beam_size, return_attention=True)
    out = []
    for source, r in zip(inputs, results, strict=True):
        row: dict[str, Any] = {
            "output": r["translation"], "translation": r["translation"],
            "score": float(r["score"]), "attention": None, "rows": [], "columns": [],
            "tokens": module.tokenizer.id_to_piece(r["tokens"]) if r["tokens"] else [],
        }  # fmt: skip
        if r["attention"] is not None:
            att, src_tokens, tgt_axis = _aligned(module, source, r)
            row.update(attention=att, rows=tgt_axis, columns=src_tokens)
        out.append(row)
    return out


def predict_records(
    module, inputs: list[str], out_dir: Path | None = None, plot: bool = False,
    beam_size: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per source line: ``translation``, ``tokens`` (target subwords), ``score``
    (length-penalised log-probability of the hypothesis); an empty line gives an empty
    translation. Beam size from the checkpoint's decode settings unless given."""
    results = module.translate(list(inputs), beam_size=beam_size, return_attention=True)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    records = []
    for index, (source, r) in enumerate(zip(inputs, results, strict=True)):
        tgt_tokens = module.tokenizer.id_to_piece(r["tokens"]) if r["tokens"] else []
        record: dict[str, Any] = {
            "translation": r["translation"],
            "tokens": tgt_tokens,
            "score": round(float(r["score"]), 6),
        }
        if not source.strip():
            record["warning"] = "empty input: empty translation"
        att = r["attention"]
        if att is not None and out_dir is not None:
            att, src_tokens, tgt_axis = _aligned(module, source, r)
            name = f"{index:06d}.npz"
            np.savez_compressed(
                Path(out_dir) / name, attention=att, source=source,
                translation=r["translation"], source_tokens=np.array(src_tokens),
                target_tokens=np.array(tgt_axis),
            )  # fmt: skip
            record["attention_file"] = name
            if plot:
                picture = f"{index:06d}.png"
                attention_matrix(att, src_tokens, tgt_axis, Path(out_dir) / picture,
                                 f"#{index} cross-attention")  # fmt: skip
                record["picture"] = picture
        records.append(record)
    return records
