"""Speed defaults: fp32 against bf16-mixed, eager against ``torch.compile``, per recipe.

Full measurement, on an otherwise idle machine, in two passes: speed of the four settings
(2 threads, 5 warm-up + 30 timed steps, one seed; a run that is not done after ``--timeout``
seconds, e.g. bf16 where the CPU emulates it, is a ``timeout`` row with what it measured),
then the quality at equal steps (validation metric after 300 steps, three seeds) of the
settings that can be defaults::

    nice -n 19 .venv/bin/python benchmarks/speed_defaults.py --timeout 900
    nice -n 19 .venv/bin/python benchmarks/speed_defaults.py --quality --seeds 1 2 3 \
        --settings fp32-eager fp32-compile --out benchmarks/results/speed_defaults/quality

Smoke run (a few seconds of training)::

    .venv/bin/python benchmarks/speed_defaults.py --recipes sentiment --steps 3 --warmup 1 \\
        --threads 1 --out /tmp/speed_defaults

Options: ``--recipes`` (default all four), ``--settings`` (default ``fp32-eager
fp32-compile bf16-mixed-eager bf16-mixed-compile``), ``--steps N`` timed steps after
``--warmup W`` steps, ``--threads N`` (default 2), ``--seeds``, ``--skip RECIPE:SETTING``
(pairs left out, e.g. a compiled setting slower than eager), ``--quality`` (validate
after ``--quality-steps`` training steps, default 300), ``--timeout`` seconds per
recipe × setting × seed (default 1800), ``--out`` (default
``benchmarks/results/speed_defaults/``).

Each recipe runs its ``profile=quick`` config (the recipe's ``report.quick`` overrides) with
the step budget above, each recipe × setting × seed in a fresh process (its own threads and
an empty ``torch.compile`` cache, so the compilation is paid in full, as a new run pays it).
The process builds the recipe's datamodule and module as ``python -m toolkit.train`` does,
compiles the model with :func:`toolkit.training.compile.apply` for a ``-compile`` setting,
and trains with Lightning at the setting's precision. ``bf16-mixed`` is set here directly,
also where bf16 is emulated (``trainer.precision=auto`` would not choose it there): that is
what is measured. A step is one ``on_train_batch_start`` to ``on_train_batch_end`` of
Lightning: forward, loss, backward and optimiser step on a real batch; waiting for data is
outside it.

Per row: the first step's seconds (it includes the compilation), the warm-up's seconds, the
median step time of the timed steps and its steps/s, steps/s over every trained step with
the compilation counted, the mean training loss of the last five steps, with ``--quality``
the validation metric (``recipe.monitor``) after the same number of steps in every
setting, and whether the model ran compiled (a compilation that fell back to eager is
recorded as not compiled). Outputs under ``--out``: ``speed_defaults.csv``,
``speed_defaults.md`` (settings, CPU model and flags, torch version, threads, load
averages, the table and the fastest setting whose quality is within the seed noise of
fp32 eager) and ``speed_defaults.png``, each written to a temporary file and renamed. A
recipe × setting × seed already in the CSV is skipped (delete its row to measure it again);
the CSV must come from the same steps, threads and quality budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from attention_bench.report import cpu_name, loadavg  # noqa: E402

RECIPES = ("sentiment", "translation", "captioning", "asr")
# setting -> (Lightning precision, compile)
SETTINGS = {
    "fp32-eager": ("32-true", False),
    "fp32-compile": ("32-true", True),
    "bf16-mixed-eager": ("bf16-mixed", False),
    "bf16-mixed-compile": ("bf16-mixed", True),
}
BASELINE = "fp32-eager"
OUT = ROOT / "benchmarks" / "results" / "speed_defaults"
NAME = "speed_defaults"
LOSS_STEPS = 5  # the training loss reported: mean over the last this many steps
COLUMNS = ["recipe", "setting", "seed", "precision", "compile_requested", "compiled",
           "compile_fallbacks", "threads", "warmup", "steps", "trained_steps", "steps_done",
           "first_step_s", "warmup_s", "median_step_s", "steps_per_s", "steps_per_s_with_compile",
           "train_loss", "quality_metric", "quality", "status", "wall_s", "load_start",
           "load_end"]  # fmt: skip
# columns averaged over the seeds in the table
MEANS = ("steps_per_s", "steps_per_s_with_compile", "first_step_s", "median_step_s")
# columns that must agree between the rows of one CSV
RUN_SETTINGS = ("threads", "warmup", "steps", "trained_steps")


# ----- pure parts: summary, resume, table -------------------------------------------------
def trained_steps(warmup: int, steps: int, quality_steps: int | None) -> int:
    """Steps each run trains: warm-up + timed steps, or the quality budget when larger."""
    return max(warmup + steps, quality_steps or 0)


def summarise(records: Sequence[dict], warmup: int) -> dict[str, Any]:
    """Step records (``seconds``, ``loss``) -> the timing and loss columns of a row."""
    seconds = [float(r["seconds"]) for r in records]
    if not seconds:
        return {"steps_done": 0}
    timed = seconds[warmup:]
    median = statistics.median(timed) if timed else math.nan
    losses = [float(r["loss"]) for r in records[-LOSS_STEPS:] if r.get("loss") is not None]
    return {
        "steps_done": len(seconds),
        "first_step_s": seconds[0],
        "warmup_s": sum(seconds[:warmup]),
        "median_step_s": median,
        "steps_per_s": 1.0 / median if timed and median > 0 else math.nan,
        "steps_per_s_with_compile": len(seconds) / sum(seconds),
        "train_loss": statistics.fmean(losses) if losses else math.nan,
    }


def row_key(row: dict) -> tuple[str, str, str]:
    return str(row["recipe"]), str(row["setting"]), str(row["seed"])


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_compatible(rows: Iterable[dict], expected: dict[str, Any]) -> None:
    """Refuse to add to a CSV measured with other steps, threads or quality budget."""
    for row in rows:
        for key in RUN_SETTINGS:
            if str(row.get(key)) != str(expected[key]):
                raise SystemExit(
                    f"{row_key(row)} was measured with {key}={row.get(key)}, this run has "
                    f"{key}={expected[key]}: use another --out (or the same settings)"
                )


def pending(rows: Iterable[dict], jobs: Iterable[tuple[str, str, int]]) -> list:
    """The recipe × setting × seed jobs that have no row yet (resume)."""
    done = {row_key(r) for r in rows}
    return [j for j in jobs if (j[0], j[1], str(j[2])) not in done]


def parse_skip(pairs: Iterable[str]) -> set[tuple[str, str]]:
    """``--skip`` values ``recipe:setting`` as pairs; an unknown recipe or setting is an error."""
    out = set()
    for pair in pairs:
        recipe, _, setting = pair.partition(":")
        if recipe not in RECIPES or setting not in SETTINGS:
            known = f"RECIPE in {', '.join(RECIPES)} and SETTING in {', '.join(SETTINGS)}"
            raise SystemExit(f"--skip {pair!r}: expected RECIPE:SETTING with {known}")
        out.add((recipe, setting))
    return out


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}g}"


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def aggregate(rows: Sequence[dict]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per recipe × setting, over the seeds: means (and the seed sd of the quality)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["recipe"], row["setting"]), []).append(row)
    out = {}
    for key, group in groups.items():
        ok = [r for r in group if str(r["status"]).startswith("ok")]
        metric = "quality" if any(not math.isnan(_num(r["quality"])) for r in ok) else "train_loss"
        value, sd = _mean_sd([_num(r[metric]) for r in ok])
        out[key] = {
            "seeds": len(group),
            "ok": len(ok),
            "compiled": sum(str(r["compiled"]) == "True" for r in ok),
            **{k: _mean_sd([_num(r[k]) for r in ok])[0] for k in MEANS},
            "compare_by": metric,
            "quality_metric": next((r["quality_metric"] for r in ok if r["quality_metric"]), ""),
            "value": value,
            "sd": sd,
            "status": "; ".join(sorted({str(r["status"]) for r in group})),
        }
    return out


def within_noise(candidate: dict, baseline: dict) -> bool | None:
    """Whether ``candidate``'s mean quality (or training loss) differs from the baseline's
    by at most twice the baseline's seed-to-seed standard deviation; None when that cannot
    be said (fewer than two seeds, or a value missing)."""
    sd = baseline["sd"]
    if math.isnan(sd) or math.isnan(candidate["value"]) or math.isnan(baseline["value"]):
        return None
    if candidate["compare_by"] != baseline["compare_by"]:
        return None
    return abs(candidate["value"] - baseline["value"]) <= 2 * sd


def recommend(agg: dict, recipe: str) -> tuple[str | None, str]:
    """The fastest setting (median steps/s) whose quality is within the seed noise of fp32
    eager, and why; ``(None, reason)`` when no setting qualifies or it cannot be said."""
    baseline = agg.get((recipe, BASELINE))
    if baseline is None or not baseline["ok"]:
        return None, f"no {BASELINE} result to compare with"
    best, why = BASELINE, "the baseline"
    for (r, setting), a in agg.items():
        if r != recipe or setting == BASELINE or not a["ok"] or math.isnan(a["steps_per_s"]):
            continue
        if a["steps_per_s"] <= agg[(recipe, best)]["steps_per_s"]:
            continue
        ok = within_noise(a, baseline)
        if ok is None:
            return None, "quality noise unknown (run two or more seeds)"
        if ok:
            best, why = setting, f"faster, {a['compare_by']} within the seed noise"
    return best, why


def table_md(rows: Sequence[dict]) -> str:
    agg = aggregate(rows)
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    lines = [
        "| recipe | setting | ran compiled | steps/s (median step) | first step s "
        "(incl. compile) | steps/s incl. compile | quality or loss (mean ± seed sd) | "
        "seeds | status |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for recipe in recipes:
        for setting in SETTINGS:
            a = agg.get((recipe, setting))
            if a is None:
                continue
            label = a["quality_metric"] if a["compare_by"] == "quality" else "train loss"
            value = f"{label} {_fmt(a['value'], 4)} ± {_fmt(a['sd'], 2)}"
            lines.append(
                f"| {recipe} | {setting} | {a['compiled']}/{a['ok']} "
                f"| {_fmt(a['steps_per_s'])} | {_fmt(a['first_step_s'])} "
                f"| {_fmt(a['steps_per_s_with_compile'])} | {value} | {a['seeds']} "
                f"| {a['status']} |"
            )
    lines += ["", "| recipe | fastest setting within the seed noise of fp32 eager | why |",
              "|---|---|---|"]  # fmt: skip
    for recipe in recipes:
        best, why = recommend(agg, recipe)
        lines.append(f"| {recipe} | {best or '–'} | {why} |")
    return "\n".join(lines)


def markdown(rows: Sequence[dict], meta: dict[str, Any]) -> str:
    loads = [_num(r.get(k)) for r in rows for k in ("load_start", "load_end")]
    loads = [v for v in loads if not math.isnan(v)]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"
    return "\n".join([
        "# Speed defaults: fp32 vs bf16-mixed, eager vs torch.compile",
        "",
        f"- Command: `{meta['command']}`",
        f"- CPU: {meta['cpu']}; {meta['cpu_model']}",
        f"- CPU flags (torch): {meta['flags']}",
        f"- torch {meta['torch']}, Lightning {meta['lightning']}; {meta['threads']} threads "
        "per run, each recipe × setting × seed in its own process with an empty compile cache",
        f"- Steps: {meta['warmup']} warm-up + {meta['steps']} timed, {meta['trained_steps']} "
        f"trained per run (`profile=quick` configs); quality: "
        f"{'validation metric after ' + str(meta['trained_steps']) + ' steps' if meta['quality'] else 'not measured (training loss of the last five steps compared)'}",  # noqa: E501
        f"- Load average (1 min) over the rows: {load}",
        "- steps/s = 1 / median step time after the warm-up (forward, backward, optimiser "
        "step; data loading outside); \"incl. compile\" = trained steps / their total time. "
        "bf16-mixed is measured where bf16 is emulated too; `trainer.precision=auto` picks "
        "it only where the CPU has native bf16 and the recipe does not set "
        "`recipe.cpu_bf16: false`. \"Within the seed noise\": mean differs from "
        "fp32 eager's by at most twice fp32 eager's seed standard deviation.",
        "",
        table_md(rows),
        "",
    ])  # fmt: skip


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, ""))
                             for k in COLUMNS})  # fmt: skip
    os.replace(tmp, path)


def plot(path: Path, rows: Sequence[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    settings = [s for s in SETTINGS if any((r, s) in agg for r in recipes)]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(settings), 1)
    for i, setting in enumerate(settings):
        values = [agg.get((r, setting), {}).get("steps_per_s", math.nan) for r in recipes]
        ax.bar([x + i * width for x in range(len(recipes))], values, width, label=setting)
    ax.set_xticks([x + width * (len(settings) - 1) / 2 for x in range(len(recipes))], recipes)
    ax.set_yscale("log")
    ax.set_ylabel("training steps/s (median step)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# ----- one measurement, in its own process --------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Train one recipe × setting × seed and append step records (JSON lines) to --log."""
    import lightning.pytorch as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from toolkit.report.spec import compose_train, recipe_report
    from toolkit.runs import import_object
    from toolkit.training import compile as compile_mod
    from toolkit.training.checkpoints import build_datamodule

    precision_name, compile_on = SETTINGS[args.setting]
    total = trained_steps(args.warmup, args.steps, args.quality_steps)
    torch.set_num_threads(args.threads)
    quick = recipe_report(args.recipe).overrides("quick") or []
    cfg = compose_train([f"recipe={args.recipe}", *quick, f"threads={args.threads}",
                         f"seed={args.seed}", f"trainer.precision={precision_name}",
                         f"compile={str(compile_on).lower()}", "attention_examples=0"])  # fmt: skip
    pl.seed_everything(cfg.seed, workers=True)
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 (written by the callback)

    class StepClock(pl.Callback):
        t0 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seconds = time.perf_counter() - self.t0
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            loss = float(loss) if loss is not None else None
            log.write(json.dumps({"step": trainer.global_step, "seconds": seconds,
                                  "loss": loss}) + "\n")  # fmt: skip
            log.flush()

    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module_cls = import_object(cfg.recipe.module)
    module = module_cls(
        cfg=OmegaConf.to_container(cfg, resolve=True), data_state=datamodule.state()
    )
    compiled = compile_mod.apply(module, compile_on)
    common = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  precision=precision_name)  # fmt: skip
    trainer = instantiate(cfg.trainer, callbacks=[StepClock()], max_epochs=None, max_steps=total,
                          max_time=None, limit_val_batches=0, num_sanity_val_steps=0,
                          **common)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    final: dict[str, Any] = {"compiled": compiled.active, **compiled.record()}
    if args.quality_steps:
        validator = pl.Trainer(accelerator=cfg.trainer.get("accelerator", "cpu"), devices=1,
                               limit_val_batches=cfg.trainer.get("limit_val_batches"),
                               **common)  # fmt: skip
        result = validator.validate(module, datamodule=datamodule, verbose=False)
        monitor = str(cfg.recipe.monitor)
        final.update(quality_metric=monitor, quality=float(result[0][monitor]))
        final["compiled"] = compiled.active  # validation may have fallen back too
        final.update(compiled.record())
    log.write(json.dumps({"final": final}) + "\n")
    log.close()


def measure(args: argparse.Namespace, recipe: str, setting: str, seed: int) -> dict[str, Any]:
    """Run one worker process (time limit ``--timeout``) and make its CSV row."""
    steps_dir = args.out / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    log_path = steps_dir / f"{recipe}_{setting}_s{seed}.jsonl"
    log_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--recipe", recipe,
           "--setting", setting, "--seed", str(seed), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--quality-steps", str(args.quality_steps or 0), "--log", str(log_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    load_start, start = loadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache  # every run compiles from scratch
        with open(steps_dir / f"{recipe}_{setting}_s{seed}.log", "w") as out:
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=args.timeout).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                rc = None
    wall = time.perf_counter() - start
    text = log_path.read_text() if log_path.is_file() else ""
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    records = [x for x in lines if "seconds" in x]
    final = next((x["final"] for x in lines if "final" in x), None)
    precision_name, compile_on = SETTINGS[setting]
    row: dict[str, Any] = {
        "recipe": recipe, "setting": setting, "seed": seed, "precision": precision_name,
        "compile_requested": compile_on, "threads": args.threads, "warmup": args.warmup,
        "steps": args.steps, **summarise(records, args.warmup), "wall_s": wall,
        "load_start": load_start, "load_end": loadavg(),
        "compiled": final["compiled"] if final else "", "quality_metric": "", "quality": "",
    }  # fmt: skip
    row["trained_steps"] = trained_steps(args.warmup, args.steps, args.quality_steps)
    if final is not None:
        row.update({k: final[k] for k in ("compile_fallbacks", "quality_metric", "quality")
                    if k in final})  # fmt: skip
        fell_back = compile_on and not final["compiled"]
        row["status"] = "ok (compile fell back to eager)" if fell_back else "ok"
    elif rc is None:
        row["status"] = f"timeout after {len(records)} steps ({args.timeout:.0f} s)"
    else:
        tail = (steps_dir / f"{recipe}_{setting}_s{seed}.log").read_text().strip().splitlines()
        error = next((t for t in reversed(tail) if "Error" in t or "error" in t), tail[-1:] or [""])
        row["status"] = f"failed: {str(error).strip()[:160]}"
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=30, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument("--skip", nargs="+", default=[], metavar="RECIPE:SETTING",
                        help="recipe × setting pairs not to run")  # fmt: skip
    parser.add_argument("--quality", action="store_true",
                        help="validation metric after --quality-steps steps")  # fmt: skip
    parser.add_argument("--quality-steps", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=OUT)
    # one measurement (the child process)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if not args.quality:
        args.quality_steps = None
    import lightning
    import torch

    from toolkit.training import precision

    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{NAME}.csv"
    rows = read_rows(csv_path)
    total = trained_steps(args.warmup, args.steps, args.quality_steps)
    check_compatible(rows, {"threads": args.threads, "warmup": args.warmup,
                            "steps": args.steps, "trained_steps": total})  # fmt: skip
    skip = parse_skip(args.skip)
    jobs = [(r, s, seed) for r in args.recipes for s in args.settings for seed in args.seeds
            if (r, s) not in skip]  # fmt: skip
    todo = pending(rows, jobs)
    print(f"[speed_defaults] {len(jobs) - len(todo)} of {len(jobs)} runs already in {csv_path}; "
          f"{len(todo)} to run", flush=True)  # fmt: skip
    flags = precision.cpu_flags()
    meta = {
        "command": "python benchmarks/speed_defaults.py " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv),
        "cpu": precision.describe_cpu(), "cpu_model": cpu_name(),
        "flags": ", ".join(sorted(k for k, v in flags.items() if v)) or "–",
        "torch": torch.__version__, "lightning": lightning.__version__,
        "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
        "trained_steps": total, "quality": bool(args.quality_steps),
    }  # fmt: skip
    for i, (recipe, setting, seed) in enumerate(todo, 1):
        print(f"[speed_defaults] {i}/{len(todo)} {recipe} {setting} seed {seed} ...", flush=True)
        row = measure(args, recipe, setting, seed)
        print(
            f"[speed_defaults] {recipe} {setting} seed {seed}: {row['status']}, "
            f"{_fmt(_num(row.get('steps_per_s')))} steps/s, first step "
            f"{_fmt(_num(row.get('first_step_s')))} s, loss "
            f"{_fmt(_num(row.get('train_loss')), 4)}, wall {row['wall_s']:.0f} s",
            flush=True,
        )
        rows = [r for r in rows if row_key(r) != row_key(row)] + [row]
        write_csv(csv_path, rows)
        rows = read_rows(csv_path)  # one representation (strings) for every row
        write_atomic(args.out / f"{NAME}.md", markdown(rows, meta))
        plot(args.out / f"{NAME}.png", rows)
    if rows:
        write_atomic(args.out / f"{NAME}.md", markdown(rows, meta))
        plot(args.out / f"{NAME}.png", rows)
        print(table_md(rows))


if __name__ == "__main__":
    main()
