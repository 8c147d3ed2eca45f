"""Collect run folders into one comparison report: ``results.csv``, ``results.md``,
``summary.csv`` and a self-contained ``index.html`` (tables, plots, attention pictures).

    python -m toolkit.report runs/sentiment_grid runs/translation --out report

Reads only the run-folder contract (docs/run-folder.md) (``metrics.json``, ``config.yaml``,
``attention/*.png``) plus the optional ``compare.json`` that ``toolkit.compare`` leaves next to
them (status, wall time, peak memory). What a recipe shows (task metrics, the primary metric,
its direction) comes from the ``report:`` block of ``conf/recipe/<name>.yaml`` (see
conf/recipe/README.md), with defaults for a recipe that has none.

Trust: per recipe, the primary metric's mean and 95 % Student-t interval over seeds, and a
paired bootstrap over test examples of each attention type against a reference type
(``--reference``, default ``multihead``) read from the runs' ``per_example.jsonl.gz``
(toolkit/metrics/significance.py: same seeds paired, per-seed differences averaged), with
its p-value and a sentence saying whether the difference is significant at ``--alpha``. A
run without that file (an older run) is named in the report, not an error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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

CONF_DIR = str(Path(__file__).resolve().parent / "conf")
COMPARE_FILE = "compare.json"
DIAGNOSTIC_PREFIX = "attention_"
# columns of every row after the recipe's own metrics and diagnostics
COST_COLUMNS = {
    "train_s": "train s",
    "train_samples_per_s": "train samples/s",
    "test_ms_per_sample": "test ms/sample",
    "peak_rss_mib": "peak RSS MiB",
    "params": "params",
}


# ----- the recipe plug-in: conf/recipe/<name>.yaml `report:` block --------------------------
@dataclass
class RecipeReport:
    """What the report shows for one recipe (the ``report:`` block, defaults filled in)."""

    name: str
    metrics: list[str]
    primary: str
    higher_is_better: bool = True
    attentions: list[str] = field(default_factory=lambda: ["additive", "multihead"])
    diagnostics: list[str] | None = None  # None = every attention_* key found in the runs
    profiles: dict[str, list[str]] = field(default_factory=dict)  # profile -> overrides
    # profile -> attention types (`attentions_<profile>:` in the block), else `attentions`
    profile_attentions: dict[str, list[str]] = field(default_factory=dict)

    def overrides(self, profile: str) -> list[str] | None:
        """The recipe's overrides for ``profile`` (None = the recipe gave none)."""
        return self.profiles.get(profile)

    def attentions_for(self, profile: str) -> list[str]:
        """The attention types ``profile`` compares for this recipe."""
        return self.profile_attentions.get(profile) or self.attentions


def report_from_config(name: str, cfg: Any) -> RecipeReport:
    """Build the spec from a composed train config (DictConfig or dict) of recipe ``name``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    recipe = cfg.get("recipe") or {}
    block = dict(cfg.get("report") or {})
    monitor = str(recipe.get("monitor") or "")
    primary = block.pop("primary", None) or (monitor.split("/")[-1] if monitor else None)
    metrics = list(block.pop("metrics", None) or ([primary] if primary else []))
    primary = primary or (metrics[0] if metrics else "")
    if primary and primary not in metrics:
        metrics.insert(0, primary)
    higher = block.pop("higher_is_better", None)
    if higher is None:
        higher = recipe.get("monitor_mode", "max") != "min"
    attentions = list(block.pop("attentions", None) or ["additive", "multihead"])
    diagnostics = block.pop("diagnostics", None)
    profile_attentions = {
        k.removeprefix("attentions_"): [str(a) for a in block.pop(k)]
        for k in [k for k in block if k.startswith("attentions_")]
    }
    profiles = {k: [str(o) for o in v] for k, v in block.items() if isinstance(v, list)}
    unknown = sorted(k for k, v in block.items() if not isinstance(v, list))
    if unknown:
        raise ValueError(
            f"recipe {name!r}: unknown report keys {unknown}; valid: metrics, primary, "
            "higher_is_better, attentions, attentions_<profile>, diagnostics, and one "
            "override list per profile"
        )
    return RecipeReport(
        name=name,
        metrics=metrics,
        primary=primary,
        higher_is_better=bool(higher),
        attentions=attentions,
        diagnostics=list(diagnostics) if diagnostics is not None else None,
        profiles=profiles,
        profile_attentions=profile_attentions,
    )


def compose_train(overrides: Sequence[str], conf_dir: str = CONF_DIR):
    """The composed ``train`` config, inside a running Hydra app or standalone."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=list(overrides))
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def recipe_names(conf_dir: str = CONF_DIR) -> list[str]:
    """Every recipe with a ``conf/recipe/<name>.yaml``."""
    return sorted(p.stem for p in Path(conf_dir, "recipe").glob("*.yaml"))


def recipe_report(name: str, conf_dir: str = CONF_DIR) -> RecipeReport:
    """The spec of recipe ``name``, read by composing ``train`` with ``recipe=name``; a
    recipe that is not in ``conf/recipe/`` (a run from elsewhere) gets the defaults."""
    if name not in recipe_names(conf_dir):
        return report_from_config(name, {})
    return report_from_config(name, compose_train([f"recipe={name}"], conf_dir))


# ----- collecting run folders -------------------------------------------------------------
@dataclass
class Row:
    """One (recipe, model, attention, seed) run; ``status`` ok | reused | failed | timeout |
    missing. Metrics are empty unless the run finished."""

    recipe: str
    attention: str
    seed: Any
    model: str = ""
    budget: str = ""  # planned training budget from config.yaml, in words
    status: str = "ok"
    trained: str = ""  # what was trained (metrics.json budget); says when the guard fired
    guard_fired: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)
    run_dir: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "reused")

    @property
    def setting(self) -> str:
        """Model and budget: runs are only averaged within one setting."""
        return f"{self.model} · {self.budget}" if self.budget else self.model

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.recipe, self.setting, self.attention)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _count(n: Any, unit: str) -> str:
    n = int(n) if float(n).is_integer() else float(n)
    return f"{n:,} {unit}" + ("" if n == 1 else "s")


def budget_of(run_dir: Path) -> str:
    """The planned training budget in words from the run's config.yaml: ``"2 epochs"``,
    ``"600 steps"``, ``"2 epochs, 3,000 scenes"``. ``trainer.max_time`` is a guard, not a
    budget: whether it fired is shown beside what was trained (:func:`trained_of`)."""
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(run_dir / "config.yaml")
    except Exception:  # noqa: BLE001 - no or unreadable config: no budget shown
        return ""
    trainer = cfg.get("trainer") or {}
    parts = []
    steps = trainer.get("max_steps")
    if steps not in (None, -1):
        parts.append(_count(steps, "step"))
    elif trainer.get("max_epochs") is not None:
        parts.append(_count(trainer.get("max_epochs"), "epoch"))
    elif trainer.get("max_time"):
        parts.append(f"time {trainer.get('max_time')}")
    batches = trainer.get("limit_train_batches")
    if batches not in (None, 1.0):
        parts.append(f"{batches} batches per epoch")
    data = cfg.get("data") or {}
    if data.get("limit"):
        parts.append(f"limit {data.get('limit')}")
    scenes = (data.get("scenes") or {}).get("train") if data.get("format") == "scenes" else None
    if scenes and scenes != 10000:
        parts.append(f"{scenes:,} scenes")
    return ", ".join(parts)


def trained_of(m: dict[str, Any]) -> tuple[str, bool]:
    """What a run actually trained (metrics.json ``budget``), and whether the time guard
    stopped it before its budget: ``("1.4 of 2 epochs (350 steps), time guard fired", True)``."""
    b = m.get("budget") or {}
    if not b:
        epochs = m.get("epochs")
        return (_count(epochs, "epoch") if epochs is not None else ""), False
    steps = _count(b.get("steps", 0), "step")
    if b.get("max_steps") is not None:
        text = f"{b.get('steps', 0):,} of {_count(b['max_steps'], 'step')}"
    elif b.get("max_epochs") is not None:
        text = f"{b.get('epochs')} of {_count(b['max_epochs'], 'epoch')} ({steps})"
    else:
        text = f"{_count(b.get('epochs', 0), 'epoch')} ({steps})"
    fired = bool(b.get("time_guard_fired"))
    if fired:
        text += f", time guard {b.get('max_time')} fired"
    return text, fired


def load_run(run_dir: str | Path, expected: dict[str, Any] | None = None) -> Row:
    """One run folder as a row. ``expected`` (recipe, attention, seed, model) names the run a
    grid asked for, so a folder without ``metrics.json`` is still reported (missing/failed)."""
    run_dir = Path(run_dir)
    expected = expected or {}
    side = _read_json(run_dir / COMPARE_FILE) or {}
    m = _read_json(run_dir / "metrics.json")
    if m is None:
        status = side.get("status") if side.get("status") in ("failed", "timeout") else "missing"
        return Row(
            recipe=str(expected.get("recipe", "?")),
            attention=str(expected.get("attention", "?")),
            seed=expected.get("seed"),
            model=str(expected.get("model", "")),
            status=status,
            run_dir=str(run_dir),
            note=str(side.get("error", "")),
        )
    t = m.get("throughput") or {}
    peak = t.get("peak_memory_mib", t.get("peak_rss_mib", side.get("peak_rss_mib")))
    metrics = {
        k: float(v)
        for k, v in (m.get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    trained, fired = trained_of(m)
    return Row(
        recipe=str(m.get("recipe", expected.get("recipe", "?"))),
        attention=str(m.get("attention", expected.get("attention", "?"))),
        seed=m.get("seed", expected.get("seed")),
        model=str(m.get("model", "")),
        budget=budget_of(run_dir),
        status="reused" if side.get("status") == "reused" else "ok",
        run_dir=str(run_dir),
        trained=trained,
        guard_fired=fired,
        samples=samples_of(m),
        note="time guard fired before the budget" if fired else "",
        metrics=metrics,
        costs={
            "train_s": m.get("train_seconds"),
            "train_samples_per_s": t.get("train_samples_per_s"),
            "test_ms_per_sample": t.get("test_ms_per_sample"),
            "peak_rss_mib": peak,
            "params": m.get("params"),
        },
    )


def _first(value: Any) -> Any:
    """A list (several references) as its first item and how many more there are."""
    if not isinstance(value, list):
        return value
    if len(value) <= 1:
        return value[0] if value else ""
    return f"{value[0]} (+{len(value) - 1} more)"


def samples_of(m: dict[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    """A few test outputs with their references (metrics.json ``samples``), flat strings."""
    out = []
    for item in (m.get("samples") or [])[:limit]:
        if isinstance(item, dict):
            out.append({str(k): _first(v) for k, v in item.items()})
    return out


OUTPUT_KEYS = ("translation", "hypothesis", "hyp", "predicted", "output")


def sample_outputs(samples: Sequence[dict[str, Any]]) -> list[str]:
    """The model-output field of each sample (the first of :data:`OUTPUT_KEYS` present)."""
    out = []
    for s in samples:
        key = next((k for k in OUTPUT_KEYS if k in s), None)
        if key is not None:
            out.append(str(s[key]))
    return out


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Training-run folders (metrics.json with ``train_seconds``) at or below each path,
    sorted; ``toolkit.evaluate`` re-scorings of a checkpoint (no training) are left out."""
    files: set[Path] = set()
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            files.add(p / "metrics.json")
        elif p.is_dir():
            files.update(p.rglob("metrics.json"))
    return sorted(f.parent for f in files if "train_seconds" in (_read_json(f) or {}))


def collect(run_dirs: Iterable[str | Path]) -> list[Row]:
    return [load_run(d) for d in run_dirs]


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


def _sort_key(r: Row) -> tuple:
    seed = r.seed if isinstance(r.seed, int) else 0
    return (r.recipe, r.model, r.budget, r.attention, seed, str(r.seed))


def fill_models(rows: Sequence[Row]) -> Sequence[Row]:
    """A run that did not finish has no model name: take the one its finished siblings
    (same recipe and attention) share, so it sits in their group."""
    for r in rows:
        if r.model:
            continue
        settings = {(o.model, o.budget) for o in rows
                    if o.model and (o.recipe, o.attention) == (r.recipe, r.attention)}  # fmt: skip
        if len(settings) == 1:
            r.model, r.budget = settings.pop()
    return rows


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


def disambiguate(rows: Sequence[Row]) -> Sequence[Row]:
    """Runs of one (recipe, model, budget, attention) that share a seed are different
    settings (another encoder, an ablation), not seeds to average: name them by folder."""
    by_key: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.ok:
            by_key.setdefault(r.key, []).append(r)
    for members in by_key.values():
        seeds = [str(r.seed) for r in members]
        if len(set(seeds)) < len(seeds):
            for r in members:
                r.budget = f"{r.budget} · {Path(r.run_dir).name}".lstrip(" ·")
    return rows


def group_rows(rows: Sequence[Row]) -> dict[tuple[str, str, str], list[Row]]:
    """Rows by (recipe, model, attention), a run that did not finish in its siblings' group."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in sorted(fill_models(rows), key=_sort_key):
        groups.setdefault(r.key, []).append(r)
    return groups


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


def _per_example(run_dir: str, cache: dict[str, Any]) -> Any:
    from toolkit.runs import read_per_example

    if run_dir not in cache:
        try:
            cache[run_dir] = read_per_example(run_dir)
        except ValueError as err:
            cache[run_dir] = err
    return cache[run_dir]


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
            got = _per_example(run.run_dir, cache)
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


SIGNIFICANCE_COLUMNS = ["primary_metric", "primary_mean", "primary_ci95_low",
                        "primary_ci95_high", "primary_seeds", "reference", "diff_vs_reference",
                        "diff_ci95_low", "diff_ci95_high", "p_value", "significant",
                        "significance_note"]  # fmt: skip


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
    metric and its bootstrap comparison with the reference type."""
    metric_cols: list[str] = []
    for name in sorted(specs):
        spec = specs[name]
        mine = [r for r in rows if r.recipe == name]
        for k in (*spec.metrics, *diagnostics_of(spec, mine)):
            if k not in metric_cols:
                metric_cols.append(k)
    header = ["recipe", "model", "budget", "attention", "seed", "status", *metric_cols,
              *COST_COLUMNS]  # fmt: skip
    header += ["trained", "run_dir", "note", *SIGNIFICANCE_COLUMNS]
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


def write_markdown(
    rows: Sequence[Row], specs: dict[str, RecipeReport], path: Path, intro: str = "",
    stats: dict[tuple[str, str, str], GroupStats] | None = None,
    sig: Significance | None = None,
) -> str:  # fmt: skip
    sig = sig or Significance()
    stats = stats if stats is not None else analyse_all(rows, specs, sig)
    parts = ["# Attention comparison", ""]
    if intro:
        parts += [intro.strip(), ""]
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


def build_report(
    rows: Sequence[Row],
    out_dir: str | Path,
    specs: dict[str, RecipeReport] | None = None,
    command: str = "",
    intro: str = "",
    significance: Significance | None = None,
) -> Path:
    """Write results.csv, summary.csv, results.md and index.html; returns index.html.
    ``intro``: a paragraph for the top of both pages (what was run, how to run more);
    ``significance``: the reference type, level and resampling of the comparisons."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = fill_models(disambiguate(rows))
    specs = dict(specs or {})
    for name in sorted({r.recipe for r in rows}):
        if name not in specs:
            specs[name] = recipe_report(name)
    sig = significance or Significance()
    stats = analyse_all(rows, specs, sig)
    write_csv(rows, specs, out / "results.csv", stats, sig)
    write_summary_csv(rows, specs, out / "summary.csv")
    write_markdown(rows, specs, out / "results.md", intro=intro, stats=stats, sig=sig)
    from toolkit.viz.report import write_html

    write_html(rows, specs, out / "index.html", command=command, intro=intro, stats=stats,
               sig=sig)  # fmt: skip
    return out / "index.html"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders to search below")
    parser.add_argument("--out", default="report")
    parser.add_argument(
        "--reference",
        default="multihead",
        help="attention type the others are tested against (e.g. uniform)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument(
        "--resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help="paired-bootstrap resamples of the test examples",
    )
    parser.add_argument("--bootstrap-seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    rows = collect(find_runs(args.runs))
    if not rows:
        raise SystemExit(f"no run folder (metrics.json) under {', '.join(args.runs)}")
    sig = Significance(args.reference, args.alpha, args.resamples, args.bootstrap_seed)
    index = build_report(rows, args.out, command="python -m toolkit.report " + " ".join(args.runs),
                         significance=sig)  # fmt: skip
    print(Path(args.out, "results.md").read_text(encoding="utf-8"))
    print(f"[toolkit.report] report: {index.resolve()}")


if __name__ == "__main__":
    main()
