"""Stage 3b of the report (rendering): the self-contained HTML page: tables, the figures of
:mod:`toolkit.report.figures` embedded as PNG data URIs, and each recipe's attention pictures;
one file, no network. Imports the collect, tables and figures stages only.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from toolkit.report.collect import Row, attention_pictures, group_rows
from toolkit.report.figures import (
    attention_colors,
    plot_cross_modal,
    plot_curves,
    plot_primary,
    plot_tradeoff,
)
from toolkit.report.spec import RecipeReport
from toolkit.report.tables import (
    FAITHFULNESS_CAPTION,
    CrossModal,
    GroupStats,
    Significance,
    Table,
    analyse_all,
    budget_table,
    cross_modal,
    diagnostics_of,
    faithfulness_sentences,
    faithfulness_table,
    fmt,
    health_line,
    learning_curves,
    run_table,
    sample_groups,
    significance_sentences,
    significance_table,
    summary_table,
)

# what the diagnostics the recipes write mean (shown under each recipe; unknown keys as is)
DIAGNOSTIC_HELP = {
    "attention_entropy": "mean row entropy / log(#keys): 0 = one key, 1 = uniform",
    "attention_cross_entropy": "the same for the decoder's cross-attention",
    "attention_monotonicity": "share of decoder steps whose attention peak does not move back",
    "attention_diagonality": "attention mass near the (rescaled) diagonal",
    "attention_lexicon_mass": "share of pooling attention on VADER-lexicon words",
    "attention_lexicon_token_share": "share of tokens that are lexicon words",
    "attention_lexicon_lift": "lexicon mass / lexicon token share (> 1: favours sentiment words)",
    "attention_ctc_in_span": "share of tokens whose cross-attention peak lies in its CTC span",
    "attention_ctc_frame_error": "mean |attention peak - CTC span centre| in encoder frames",
    "attention_ctc_frames_outside": "mean distance of the attention peak to its CTC span (frames)",
    "grounding": "pointing game: the attention peak lies in the named object's box",
    "grounding_chance": "the same for a peak placed at random (box area share)",
}


# ----- text -------------------------------------------------------------------------------
def _inline_code(text: str) -> str:
    """Escape ``text``; spans in backticks become <code>."""
    pieces = html.escape(text.strip()).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# ----- HTML -------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px} .scroll{overflow-x:auto}
td{white-space:nowrap}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.txt,th.txt{text-align:left}
tr.missing td,tr.failed td,tr.timeout td{background:#fde8e8;color:#900}
td.best{font-weight:bold;background:#e8f6e8}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px;max-width:560px}
figure.plotfig{max-width:100%}
figure img{max-width:100%;height:auto} figcaption{font-size:12px;color:#555}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plot{max-width:100%}
.meta{color:#666;font-size:13px} .intro{max-width:60em} .warn{color:#a00}
code{background:#f3f3f3;padding:0 3px}
"""

TEXT_COLUMNS = {"model", "budget", "attention", "seed", "status", "runs", "trained",
                "measured"}  # fmt: skip


def figure_html(caption: str, png: bytes | None) -> str:
    """A figure with its caption, the PNG inline; empty without a PNG."""
    if png is None:
        return ""
    esc = html.escape
    return (
        f'<figure class="plotfig"><img class="plot" alt="{esc(caption)}" '
        f'src="{_png_data_uri(png)}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


def cross_modal_caption(view: CrossModal) -> str:
    """What the cross-modal table holds, in words (the Markdown and HTML both show it)."""
    return (
        "Rows: attention types; a column per recipe: its primary metric, mean over seeds and "
        f"[95 % Student-t interval]; `*`: the paired bootstrap over test examples against "
        f"`{view.reference}` (same seeds paired) is significant at p < {view.alpha:g}. "
        f"Efficiency: the type's cost divided by `{view.reference}`'s in the same recipe and "
        "setting, geometric mean over the (n) recipes where both ran (training throughput: "
        "above 1 is faster; peak memory, test latency and parameters: below 1 is less). "
        "Diagnostics: per recipe, the attention entropy (0 = one key, 1 = uniform) and its "
        "modality's own measure (sentiment lexicon lift, translation monotonicity, captioning "
        "grounding, speech CTC-span agreement), mean over seeds."
        + (
            " Faithfulness: per recipe, the erasure test's attention / random AOPC ratio "
            "(`python -m toolkit.interpret`; above 1: removing the inputs attention ranks "
            "first hurts more than removing random ones), one run's value [95 % bootstrap "
            "interval], several runs' mean [95 % Student-t interval over them]; —: not measured."
            if view.faithfulness_columns
            else ""
        )
    )


def table_html(table: Table, table_id: str, best_col: str | None = None, higher=True) -> str:
    esc = html.escape
    best_row = None
    if best_col and best_col in table.header:
        j = table.header.index(best_col)
        scored = []
        for i, r in enumerate(table.rows):
            try:
                scored.append((float(str(r[j]).split(" ")[0].replace(",", "")), i))
            except ValueError:
                continue
        if scored:
            best_row = (max(scored) if higher else min(scored))[1]
    head = "".join(
        f'<th class="{"txt" if h in TEXT_COLUMNS else ""}">{esc(h)}</th>' for h in table.header
    )
    body = []
    for i, r in enumerate(table.rows):
        status = str(r[table.header.index("status")]) if "status" in table.header else ""
        cells = []
        for h, v in zip(table.header, r, strict=True):
            cls = "txt" if h in TEXT_COLUMNS else ""
            if i == best_row and h == best_col:
                cls += " best"
            cells.append(f'<td class="{cls.strip()}">{esc(fmt(v))}</td>')
        if "runs" in table.header and str(r[table.header.index("runs")]).startswith("0/"):
            status = "missing"
        body.append(f'<tr class="{esc(status)}">{"".join(cells)}</tr>')
    return (
        f'<div class="scroll"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def gallery_html(rows: Sequence[Row], per_run: int) -> str:
    """Pictures of one finished run per (model, attention)."""
    figures = []
    for (_, model, attention), members in group_rows([r for r in rows if r.ok]).items():
        run = members[0]
        pics = attention_pictures(run.run_dir, per_run)
        if not pics:
            figures.append(
                f'<p class="meta">{html.escape(model)}/{html.escape(attention)}: '
                "this run saved no attention pictures.</p>"
            )
        for p in pics:
            cap = f"{model}/{attention} · seed {run.seed} · {p.name}"
            figures.append(
                f'<figure><img alt="{html.escape(cap)}" src="{_png_data_uri(p.read_bytes())}">'
                f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
    return f'<div class="gallery">{"".join(figures)}</div>'


def samples_html(rows: Sequence[Row]) -> str:
    """A few test outputs beside their references, per (model, attention)."""
    esc = html.escape
    parts = []
    for row in sample_groups(rows):
        samples = row.samples
        keys = list(dict.fromkeys(k for s in samples for k in s))
        head = "".join(f'<th class="txt">{esc(k)}</th>' for k in keys)
        body = "".join(
            "<tr>" + "".join(f'<td class="txt">{esc(str(s.get(k, "")))}</td>' for k in keys)
            + "</tr>" for s in samples
        )  # fmt: skip
        parts.append(
            f'<p class="meta">{esc(row.model)}/{esc(row.attention)} · seed {esc(str(row.seed))}'
            f" · {esc(health_line(row))}</p>"
            f'<div class="scroll"><table class="samples"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
    return "".join(parts) or '<p class="meta">these runs wrote no samples.</p>'


def write_html(
    rows: Sequence[Row],
    specs: dict[str, RecipeReport],
    path: Path,
    title: str = "Attention comparison",
    command: str = "",
    pictures_per_run: int = 3,
    intro: str = "",
    stats: dict[tuple[str, str, str], GroupStats] | None = None,
    sig: Significance | None = None,
    view: CrossModal | None = None,
    cross_png: bytes | None = None,
    curve_pngs: dict[str, bytes] | None = None,
) -> None:
    """The page; ``view``, ``cross_png`` and ``curve_pngs`` (recipe -> PNG) are what
    :func:`toolkit.report.render.build_report` already computed, else computed here."""
    esc = html.escape
    sig = sig or Significance()
    stats = stats if stats is not None else analyse_all(rows, specs, sig)
    colors = attention_colors(rows)
    if view is None:
        view = cross_modal(rows, specs, stats, sig)
        cross_png = plot_cross_modal(view, colors)
    if curve_pngs is None:
        curve_pngs = {}
        for name, spec in specs.items():
            mine = [r for r in rows if r.recipe == name]
            png = plot_curves(spec, learning_curves(spec, mine), colors)
            if png is not None:
                curve_pngs[name] = png
    n_ok = sum(r.ok for r in rows)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{n_ok} of {len(rows)} runs finished · {len(specs)} recipes · '
        f"generated {when}" + (f" · <code>{esc(command)}</code>" if command else "") + "</p>",
        *([f'<p class="intro">{_inline_code(intro)}</p>'] if intro else []),
        "<h2>Summary (mean ± std over seeds)</h2>",
    ]
    for name in sorted(specs):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        parts.append(f"<h3>{esc(name)}</h3>")
        parts.append(
            table_html(
                summary_table(spec, mine), f"summary-{name}", spec.primary, spec.higher_is_better
            )
        )
    parts += [
        '<h2 id="cross-modal">Across modalities</h2>',
        f'<p class="meta">{_inline_code(cross_modal_caption(view))}</p>',
        table_html(view.table(), "cross-modal"),
        figure_html("Primary metric per attention type and recipe", cross_png),
    ]
    plots = [
        ("Task metric per attention type", plot_primary(rows, specs)),
        ("Quality vs inference latency", plot_tradeoff(rows, specs, "test_ms_per_sample",
                                                       "test ms / sample (log)")),
        ("Quality vs training throughput", plot_tradeoff(rows, specs, "train_samples_per_s",
                                                         "train samples / s")),
        ("Quality vs peak memory", plot_tradeoff(rows, specs, "peak_rss_mib",
                                                 "peak RSS of the run (MiB)")),
        ("Quality vs parameters", plot_tradeoff(rows, specs, "params", "parameters (log)")),
    ]  # fmt: skip
    parts.append('<h2>Plots</h2><div class="plots">')
    parts += [figure_html(caption, png) for caption, png in plots]
    parts.append("</div>")
    for name in sorted(specs):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        diags = diagnostics_of(spec, mine)
        parts += [
            f'<h2 id="recipe-{esc(name)}">{esc(name)}</h2>',
            f'<p class="meta">primary metric <code>{esc(spec.primary)}</code> '
            f"({'higher' if spec.higher_is_better else 'lower'} is better); diagnostics: "
            + (", ".join(f"<code>{esc(d)}</code>" for d in diags) or "none reported")
            + "</p>",
            '<ul class="meta">'
            + "".join(
                f"<li><code>{esc(d)}</code>: {esc(DIAGNOSTIC_HELP[d])}</li>"
                for d in diags
                if d in DIAGNOSTIC_HELP
            )
            + "</ul>",
            "<h3>Seeds and significance</h3>",
            f'<p class="meta"><code>{esc(spec.primary)}</code>: mean and 95 % Student-t '
            f"interval over seeds; Δ = the type minus <code>{esc(sig.reference)}</code> from a "
            f"paired bootstrap over the test examples ({sig.resamples:,} resamples; the same "
            "seeds paired, their differences averaged), its 95 % interval and p-value.</p>",
            table_html(significance_table(spec, mine, stats, sig), f"significance-{name}"),
            '<ul class="significance">'
            + "".join(f"<li>{_inline_code(t)}</li>" for t in significance_sentences(stats, name))
            + "</ul>",
            "<h3>Faithfulness (erasure)</h3>",
            f'<p class="meta">{_inline_code(FAITHFULNESS_CAPTION)}</p>',
            table_html(faithfulness_table(mine), f"faithfulness-{name}"),
            '<ul class="faithfulness">'
            + "".join(f"<li>{_inline_code(t)}</li>" for t in faithfulness_sentences(mine))
            + "</ul>",
            "<h3>Learning curves and the budget used</h3>",
            f'<p class="meta">validation <code>{esc(spec.curve_metric)}</code> from each run\'s '
            "<code>logs/metrics.csv</code>: mean over seeds with a ± std band, against the "
            "logged step and against the logged training seconds (<code>time/elapsed_s</code>)"
            "; the budget each type used in optimiser steps and train seconds.</p>",
            table_html(budget_table(spec, mine), f"budget-{name}"),
            figure_html(f"{name}: validation curves", curve_pngs.get(name))
            or '<p class="meta">these runs have no CSV log with this metric.</p>',
            "<h3>Every run</h3>",
            table_html(run_table(spec, mine), f"runs-{name}"),
            *[
                f'<p class="warn">time guard fired: {esc(r.attention)} seed {esc(str(r.seed))} '
                f"trained {esc(r.trained)}</p>"
                for r in mine
                if r.guard_fired
            ],
            "<h3>Sample outputs</h3>",
            samples_html(mine),
            "<h3>Attention pictures</h3>",
            gallery_html(mine, pictures_per_run),
        ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        # an empty inline icon: otherwise the browser asks the server for /favicon.ico
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
