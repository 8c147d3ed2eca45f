"""The recipe READMEs' result tables, regenerated from the small result files committed under
each recipe's ``results/`` folder (``metrics.json`` and per-condition CSVs of the runs, never
checkpoints).

    python benchmarks/readme_tables.py            # print every block
    python benchmarks/readme_tables.py --write    # replace the blocks in the READMEs
    python benchmarks/readme_tables.py --check    # exit 1 when a README differs (a test runs it)

A block sits between ``<!-- results:NAME -->`` and ``<!-- results:NAME:end -->`` in a README;
``BLOCKS`` maps each name to its README and the function that renders it. ``previous/`` holds
the files of the run a table is compared against (the figures before a protocol change).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _json(path: str) -> dict[str, Any]:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def _csv(path: str) -> list[dict[str, str]]:
    with open(ROOT / path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _md(head: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    align = ["---"] * right + ["---:"] * (len(head) - right)
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


# ----------------------------------------------------------------------------- speech

ASR_NOW = "recipes/asr/results/default"
ASR_BEFORE = "recipes/asr/results/previous"


def _asr_budget(saved: dict[str, Any]) -> str:
    budget = saved.get("budget") or {}
    if not budget:
        return "13 epochs (1,625 steps)"
    epochs = float(budget.get("epochs"))
    return f"{epochs:g} epochs ({budget.get('steps'):,} steps)"


NOISES = ("white", "pink", "brown", "babble", "recorded")


def _mean_wer(m: dict[str, float], prefix: str, level: str) -> float:
    return sum(m[f"{prefix}wer_{kind}_{level}"] for kind in NOISES) / len(NOISES)


def asr_summary() -> str:
    """The default config before and after the held-out-sentence / speech-band-SNR protocol,
    both decoders of the same checkpoint (the run's joint beam and CTC greedy)."""
    now, before = _json(f"{ASR_NOW}/metrics.json"), _json(f"{ASR_BEFORE}/metrics.json")
    m, b = now["metrics"], before["metrics"]
    joint = f"joint beam {now['decode']['beam_size']}, ctc_weight {now['decode']['ctc_weight']}"
    assert _decode(before) == _decode(now) == joint.replace("joint beam", "joint, beam")

    def rows_for(name: str, prefix: str) -> list[list[str]]:
        return [
            [f"WER clean, {name}", _pct(b[f"{prefix}wer"]), _pct(m[f"{prefix}wer"])],
            *[[f"WER {level} dB, mean of 5 noises, {name}", _pct(_mean_wer(b, prefix, level)),
               _pct(_mean_wer(m, prefix, level))] for level in ("10", "0")],
            *[[f"WER {kind} 0 dB, {name}", _pct(b[f"{prefix}wer_{kind}_0"]),
               _pct(m[f"{prefix}wer_{kind}_0"])] for kind in ("brown", "babble")],
            [f"WER reverb RT60 0.5 s, {name}", _pct(b[f"{prefix}wer_reverb_0.5"]),
             _pct(m[f"{prefix}wer_reverb_0.5"])],
        ]  # fmt: skip

    utts = now["per_condition"]["clean"]["decode"]["utterances"]
    held = now["data"]["held_out"]["test_sentences_in_train"]
    old = _json(f"{ASR_BEFORE}/held_out.json")
    old_utts = before["per_condition"]["clean"]["decode"]["utterances"]
    rows = [
        ["test utterances whose sentence is also in training",
         f"{old['test_sentences_in_train']} of {old_utts}", f"{held} of {utts}"],
        ["SNR measured over", "full band", "speech band (> 50 Hz), noise high-passed"],
        *rows_for("CTC greedy (%)", "ctc_greedy_"),
        *rows_for(f"{joint} (%)", ""),
        ["budget", _asr_budget(before), _asr_budget(now)],
    ]  # fmt: skip
    return "\n".join(_md(["", "before", "now"], rows))


def _decode(saved: dict[str, Any]) -> str:
    d = saved["decode"]
    if d["mode"] == "ctc_greedy":
        return "CTC greedy"
    return f"{d['mode']}, beam {d['beam_size']}, ctc_weight {d['ctc_weight']}"


def _wer_grid(path: str, prefix: str) -> str:
    """A noise x level WER table (%) from a run's CSV, with the mean over the noises of
    each level from the exact figures in metrics.json (the CSV rounds to 0.01)."""
    rows = _csv(path)
    m = _json(f"{ASR_NOW}/metrics.json")["metrics"]
    levels = [k for k in rows[0] if k != "noise"]
    kinds = [r["noise"] for r in rows]

    def mean(level: str) -> str:
        if level == "clean":
            return f"**{100 * m[f'{prefix}wer']:.2f}**"
        vals = [m[f"{prefix}wer_{kind}_{level}"] for kind in kinds]
        return f"**{100 * sum(vals) / len(vals):.2f}**"

    body = [[r["noise"]] + [r[k] for k in levels] for r in rows]
    body.append([f"**mean of {len(kinds)}**"] + [mean(k) for k in levels])
    head = ["noise"] + [k if k == "clean" else f"{k} dB" for k in levels]
    return "\n".join(_md(head, body))


def asr_wer() -> str:
    return _wer_grid(f"{ASR_NOW}/wer_table.csv", "")


def asr_ctc_wer() -> str:
    return _wer_grid(f"{ASR_NOW}/ctc_greedy_wer_table.csv", "ctc_greedy_")


def asr_decode_sweep(path: str = "recipes/asr/results/decode_sweep.csv") -> str:
    rows = _csv(path)
    head = ["mode", "beam", "ctc_weight", "WER %", "CER %", "dead beams", "utterances", "s"]
    keys = ["mode", "beam", "ctc_weight", "wer", "cer", "beam_fallbacks", "utterances", "seconds"]
    return "\n".join(_md(head, [[r[k] for k in keys] for r in rows], right=3))


ASR_SENTENCES = "recipes/asr/results/sentences"
ASR_RNN = "recipes/asr/results/rnn-location"


def asr_rnn_decode_sweep() -> str:
    """The recurrent decoder's (``location``) decoding settings on the validation set."""
    return asr_decode_sweep(f"{ASR_RNN}/decode_sweep.csv")


def asr_rnn_clean() -> str:
    """The recurrent decoder's clean test WER with a bootstrap interval over utterances
    (its per_example.jsonl.gz), beside CTC greedy on the same checkpoint."""
    import gzip

    import numpy as np

    from toolkit.metrics.significance import resample_counts

    saved = _json(f"{ASR_RNN}/metrics.json")
    with gzip.open(ROOT / ASR_RNN / "per_example.jsonl.gz", "rt") as fh:
        rows = [json.loads(line) for line in fh][1:]
    clean = [r for r in rows if r["condition"] == "clean"]
    parts = np.array([[r["word_errors"], r["ref_words"]] for r in clean], np.float64)
    wers = np.concatenate([(c @ parts)[:, 0] / (c @ parts)[:, 1]
                           for c in resample_counts(len(parts), 2000, 12345)])  # fmt: skip
    low, high = np.quantile(wers, [0.025, 0.975])
    m = saved["metrics"]
    rows_md = [
        [f"{_decode(saved)} (chosen on validation)", _pct(m["wer"], 2),
         f"{_pct(low, 2)}-{_pct(high, 2)}", str(len(clean))],
        ["CTC greedy, same checkpoint", _pct(m["ctc_greedy_wer"], 2), "", str(len(clean))],
    ]  # fmt: skip
    head = ["decoding", "clean test WER %", "95 % bootstrap interval", "utterances"]
    return "\n".join(_md(head, rows_md, right=1))


def asr_sentences() -> str:
    """The open-vocabulary variant (sentencepiece units, CTC greedy) before and after the
    larger sentence corpus and the 2,200-step budget."""
    before = _json(f"{ASR_BEFORE}/sentences_readme_table.json")
    now = _json(f"{ASR_SENTENCES}/metrics.json")
    m, data = now["metrics"], now["data"]
    held = data["held_out"]
    budget = now["budget"]
    rows = [
        ["training text", before["corpus"],
         f"movie-review + WordNet sentences: {data['counts']['train']:,} utterances, "
         "each a different sentence"],
        ["test words never heard in training", "—",
         f"{held['test_words_unseen_in_train']} of {held['test_words']}"],
        ["budget", before["budget"],
         f"{budget['epochs']:g} epochs ({budget['steps']:,} steps), "
         f"{now['train_seconds'] / 60:.0f} minutes"],
        ["decoding", before["decode"], _decode(now)],
        ["WER clean (%)", _pct(before["wer"]), _pct(m["wer"])],
        ["CER clean (%)", _pct(before["cer"]), _pct(m["cer"])],
        ["WER 10 dB, mean of 5 noises (%)", _pct(before["wer_avg_10"]),
         _pct(_mean_wer(m, "", "10"))],
        ["WER 0 dB, mean of 5 noises (%)", _pct(before["wer_avg_0"]),
         _pct(_mean_wer(m, "", "0"))],
    ]  # fmt: skip
    return "\n".join(_md(["", "before", "now"], rows))


# ----------------------------------------------------------------------------- translation

TR_NOW = "recipes/translation/results/default"
TR_BEFORE = "recipes/translation/results/previous"


def translation_summary() -> str:
    """The default Transformer before and after the normalised-key split."""
    now, before = _json(f"{TR_NOW}/metrics.json"), _json(f"{TR_BEFORE}/metrics.json")
    m, b = now["metrics"], before["metrics"]

    def row(name: str, key: str, digits: int = 1) -> list[str]:
        f = lambda v: "—" if v is None else f"{v:.{digits}f}"  # noqa: E731
        return [name, f(b.get(key)), f(m.get(key))]

    rows = [
        ["test pairs", f"{before['test_examples']:,}", f"{now['test_examples']:,}"],
        ["split and dedupe on", "exact source", "normalised source"],
        row("BLEU, beam 5", "bleu"),
        row("BLEU, greedy", "bleu_greedy"),
        row("chrF, beam 5", "chrf"),
        row("BLEU, copy the source", "copy_bleu"),
        row("chrF, copy the source", "copy_chrf"),
        row("cross-attention monotonicity", "attention_monotonicity", 2),
        row("cross-attention entropy", "attention_entropy", 2),
        ["precision", _precision(before), _precision(now)],
        ["epochs (steps)", _epochs(before), _epochs(now)],
        [
            "train seconds (2 threads)",
            f"{before['train_seconds']:,.0f}",
            f"{now['train_seconds']:,.0f}",
        ],  # fmt: skip
    ]
    return "\n".join(_md(["", "before", "now"], rows))


def _precision(saved: dict[str, Any]) -> str:
    return str(saved["throughput"].get("precision"))


def _epochs(saved: dict[str, Any]) -> str:
    budget = saved.get("budget") or {}
    steps = budget.get("steps")
    return f"{saved['epochs']}" + (f" ({steps:,})" if steps else "")


# ----------------------------------------------------------------------------- captioning

CAP = "recipes/captioning/results"


def _previous(path: str) -> dict[str, dict[str, Any]]:
    """A transcribed table of earlier figures (``previous/readme_table.json``): row name ->
    column -> value."""
    saved = _json(path)
    return {name: dict(zip(saved["columns"], values, strict=True))
            for name, values in saved["rows"].items()}  # fmt: skip


def _num(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "—" if value is None else f"{scale * value:,.{digits}f}"


CAPTION_ROWS = (
    ("default", "LSTM + additive, beam 3"),
    ("default-greedy", "same checkpoint, greedy"),
    ("ablation-mean", "ablation: mean over regions, beam 3"),
)


def _caption_row(saved: dict[str, Any]) -> dict[str, Any]:
    m = saved["metrics"]
    keys = ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "grounding", "grounding_chance",
            "chair_i", "chair_s", "exact_match")  # fmt: skip
    row = {k: m.get(k) for k in keys}
    row["train_seconds"] = saved.get("train_seconds")
    row["params"] = saved.get("params")
    return row


def captioning_summary() -> str:
    """The default config (and its greedy decoding and the mean-over-regions ablation), the
    figures before (ties counted as pointing-game hits) beside the re-measured ones."""
    before = _previous(f"{CAP}/previous/readme_table.json")
    head = ["model", "", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "grounding (chance)",
            "CHAIR-i", "CHAIR-s", "exact", "train s", "params"]  # fmt: skip
    rows = []
    for name, label in CAPTION_ROWS:
        path = ROOT / CAP / name / "metrics.json"
        runs = [("before", before[name])]
        if path.is_file():
            runs.append(("now", _caption_row(_json(f"{CAP}/{name}/metrics.json"))))
        for when, r in runs:
            ground = r["grounding"]
            rows.append([
                label, when, *[_num(r[k]) for k in ("bleu1", "bleu2", "bleu3", "bleu4")],
                _num(r["cider"], 2),
                "—" if ground is None else f"{_pct(ground)} % ({_pct(r['grounding_chance'])} %)",
                f"{_pct(r['chair_i'])} %", f"{_pct(r['chair_s'])} %",
                f"{_pct(r['exact_match'])} %",
                "—" if when == "now" and name.endswith("greedy") else _num(r["train_seconds"], 0),
                _num(r["params"], 0),
            ])  # fmt: skip
    return "\n".join(_md(head, rows, right=2))


# ----------------------------------------------------------------------------- sentiment

SENT = "recipes/sentiment/results"
SENT_ROWS = (
    *[("BiGRU", f"bigru-{t}", t) for t in
      ("additive", "general", "dot", "scaled_dot", "multihead", "linear", "uniform")],
    ("Transformer (2 layers)", "transformer-multihead", "multihead"),
    ("Transformer (2 layers)", "transformer-local", "local"),
)  # fmt: skip


def sentiment_types() -> str:
    """Every pooling type with the default config (one seed), accuracy before beside now."""
    before = _previous(f"{SENT}/previous/readme_table.json")
    head = ["model", "attention", "accuracy before", "accuracy", "macro-F1", "entropy",
            "lexicon lift", "train s", "params"]  # fmt: skip
    rows = []
    for model, name, kind in SENT_ROWS:
        if not (ROOT / SENT / "default" / name / "metrics.json").is_file():
            continue
        saved = _json(f"{SENT}/default/{name}/metrics.json")
        m = saved["metrics"]
        old = before.get(name, {}).get("accuracy")
        rows.append([
            model, f"`{kind}`", _num(old, 3), _num(m["accuracy"], 3), _num(m["f1_macro"], 3),
            _num(m.get("attention_entropy"), 3), _num(m.get("attention_lexicon_lift"), 2),
            _num(saved["train_seconds"], 0), f"{saved['params'] / 1e6:.2f} M",
        ])  # fmt: skip
    return "\n".join(_md(head, rows, right=2))


def _sentiment_seeds(kind: str) -> list[dict[str, Any]]:
    names = [f"bigru-{kind}", f"bigru-{kind}-seed2", f"bigru-{kind}-seed3"]
    return [_json(f"{SENT}/default/{n}/metrics.json") for n in names]


def _per_example(folder: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from toolkit.runs import read_per_example

    return read_per_example(ROOT / folder)


def sentiment_seeds() -> str:
    """Three seeds of additive and multihead pooling: mean and 95 % t-interval over seeds,
    and the paired bootstrap over test sentences (seeds paired) of each against the other
    and of every type's default-seed run against ``uniform``."""
    from toolkit.metrics.significance import compare_per_example, seed_interval

    head = ["attention", "seeds", "accuracy per seed", "mean", "95 % interval over seeds"]
    rows = []
    for kind in ("additive", "multihead"):
        runs = _sentiment_seeds(kind)
        acc = [r["metrics"]["accuracy"] for r in runs]
        iv = seed_interval(acc)
        rows.append([f"`{kind}`", ", ".join(str(r["seed"]) for r in runs),
                     " / ".join(f"{a:.3f}" for a in acc), f"{iv.mean:.3f}",
                     f"{iv.low:.3f} – {iv.high:.3f}"])  # fmt: skip
    lines = _md(head, rows)
    pairs = []
    for suffix in ("", "-seed2", "-seed3"):
        ref = _per_example(f"{SENT}/default/bigru-multihead{suffix}")
        system = _per_example(f"{SENT}/default/bigru-additive{suffix}")
        pairs.append((ref, system))
    tests = [("`additive` − `multihead` (3 seeds, paired)", compare_per_example(pairs, "accuracy"))]
    uniform = _per_example(f"{SENT}/default/bigru-uniform")
    for _, name, kind in SENT_ROWS:
        if name.startswith("bigru") and kind != "uniform":
            system = _per_example(f"{SENT}/default/{name}")
            tests.append((f"`{kind}` − `uniform` (BiGRU, seed 1234)",
                          compare_per_example([(uniform, system)], "accuracy")))  # fmt: skip
    body = [[label, f"{100 * t.difference:+.1f}", f"{100 * t.low:+.1f} … {100 * t.high:+.1f}",
             f"{t.p_value:.3f}", "yes" if t.significant() else "no"]
            for label, t in tests]  # fmt: skip
    lines += ["", *_md(["difference in accuracy (points)", "observed", "95 % interval",
                        "p", "significant at 0.05"], body)]  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------- RNN seeds

TR_RNN = "recipes/translation/results/rnn"
RNN_ANCHOR = "#the-gru-translator-attention-against-a-fixed-summary"
# Row label, result-folder prefix (<prefix>-seed<k>), overrides after
# `experiment=translation_rnn`; the two-phase coverage run is described under the table.
RNN_VARIANTS = (
    ("`additive`", "additive", "attention=additive"),
    ("`general`", "general", "attention=general"),
    ("`general`, scale 1/√512", "general-scaled",
     "attention=general attention.options.scale=0.04419417"),
    ("`uniform`", "uniform", "attention=uniform"),
    ("`coverage`, coverage loss 1.0 throughout", "coverage",
     "attention=coverage coverage_loss_weight=1.0"),
    ("`coverage`, coverage loss 1.0 in the last 200 steps", "coverage-final", None),
)  # fmt: skip
RNN_LABELS = {prefix: label for label, prefix, _ in RNN_VARIANTS}
# paired tests: (system, reference) folder prefixes
RNN_TESTS = (("additive", "uniform"), ("general", "uniform"), ("general-scaled", "uniform"),
             ("general-scaled", "additive"), ("coverage", "additive"),
             ("coverage-final", "additive"))  # fmt: skip


def _rnn_runs() -> dict[str, list[str]]:
    """Folder prefix -> its seed folders under ``TR_RNN`` (sorted by seed)."""
    runs: dict[str, list[str]] = {}
    for _, prefix, _ in RNN_VARIANTS:
        folders = sorted((ROOT / TR_RNN).glob(f"{prefix}-seed*"))
        runs[prefix] = [f"{TR_RNN}/{f.name}" for f in folders if (f / "metrics.json").is_file()]
    return runs


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _repetition(folder: str, field: str = "hypothesis") -> float:
    from toolkit.metrics.repetition import repeated_ngram_rate

    _, records = _per_example(folder)
    return repeated_ngram_rate([r[field] for r in records], 3)


def translation_rnn() -> str:
    """The GRU translator's seeds per attention type: BLEU per seed, mean and 95 % interval
    over seeds, the copy baseline, repeated trigrams; then paired bootstraps over test
    sentences (seeds paired) of each type against ``uniform`` and of coverage against
    additive."""
    from toolkit.metrics.significance import compare_per_example, seed_interval

    runs = _rnn_runs()
    head = ["attention", "seeds", "BLEU per seed", "BLEU mean", "95 % interval over seeds",
            "seed spread", "chrF mean", "repeated trigrams", "attention entropy (normalised)",
            "train s (mean)"]  # fmt: skip
    rows, copy = [], None
    for kind, folders in runs.items():
        if not folders:
            continue
        saved = [_json(f"{f}/metrics.json") for f in folders]
        bleu = [m["metrics"]["bleu"] for m in saved]
        iv = seed_interval(bleu) if len(bleu) > 1 else None
        rep = [_repetition(f) for f in folders]
        copy = saved[0]["metrics"]["copy_bleu"]
        entropy = [m["metrics"]["attention_entropy"] for m in saved]
        rows.append([
            RNN_LABELS[kind], ", ".join(str(m["seed"]) for m in saved),
            " / ".join(f"{b:.1f}" for b in bleu), f"{sum(bleu) / len(bleu):.1f}",
            "—" if iv is None else f"{iv.low:.1f} – {iv.high:.1f}",
            f"{max(bleu) - min(bleu):.1f}",
            f"{sum(m['metrics']['chrf'] for m in saved) / len(saved):.1f}",
            f"{100 * sum(rep) / len(rep):.2f} %",
            f"{sum(entropy) / len(entropy):.3f}",
            f"{sum(m['train_seconds'] for m in saved) / len(saved):.0f}",
        ])  # fmt: skip
    if copy is None:
        return "(no runs yet: benchmarks/translation_runs.sh rnn)"
    rows.append(["copy the source (baseline)", "", "", f"{copy:.1f}", *[""] * 6])
    first = next(f for folders in runs.values() for f in folders)
    refs = f"{100 * _repetition(first, 'reference'):.2f} %"
    rows.append(["the references", *[""] * 6, refs, "", ""])
    lines = _md(head, rows, right=3)
    tests = []
    for system, reference in RNN_TESTS:
        ref_runs, sys_runs = runs.get(reference, []), runs.get(system, [])
        n = min(len(ref_runs), len(sys_runs))
        if n == 0:
            continue
        pairs = [(_per_example(ref_runs[i]), _per_example(sys_runs[i])) for i in range(n)]
        tests.append((f"{RNN_LABELS[system]} − {RNN_LABELS[reference]} ({_seeds(n)}, paired)",
                      compare_per_example(pairs, "bleu")))  # fmt: skip
    body = [[label, f"{t.difference:+.1f}", f"{t.low:+.1f} … {t.high:+.1f}",
             f"{t.p_value:.3f}", "yes" if t.significant() else "no"]
            for label, t in tests]  # fmt: skip
    lines += ["", *_md(["difference in BLEU", "observed", "95 % interval", "p",
                        "significant at 0.05"], body)]  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------- run tables

# Each recipe README opens with one table: per measured config the command that trains it,
# the test metric and the budget, from the same result files as the tables below it.
# Rows: (config, command, result folder, metric renderer); the command "same run" repeats
# the row above (another decoding of the same checkpoint).


def _budget(saved: dict[str, Any]) -> str:
    budget = saved.get("budget") or {}
    if not budget:
        return "—"
    if budget.get("stopped_by") == "max_steps":
        return f"{budget['steps']:,} steps ({budget['epochs']:g} epochs)"
    epochs = budget.get("max_epochs") if budget.get("stopped_by") == "max_epochs" else None
    return f"{epochs or budget['epochs']:g} epochs ({budget['steps']:,} steps)"


def _trained(folder: str, saved: dict[str, Any]) -> dict[str, Any]:
    """The training run's metrics: ``saved`` itself, or for a folder whose metrics.json came
    from ``toolkit.evaluate`` (no budget), its ``train_metrics.json``."""
    if saved.get("budget") or not (ROOT / folder / "train_metrics.json").is_file():
        return saved
    return _json(f"{folder}/train_metrics.json")


def _run_table(rows: list[tuple[str, str, str, Callable[[dict[str, Any]], str]]]) -> str:
    body = []
    for config, command, folder, metric in rows:
        saved = _json(f"{folder}/metrics.json")
        run = f"`{command}`" if command.startswith(("python ", "benchmarks/")) else command
        body.append([config, run, metric(saved), _budget(_trained(folder, saved))])
    return "\n".join(_md(["config", "command", "test metric", "budget"], body, right=4))


def _sentiment_metric(saved: dict[str, Any]) -> str:
    m = saved["metrics"]
    return f"accuracy {m['accuracy']:.3f}, macro-F1 {m['f1_macro']:.3f}"


def sentiment_runs() -> str:
    train = "python -m toolkit.train recipe=sentiment"
    return _run_table([
        ("BiGRU + `additive` pooling (default)", f"{train} attention=additive",
         f"{SENT}/default/bigru-additive", _sentiment_metric),
        ("BiGRU + `multihead` pooling", f"{train} attention=multihead",
         f"{SENT}/default/bigru-multihead", _sentiment_metric),
        ("BiGRU + mean over states (`uniform`, no attention)", f"{train} attention=uniform",
         f"{SENT}/default/bigru-uniform", _sentiment_metric),
    ])  # fmt: skip


def _translation_metric(saved: dict[str, Any]) -> str:
    m, beam = saved["metrics"], saved["decode"]["beam_size"]
    return (f"BLEU {m['bleu']:.1f} (beam {beam}; greedy {m['bleu_greedy']:.1f}), chrF "
            f"{m['chrf']:.1f}; copying the source: BLEU {m['copy_bleu']:.1f}, chrF "
            f"{m['copy_chrf']:.1f}")  # fmt: skip


def _seed_mean_metric(folders: list[str]) -> Callable[[dict[str, Any]], str]:
    """Mean BLEU/chrF over the seed runs ``folders`` (the budget comes from the first)."""

    def metric(_: dict[str, Any]) -> str:
        runs = [_json(f"{f}/metrics.json") for f in folders]
        bleu = [r["metrics"]["bleu"] for r in runs]
        chrf = [r["metrics"]["chrf"] for r in runs]
        seeds = " / ".join(f"{b:.1f}" for b in bleu)
        return (f"BLEU {sum(bleu) / len(bleu):.1f} (beam 5; seeds {seeds}), "
                f"chrF {sum(chrf) / len(chrf):.1f}")  # fmt: skip

    return metric


def translation_runs() -> str:
    kind = _json(f"{TR_NOW}/metrics.json")["attention"]
    rows = [
        (f"Transformer, multi-head attention with `{kind}` scores (default)",
         f"python -m toolkit.train recipe=translation attention={kind}", TR_NOW,
         _translation_metric),
    ]  # fmt: skip
    runs = _rnn_runs()
    for label, prefix, overrides in RNN_VARIANTS:
        folders = runs[prefix]
        if folders:
            command = (f"python -m toolkit.train experiment=translation_rnn {overrides}"
                       if overrides else f"two phases, [below]({RNN_ANCHOR})")  # fmt: skip
            rows.append((
                f"GRU encoder–decoder + {label} ({_seeds(len(folders))}, [below]({RNN_ANCHOR}))",
                command, folders[0], _seed_mean_metric(folders),
            ))  # fmt: skip
    return _run_table(rows)


def _caption_metric(saved: dict[str, Any]) -> str:
    m = saved["metrics"]
    return (f"BLEU-4 {m['bleu4']:.1f}, CIDEr-D {m['cider']:.2f}, grounding "
            f"{_pct(m['grounding'])} % (chance {_pct(m['grounding_chance'])} %), CHAIR-i "
            f"{_pct(m['chair_i'])} %")  # fmt: skip


def captioning_runs() -> str:
    now = _json(f"{CAP}/default/metrics.json")
    return _run_table([
        (f"CNN + LSTM, `additive` (default), beam {now['decode']['beam_size']}",
         "python -m toolkit.train recipe=captioning attention=additive", f"{CAP}/default",
         _caption_metric),
        ("the same checkpoint, greedy",
         "python -m toolkit.evaluate ckpt=<run>/checkpoints/<best>.ckpt decode.beam_size=1",
         f"{CAP}/default-greedy", _caption_metric),
    ])  # fmt: skip


def captioning_coverage() -> str:
    """`coverage` against the default `additive` in the LSTM decoder: text metrics, CHAIR and
    the repeated n-gram rates of the test captions (their per_example files), with the
    paired bootstrap of BLEU-4 over test images."""
    from toolkit.metrics.repetition import repeated_ngram_rate
    from toolkit.metrics.significance import compare_per_example
    from toolkit.runs import read_per_example

    head = ["attention (LSTM decoder, 15 epochs, beam 3)", "BLEU-4", "CIDEr-D", "CHAIR-i %",
            "CHAIR-s %", "grounding %", "repeated bigrams %", "repeated trigrams %"]  # fmt: skip
    body = []
    for label, folder in (("`additive` (default)", f"{CAP}/default"),
                          ("`coverage`", f"{CAP}/coverage")):  # fmt: skip
        m = _json(f"{folder}/metrics.json")["metrics"]
        _, records = read_per_example(ROOT / folder)
        hyps = [r["hypothesis"] for r in records]
        body.append([label, f"{m['bleu4']:.1f}", f"{m['cider']:.2f}", _pct(m["chair_i"]),
                     _pct(m["chair_s"]), _pct(m["grounding"]),
                     f"{100 * repeated_ngram_rate(hyps, 2):.2f}",
                     f"{100 * repeated_ngram_rate(hyps, 3):.2f}"])  # fmt: skip
    pair = (read_per_example(ROOT / CAP / "default"), read_per_example(ROOT / CAP / "coverage"))
    test = compare_per_example([pair], "bleu4")
    lines = _md(head, body, right=1)
    lines += ["", f"`coverage` − `additive`, BLEU-4: {test.difference:+.1f} (95 % interval "
              f"{test.low:+.1f} … {test.high:+.1f}, p = {test.p_value:.3f}; paired bootstrap "
              f"over the {test.examples:,} test images, one seed each)."]  # fmt: skip
    return "\n".join(lines)


def _asr_metric(prefix: str) -> Callable[[dict[str, Any]], str]:
    def metric(saved: dict[str, Any]) -> str:
        m = saved["metrics"]
        return (
            f"WER {_pct(m[f'{prefix}wer'])} % clean, {_pct(_mean_wer(m, prefix, '10'))} % "
            f"at 10 dB, {_pct(_mean_wer(m, prefix, '0'))} % at 0 dB (mean of 5 noises)"
        )

    return metric


def _asr_sentences_metric(saved: dict[str, Any]) -> str:
    return f"{_asr_metric('')(saved)}; CER {_pct(saved['metrics']['cer'])} % clean"


def asr_runs() -> str:
    now = _json(f"{ASR_NOW}/metrics.json")
    d = now["decode"]
    return _run_table([
        ("Conformer + `multihead`, character tokens, CTC greedy (default decoding)",
         f"python -m toolkit.train recipe=asr attention=multihead decode.mode={d['mode']} "
         f"decode.ctc_weight={d['ctc_weight']}", ASR_NOW, _asr_metric("ctc_greedy_")),
        (f"the same run decoded with the joint beam ({d['beam_size']}, `ctc_weight` "
         f"{d['ctc_weight']})", "same run", ASR_NOW, _asr_metric("")),
        *_asr_rnn_rows(),
        ("open vocabulary: sentences, sentencepiece units, CTC greedy",
         "python -m toolkit.train recipe=asr data.text=sentences data.tokens=sentencepiece "
         "trainer.max_epochs=null trainer.max_steps=2200", ASR_SENTENCES,
         _asr_sentences_metric),
    ])  # fmt: skip


def _asr_rnn_rows() -> list[tuple[str, str, str, Callable[[dict[str, Any]], str]]]:
    """The recurrent `location` decoder: its test decoding (the setting of lowest validation
    WER, benchmarks/asr_decoder_runs.sh) and CTC greedy on the same checkpoint."""
    if not (ROOT / ASR_RNN / "metrics.json").is_file():
        return []
    d = _json(f"{ASR_RNN}/metrics.json")["decode"]
    rows = [(
        f"Conformer + `multihead`, recurrent decoder with `location` attention, "
        f"{_decode(_json(f'{ASR_RNN}/metrics.json'))} (chosen on validation)",
        "benchmarks/asr_decoder_runs.sh rnn-location", ASR_RNN,
        _asr_metric(""),
    )]  # fmt: skip
    if d["mode"] != "ctc_greedy":
        rows.append(("the same run decoded with CTC greedy", "same run", ASR_RNN,
                     _asr_metric("ctc_greedy_")))  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- standard

STANDARD = "results/compare/standard"


def standard_budgets() -> str:
    """The `profile=standard` budgets and the calibration curves' figures behind them
    (benchmarks/standard_budget.py)."""
    rows = _csv(f"{STANDARD}/calibration/calibration.csv")
    head = ["recipe", "validation metric (runs)", "full default budget", "value there",
            "standard budget", "value there (share of quality)", "read from",
            "train s: standard / full"]  # fmt: skip
    body = []
    for r in rows:
        unit, n = r["unit"], int(r["budget"])
        metric = f"`{r['monitor']}`" + (" (quality = 1 − WER)" if r["quality"] != "value" else "")
        body.append([
            r["recipe"], f"{metric}, `{r['attention']}` ({r['runs']})",
            f"{r['full_budget']} {unit} ({int(r['full_steps']):,} steps)",
            _standard_value(float(r["full_value"])),
            f"**{n} {unit[:-1] if n == 1 else unit}** ({int(r['budget_steps']):,} steps)",
            f"{_standard_value(float(r['budget_value']))} "
            f"({100 * float(r['fraction_of_full']):.1f} %)", r["budget_source"],
            f"{float(r['budget_elapsed_s']):,.0f} / {float(r['full_train_s']):,.0f}",
        ])  # fmt: skip
    return "\n".join(_md(head, body, right=3))


def _standard_value(v: float) -> str:
    return f"{v:.2f}" if v >= 10 else f"{v:.4f}"


def _groups(path: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for r in _csv(path):
        out.setdefault(r["attention"], []).append(r)
    return out


def _delta(r: dict[str, str]) -> str:
    if r["significance_note"] == "reference":
        return "reference"
    p = float(r["p_value"])
    text = (f"{100 * float(r['diff_vs_reference']):+.1f} ({100 * float(r['diff_ci95_low']):+.1f}"
            f" … {100 * float(r['diff_ci95_high']):+.1f}), p = "
            f"{f'{p:.3f}' if p >= 0.001 else f'{p:.1e}'}")  # fmt: skip
    return f"**{text}**" if r["significant"] == "True" else text


def _minutes(text: str) -> float:
    """``h:mm:ss`` or ``m:ss(.ss)`` of /usr/bin/time -v -> minutes."""
    parts = [float(x) for x in text.split(":")]
    seconds = sum(v * 60**i for i, v in enumerate(reversed(parts)))
    return seconds / 60


def standard_grid() -> dict[str, float]:
    """Wall-clock, CPU time and load of the demonstration grid (its time.txt, loadavg.log)."""
    import statistics

    lines = (ROOT / STANDARD / "time.txt").read_text(encoding="utf-8").splitlines()
    info = dict(line.strip().rsplit(": ", 1) for line in lines if ": " in line)
    loads = [float(line.split()[1]) for line in
             (ROOT / STANDARD / "loadavg.log").read_text(encoding="utf-8").splitlines()
             if line.strip()]  # fmt: skip
    return {
        "wall_min": _minutes(info["Elapsed (wall clock) time (h:mm:ss or m:ss)"]),
        "cpu_min": (float(info["User time (seconds)"]) + float(info["System time (seconds)"]))
        / 60,
        "load_median": statistics.median(loads), "load_min": min(loads),
        "load_max": max(loads),
    }  # fmt: skip


def standard_sentiment() -> str:
    """The demonstration: sentiment at `profile=standard`, additive / multihead / uniform,
    five seeds each; both reports' results.csv (against multihead and against uniform)."""
    vs_mh = _groups(f"{STANDARD}/report/results.csv")
    vs_u = _groups(f"{STANDARD}/report-vs-uniform/results.csv")
    head = ["attention", "seeds", "test accuracy %: mean", "95 % interval over seeds",
            "Δ vs `multihead` (95 % interval), p", "Δ vs `uniform` (95 % interval), p",
            "attention / random AOPC (erasure), mean [95 % over seeds]",
            "train s per run", "run wall s"]  # fmt: skip
    body = []
    for kind in ("additive", "multihead", "uniform"):
        runs = vs_mh[kind]
        r = runs[0]
        ok = [x for x in runs if x["status"] in ("ok", "reused")]
        train = statistics_mean([float(x["train_s"]) for x in ok])
        wall = statistics_mean([_wall(x["run_dir"]) for x in ok])
        body.append([
            f"`{kind}`", f"{r['primary_seeds']}/{len(runs)}",
            f"{100 * float(r['primary_mean']):.1f}",
            f"{100 * float(r['primary_ci95_low']):.1f} – {100 * float(r['primary_ci95_high']):.1f}",
            _delta(r), _delta(vs_u[kind][0]), _faithfulness(ok), f"{train:.0f}", f"{wall:.0f}",
        ])  # fmt: skip
    g, n = standard_grid(), sum(map(len, vs_mh.values()))
    lines = _md(head, body, right=2)
    lines += [
        "",
        f"Δ: accuracy points, paired bootstrap over the {_test_size(vs_mh)} test sentences "
        "(1,000 resamples, the same seeds paired); bold: significant at 0.05. The grid "
        f"({n} runs, two at a time with one thread each) took {g['wall_min']:.1f} min "
        f"wall-clock and {g['cpu_min']:.1f} min of CPU time; load average {g['load_min']:.1f}–"
        f"{g['load_max']:.1f} (median {g['load_median']:.1f}) on the 2 cores while it ran. "
        "Erasure: `python -m toolkit.interpret` on each run's kept checkpoint (200 test "
        "sentences, k = 1, 2, 4; `profile=standard` runs it after every run): the fall of the "
        "predicted class's probability when the k tokens attention weights most are masked, "
        "over the fall for k random tokens; above 1, attention points at what the prediction "
        "depends on.",
    ]
    return "\n".join(lines)


def _faithfulness(runs: list[dict[str, str]]) -> str:
    """The runs' erasure ratios (attention / random AOPC, results.csv) combined as the
    report combines them: one run's value and interval, several runs' mean and Student-t
    interval (toolkit.report.tables.combine_ratios)."""
    from toolkit.report.tables import Ratio, combine_ratios

    col = "faithfulness_attention_ratio"
    got = combine_ratios([
        Ratio(float(x[col]), float(x[f"{col}_low"]) if x.get(f"{col}_low") else None,
              float(x[f"{col}_high"]) if x.get(f"{col}_high") else None)
        for x in runs if x.get(col)
    ])  # fmt: skip
    if got is None:
        return "not measured"
    interval = f" [{got.low:.2f}, {got.high:.2f}]" if got.has_interval else ""
    return f"{got.value:.2f}{interval} ({got.runs} run{'s' if got.runs > 1 else ''})"


LONG = "results/compare/long"


def long_sentiment() -> str:
    """`setting=long` on sentiment (joined documents, Transformer encoder): quality, cost and
    memory per type side by side (results/compare/long/report/long/results.csv)."""
    rows = [r for r in _csv(f"{LONG}/report/long/results.csv") if r["recipe"] == "sentiment"]
    first = _json(f"{rows[0]['run_dir']}/metrics.json")
    lengths = first["data"]["long_inputs"]
    head = ["attention", "test accuracy %", "train samples/s", "train s", "peak memory MiB",
            "test ms/document", "parameters"]  # fmt: skip
    body = [[f"`{r['attention']}`", f"{100 * float(r['accuracy']):.1f}",
             f"{float(r['train_samples_per_s']):.2f}", f"{float(r['train_s']):,.0f}",
             f"{float(r['peak_rss_mib']):,.0f}", f"{float(r['test_ms_per_sample']):.1f}",
             f"{int(float(r['params'])):,}"] for r in rows]  # fmt: skip
    split = {k: lengths[k] for k in ("train", "test")}
    lines = _md(head, body, right=1)
    lines += [
        "",
        f"Documents of >= {lengths['join_min_tokens']:,} tokens: {split['train']['items']} "
        f"training documents, {split['test']['items']} test documents of "
        f"{split['test']['min']:,}–{split['test']['max']:,} tokens (median "
        f"{split['test']['median']:,}); `profile=quick` budget "
        f"({_budget(first)}), one seed, fp32, one run at a "
        "time on one thread.",
    ]
    return "\n".join(lines)


def statistics_mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _wall(run_dir: str) -> float:
    return float(json.loads((ROOT / run_dir / "compare.json").read_text())["wall_seconds"])


def _test_size(groups: dict[str, list[dict[str, str]]]) -> str:
    from toolkit.runs import read_per_example

    run = next(iter(groups.values()))[0]["run_dir"]
    _, examples = read_per_example(ROOT / run)
    return f"{len(examples):,}"


# ----------------------------------------------------------------------------- registry


# ----------------------------------------------------------------------------- GPU

GPU = "benchmarks/results/gpu"
GPU_TYPES = ("sdpa", "scaled_dot", "sdpa_masked", "local", "longformer", "linear", "multihead",
             "torch_mha", "naive", "additive")  # fmt: skip


def gpu_summary() -> str:
    """`benchmarks/gpu.sh` on a CUDA card: one epoch per recipe and the bf16 attention rows."""
    card = (ROOT / GPU / "gpu.txt").read_text(encoding="utf-8").strip()
    lines = [f"Card: {card} (`nvidia-smi`: name, memory, driver).", ""]
    rows = []
    for r in _csv(f"{GPU}/recipes.csv"):
        if r["status"] != "ok":
            rows.append([r["recipe"], r["status"]] + [""] * 6)
            continue
        rows.append([r["recipe"], r["model"], r["precision"], f"{int(r['train_examples']):,}",
                     r["steps"], f"{float(r['train_seconds']):.1f}",
                     f"{float(r['train_samples_per_s']):,.0f}", f"{float(r['gpu_peak_mib']):,.0f}",
                     f"{r['metric']} {r['value']}"])  # fmt: skip
    head = ["recipe", "model", "precision", "train examples", "steps", "train s", "samples/s",
            "GPU peak MiB", "test metric after 1 epoch"]  # fmt: skip
    lines += _md(head, rows, right=3)
    cases = {(c["attention"], int(c["seq_len"]), c["pass"]): c for c in
             _csv(f"{GPU}/attention/attention.csv")}  # fmt: skip
    lengths = sorted({k[1] for k in cases})

    def cell(name: str, n: int, pass_: str, key: str = "ms_median") -> str:
        c = cases.get((name, n, pass_))
        return "—" if c is None else f"{float(c[key]):,.2f}" if key == "ms_median" else (
            f"{float(c[key]):,.0f}")  # fmt: skip

    head = ["type"] + [f"{p} ms, T={n}" for p in ("fwd", "fwd_bwd") for n in lengths]
    head.append(f"fwd_bwd MiB, T={lengths[-1]}")
    rows = [[f"`{t}`"] + [cell(t, n, p) for p in ("fwd", "fwd_bwd") for n in lengths]
            + [cell(t, lengths[-1], "fwd_bwd", "peak_mib")] for t in GPU_TYPES]  # fmt: skip
    lines += ["", "Attention benchmark in bf16 (B 1, 8 heads, head dim 64, self-attention; "
              "`local`/`longformer` window 256; — = not finished before the run's time limit):",
              ""] + _md(head, rows)  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CPU kernels

BENCH = "benchmarks/results"


def _cases(path: str) -> dict[tuple[str, int, str], dict[str, float]]:
    return {
        (r["attention"], int(r["seq_len"]), r["pass"]): {
            "ms": float(r["ms_median"]), "mib": float(r["peak_mib"])}
        for r in _csv(path) if r["ms_median"]
    }  # fmt: skip


def cpu_kernels() -> str:
    """The efficient-kernel targets against the fused references, from the committed runs:
    ``local/local.csv`` (T 4096, 8192), ``local/dispatch/attention.csv`` (T 1024, 2048, with
    the current dispatch), ``additive/additive_speedup.csv`` and ``additive/memory/``."""
    wide = _cases(f"{BENCH}/local/local.csv")
    near = _cases(f"{BENCH}/local/dispatch/attention.csv")
    rows = []
    for n in (1024, 2048, 4096, 8192):
        src = near if (("local", n, "fwd") in near) else wide
        cells = []
        for p in ("fwd", "fwd_bwd"):
            a, b = src[("local", n, p)], src[("sdpa_masked", n, p)]
            cells.append(f"{a['ms']:,.1f} vs {b['ms']:,.1f} ms ({a['ms'] / b['ms']:.2f}×)")
        rows.append([f"`local` vs `sdpa_masked`, T = {n}"] + cells + [
            "met" if all(src[("local", n, p)]["ms"] <= src[("sdpa_masked", n, p)]["ms"]
                         for p in ("fwd", "fwd_bwd")) else "**missed**"])  # fmt: skip
    cells, ok = [], True
    for p in ("fwd", "fwd_bwd"):
        a, b = wide[("local", 8192, p)], wide[("sdpa", 8192, p)]
        speed, mem = b["ms"] / a["ms"], a["mib"] / b["mib"]
        ok &= speed >= 5 and mem <= 2
        cells.append(f"{a['ms']:,.0f} vs {b['ms']:,.0f} ms (**{speed:.1f}× faster**); "
                     f"{a['mib']:.0f} vs {b['mib']:.0f} MiB ({mem:.2f}×)")  # fmt: skip
    rows.append(["`local` vs `sdpa` at 8192: ≥ 5× faster, memory ≤ 2×"] + cells
                + ["met" if ok else "**missed**"])  # fmt: skip
    speed = {
        (int(r["seq_len"]), r["pass"]): r for r in _csv(f"{BENCH}/additive/additive_speedup.csv")
    }
    mem = _cases(f"{BENCH}/additive/memory/attention.csv")
    cells, ok = [], True
    for p in ("fwd", "fwd_bwd"):
        r = speed[(2048, p)]
        a, b = mem[("additive", 2048, p)], mem[("scaled_dot_eager", 2048, p)]
        ok &= float(r["speedup"]) >= 3 and a["mib"] <= 2 * b["mib"]
        cells.append(f"{float(r['ref_ms']):,.0f} → {float(r['new_ms']):,.0f} ms "
                     f"(**{float(r['speedup']):.1f}×**); {a['mib']:.0f} MiB "
                     f"({a['mib'] / b['mib']:.2f}× `scaled_dot` eager)")  # fmt: skip
    rows.append(["`additive` at 2048²: ≥ 3× faster than before, memory ≤ 2× eager dot"] + cells
                + ["met" if ok else "**missed**"])  # fmt: skip
    return "\n".join(_md(["target", "fwd", "fwd+bwd", ""], rows, right=1))


def peers() -> str:
    """Our recipe models against other libraries at equal maths (``benchmarks/peers.py``)."""
    rows = []
    for r in _csv(f"{BENCH}/peers/peers.csv"):
        if r["side"] != "peer":
            continue
        if r["status"] != "measured":
            rows.append([r["pair"], f"`{r['case']}`", r["package"], "", "", "", "", r["status"]])
            continue
        ours = next(o for o in _csv(f"{BENCH}/peers/peers.csv")
                    if o["pair"] == r["pair"] and o["side"] == "ours")  # fmt: skip
        rows.append([
            r["pair"], f"`{r['case']}`", f"{r['package']} {r['version']}",
            f"{int(ours['params']):,} / {int(r['params']):,}",
            f"{float(ours['ms_median']):,.0f} vs {float(r['ms_median']):,.0f}",
            f"**{float(r['time_ratio']):.2f}×**",
            f"{float(ours['peak_mib']):,.0f} vs {float(r['peak_mib']):,.0f} "
            f"({float(r['mem_ratio']):.2f}×)",
            "met (≤ 1.1×)" if float(r["time_ratio"]) <= 1.1 else "**missed** (> 1.1×)",
        ])  # fmt: skip
    head = ["pair", "peer", "package", "parameters, ours / peer", "step ms, ours vs peer",
            "ours/peer time", "peak MiB, ours vs peer", "target"]  # fmt: skip
    return "\n".join(_md(head, rows, right=3))


def speed_defaults() -> str:
    """fp32 / bf16-mixed × eager / compile per recipe, the speed pass of
    ``benchmarks/speed_defaults.py`` (benchmarks/results/speed_defaults/speed_defaults.csv)."""
    rows = _csv("benchmarks/results/speed_defaults/speed_defaults.csv")
    head = ["recipe", "setting", "ran compiled", "steps/s (median step)",
            "× fp32 eager", "first step s (incl. compile)", "steps/s incl. compile (35 steps)",
            "train loss, last 5 steps", "status"]  # fmt: skip
    base = {r["recipe"]: float(r["steps_per_s"]) for r in rows
            if r["setting"] == "fp32-eager" and r["steps_per_s"]}  # fmt: skip
    body = []
    for r in rows:
        sps = float(r["steps_per_s"]) if r["steps_per_s"] else None
        ratio = f"{sps / base[r['recipe']]:.2f}×" if sps and r["recipe"] in base else "—"
        body.append([r["recipe"], r["setting"], "yes" if r["compiled"] == "True" else "no",
                     f"{sps:.2f}" if sps else "—", ratio,
                     f"{float(r['first_step_s']):.1f}" if r["first_step_s"] else "—",
                     f"{float(r['steps_per_s_with_compile']):.2f}"
                     if r["steps_per_s_with_compile"] else "—",
                     f"{float(r['train_loss']):.4f}" if r["train_loss"] else "—",
                     r["status"]])  # fmt: skip
    return "\n".join(_md(head, body, right=3))


def speed_defaults_quality() -> str:
    """The quality pass of ``benchmarks/speed_defaults.py --quality`` (three seeds, validation
    metric at equal steps) and the setting each recipe's defaults use
    (benchmarks/results/speed_defaults/quality/speed_defaults.csv)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed_defaults as sd

    rows = _csv(f"{BENCH}/speed_defaults/quality/speed_defaults.csv")
    agg = sd.aggregate(rows)
    body = []
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        base = agg[(recipe, sd.BASELINE)]
        chosen, _ = sd.recommend(agg, recipe)
        for setting in sd.SETTINGS:
            a = agg.get((recipe, setting))
            if a is None:
                continue
            noise = sd.within_noise(a, base)
            body.append([
                recipe, setting, f"{a['ok']}/{a['seeds']}", f"{a['steps_per_s']:.2f}",
                f"{a['steps_per_s'] / base['steps_per_s']:.2f}×", f"{a['first_step_s']:.1f}",
                f"{a['quality_metric']} {a['value']:.4f} ± {a['sd']:.4f}",
                f"{a['value'] - base['value']:+.4f}",
                "—" if setting == sd.BASELINE else ("yes" if noise else "**no**"),
                "**default**" if setting == chosen else "",
            ])  # fmt: skip
    head = ["recipe", "setting", "runs ok", "steps/s (median step, mean of seeds)",
            "× fp32 eager", "first step s (incl. compile)",
            "validation metric (mean ± seed sd)", "vs fp32 eager",
            "within 2 seed sd", "default on a native-bf16 CPU"]  # fmt: skip
    return "\n".join(_md(head, body, right=3))


def data_wait() -> str:
    """Waiting-for-data share and time to 90 % quality per recipe (``benchmarks/data_wait.py``):
    the main run (speech there with ``data.num_workers=1``) and speech with the default 0."""
    main = _csv(f"{BENCH}/data_wait/data_wait.csv")
    zero = _csv(f"{BENCH}/data_wait/asr-workers0/data_wait.csv")
    labelled = [(r, r["recipe"]) for r in main if r["recipe"] != "asr"]
    labelled += [(r, "asr (default: 0 workers)") for r in zero]
    labelled += [(r, "asr, `data.num_workers=1`") for r in main if r["recipe"] == "asr"]
    rows = [[name, r["steps"], f"{float(r['wait_s']):.2f}", f"{float(r['batch_s']):.1f}",
             f"{float(r['wait_s']) + float(r['batch_s']):.1f}",
             f"{100 * float(r['wait_share']):.1f} %",
             "met" if float(r["wait_share"]) <= 0.10 else "**missed**",
             r["budget_to_90pct"], f"{float(r['train_s_to_90pct']):,.0f}"]
            for r, name in labelled]  # fmt: skip
    head = ["recipe", "steps", "waiting for data s", "training batches s", "total s",
            "waiting share", "≤ 10 %", "budget to 90 % quality", "train s to 90 %"]  # fmt: skip
    return "\n".join(_md(head, rows))


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "data-wait": ("README.md", data_wait),
    "peers": ("README.md", peers),
    "cpu-kernels": ("README.md", cpu_kernels),
    "gpu": ("README.md", gpu_summary),
    "standard-budgets": ("README.md", standard_budgets),
    "standard-sentiment": ("README.md", standard_sentiment),
    "long-sentiment": ("README.md", long_sentiment),
    "captioning-coverage": ("recipes/captioning/README.md", captioning_coverage),
    "speed-defaults": ("README.md", speed_defaults),
    "speed-defaults-quality": ("README.md", speed_defaults_quality),
    "sentiment-runs": ("recipes/sentiment/README.md", sentiment_runs),
    "translation-runs": ("recipes/translation/README.md", translation_runs),
    "captioning-runs": ("recipes/captioning/README.md", captioning_runs),
    "asr-runs": ("recipes/asr/README.md", asr_runs),
    "asr-summary": ("recipes/asr/README.md", asr_summary),
    "asr-wer": ("recipes/asr/README.md", asr_wer),
    "asr-ctc-wer": ("recipes/asr/README.md", asr_ctc_wer),
    "asr-decode-sweep": ("recipes/asr/README.md", asr_decode_sweep),
    "asr-rnn-decode-sweep": ("recipes/asr/README.md", asr_rnn_decode_sweep),
    "asr-rnn-clean": ("recipes/asr/README.md", asr_rnn_clean),
    "asr-sentences": ("recipes/asr/README.md", asr_sentences),
    "translation-summary": ("recipes/translation/README.md", translation_summary),
    "translation-rnn": ("recipes/translation/README.md", translation_rnn),
    "captioning-summary": ("recipes/captioning/README.md", captioning_summary),
    "sentiment-types": ("recipes/sentiment/README.md", sentiment_types),
    "sentiment-seeds": ("recipes/sentiment/README.md", sentiment_seeds),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- results:{name}:end -->"


def replace_block(text: str, name: str, block: str, where: str = "README") -> str:
    start, end = markers(name)
    head, found, rest = text.partition(start)
    body, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise SystemExit(f"{where}: no {start} ... {end} block")
    return f"{head}{start}\n{block}\n{end}{tail}"


def rendered(readme: str) -> str:
    """``readme``'s text with every block of it regenerated."""
    text = (ROOT / readme).read_text(encoding="utf-8")
    for name, (path, render) in BLOCKS.items():
        if path == readme:
            text = replace_block(text, name, render(), readme)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for readme in sorted({path for path, _ in BLOCKS.values()}):
        new = rendered(readme)
        if args.write:
            (ROOT / readme).write_text(new, encoding="utf-8")
        elif args.check and new != (ROOT / readme).read_text(encoding="utf-8"):
            stale.append(readme)
    if not args.write and not args.check:
        for name, (path, render) in BLOCKS.items():
            print(f"## {name} ({path})\n{render()}\n")
    if stale:
        print(f"result tables differ from the committed files in {', '.join(stale)}; run "
              "python benchmarks/readme_tables.py --write", file=sys.stderr)  # fmt: skip
        raise SystemExit(1)


if __name__ == "__main__":
    main()
