"""Stage 1 of the report: read run folders into :class:`Row` objects.

Reads only the run-folder contract (docs/run-folder.md): ``metrics.json``, ``config.yaml``,
the CSV log ``logs/metrics.csv`` (validation curves), ``per_example.jsonl.gz`` (on demand,
for the paired bootstrap) and ``attention/*.png``, plus the optional ``compare.json`` that
``toolkit.compare`` leaves beside them (status, wall time, peak memory). The
``interpretability`` entry ``toolkit.interpret`` adds to metrics.json is kept as it is.
Imports no later stage (tables, render).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPARE_FILE = "compare.json"
LOG_FILE = "logs/metrics.csv"  # Lightning's CSVLogger under the run folder (conf/logger/csv)
ELAPSED_COLUMN = "time/elapsed_s"  # logged by toolkit.training.module.RecipeModule per validation
VAL_PREFIX = "val/"


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
    steps: int | None = None  # optimiser steps done (metrics.json budget.steps)
    samples: list[dict[str, Any]] = field(default_factory=list)
    run_dir: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float | None] = field(default_factory=dict)
    # the validation rows of the CSV log: {"step", "epoch", "time/elapsed_s", "val/...": v}
    curve: list[dict[str, float]] = field(default_factory=list)
    note: str = ""
    # metrics.json ``interpretability`` (python -m toolkit.interpret); None when not measured
    interpretability: dict[str, Any] | None = None

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
    ``"600 steps"``, ``"2 epochs, 3,000 scenes"``, ``"1 epoch, long inputs"`` (a run of
    ``compare setting=long``, so it is never averaged with default-input runs).
    ``trainer.max_time`` is a guard, not a budget: whether it fired is shown beside what was
    trained (:func:`trained_of`)."""
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
    setting = cfg.get("input_setting")  # compare setting=long: ++input_setting=long
    if setting not in (None, "default"):
        parts.append(f"{setting} inputs")
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


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_curve(run_dir: str | Path) -> list[dict[str, float]]:
    """The validation rows of a run's CSV log (``logs/metrics.csv``): every row with a
    ``val/*`` value, as ``{column: number}`` of its non-empty numeric cells (``step``,
    ``epoch``, ``time/elapsed_s`` where logged, the ``val/*`` metrics), in file order. A
    run without a log (logger off, an older run) gives ``[]``."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            cells = {k: v for k, raw in line.items() if k and (v := _number(raw)) is not None}
            if any(k.startswith(VAL_PREFIX) for k in cells):
                out.append(cells)
    return out


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
    steps = (m.get("budget") or {}).get("steps")
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
        steps=int(steps) if isinstance(steps, (int, float)) else None,
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
        curve=read_curve(run_dir),
        interpretability=entry if isinstance(entry := m.get("interpretability"), dict) else None,
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


def per_example(run_dir: str, cache: dict[str, Any]) -> Any:
    """A run's ``(header, records)`` per-example file, None (no file) or the ValueError that
    reading it raised; read once per folder (``cache``)."""
    from toolkit.runs import read_per_example

    if run_dir not in cache:
        try:
            cache[run_dir] = read_per_example(run_dir)
        except ValueError as err:
            cache[run_dir] = err
    return cache[run_dir]


def attention_pictures(run_dir: str, limit: int) -> list[Path]:
    """The first ``limit`` pictures a run saved under ``attention/``."""
    folder = Path(run_dir) / "attention"
    return sorted(folder.glob("*.png"))[:limit] if folder.is_dir() else []


# ----- rows as groups: which runs are seeds of one setting --------------------------------
def sort_key(r: Row) -> tuple:
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
    """Rows by (recipe, setting, attention), a run that did not finish in its siblings'
    group."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in sorted(fill_models(rows), key=sort_key):
        groups.setdefault(r.key, []).append(r)
    return groups
