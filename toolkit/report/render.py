"""Stage 3 of the report (rendering): write the report folder.

    python -m toolkit.report 'runs=[runs/sentiment_grid,runs/translation]' out=report

``build_report`` runs the stages in one direction: collect (:mod:`toolkit.report.collect`,
run folders -> rows) -> tables (:mod:`toolkit.report.tables`, means, seed intervals, paired
bootstrap, learning curves, the cross-modal view) -> render (this module with
:mod:`toolkit.report.figures` and :mod:`toolkit.report.page`). It writes

* ``results.csv``: one row per run (metrics, diagnostics, costs, the group's significance,
  the run's erasure-faithfulness ratios where it was interpreted);
* ``summary.csv``: mean, std and 95 % interval over seeds per recipe, setting, type, metric;
* ``results.md``: per recipe the tables, the significance sentences, the erasure
  faithfulness per type ("Faithfulness (erasure)"), the budget each type used (optimiser
  steps and train seconds) and sample outputs;
* ``curves.csv`` and ``curves_<recipe>.png``: each type's validation curve, mean and std over
  seeds per logged step, against steps and against the logged seconds;
* ``cross_modal.md`` and ``cross_modal.png``: attention types × recipes, the primary metric's
  mean and interval marked where it differs significantly from the reference type, beside
  efficiency ratios, each modality's attention diagnostics and the faithfulness ratio;
* ``index.html``: all of it on one self-contained page, with attention pictures.

What a recipe shows comes from the ``report:`` block of ``conf/recipe/<name>.yaml``
(:mod:`toolkit.report.spec`); the significance settings from ``significance:`` in conf/report.yaml
or conf/compare.yaml. A run without a per-example file or a CSV log (an
older run) is named in the report, not an error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.metrics.significance import seed_interval
from toolkit.report.collect import (
    Row,
    disambiguate,
    fill_models,
    group_rows,
)
from toolkit.report.collect import sort_key as _sort_key
from toolkit.report.figures import attention_colors, plot_cross_modal, plot_curves
from toolkit.report.page import cross_modal_caption, write_html
from toolkit.report.spec import RecipeReport, recipe_report
from toolkit.report.tables import (
    COST_COLUMNS,
    FAITHFULNESS_CAPTION,
    FAITHFULNESS_METHODS,
    CrossModal,
    Curve,
    GroupStats,
    Significance,
    Table,
    analyse_all,
    budget_table,
    cross_modal,
    diagnostics_of,
    faithfulness_sentences,
    faithfulness_table,
    health_line,
    learning_curves,
    mean_std,
    run_ratio,
    run_table,
    sample_groups,
    significance_sentences,
    significance_table,
    summary_table,
    summary_values,
)

SIGNIFICANCE_COLUMNS = ["primary_metric", "primary_mean", "primary_ci95_low",
                        "primary_ci95_high", "primary_seeds", "reference", "diff_vs_reference",
                        "diff_ci95_low", "diff_ci95_high", "p_value", "significant",
                        "significance_note"]  # fmt: skip
# per run, its metrics.json `interpretability` entry (python -m toolkit.interpret): each
# ranking's AOPC ratio to random with its bootstrap interval, and the examples measured
FAITHFULNESS_COLUMNS = [
    *(
        f"faithfulness_{m}_ratio{end}"
        for m in FAITHFULNESS_METHODS
        for end in ("", "_low", "_high")
    ),
    "faithfulness_examples",
]


def _faithfulness_cells(r: Row) -> list[Any]:
    cells: list[Any] = []
    for method in FAITHFULNESS_METHODS:
        got = run_ratio(r, method)
        cells += [_csv(got.value), _csv(got.low), _csv(got.high)] if got else ["", "", ""]
    return cells + [_csv((r.interpretability or {}).get("examples"))]


def _significance_cells(st: GroupStats | None, alpha: float, reference: str) -> list[Any]:
    if st is None:
        return [""] * len(SIGNIFICANCE_COLUMNS)
    iv, comp = st.interval, st.comparison
    seeds = ["", "", "", 0] if iv is None else [iv.mean, _csv(iv.low), _csv(iv.high), iv.n]
    if st.is_reference or comp is None:
        return [st.metric, *seeds, reference, "", "", "", "", "", "reference"]
    r = comp.result
    ok = r is not None and math.isfinite(r.p_value)
    test = [r.difference, r.low, r.high, r.p_value, r.significant(alpha)] if ok else [""] * 5
    return [st.metric, *seeds, comp.reference, *test, comp.note]


def write_csv(
    rows: Sequence[Row], specs: dict[str, RecipeReport], path: Path,
    stats: dict[tuple[str, str, str], GroupStats] | None = None,
    sig: Significance | None = None,
) -> None:  # fmt: skip
    """One wide CSV: a column per metric of any recipe (empty where it does not apply); the
    last columns repeat, on each run of a group, the group's seed interval of the primary
    metric and its bootstrap comparison with the reference type, then the run's own
    erasure-faithfulness ratios (empty where it was not interpreted)."""
    metric_cols: list[str] = []
    for name in sorted(specs):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        for k in (*spec.metrics, *diagnostics_of(spec, mine)):
            if k not in metric_cols:
                metric_cols.append(k)
    header = ["recipe", "model", "budget", "attention", "seed", "status", *metric_cols,
              *COST_COLUMNS]  # fmt: skip
    header += ["trained", "run_dir", "note", *SIGNIFICANCE_COLUMNS, *FAITHFULNESS_COLUMNS]
    sig = sig or Significance()
    stats = stats if stats is not None else analyse_all(rows, specs, sig)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in sorted(rows, key=_sort_key):
            w.writerow(
                [r.recipe, r.model, r.budget, r.attention, r.seed, r.status]
                + [_csv(r.metrics.get(k)) for k in metric_cols]
                + [_csv(r.costs.get(k)) for k in COST_COLUMNS]
                + [r.trained, r.run_dir, r.note]
                + _significance_cells(stats.get(r.key), sig.alpha, sig.reference)
                + _faithfulness_cells(r)
            )


def _csv(v: Any) -> Any:
    return "" if v is None else v


def write_summary_csv(rows: Sequence[Row], specs: dict[str, RecipeReport], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["recipe", "setting", "attention", "metric", "mean", "std", "n", "planned",
                    "ci95_low", "ci95_high"])  # fmt: skip
        for name in sorted(specs):
            spec = specs[name]
            mine = [r for r in rows if r.recipe == name]
            for k in (*spec.metrics, *diagnostics_of(spec, mine), *COST_COLUMNS):
                for (_, model, attention), vals in summary_values(spec, mine, k).items():
                    planned = len(group_rows(mine)[(name, model, attention)])
                    mean, std = mean_std(vals) if vals else (None, None)
                    iv = seed_interval(vals) if vals else None
                    w.writerow([name, model, attention, k, _csv(mean), _csv(std), len(vals),
                                planned, _csv(iv and iv.low), _csv(iv and iv.high)])  # fmt: skip


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def samples_markdown(rows: Sequence[Row]) -> list[str]:
    parts: list[str] = []
    for row in sample_groups(rows):
        samples = row.samples
        keys = list(dict.fromkeys(k for s in samples for k in s))
        parts += [
            f"Sample test outputs, {row.model}/{row.attention} seed {row.seed} "
            f"({health_line(row)}):",
            "",  # fmt: skip
            "| " + " | ".join(keys) + " |",
            "|" + "---|" * len(keys),
        ]
        parts += ["| " + " | ".join(_md_cell(s.get(k, "")) for k in keys) + " |" for s in samples]
        parts.append("")
    return parts


def guard_lines(rows: Sequence[Row]) -> list[str]:
    fired = [r for r in rows if r.guard_fired]
    return [f"**Time guard fired** (trained less than its budget): {r.attention} seed {r.seed}, "
            f"{r.trained}" for r in fired] + ([""] if fired else [])  # fmt: skip


def significance_markdown(
    spec: RecipeReport, rows: Sequence[Row], stats: dict[tuple[str, str, str], GroupStats],
    sig: Significance,
) -> list[str]:  # fmt: skip
    """The seeds-and-significance table and one sentence per comparison."""
    return [
        f"Can these differences be trusted? `{spec.primary}`: mean and 95 % Student-t "
        f"interval over seeds; Δ = the type minus `{sig.reference}` from a paired bootstrap "
        f"over the test examples ({sig.resamples:,} resamples; the same seeds paired, their "
        "differences averaged), with its 95 % interval and two-sided p-value:",
        "",
        significance_table(spec, rows, stats, sig).markdown(),
        "",
        *[f"- {s}" for s in significance_sentences(stats, spec.name)],
        "",
    ]


def faithfulness_markdown(rows: Sequence[Row]) -> list[str]:
    """The "Faithfulness (erasure)" table and one sentence per attention type."""
    return [
        "Faithfulness (erasure). " + FAITHFULNESS_CAPTION,
        "",
        faithfulness_table(rows).markdown(),
        "",
        *[f"- {s}" for s in faithfulness_sentences(rows)],
        "",
    ]


def budget_markdown(spec: RecipeReport, rows: Sequence[Row], curves_file: str = "") -> list[str]:
    """The budget each type used in steps and seconds, and where its curves are."""
    parts = [
        "Training budget used per type, mean ± std over seeds: optimiser steps "
        "(metrics.json `budget.steps`) and train seconds (wall-clock `trainer.fit`):",
        "",
        budget_table(spec, rows).markdown(),
        "",
    ]
    if curves_file:
        parts += [
            f"Learning curves: `{curves_file}` (validation `{spec.curve_metric}`, mean over "
            "seeds with a ± std band, against steps and against the logged seconds); the "
            "numbers are in `curves.csv`.",
            "",
        ]
    return parts


def write_markdown(
    rows: Sequence[Row], specs: dict[str, RecipeReport], path: Path, intro: str = "",
    stats: dict[tuple[str, str, str], GroupStats] | None = None,
    sig: Significance | None = None,
    curve_files: dict[str, str] | None = None,
    cross_file: str = "",
) -> str:  # fmt: skip
    """``results.md``; ``curve_files`` (recipe -> file name) and ``cross_file`` name the
    figures and the cross-modal page written beside it."""
    sig = sig or Significance()
    stats = stats if stats is not None else analyse_all(rows, specs, sig)
    curve_files = curve_files or {}
    parts = ["# Attention comparison", ""]
    if intro:
        parts += [intro.strip(), ""]
    if cross_file:
        parts += [f"Every recipe side by side, with efficiency and attention diagnostics: "
                  f"`{cross_file}`.", ""]  # fmt: skip
    for name in sorted(specs):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        arrow = "higher" if spec.higher_is_better else "lower"
        parts += [
            f"## {name}",
            "",
            f"Primary metric: `{spec.primary}` ({arrow} is better). Mean ± std over seeds:",
            "",
            summary_table(spec, mine).markdown(),
            "",
            *significance_markdown(spec, mine, stats, sig),
            *faithfulness_markdown(mine),
            *budget_markdown(spec, mine, curve_files.get(name, "")),
            "Every run:",
            "",
            run_table(spec, mine).markdown(),
            "",
            *guard_lines(mine),
            *samples_markdown(mine),
        ]
    text = "\n".join(parts)
    path.write_text(text, encoding="utf-8")
    return text


CURVE_COLUMNS = ["recipe", "setting", "attention", "metric", "step", "seconds", "mean",
                 "std", "n"]  # fmt: skip


def write_curves_csv(curves: Sequence[Curve], path: Path) -> None:
    """The learning curves' numbers: one row per (group, logged step); ``seconds`` is the
    mean of the seeds' logged ``time/elapsed_s`` at that step (empty where not logged)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CURVE_COLUMNS)
        for c in curves:
            for p in c.points:
                w.writerow([c.recipe, c.setting, c.attention, c.metric, p.step,
                            _csv(p.seconds), p.mean, _csv(p.std), p.n])  # fmt: skip


def cross_modal_markdown(view: CrossModal, figure: str = "") -> str:
    """``cross_modal.md``: the cross-modal table and what it holds."""
    parts = ["# Attention types across modalities", "", cross_modal_caption(view), "",
             view.table().markdown(), ""]  # fmt: skip
    if figure:
        parts += [f"![primary metric per attention type and recipe]({figure})", ""]
    return "\n".join(parts)


def build_report(
    rows: Sequence[Row],
    out_dir: str | Path,
    specs: dict[str, RecipeReport] | None = None,
    command: str = "",
    intro: str = "",
    significance: Significance | None = None,
) -> Path:
    """Write the report folder (the files listed in this module's docstring); returns
    index.html. ``intro``: a paragraph for the top of both pages (what was run, how to run
    more); ``significance``: the reference type, level and resampling of the comparisons."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = fill_models(disambiguate(rows))
    specs = dict(specs or {})
    for name in sorted({r.recipe for r in rows}):
        if name not in specs:
            specs[name] = recipe_report(name)
    sig = significance or Significance()
    # collect -> tables
    stats = analyse_all(rows, specs, sig)
    curves = {name: learning_curves(specs[name], [r for r in rows if r.recipe == name])
              for name in sorted(specs)}  # fmt: skip
    view = cross_modal(rows, specs, stats, sig)
    # tables -> files
    write_csv(rows, specs, out / "results.csv", stats, sig)
    write_summary_csv(rows, specs, out / "summary.csv")
    write_curves_csv([c for name in curves for c in curves[name]], out / "curves.csv")
    colors = attention_colors(rows)
    curve_pngs, curve_files = {}, {}
    for name, mine in curves.items():
        png = plot_curves(specs[name], mine, colors)
        if png is not None:
            curve_pngs[name], curve_files[name] = png, f"curves_{name}.png"
            (out / curve_files[name]).write_bytes(png)
    cross_png = plot_cross_modal(view, colors)
    if cross_png is not None:
        (out / "cross_modal.png").write_bytes(cross_png)
    (out / "cross_modal.md").write_text(
        cross_modal_markdown(view, "cross_modal.png" if cross_png else ""), encoding="utf-8"
    )
    write_markdown(rows, specs, out / "results.md", intro=intro, stats=stats, sig=sig,
                   curve_files=curve_files, cross_file="cross_modal.md")  # fmt: skip
    write_html(rows, specs, out / "index.html", command=command, intro=intro, stats=stats,
               sig=sig, view=view, cross_png=cross_png, curve_pngs=curve_pngs)  # fmt: skip
    return out / "index.html"


def write_table(table: Table, out: str | Path) -> None:
    """``OUT.md`` and ``OUT.csv`` of one table (benchmarks/collect.py)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table.markdown() + "\n", encoding="utf-8")
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([table.header, *table.rows])
