"""The calibration behind ``profile=standard`` (conf/profile/standard.yaml): per recipe, the
smallest training budget at which the recipe's default attention type reaches >= 90 % of the
validation quality it has at the recipe's full default budget, read from the learning curves
of the default config trained once at that full budget.

    python benchmarks/standard_budget.py extract RUN_DIR [RUN_DIR ...]  # curves from run folders
    python benchmarks/standard_budget.py            # calibration.csv, .md and .png from them
    python benchmarks/standard_budget.py --check    # exit 1 when the written files differ

``extract`` keeps only what the rule needs, in ``results/compare/standard/calibration/``:
``runs.csv`` (one row per run: recipe, attention, seed, monitor, budget, train seconds) and
``curves.csv`` (one row per validation of each run: epoch, step, elapsed seconds, the
``recipe.monitor`` value). The rule, per recipe, over its runs of the default attention type:

* quality = the monitor value where higher is better; **1 - value** for a metric to
  minimise (an error rate such as WER: quality = 1 - WER);
* the quality of a budget of B epochs (or steps, for a recipe whose default budget is in
  steps) is the best validation quality logged up to B, i.e. the checkpoint such a run keeps
  (checkpoints are selected by ``recipe.monitor``), averaged over the runs (seeds);
* the full-budget quality is that at the last logged validation of the runs trained to the
  full budget; the standard budget is the smallest candidate budget whose quality is >=
  ``FRACTION`` of it;
* a run trained only to a smaller budget B (its ``max_epochs``/``max_steps`` below the full
  runs') is a **check** of B: its learning-rate schedule (warm-up + cosine) ends at B, so the
  checkpoint it keeps is what a run of the profile gets, and that can differ from the long
  run's point at B, in either direction. Where checks of B exist, B's quality is theirs (the
  best validation each kept, averaged), not the long curve's; the candidates are the logged
  budgets and the checked ones.

``extract`` names a run by its folder, or for a folder ``seed<N>`` (a compare grid's) by
``<attention>-seed<N>-<budget>``.
Elapsed seconds come from the logged ``time/elapsed_s`` where a run logged it, else
``train_seconds × steps so far / steps`` (marked ``estimated``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "compare" / "standard" / "calibration"
FRACTION = 0.9
COMMAND = "python benchmarks/standard_budget.py"
ELAPSED = "time/elapsed_s"

RUN_COLUMNS = ["recipe", "run", "attention", "seed", "monitor", "mode", "unit", "max_epochs",
               "max_steps", "epochs", "steps", "train_seconds", "threads"]  # fmt: skip
CURVE_COLUMNS = ["recipe", "run", "epoch", "step", "elapsed_s", "elapsed_source", "value"]


# ----- the rule -----------------------------------------------------------------------------
def quality(value: float, higher_is_better: bool) -> float:
    """The value itself where higher is better; ``1 - value`` for an error rate."""
    if higher_is_better:
        return value
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{value}: a metric to minimise must be an error rate in [0, 1]")
    return 1.0 - value


def kept(qualities: Sequence[float]) -> list[float]:
    """The quality of the checkpoint kept after each validation: the best so far."""
    out, best = [], float("-inf")
    for q in qualities:
        best = max(best, q)
        out.append(best)
    return out


def smallest_budget(
    budgets: Sequence[float], qualities: Sequence[float], fraction: float = FRACTION
) -> int:
    """Index of the smallest budget whose kept quality reaches ``fraction`` of the kept
    quality at the last budget (``budgets`` ascending, ``qualities`` the kept ones)."""
    if not budgets or len(budgets) != len(qualities):
        raise ValueError("one quality per budget, at least one budget")
    if list(budgets) != sorted(budgets):
        raise ValueError("budgets must be ascending")
    target = fraction * qualities[-1]
    return next(i for i, q in enumerate(qualities) if q >= target)


# ----- extraction from run folders ----------------------------------------------------------
def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def extract_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """One run folder (metrics.json, config.yaml, logs/metrics.csv) -> its runs.csv row and
    its curves.csv rows."""
    from omegaconf import OmegaConf

    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg = OmegaConf.load(run_dir / "config.yaml")
    monitor, mode = str(cfg.recipe.monitor), str(cfg.recipe.get("monitor_mode", "max"))
    budget = m.get("budget") or {}
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    steps = int(budget["steps"])
    name = run_dir.name
    if re.fullmatch(r"seed\d+", name):  # a compare grid's <attention>/seed<N> folder
        tag = f"{max_epochs}ep" if max_epochs not in (None, -1) else f"{max_steps}steps"
        name = f"{run_dir.parent.name}-{name}-{tag}"
    run = {
        "recipe": m["recipe"], "run": name, "attention": m["attention"],
        "seed": m["seed"], "monitor": monitor, "mode": mode,
        "unit": "epochs" if max_epochs not in (None, -1) else "steps",
        "max_epochs": "" if max_epochs is None else max_epochs,
        "max_steps": "" if max_steps in (None, -1) else max_steps,
        "epochs": budget.get("epochs"), "steps": steps,
        "train_seconds": m["train_seconds"],
        "threads": (m.get("throughput") or {}).get("threads", ""),
    }  # fmt: skip
    curve = []
    with open(run_dir / "logs" / "metrics.csv", newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            value = _number(line.get(monitor))
            if value is None:
                continue
            step = int(float(line["step"]))
            logged = _number(line.get(ELAPSED))
            elapsed = logged if logged is not None else m["train_seconds"] * (step + 1) / steps
            curve.append({"recipe": m["recipe"], "run": name,
                          "epoch": int(float(line["epoch"])), "step": step,
                          "elapsed_s": round(elapsed, 1),
                          "elapsed_source": "logged" if logged is not None else "estimated",
                          "value": value})  # fmt: skip
    return run, curve


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def extract(run_dirs: Sequence[Path], out: Path = OUT) -> None:
    """Add (or replace) the runs' rows in runs.csv and curves.csv."""
    runs, curves = _read(out / "runs.csv"), _read(out / "curves.csv")
    for run_dir in run_dirs:
        run, curve = extract_run(Path(run_dir))
        key = (str(run["recipe"]), str(run["run"]))
        runs = [r for r in runs if (r["recipe"], r["run"]) != key] + [run]
        curves = [c for c in curves if (c["recipe"], c["run"]) != key] + curve
        print(f"{run_dir}: {len(curve)} validations of {run['monitor']}")
    runs.sort(key=lambda r: (r["recipe"], r["run"]))
    order = {(r["recipe"], r["run"]): i for i, r in enumerate(runs)}
    curves.sort(key=lambda c: (order[(c["recipe"], c["run"])], int(c["step"])))
    _write(out / "runs.csv", RUN_COLUMNS, runs)
    _write(out / "curves.csv", CURVE_COLUMNS, curves)


# ----- calibration --------------------------------------------------------------------------
def default_attention(recipe: str) -> str:
    """The attention type of the recipe's default config (conf/train.yaml + the recipe)."""
    from toolkit.report.spec import compose_train

    return str(compose_train([f"recipe={recipe}"]).attention.name)


@dataclass
class Calibration:
    """One recipe's calibration (a row of calibration.csv)."""

    recipe: str
    monitor: str
    quality: str  # "value" or "1 - value"
    attention: str
    runs: int
    seeds: str
    unit: str  # epochs or steps
    full_budget: int
    full_steps: int
    full_train_s: float
    full_value: float  # mean over runs of the kept value at the full budget
    full_quality: float
    threshold: float  # FRACTION x full_quality
    budget: int  # the standard budget, in `unit`
    budget_steps: int
    budget_elapsed_s: float  # mean elapsed training seconds at the budget
    elapsed_source: str
    budget_value: float
    budget_quality: float
    fraction_of_full: float
    previous_logged: str  # the largest candidate budget below `budget` ("" for none)
    budget_source: str = "long-run curve"  # or "trained to budget (N runs)"
    checks: str = ""  # every checked budget: "B: value (share %, N runs)", "; "-joined

    @property
    def override(self) -> list[str]:
        """The train overrides of this budget (what conf/profile/standard.yaml holds)."""
        if self.unit == "epochs":
            return [f"trainer.max_epochs={self.budget}"]
        return ["trainer.max_epochs=null", f"trainer.max_steps={self.budget}"]


def calibrate(runs: list[dict[str, str]], curves: list[dict[str, str]],
              attention_of=default_attention) -> list[Calibration]:  # fmt: skip
    """The rule of this module's docstring, per recipe in runs.csv."""
    out = []
    for recipe in sorted({r["recipe"] for r in runs}):
        attention = attention_of(recipe)
        mine = [r for r in runs if r["recipe"] == recipe and r["attention"] == attention]
        if not mine:
            raise ValueError(f"{recipe}: no run of its default attention type {attention!r}")
        monitor, mode, unit = mine[0]["monitor"], mine[0]["mode"], mine[0]["unit"]
        higher = mode != "min"
        full_runs, checks = _split_checks(mine, unit)
        per_run = []  # run -> {budget: (step, elapsed, source, value)}
        for r in full_runs:
            pts = {}
            for c in curves:
                if (c["recipe"], c["run"]) == (recipe, r["run"]):
                    step = int(c["step"])
                    b = int(c["epoch"]) + 1 if unit == "epochs" else step + 1
                    pts[b] = (step + 1, float(c["elapsed_s"]), c["elapsed_source"],
                              float(c["value"]))  # fmt: skip
            per_run.append(pts)
        budgets = sorted(set.intersection(*(set(p) for p in per_run)))
        kept_q = []  # per run: kept quality at each common budget
        for pts in per_run:
            kept_q.append(kept([quality(pts[b][3], higher) for b in budgets]))
        mean_q = [statistics.fmean(k[i] for k in kept_q) for i in range(len(budgets))]
        full_q = mean_q[-1]
        # candidate -> (quality, steps, elapsed s, elapsed source, source)
        cand = {b: (mean_q[i], per_run[0][b][0], statistics.fmean(p[b][1] for p in per_run),
                    per_run[0][b][2], "long-run curve")
                for i, b in enumerate(budgets)}  # fmt: skip
        checked = []
        for b, rs in sorted(checks.items()):
            if b >= budgets[-1]:
                continue
            qs = []
            for r in rs:
                vals = [quality(float(c["value"]), higher) for c in curves
                        if (c["recipe"], c["run"]) == (recipe, r["run"])]  # fmt: skip
                if not vals:
                    raise ValueError(f"{recipe}/{r['run']}: no validation in curves.csv")
                qs.append(max(vals))
            q = statistics.fmean(qs)
            # seconds: the long runs' at that budget where they logged it (the same runs as
            # the full budget's seconds), else the checks' own training seconds
            seconds = (
                cand[b][2:4]
                if b in cand
                else (statistics.fmean(float(r["train_seconds"]) for r in rs), "run")
            )
            cand[b] = (q, round(statistics.fmean(int(r["steps"]) for r in rs)), *seconds,
                       f"trained to budget ({_runs(len(rs))})")  # fmt: skip
            checked.append(f"{_n(b, unit)}: {_v(q if higher else 1.0 - q)} "
                           f"({100 * q / full_q:.1f} %, {_runs(len(rs))})")  # fmt: skip
        order = sorted(cand)
        i = smallest_budget(order, [cand[b][0] for b in order])
        b = order[i]
        q, steps, elapsed, elapsed_source, source = cand[b]

        def value_of(q: float, higher: bool = higher) -> float:
            return q if higher else 1.0 - q

        out.append(
            Calibration(
                recipe=recipe, monitor=monitor, quality="value" if higher else "1 - value",
                attention=attention, runs=len(full_runs),
                seeds=" ".join(str(r["seed"]) for r in full_runs), unit=unit,
                full_budget=budgets[-1], full_steps=per_run[0][budgets[-1]][0],
                full_train_s=round(statistics.fmean(float(r["train_seconds"])
                                                    for r in full_runs), 1),
                full_value=round(value_of(full_q), 4), full_quality=round(full_q, 4),
                threshold=round(FRACTION * full_q, 4), budget=b,
                budget_steps=steps, budget_elapsed_s=round(elapsed, 1),
                elapsed_source=elapsed_source,
                budget_value=round(value_of(q), 4), budget_quality=round(q, 4),
                fraction_of_full=round(q / full_q, 4),
                previous_logged="" if i == 0 else str(order[i - 1]),
                budget_source=source, checks="; ".join(checked),
            )
        )  # fmt: skip
    return out


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _split_checks(
    mine: list[dict[str, str]], unit: str
) -> tuple[list[dict[str, str]], dict[int, list[dict[str, str]]]]:
    """The runs trained to the full budget (the largest ``max_epochs``/``max_steps``, or
    none stated), and the others by the budget they were trained to (checks)."""

    def budget(r: dict[str, str]) -> int | None:
        raw = r.get("max_epochs" if unit == "epochs" else "max_steps")
        return int(float(raw)) if raw not in (None, "") else None

    stated = [b for b in map(budget, mine) if b is not None]
    top = max(stated) if stated else None
    full = [r for r in mine if budget(r) in (None, top)]
    checks: dict[int, list[dict[str, str]]] = {}
    for r in mine:
        if budget(r) not in (None, top):
            checks.setdefault(int(budget(r)), []).append(r)
    return full, checks


def calibration_csv(cals: Sequence[Calibration]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(Calibration)],
                       lineterminator="\n")  # fmt: skip
    w.writeheader()
    for c in cals:
        w.writerow(asdict(c))
    return buf.getvalue()


def read_calibration(path: Path = OUT / "calibration.csv") -> dict[str, dict[str, str]]:
    """calibration.csv by recipe (what the profile test compares the profile with)."""
    return {r["recipe"]: r for r in _read(path)}


def _n(n: int, unit: str) -> str:
    """``"1 epoch"``, ``"7 epochs"``."""
    return f"{n:,} {unit[:-1] if n == 1 else unit}"


def _v(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def calibration_md(cals: Sequence[Calibration], runs: list[dict[str, str]],
                   curves: list[dict[str, str]]) -> str:  # fmt: skip
    lines = [
        "# Calibration of `profile=standard`",
        "",
        f"Written by `{COMMAND}` from `runs.csv` and `curves.csv` (this folder), which "
        f"`{COMMAND} extract RUN_DIR ...` took from the run folders of each recipe's default "
        "config trained once at its full default budget (fp32, 2 CPU cores; budgets are "
        "epochs or steps, so the values do not depend on the CPU's speed). Rule: the "
        "smallest budget at which the default attention type keeps a checkpoint whose "
        f"validation quality is >= {FRACTION * 100:g} % of the one it keeps at the full budget "
        "(quality = the `recipe.monitor` value, or 1 - WER for speech; mean over the seeds "
        "where there are several). Runs trained only to a smaller budget are checks of that "
        "budget: their schedule ends there, so where they exist the budget's quality is the "
        "checkpoint they keep, not the long curve's point. The budgets are `budgets:` in "
        "`conf/profile/standard.yaml`.",
        "",
        "| recipe | monitor (quality) | default type, runs | full budget | full-budget value "
        f"| {FRACTION * 100:g} % of its quality | standard budget | value there (share of full) "
        "| read from | train s there / full |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for c in cals:
        unit = c.unit
        lines.append(
            f"| {c.recipe} | `{c.monitor}` ({c.quality}) | {c.attention}, {c.runs} "
            f"| {c.full_budget} {unit} ({c.full_steps:,} steps) | {_v(c.full_value)} "
            f"| {_v(c.threshold)} | **{_n(c.budget, unit)}** ({c.budget_steps:,} steps) "
            f"| {_v(c.budget_value)} ({100 * c.fraction_of_full:.1f} %) "
            f"| {c.budget_source} | {c.budget_elapsed_s:,.0f} / {c.full_train_s:,.0f} |"
        )
    lines += [
        "",
        "Seconds: training wall-clock of the calibration run (`train_seconds`) at the budget, "
        "estimated as `train_seconds × steps so far / steps` where the run did not log "
        "`time/elapsed_s`; the runs used the threads in `runs.csv` (`threads`). A budget "
        "whose previous budget was not logged is an upper bound (the logged budget before it "
        "is named below).",
        "",
    ]
    checked = [c for c in cals if c.checks]
    if checked:
        lines += ["Budgets checked by runs trained only to them (value there, share of the "
                  "full-budget quality, runs):", ""]  # fmt: skip
        lines += [f"* {c.recipe}: {c.checks}" for c in checked]
        lines.append("")
    for c in cals:
        mine = [r for r in runs if r["recipe"] == c.recipe]
        lines += [f"## {c.recipe}", "",
                  f"`{c.monitor}` per validation (`*`: the default type's runs the rule reads; "
                  f"the logged budget before the chosen one: "
                  f"{c.previous_logged or 'none'}):", "",
                  "| run | attention | seed | " + " | ".join(
                      f"{b}" for b in _budgets(c, curves, mine)) + " |",
                  "|---|---|---:|" + "---:|" * len(_budgets(c, curves, mine))]  # fmt: skip
        for r in mine:
            pts = {_budget_of(c.unit, p): float(p["value"]) for p in curves
                   if (p["recipe"], p["run"]) == (c.recipe, r["run"])}  # fmt: skip
            star = "*" if r["attention"] == c.attention else ""
            cells = [_v(pts[b]) if b in pts else "—" for b in _budgets(c, curves, mine)]
            lines.append(f"| {r['run']}{star} | {r['attention']} | {r['seed']} | "
                         + " | ".join(cells) + " |")  # fmt: skip
        every = range(1, c.full_budget + 1) if c.unit == "epochs" else []
        gaps = [b for b in every if b not in _budgets(c, curves, mine)]
        lines += [
            "",
            f"(columns: {c.unit} trained"
            + (
                f"; the log has no validation after {c.unit} {_ranges(gaps)}, so the kept "
                "quality there is that of the logged validations only)"
                if gaps
                else ")"
            ),
            "",
        ]
    return "\n".join(lines)


def _ranges(values: Sequence[int]) -> str:
    """``[2, 3, 4, 5, 8, 9, 10]`` -> ``"2–5, 8–10"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        start = v if start is None else start
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(v) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(parts)


def _budget_of(unit: str, point: dict[str, str]) -> int:
    return int(point["epoch"]) + 1 if unit == "epochs" else int(point["step"]) + 1


def _budgets(c: Calibration, curves: list[dict[str, str]], mine: list[dict[str, str]]) -> list:
    names = {r["run"] for r in mine}
    return sorted({_budget_of(c.unit, p) for p in curves
                   if p["recipe"] == c.recipe and p["run"] in names})  # fmt: skip


def calibration_png(cals: Sequence[Calibration], runs: list[dict[str, str]],
                    curves: list[dict[str, str]]) -> bytes:  # fmt: skip
    """Per recipe: each run's validation quality as a share of the default type's
    full-budget quality against the budget, the 90 % line and the chosen budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cals), figsize=(3.4 * len(cals), 3.0), dpi=90,
                             squeeze=False)  # fmt: skip
    for ax, c in zip(axes[0], cals, strict=True):
        higher = c.quality == "value"
        seen: set[str] = set()
        for r in (r for r in runs if r["recipe"] == c.recipe):
            pts = sorted(
                (_budget_of(c.unit, p), quality(float(p["value"]), higher))
                for p in curves
                if (p["recipe"], p["run"]) == (c.recipe, r["run"])
            )
            default = r["attention"] == c.attention
            label = None if r["attention"] in seen else r["attention"]
            seen.add(r["attention"])
            ax.plot(
                [b for b, _ in pts],
                [q / c.full_quality for _, q in pts],
                marker="o",
                ms=3,
                lw=1.2 if default else 0.8,
                alpha=1.0 if default else 0.5,
                color="C0" if default else "C1",
                label=label,
            )
        ax.axhline(FRACTION, color="gray", ls="--", lw=0.8)
        ax.axvline(c.budget, color="C2", lw=1.0)
        ax.set_title(f"{c.recipe}: {c.budget} of {c.full_budget} {c.unit}", fontsize=9)
        ax.set_xlabel(f"{c.unit} trained", fontsize=8)
        ax.set_ylabel("validation quality / full-budget" if ax is axes[0][0] else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def outputs(out: Path = OUT) -> dict[str, str | bytes]:
    runs, curves = _read(out / "runs.csv"), _read(out / "curves.csv")
    cals = calibrate(runs, curves)
    return {
        "calibration.csv": calibration_csv(cals),
        "calibration.md": calibration_md(cals, runs, curves),
        "calibration.png": calibration_png(cals, runs, curves),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["extract"]:
        extract([Path(p) for p in argv[1:]])
        argv = []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when calibration.csv or .md are stale"
    )
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        stale = [n for n, body in files.items() if isinstance(body, str)
                 and (OUT / n).read_text(encoding="utf-8") != body]  # fmt: skip
        if stale:
            print(f"out of date: {stale}; run {COMMAND}")
            return 1
        return 0
    for name, body in files.items():
        path = OUT / name
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    print(files["calibration.md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
