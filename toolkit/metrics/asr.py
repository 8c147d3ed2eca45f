"""Speech recognition metrics: WER/CER (jiwer) after a declared text normalisation, and the
WER x noise x SNR table written as CSV, Markdown and a PNG plot."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer

from toolkit.runs import write_text_atomic


@dataclass(frozen=True)
class TextNormalization:
    """How references and hypotheses are normalised before scoring (saved beside scores).

    Args:
        lowercase: fold case.
        strip_accents: NFKD and drop combining marks.
        keep: regex character class of characters kept; everything else becomes a space.
        collapse_spaces: squeeze whitespace runs and strip the ends.
    """

    lowercase: bool = True
    strip_accents: bool = True
    keep: str = "a-z0-9' "
    collapse_spaces: bool = True

    def __call__(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = "".join(
                c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
            )
        text = re.sub(f"[^{self.keep}]", " ", text)
        if self.collapse_spaces:
            text = " ".join(text.split())
        return text

    def to_dict(self) -> dict:
        return asdict(self)


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], normalize: TextNormalization | None
) -> dict[str, float]:
    """Corpus-level WER and CER (jiwer) of ``hypotheses`` against ``references``.

    Empty references after normalisation are kept for CER/WER as jiwer allows only
    non-empty references: such pairs are dropped and counted in ``skipped``.
    """
    norm = normalize or (lambda s: s)
    pairs = [(norm(r), norm(h)) for r, h in zip(references, hypotheses, strict=True)]
    kept = [(r, h) for r, h in pairs if r]
    if not kept:
        return {"wer": float("nan"), "cer": float("nan"), "utterances": 0, "skipped": len(pairs)}
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    return {
        "wer": float(jiwer.wer(refs, hyps)),
        "cer": float(jiwer.cer(refs, hyps)),
        "utterances": len(kept),
        "skipped": len(pairs) - len(kept),
        "sentence_error": sum(r != h for r, h in kept) / len(kept),
    }


def _errors(chunks) -> int:
    """Substitutions + deletions + insertions of one jiwer alignment."""
    n = 0
    for c in chunks:
        if c.type in ("substitute", "delete"):
            n += c.ref_end_idx - c.ref_start_idx
        elif c.type == "insert":
            n += c.hyp_end_idx - c.hyp_start_idx
    return n


def edit_counts(
    references: Sequence[str], hypotheses: Sequence[str], normalize: TextNormalization | None
) -> list[dict[str, int | str] | None]:
    """Per utterance the jiwer edit counts behind :func:`error_rates`: ``word_errors``,
    ``ref_words``, ``char_errors``, ``ref_chars`` and the normalised ``reference`` and
    ``hypothesis``; None for a pair whose normalised reference is empty (left out there too).
    Summed over the kept utterances, errors / reference length is the corpus WER (CER)."""
    norm = normalize or (lambda s: s)
    pairs = [(norm(r), norm(h)) for r, h in zip(references, hypotheses, strict=True)]
    kept = [i for i, (r, _) in enumerate(pairs) if r]
    out: list[dict[str, int | str] | None] = [None] * len(pairs)
    if not kept:
        return out
    refs, hyps = [pairs[i][0] for i in kept], [pairs[i][1] for i in kept]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    for j, i in enumerate(kept):
        out[i] = {
            "word_errors": _errors(words.alignments[j]),
            "ref_words": len(words.references[j]),
            "char_errors": _errors(chars.alignments[j]),
            "ref_chars": len(chars.references[j]),
            "reference": refs[j],
            "hypothesis": hyps[j],
        }
    return out


def wer_grid(metrics: Mapping[str, float], prefix: str = "wer") -> dict[str, dict[str, float]]:
    """``{"babble": {"20": wer, ...}, ...}`` from flat keys ``<prefix>_<noise>_<snr>``;
    ``clean`` comes from ``<prefix>``."""
    grid: dict[str, dict[str, float]] = {}
    pattern = re.compile(rf"^{prefix}_([a-z]+)_(-?[0-9.]+)$")
    for key, value in metrics.items():
        m = pattern.match(key)
        if m and m.group(1) not in ("avg",):
            grid.setdefault(m.group(1), {})[m.group(2)] = value
    return grid


def write_wer_tables(metrics: Mapping[str, float], out_dir: Path, prefix: str = "wer") -> dict:
    """Write ``<prefix>_table.{csv,md,png}``: noise types x SNR (plus clean) in percent."""
    grid = wer_grid(metrics, prefix)
    reverb = grid.pop("reverb", {})  # its levels are RT60 seconds, not SNR dB
    clean = metrics.get(prefix)
    levels = sorted({lv for row in grid.values() for lv in row}, key=float, reverse=True)
    header = ["noise", "clean", *levels]
    rows = [[name, clean, *[grid[name].get(lv) for lv in levels]] for name in sorted(grid)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[0], *[("" if v is None else f"{100 * v:.2f}") for v in row[1:]]])
    write_text_atomic(out_dir / f"{prefix}_table.csv", buf.getvalue())
    md = ["| noise | clean | " + " | ".join(f"{lv} dB" for lv in levels) + " |",
          "|---" * (len(levels) + 2) + "|"]  # fmt: skip
    for row in rows:
        cells = ["–" if v is None else f"{100 * v:.1f}" for v in row[1:]]
        md.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    for rt60, value in sorted(reverb.items()):
        md.append(f"\nReverberation (synthetic RIR, RT60 {rt60} s): {100 * value:.1f} %")
    write_text_atomic(out_dir / f"{prefix}_table.md", "\n".join(md) + "\n")
    plot_wer_vs_snr(grid, clean, out_dir / f"{prefix}_vs_snr.png", prefix.upper())
    return {"levels": levels, "noise": sorted(grid)}


def plot_wer_vs_snr(
    grid: Mapping[str, Mapping[str, float]], clean: float | None, path: Path, label: str = "WER"
) -> Path:
    """One line per noise type: WER (%) against SNR (dB); clean drawn as a dashed line."""
    from toolkit.viz.text import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in sorted(grid.items()):
        pts = sorted((float(k), 100 * v) for k, v in row.items() if v is not None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if clean is not None:
        ax.axhline(100 * clean, color="grey", linestyle="--", label="clean")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(f"{label} (%)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
