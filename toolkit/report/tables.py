"""Stage 2 of the report: aggregate the collected rows into tables and numbers.

Per recipe: mean ± std over seeds of every metric, diagnostic and cost; the primary metric's
mean and 95 % Student-t interval over seeds, and a paired bootstrap over test examples of each
attention type against a reference type (``significance.reference``, default ``multihead``)
read from the runs' ``per_example.jsonl.gz`` (toolkit/metrics/significance.py: same seeds
paired, per-seed differences averaged). Learning curves: the validation metric of the CSV
logs, mean and std over seeds per logged step, against steps and against the logged
``time/elapsed_s``. The cross-modal view: attention types × recipes, each cell the primary
metric's mean and interval, marked where the bootstrap against the reference is
significant, beside efficiency ratios, each modality's attention diagnostics and the
erasure faithfulness ratio. Faithfulness: per group, the runs' ``interpretability`` entries
(``python -m toolkit.interpret``), the attention / random AOPC ratio of one run with its
bootstrap interval, of several the mean and Student-t interval over the runs.

Imports the collect stage only; nothing here writes files (render does).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.metrics.repetition import degenerate
from toolkit.metrics.significance import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    BootstrapResult,
    SeedInterval,
    compare_per_example,
    seed_interval,
)
from toolkit.report.collect import (
    ELAPSED_COLUMN,
    Row,
    fill_models,
    group_rows,
    per_example,
    sample_outputs,
)
from toolkit.report.collect import sort_key as _sort_key
from toolkit.report.spec import RecipeReport

DIAGNOSTIC_PREFIX = "attention_"
# columns of every row after the recipe's own metrics and diagnostics
COST_COLUMNS = {
    "train_s": "train s",
    "train_samples_per_s": "train samples/s",
    "test_ms_per_sample": "test ms/sample",
    "peak_rss_mib": "peak RSS MiB",
    "params": "params",
}


# ----- tables -------------------------------------------------------------------------------
def diagnostics_of(spec: RecipeReport, rows: Sequence[Row]) -> list[str]:
    if spec.diagnostics is not None:
        return list(spec.diagnostics)
    keys = {k for r in rows for k in r.metrics if k.startswith(DIAGNOSTIC_PREFIX)}
    return sorted(keys)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def fmt_like(v: float, like: float) -> str:
    """``v`` with the decimals :func:`fmt` gives ``like`` (an interval's ends like its mean)."""
    if abs(like) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(like) >= 10 else f"{v:.4f}"


def fmt_mean_std(values: Sequence[float]) -> str:
    if not values:
        return "missing"
    mean, std = mean_std(values)
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in self.rows]
        return "\n".join(lines)


def run_table(spec: RecipeReport, rows: Sequence[Row]) -> Table:
    """One row per run: task metrics, diagnostics, costs; a run that did not finish shows
    its status and empty cells."""
    rows = fill_models(rows)
    diags = diagnostics_of(spec, rows)
    header = ["model", "budget", "attention", "seed", "status", "trained", *spec.metrics,
              *diags, *COST_COLUMNS.values()]  # fmt: skip
    out = []
    for r in sorted(rows, key=_sort_key):
        out.append(
            [
                r.model or "—",
                r.budget or "—",
                r.attention,
                str(r.seed),
                r.status,
                r.trained or "—",
                *[r.metrics.get(k) for k in (*spec.metrics, *diags)],
                *[r.costs.get(k) for k in COST_COLUMNS],
            ]
        )
    return Table(header, out)


def summary_table(spec: RecipeReport, rows: Sequence[Row]) -> Table:
    """Mean ± std over seeds per (model, attention); ``runs`` = finished / planned."""
    diags = diagnostics_of(spec, rows)
    keys = [*spec.metrics, *diags, *COST_COLUMNS]
    header = ["model", "budget", "attention", "runs", *spec.metrics, *diags,
              *COST_COLUMNS.values()]  # fmt: skip
    out = []
    for (_, _, attention), members in group_rows(rows).items():
        done = [r for r in members if r.ok]
        model, budget = members[0].model, members[0].budget
        cells = []
        for k in keys:
            vals = [
                float(v)
                for r in done
                if (v := (r.metrics.get(k) if k not in COST_COLUMNS else r.costs.get(k)))
                is not None
            ]
            cells.append(fmt_mean_std(vals) if vals or not done else "—")
        out.append([model or "—", budget or "—", attention, f"{len(done)}/{len(members)}", *cells])
    return Table(header, out)


def summary_values(spec: RecipeReport, rows: Sequence[Row], key: str) -> dict[tuple, list[float]]:
    out = {}
    for gk, members in group_rows(rows).items():
        vals = []
        for r in members:
            if not r.ok:
                continue
            v = r.metrics.get(key) if key not in COST_COLUMNS else r.costs.get(key)
            if v is not None:
                vals.append(float(v))
        out[gk] = vals
    return out


# ----- seeds and significance --------------------------------------------------------------
@dataclass
class Significance:
    """How the report tests differences (``significance:`` in conf/compare.yaml)."""

    reference: str = "multihead"  # every other attention type is compared with this one
    alpha: float = 0.05  # significance level of the sentences
    resamples: int = DEFAULT_RESAMPLES  # paired-bootstrap resamples of the test examples
    seed: int = DEFAULT_SEED  # seeds the resampling (the report is deterministic)

    @classmethod
    def from_config(cls, cfg: Any) -> Significance:
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"reference", "alpha", "resamples", "seed"})
        if unknown:
            raise ValueError(f"significance: unknown keys {unknown}; valid: reference, alpha, "
                             "resamples, seed")  # fmt: skip
        out = cls(**{k: v for k, v in cfg.items() if v is not None})
        if not 0 < float(out.alpha) < 1:
            raise ValueError(f"significance.alpha={out.alpha}: expected a level in (0, 1)")
        return out


@dataclass
class Comparison:
    """One attention type against the reference type on one recipe's primary metric."""

    attention: str
    reference: str
    metric: str
    higher_is_better: bool
    alpha: float
    result: BootstrapResult | None = None
    seeds: list[Any] = field(default_factory=list)
    note: str = ""  # why there is no result, or which seeds were left out

    def sentence(self) -> str:
        """Plain words: the difference, its interval, p, and whether it is significant."""
        head = f"`{self.attention}` vs `{self.reference}` on `{self.metric}`"
        r = self.result
        if r is None or not math.isfinite(r.p_value):
            return f"{head}: no significance test — {self.note or 'no result'}."
        seeds = (
            "one seed" if r.seeds == 1 else f"{r.seeds} seeds paired, their differences averaged"
        )
        text = (
            f"{head}: difference {_signed(r.difference)} (95 % interval {_signed(r.low)} to "
            f"{_signed(r.high)}; paired bootstrap over {r.examples:,} test examples, "
            f"{r.resamples:,} resamples, {seeds}), p = {_p(r.p_value)}: "
        )
        if r.significant(self.alpha):
            better = (r.difference > 0) == self.higher_is_better
            text += (f"significant at the {self.alpha:g} level — `{self.attention}` is "
                     f"{'better' if better else 'worse'} than `{self.reference}`.")  # fmt: skip
        else:
            text += (f"not significant at the {self.alpha:g} level — this test set does not "
                     "tell the two apart.")  # fmt: skip
        if self.note:
            text += f" ({self.note})"
        return text


def _signed(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return ("-" if v < 0 else "+") + fmt(abs(float(v)))


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


@dataclass
class GroupStats:
    """The primary metric of one (recipe, setting, attention) group over its seeds, and its
    comparison with the reference type (None for the reference itself)."""

    metric: str
    interval: SeedInterval | None
    comparison: Comparison | None = None
    is_reference: bool = False


def compare_groups(
    spec: RecipeReport, ref: list[Row], mine: list[Row], attention: str, sig: Significance,
    cache: dict[str, Any],
) -> Comparison:  # fmt: skip
    """Pair ``mine`` with the reference runs of the same seeds and bootstrap the primary."""
    comp = Comparison(attention, sig.reference, spec.primary, spec.higher_is_better, sig.alpha)
    ref_by_seed = {str(r.seed): r for r in ref if r.ok}
    pairs, skipped = [], []
    for r in mine:
        other = ref_by_seed.get(str(r.seed)) if r.ok else None
        if other is None:
            continue
        files = []
        for run in (other, r):
            got = per_example(run.run_dir, cache)
            if got is None:
                skipped.append(f"seed {r.seed}: no per-example file in {run.run_dir} "
                               "(an older run)")  # fmt: skip
            elif isinstance(got, Exception):
                skipped.append(f"seed {r.seed}: {got}")
            files.append(got)
        if all(isinstance(f, tuple) for f in files):
            pairs.append((files[0], files[1]))
            comp.seeds.append(r.seed)
    if not pairs:
        comp.note = (
            "; ".join(skipped) or f"no seed finished with both `{attention}` and `{sig.reference}`"
        )
        return comp
    try:
        comp.result = compare_per_example(pairs, spec.primary, sig.resamples, sig.seed)
    except ValueError as err:
        comp.note = str(err)
        comp.seeds = []
        return comp
    if skipped:
        comp.note = "left out: " + "; ".join(skipped)
    return comp


def analyse(
    spec: RecipeReport, rows: Sequence[Row], sig: Significance | None = None
) -> dict[tuple[str, str, str], GroupStats]:
    """Per (recipe, setting, attention) group: the primary metric's mean and Student-t
    interval over seeds, and the paired bootstrap against the reference type of the same
    setting (model and budget)."""
    sig = sig or Significance()
    groups = group_rows(rows)
    cache: dict[str, Any] = {}
    out = {}
    for key, members in groups.items():
        recipe, setting, attention = key
        vals = [r.metrics[spec.primary] for r in members if r.ok and spec.primary in r.metrics]
        stats = GroupStats(spec.primary, seed_interval(vals) if vals else None)
        if attention == sig.reference:
            stats.is_reference = True
        else:
            ref = groups.get((recipe, setting, sig.reference))
            if ref is None:
                stats.comparison = Comparison(
                    attention, sig.reference, spec.primary, spec.higher_is_better, sig.alpha,
                    note=f"no `{sig.reference}` run of the same model and budget in this report",
                )  # fmt: skip
            else:
                stats.comparison = compare_groups(spec, ref, members, attention, sig, cache)
        out[key] = stats
    return out


def analyse_all(
    rows: Sequence[Row], specs: dict[str, RecipeReport], sig: Significance | None = None
) -> dict[tuple[str, str, str], GroupStats]:
    out: dict[tuple[str, str, str], GroupStats] = {}
    for name in sorted(specs):
        out.update(analyse(specs[name], [r for r in rows if r.recipe == name], sig))
    return out


def significance_table(
    spec: RecipeReport, rows: Sequence[Row], stats: dict[tuple[str, str, str], GroupStats],
    sig: Significance,
) -> Table:  # fmt: skip
    """Per (model, attention): seeds, mean and 95 % t-interval of the primary metric, and the
    bootstrap difference to the reference with its interval and p-value."""
    m = spec.primary
    header = ["model", "budget", "attention", "seeds", f"{m} mean", "95 % interval (seeds)",
              f"Δ vs {sig.reference}", "95 % interval (bootstrap)", "p"]  # fmt: skip
    out = []
    for key, members in group_rows(rows).items():
        st = stats.get(key)
        if st is None:
            continue
        iv, comp = st.interval, st.comparison
        if iv is None:
            seeds, mean, ci = "0", None, "missing"
        else:
            seeds, mean = str(iv.n), iv.mean
            ci = "— (1 seed)" if iv.low is None else f"{fmt(iv.low)} to {fmt(iv.high)}"
        r = comp.result if comp else None
        if st.is_reference:
            delta, dci, p = "reference", "—", "—"
        elif r is None or not math.isfinite(r.p_value):
            delta, dci, p = "—", "no test (see below)", "—"
        else:
            delta, dci, p = (
                _signed(r.difference),
                f"{_signed(r.low)} to {_signed(r.high)}",
                _p(r.p_value),
            )
        out.append([members[0].model or "—", members[0].budget or "—", key[2], seeds, mean, ci,
                    delta, dci, p])  # fmt: skip
    return Table(header, out)


def significance_sentences(stats: dict[tuple[str, str, str], GroupStats], recipe: str) -> list[str]:
    return [st.comparison.sentence() for key, st in stats.items()
            if key[0] == recipe and st.comparison is not None]  # fmt: skip


def sample_groups(rows: Sequence[Row]) -> list[Row]:
    """The first finished run with samples of each (model, attention)."""
    out = []
    for members in group_rows([r for r in rows if r.ok]).values():
        first = next((r for r in members if r.samples), None)
        if first is not None:
            out.append(first)
    return out


def health_line(row: Row) -> str:
    """``"5 outputs shown: 0 empty, 0 looping"`` for a run's samples."""
    d = degenerate(sample_outputs(row.samples))
    return f"{d['outputs']} outputs shown: {d['empty']} empty, {d['looping']} looping"


# ----- learning curves --------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePoint:
    """One logged step of a validation curve over the seeds that logged it: the metric's
    mean and sample std (None for one seed), and the mean of the seeds' logged
    ``time/elapsed_s`` at that step (None where no seed logged it)."""

    step: float
    mean: float
    std: float | None
    n: int
    seconds: float | None = None


@dataclass
class Curve:
    """The validation curve of one (recipe, setting, attention) group."""

    recipe: str
    setting: str
    attention: str
    metric: str
    seeds: int  # finished runs whose log has the metric
    points: list[CurvePoint] = field(default_factory=list)

    @property
    def has_seconds(self) -> bool:
        return any(p.seconds is not None for p in self.points)


def run_curve(row: Row, metric: str) -> dict[float, tuple[float, float | None]]:
    """``{step: (value, elapsed seconds or None)}`` of one run's log; a step logged twice
    (a resumed run) keeps its last row."""
    out: dict[float, tuple[float, float | None]] = {}
    for cells in row.curve:
        if metric in cells and "step" in cells:
            out[cells["step"]] = (cells[metric], cells.get(ELAPSED_COLUMN))
    return out


def learning_curves(spec: RecipeReport, rows: Sequence[Row]) -> list[Curve]:
    """Per (recipe, setting, attention) group with a CSV log: the recipe's validation metric
    (``recipe.monitor``) averaged over the seeds at each logged step."""
    metric = spec.curve_metric
    out = []
    for (recipe, setting, attention), members in group_rows(rows).items():
        logs = [c for r in members if r.ok and (c := run_curve(r, metric))]
        if not logs:
            continue
        curve = Curve(recipe, setting, attention, metric, seeds=len(logs))
        for step in sorted({s for log in logs for s in log}):
            values = [log[step][0] for log in logs if step in log]
            seconds = [t for log in logs if step in log and (t := log[step][1]) is not None]
            mean, std = mean_std(values)
            curve.points.append(
                CurvePoint(step, mean, std, len(values),
                           statistics.fmean(seconds) if seconds else None)
            )  # fmt: skip
        out.append(curve)
    return out


def _fmt_steps(steps: Sequence[float]) -> str:
    """Whole steps: ``"600"`` when the seeds agree, else ``"590 ± 14"``; ``"—"`` for none."""
    if not steps:
        return "—"
    mean, std = mean_std(steps)
    return f"{mean:,.0f}" if not std else f"{mean:,.0f} ± {std:,.0f}"


def budget_table(spec: RecipeReport, rows: Sequence[Row]) -> Table:
    """The training budget each type used, in both units: optimiser steps (metrics.json
    ``budget.steps``) and train seconds (``train_seconds``), mean ± std over seeds."""
    header = ["model", "budget", "attention", "runs", "optimiser steps", "train s"]
    out = []
    for (_, _, attention), members in group_rows(rows).items():
        done = [r for r in members if r.ok]
        steps = [float(r.steps) for r in done if r.steps is not None]
        seconds = [float(r.costs["train_s"]) for r in done if r.costs.get("train_s") is not None]
        out.append([members[0].model or "—", members[0].budget or "—", attention,
                    f"{len(done)}/{len(members)}", _fmt_steps(steps),
                    fmt_mean_std(seconds) if seconds else "—"])  # fmt: skip
    return Table(header, out)


# ----- faithfulness (erasure) ---------------------------------------------------------------
# the rankings of metrics.json `interpretability.aopc_ratio_to_random` (python -m
# toolkit.interpret), each divided by the random control's AOPC
FAITHFULNESS_METHODS = ("attention", "saliency", "attention_rollout")
FAITHFULNESS_CAPTION = (
    "The erasure test of `python -m toolkit.interpret`: removing the `k` inputs a ranking "
    "puts first, the fall of the model's output (AOPC) divided by that of removing `k` random "
    "inputs; above 1, the ranking finds inputs the output depends on. One measured run: its "
    "ratio and 95 % bootstrap interval over test examples; several: the mean of the runs' "
    "ratios and the 95 % Student-t interval over those runs (seeds). `measured`: runs with "
    "an `interpretability` entry / finished runs; `examples`: test items per run."
)


@dataclass(frozen=True)
class Ratio:
    """An AOPC ratio to random: one run's value and bootstrap interval, or (``runs`` > 1)
    the mean of the runs' values and the Student-t interval over them; ``low``/``high``
    None where there is no interval."""

    value: float
    low: float | None
    high: float | None
    runs: int = 1

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def interval_text(self) -> str:
        return f"{fmt(self.low)} to {fmt(self.high)}" if self.has_interval else "—"

    def text(self) -> str:
        """``1.8500 [1.4000, 2.3000]`` (``(3 runs)`` added for several)."""
        body = fmt(self.value) + (f" [{fmt(self.low)}, {fmt(self.high)}]"
                                  if self.has_interval else " (no interval)")  # fmt: skip
        return body + (f" ({self.runs} runs)" if self.runs > 1 else "")


def run_ratio(row: Row, method: str) -> Ratio | None:
    """One run's ``aopc_ratio_to_random.<method>``; None when not measured."""
    got = ((row.interpretability or {}).get("aopc_ratio_to_random") or {}).get(method)
    if not isinstance(got, dict) or got.get("value") is None:
        return None
    ci = got.get("ci95")
    low, high = (
        (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else (None, None)
    )
    return Ratio(float(got["value"]), low, high)


def combine_ratios(ratios: Sequence[Ratio]) -> Ratio | None:
    """One run's ratio as it is; several runs' as their mean and Student-t interval."""
    if len(ratios) <= 1:
        return ratios[0] if ratios else None
    iv = seed_interval([r.value for r in ratios])
    return Ratio(iv.mean, iv.low, iv.high, iv.n)


@dataclass
class Faithfulness:
    """The erasure test of one (recipe, setting, attention) group's finished runs."""

    attention: str
    finished: int
    measured: int  # finished runs with an `interpretability` entry
    examples: list[int] = field(default_factory=list)
    ratios: dict[str, Ratio] = field(default_factory=dict)  # method -> combined ratio
    reasons: list[str] = field(default_factory=list)  # why an entry holds no ratio

    def examples_text(self) -> str:
        if not self.examples:
            return "—"
        low, high = min(self.examples), max(self.examples)
        return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"

    def sentence(self) -> str:
        """Whether removing attention-chosen inputs hurts more than random ones, in words."""
        head = f"`{self.attention}`"
        r = self.ratios.get("attention")
        if not self.measured:
            return f"{head}: not measured (no finished run has an `interpretability` entry)."
        if r is None:
            why = "; ".join(dict.fromkeys(self.reasons)) or "its entry has no attention ratio"
            return f"{head}: no attention / random ratio — {why}."
        what = f"attention / random AOPC {r.text()}"
        if not r.has_interval:
            return (
                f"{head}: {what}; without an interval it does not tell whether "
                "removing the inputs attention ranks first hurts more than random ones."
            )
        if r.low > 1:
            return (
                f"{head}: removing the inputs attention ranks first hurts the output more "
                f"than removing random ones ({what}, entirely above 1)."
            )
        if r.high < 1:
            return (
                f"{head}: removing the inputs attention ranks first hurts the output less "
                f"than removing random ones ({what}, entirely below 1)."
            )
        return (
            f"{head}: removing the inputs attention ranks first is not shown to hurt the "
            f"output more than removing random ones ({what} includes 1)."
        )


def group_faithfulness(attention: str, members: Sequence[Row]) -> Faithfulness:
    """The erasure entries of a group's finished runs, each ranking's ratios combined."""
    done = [r for r in members if r.ok]
    entries = [r.interpretability for r in done if r.interpretability is not None]
    out = Faithfulness(attention, len(done), len(entries))
    out.examples = [int(e["examples"]) for e in entries if isinstance(e.get("examples"), int)]
    for method in FAITHFULNESS_METHODS:
        got = combine_ratios([x for r in done if (x := run_ratio(r, method)) is not None])
        if got is not None:
            out.ratios[method] = got
    for e in entries:
        ratio = (e.get("aopc_ratio_to_random") or {}).get("attention") or {}
        out.reasons += [str(w) for w in (e.get("reason"), ratio.get("reason")) if w]
    return out


def faithfulness_table(rows: Sequence[Row]) -> Table:
    """Per (model, attention): runs measured, examples, the attention / random AOPC ratio
    and its interval, the saliency / random ratio ("not measured" / "—" without entries)."""
    header = ["model", "budget", "attention", "measured", "examples",
              "attention / random AOPC", "95 % interval", "saliency / random AOPC",
              "95 % interval (saliency)"]  # fmt: skip
    out = []
    for (_, _, attention), members in group_rows(rows).items():
        f = group_faithfulness(attention, members)
        att, sal = f.ratios.get("attention"), f.ratios.get("saliency")
        out.append([
            members[0].model or "—", members[0].budget or "—", attention,
            f"{f.measured}/{f.finished}", f.examples_text(),
            att.value if att else ("not measured" if not f.measured else "—"),
            att.interval_text() if att else "—",
            sal.value if sal else "—", sal.interval_text() if sal else "—",
        ])  # fmt: skip
    return Table(header, out)


def faithfulness_sentences(rows: Sequence[Row]) -> list[str]:
    return [group_faithfulness(attention, members).sentence()
            for (_, _, attention), members in group_rows(rows).items()]  # fmt: skip


# ----- the cross-modal view -----------------------------------------------------------------
# the attention diagnostics the cross-modal view shows per recipe, where its runs hold them:
# the first entropy key found, then each modality's own measure
ENTROPY_KEYS = ("attention_entropy", "attention_cross_entropy")
MODALITY_DIAGNOSTICS = (
    "attention_lexicon_lift",  # sentiment: pooling favours lexicon words
    "attention_monotonicity",  # translation: cross-attention peaks move forward
    "grounding",  # captioning: the peak lies in the named object's box
    "attention_ctc_in_span",  # speech: the peak lies in the token's CTC span
)
SHORT_NAMES = {
    "attention_entropy": "entropy",
    "attention_cross_entropy": "cross-attention entropy",
    "attention_lexicon_lift": "lexicon lift",
    "attention_monotonicity": "monotonicity",
    "grounding": "grounding",
    "attention_ctc_in_span": "CTC-span agreement",
}
# efficiency columns: a cost per run, shown as the type's ratio to the reference type
EFFICIENCY_COLUMNS = {
    "train_samples_per_s": "train samples/s",
    "peak_rss_mib": "peak memory",
    "test_ms_per_sample": "test ms/sample",
    "params": "params",
}


@dataclass(frozen=True)
class CrossCell:
    """One (attention, recipe) cell: the primary metric over seeds and its test."""

    interval: SeedInterval | None
    significant: bool = False  # the paired bootstrap against the reference, p < alpha
    tested: bool = False  # a bootstrap result exists

    def text(self) -> str:
        iv = self.interval
        if iv is None:
            return "missing"
        if iv.low is None or iv.high is None:
            body = f"{fmt_like(iv.mean, iv.mean)} (1 seed)"
        else:
            low, high = fmt_like(iv.low, iv.mean), fmt_like(iv.high, iv.mean)
            body = f"{fmt_like(iv.mean, iv.mean)} [{low}, {high}]"
        return body + ("*" if self.significant else "")


@dataclass
class CrossModal:
    """Attention types × recipes (one column per recipe and setting)."""

    reference: str
    alpha: float
    columns: list[tuple[str, str]]  # (recipe, setting)
    labels: list[str]  # column headers of the metric cells
    primaries: list[tuple[str, bool]]  # (metric, higher is better) per column
    attentions: list[str]
    cells: dict[tuple[str, int], CrossCell]
    # attention -> cost key -> (geometric mean of the ratio to the reference, recipes)
    efficiency: dict[str, dict[str, tuple[float, int]]]
    diagnostics: list[tuple[int, list[str]]]  # (column, keys) with diagnostics
    diagnostic_values: dict[tuple[str, int], dict[str, float]]
    # (attention, column) -> the attention / random AOPC ratio of the erasure test
    faithfulness: dict[tuple[str, int], Ratio] = field(default_factory=dict)

    @property
    def faithfulness_columns(self) -> list[int]:
        """The columns where some type has the erasure test."""
        return sorted({c for _, c in self.faithfulness})

    def diagnostic_label(self, col: int, keys: Sequence[str]) -> str:
        return f"{self.columns[col][0]}: " + " / ".join(SHORT_NAMES.get(k, k) for k in keys)

    def table(self) -> Table:
        header = ["attention", *self.labels]
        header += [f"{name} (× {self.reference})" for name in EFFICIENCY_COLUMNS.values()]
        header += [self.diagnostic_label(c, keys) for c, keys in self.diagnostics]
        faith = self.faithfulness_columns
        header += [f"{self.columns[c][0]}: attention / random AOPC" for c in faith]
        out = []
        for a in self.attentions:
            row: list[Any] = [f"{a} (reference)" if a == self.reference else a]
            row += [
                self.cells[(a, i)].text() if (a, i) in self.cells else "—"
                for i in range(len(self.columns))
            ]
            for cost in EFFICIENCY_COLUMNS:
                got = self.efficiency.get(a, {}).get(cost)
                row.append("—" if got is None else f"{got[0]:.2f}× ({got[1]})")
            for c, keys in self.diagnostics:
                vals = self.diagnostic_values.get((a, c), {})
                row.append(" / ".join(fmt(vals.get(k), 3) for k in keys) if vals else "—")
            row += [r.text() if (r := self.faithfulness.get((a, c))) else "—" for c in faith]
            out.append(row)
        return Table(header, out)


def _mean_of(members: Sequence[Row], key: str, cost: bool) -> float | None:
    vals = [
        float(v)
        for r in members
        if r.ok and (v := (r.costs.get(key) if cost else r.metrics.get(key))) is not None
    ]
    return statistics.fmean(vals) if vals else None


def cross_modal(
    rows: Sequence[Row], specs: dict[str, RecipeReport],
    stats: dict[tuple[str, str, str], GroupStats], sig: Significance,
) -> CrossModal:  # fmt: skip
    """The cross-modal view from the groups and their :func:`analyse` stats: a cell per
    (attention, recipe setting) with the primary metric's mean and 95 % seed interval,
    marked where the paired bootstrap against ``sig.reference`` is significant at
    ``sig.alpha``; per attention the geometric mean over recipes of its cost ratio to the
    reference (same recipe and setting); per recipe the entropy and modality diagnostics and,
    where runs were interpreted, the erasure test's attention / random AOPC ratio."""
    groups = group_rows([r for r in rows if r.recipe in specs])
    columns = list(dict.fromkeys((k[0], k[1]) for k, m in groups.items()
                                 if any(r.ok for r in m)))  # fmt: skip
    settings_of: dict[str, int] = {}
    for recipe, _ in columns:
        settings_of[recipe] = settings_of.get(recipe, 0) + 1
    labels, primaries = [], []
    for recipe, setting in columns:
        spec = specs[recipe]
        arrow = "↑" if spec.higher_is_better else "↓"
        extra = f" ({setting})" if settings_of[recipe] > 1 else ""
        labels.append(f"{recipe}{extra} {spec.primary} {arrow}")
        primaries.append((spec.primary, spec.higher_is_better))
    attentions = sorted({k[2] for k in groups}, key=lambda a: (a != sig.reference, a))
    cells: dict[tuple[str, int], CrossCell] = {}
    values: dict[tuple[str, int], dict[str, float]] = {}
    diagnostics: list[tuple[int, list[str]]] = []
    ratios: dict[str, dict[str, list[float]]] = {}
    faithfulness: dict[tuple[str, int], Ratio] = {}
    for i, (recipe, setting) in enumerate(columns):
        present = {k for (rc, st, _), m in groups.items() if (rc, st) == (recipe, setting)
                   for r in m if r.ok for k in r.metrics}  # fmt: skip
        keys = [k for k in ENTROPY_KEYS if k in present][:1]
        keys += [k for k in MODALITY_DIAGNOSTICS if k in present]
        if keys:
            diagnostics.append((i, keys))
        reference = groups.get((recipe, setting, sig.reference), [])
        for a in attentions:
            members = groups.get((recipe, setting, a))
            if not members or not any(r.ok for r in members):
                continue
            st = stats.get((recipe, setting, a))
            result = st.comparison.result if st and st.comparison else None
            tested = result is not None and math.isfinite(result.p_value)
            cells[(a, i)] = CrossCell(
                st.interval if st else None,
                significant=bool(tested and result.significant(sig.alpha)),
                tested=tested,
            )
            got = {k: v for k in keys if (v := _mean_of(members, k, cost=False)) is not None}
            if got:
                values[(a, i)] = got
            ratio = group_faithfulness(a, members).ratios.get("attention")
            if ratio is not None:
                faithfulness[(a, i)] = ratio
            for cost in EFFICIENCY_COLUMNS:
                mine, ref = _mean_of(members, cost, True), _mean_of(reference, cost, True)
                if mine is not None and ref and mine > 0:
                    ratios.setdefault(a, {}).setdefault(cost, []).append(mine / ref)
    efficiency = {
        a: {c: (math.exp(statistics.fmean(math.log(v) for v in vs)), len(vs))
            for c, vs in by_cost.items()}
        for a, by_cost in ratios.items()
    }  # fmt: skip
    return CrossModal(sig.reference, sig.alpha, columns, labels, primaries, attentions, cells,
                      efficiency, diagnostics, values, faithfulness)  # fmt: skip


def metric_table(rows: Sequence[Row], metrics: Sequence[str]) -> Table:
    """One row per run with the named metrics and the costs (benchmarks/collect.py)."""
    header = ["recipe", "model", "budget", "attention", "seed", *metrics,
              *COST_COLUMNS.values(), "run"]  # fmt: skip
    out = [
        [r.recipe, r.model, r.budget, r.attention, str(r.seed),
         *[r.metrics.get(n) for n in metrics], *[r.costs.get(k) for k in COST_COLUMNS], r.run_dir]
        for r in sorted(rows, key=lambda r: (r.recipe, r.model, r.attention))
    ]  # fmt: skip
    return Table(header, out)
