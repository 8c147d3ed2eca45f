"""The HTML page of the comparison report: plots (matplotlib, embedded as PNG data URIs),
tables, and each recipe's attention pictures; one self-contained file, no network.

Built by :func:`toolkit.report.build_report` from :class:`toolkit.report.Row` objects.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from toolkit.report import (
    GroupStats,
    RecipeReport,
    Row,
    Significance,
    Table,
    analyse_all,
    diagnostics_of,
    fmt,
    group_rows,
    health_line,
    mean_std,
    run_table,
    sample_groups,
    significance_sentences,
    significance_table,
    summary_table,
    summary_values,
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


# ----- plots ------------------------------------------------------------------------------
def _inline_code(text: str) -> str:
    """Escape ``text``; spans in backticks become <code>."""
    pieces = html.escape(text.strip()).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _colors(rows: Sequence[Row]) -> dict[str, str]:
    """One colour per attention type, the same in every plot."""
    return {a: f"C{i % 10}" for i, a in enumerate(sorted({r.attention for r in rows}))}


def _label(model: str, attention: str, models: set[str]) -> str:
    return attention if len(models) <= 1 else f"{model}/{attention}"


def _panels(plt, n: int, width: float, height: float):
    """``n`` panels, two per row (a wide page stays readable); unused panels hidden."""
    cols = min(n, 2)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_primary(rows: Sequence[Row], specs: dict[str, RecipeReport]) -> bytes | None:
    """Primary task metric per attention type, one panel per recipe: every seed as a dot,
    the mean ± std as a bar (no zero baseline: the differences are what matters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in sorted(specs) if any(r.ok and r.recipe == n for r in rows)]
    if not names:
        return None
    height = 1.2 + 0.32 * max(len(group_rows([r for r in rows if r.recipe == n])) for n in names)
    fig, axes = _panels(plt, len(names), 5.2, height)
    for ax, name in zip(axes, names):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        vals = summary_values(spec, mine, spec.primary)
        models = {k[1] for k in vals}
        labels = [_label(m, a, models) for (_, m, a) in vals]
        colors = _colors(rows)
        for i, ((_, _, attention), v) in enumerate(vals.items()):
            y = len(vals) - 1 - i
            if not v:
                ax.text(0.02, y, "missing", transform=ax.get_yaxis_transform(), va="center",
                        fontsize=8, color="#900")  # fmt: skip
                continue
            mean, std = mean_std(v)
            ax.errorbar(mean, y, xerr=std or 0, fmt="s", color=colors[attention], capsize=3)
            ax.scatter(v, [y] * len(v), s=10, color=colors[attention], alpha=0.5)
        ax.set_yticks(range(len(labels)), labels[::-1], fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        arrow = "↑" if spec.higher_is_better else "↓"
        ax.set_title(f"{name}: {spec.primary} {arrow}")
    fig.tight_layout()
    return _figure_png(fig)


def plot_tradeoff(
    rows: Sequence[Row], specs: dict[str, RecipeReport], cost: str, xlabel: str
) -> bytes | None:
    """Primary metric against a cost (one panel per recipe, one point per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        n
        for n in sorted(specs)
        if any(r.ok and r.recipe == n and r.costs.get(cost) is not None for r in rows)
    ]
    if not names:
        return None
    fig, axes = _panels(plt, len(names), 4.6, 4.2)
    for ax, name in zip(axes, names):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name and r.ok]
        groups = group_rows(mine)
        models = {k[1] for k in groups}
        markers = {m: "osD^v<>"[i % 7] for i, m in enumerate(sorted(models))}
        for (_, model, attention), members in groups.items():
            pts = [
                (float(r.costs[cost]), r.metrics[spec.primary])
                for r in members
                if r.costs.get(cost) is not None and spec.primary in r.metrics
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(
                    xs,
                    ys,
                    color=_colors(rows)[attention],
                    marker=markers[model],
                    label=_label(model, attention, models),
                )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(spec.primary)
        ax.set_title(name)
        if cost in ("params", "test_ms_per_sample"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2,
                  frameon=False)  # fmt: skip
    fig.tight_layout()
    return _figure_png(fig)


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

TEXT_COLUMNS = {"model", "budget", "attention", "seed", "status", "runs", "trained"}


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


def attention_pictures(run_dir: str, limit: int) -> list[Path]:
    """The first ``limit`` pictures a run saved under ``attention/``."""
    folder = Path(run_dir) / "attention"
    return sorted(folder.glob("*.png"))[:limit] if folder.is_dir() else []


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
) -> None:
    esc = html.escape
    sig = sig or Significance()
    stats = stats if stats is not None else analyse_all(rows, specs, sig)
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
    for caption, png in plots:
        if png is not None:
            parts.append(
                f'<figure class="plotfig"><img class="plot" alt="{esc(caption)}" '
                f'src="{_png_data_uri(png)}"><figcaption>{esc(caption)}</figcaption></figure>'
            )
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
