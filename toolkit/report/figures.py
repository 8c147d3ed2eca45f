"""Stage 3a of the report (rendering): the figures, as PNG bytes (matplotlib, Agg).

Per-recipe plots of the primary metric and its trade-off against each cost, each recipe's
learning curves (validation metric against steps and against logged seconds) and the
cross-modal figure. Imports the collect and tables stages only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from toolkit.report.collect import Row, group_rows
from toolkit.report.spec import RecipeReport
from toolkit.report.tables import CrossModal, Curve, mean_std, summary_values


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def attention_colors(rows: Sequence[Row]) -> dict[str, str]:
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
        colors = attention_colors(rows)
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
                    color=attention_colors(rows)[attention],
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


def plot_curves(
    spec: RecipeReport, curves: Sequence[Curve], colors: dict[str, str]
) -> bytes | None:
    """One recipe's validation curves: the mean over seeds of each (setting, attention) with
    a ± std band, against logged steps (left) and against the logged training seconds
    (right, each point at the seeds' mean ``time/elapsed_s``)."""
    curves = [c for c in curves if c.points]
    if not curves:
        return None
    _, plt = _pyplot()
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10.4, 3.8), squeeze=True)
    settings = {c.setting for c in curves}
    for c in curves:
        label = _label(c.setting, c.attention, settings) + f" ({c.seeds} seed"
        label += ")" if c.seeds == 1 else "s)"
        color = colors.get(c.attention)
        for ax, pts, x in (
            (by_step, c.points, [p.step for p in c.points]),
            (by_time, [p for p in c.points if p.seconds is not None],
             [p.seconds for p in c.points if p.seconds is not None]),
        ):  # fmt: skip
            if not pts:
                continue
            mean = [p.mean for p in pts]
            ax.plot(x, mean, marker="o", markersize=3, color=color, label=label)
            low = [p.mean - (p.std or 0.0) for p in pts]
            high = [p.mean + (p.std or 0.0) for p in pts]
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    arrow = "↑" if spec.higher_is_better else "↓"
    for ax, xlabel in ((by_step, "training step"), (by_time, "training seconds (logged)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{curves[0].metric} {arrow}")
        ax.grid(alpha=0.3)
    if not any(c.has_seconds for c in curves):
        by_time.text(0.5, 0.5, "these logs have no time/elapsed_s column", ha="center",
                     va="center", transform=by_time.transAxes, color="#900")  # fmt: skip
    by_step.set_title(f"{spec.name}: validation curve by step")
    by_time.set_title(f"{spec.name}: validation curve by time")
    by_step.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _figure_png(fig)


def plot_cross_modal(view: CrossModal, colors: dict[str, str] | None = None) -> bytes | None:
    """The cross-modal figure: one panel per recipe (and setting), each attention type's
    primary metric mean with its 95 % seed interval; ``*`` where the paired bootstrap against
    the reference is significant; the reference's mean as a dashed line."""
    if not view.columns:
        return None
    _, plt = _pyplot()
    n = len(view.columns)
    height = 1.0 + 0.35 * len(view.attentions)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, height), squeeze=False)
    colors = colors or {a: f"C{i % 10}" for i, a in enumerate(sorted(view.attentions))}
    order = list(view.attentions)
    for i, ax in enumerate(axes[0]):
        for a in order:
            cell = view.cells.get((a, i))
            y = len(order) - 1 - order.index(a)
            if cell is None or cell.interval is None:
                continue
            iv = cell.interval
            err = None
            if iv.low is not None and iv.high is not None:
                err = [[iv.mean - iv.low], [iv.high - iv.mean]]
            ax.errorbar(iv.mean, y, xerr=err, fmt="s", color=colors[a], capsize=3)
            if cell.significant:
                ax.annotate("*", (iv.mean, y), textcoords="offset points", xytext=(0, 4),
                            ha="center", fontsize=12, color="#000")  # fmt: skip
            if a == view.reference:
                ax.axvline(iv.mean, color="#888", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(order)), order[::-1], fontsize=8)
        ax.set_ylim(-0.7, len(order) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(view.labels[i], fontsize=9)
        if i:
            ax.tick_params(labelleft=False)
        if not any(math.isfinite(c.interval.mean) for (_, j), c in view.cells.items()
                   if j == i and c.interval is not None):  # fmt: skip
            ax.set_visible(False)
    fig.suptitle(f"mean and 95 % interval over seeds; * = differs from {view.reference} "
                 f"(paired bootstrap, p < {view.alpha:g})", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return _figure_png(fig)
