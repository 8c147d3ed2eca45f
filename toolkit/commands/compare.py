"""Compare attention types across recipes: run a grid, then write one report.

    python -m toolkit.compare profile=quick                       # every recipe
    python -m toolkit.compare profile=full recipes=[sentiment] attentions=[additive,linear] \
        seeds=[1,2,3]
    python -m toolkit.compare run=false runs_dir=runs/compare/full # report only

Each (recipe, attention, seed) is one ``python -m toolkit.train`` subprocess writing the run
folder ``<runs_dir>/<recipe>/<attention>/seed<seed>``, one after another. A folder that
already has ``metrics.json`` is reused, so an interrupted compare resumes where it stopped;
a run that fails or times out is recorded in its ``compare.json`` and reported as such.
What a recipe compares and how (attentions, budgets per profile, metrics) is its
``report:`` block in ``conf/recipe/<name>.yaml`` (conf/recipe/README.md), after the
profile's ``budgets.<recipe>`` list where it has one (conf/profile/standard.yaml); a recipe
that lands later shows up with no change here. ``significance:`` (conf/compare.yaml) sets
the reference type each other type is tested against on the test examples (toolkit/report/);
a profile's ``reference`` is its default. ``setting=long`` (any name a recipe gives a
``report.<name>`` list) adds each recipe's ``report.long`` overrides to its runs (inputs of
>= 1,000 positions) and puts runs and report under ``<runs_dir>/long`` and ``<out>/long``.
``interpret=true`` runs ``python -m toolkit.interpret`` on the kept checkpoint of every
finished run whose metrics.json has no ``interpretability`` entry yet (reused runs too),
``interpret_examples`` test items with the run's threads, its console in the run folder's
``interpret.log``; a failed step is counted and printed, and its run stays in the report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from toolkit.commands.overrides import run_with_key_help
from toolkit.paths import CONF_DIR
from toolkit.report import (
    COMPARE_FILE,
    RecipeReport,
    Row,
    Significance,
    build_report,
    load_run,
    recipe_names,
    recipe_report,
)
from toolkit.runs import import_object, read_metrics, write_text_atomic

log = logging.getLogger(__name__)
_RUNNING: set[int] = set()  # process-group ids of the trainings running now


@dataclass
class RunSpec:
    """One run of the grid."""

    recipe: str
    attention: str
    seed: int
    run_dir: Path
    overrides: list[str]

    def command(self, python: str) -> list[str]:
        return [
            python,
            "-m",
            "toolkit.train",
            f"recipe={self.recipe}",
            f"attention={self.attention}",
            f"seed={self.seed}",
            *self.overrides,
            f"hydra.run.dir={self.run_dir}",
        ]


class RecipeImportError(RuntimeError):
    """A recipe in conf/recipe/ whose module does not import: a broken install, not a
    recipe to leave out quietly."""


def require_importable(name: str) -> None:
    """Import the recipe's LightningModule.

    Raises:
        RecipeImportError: naming the recipe, its module and the import error, so a broken
            recipe never just disappears from a comparison.
    """
    cfg = OmegaConf.load(Path(CONF_DIR, "recipe", f"{name}.yaml"))
    try:
        import_object(str(cfg.recipe.module))
    except Exception as err:  # noqa: BLE001 - any import failure is reported the same way
        raise RecipeImportError(
            f"recipe {name}: its module {cfg.recipe.module} does not import ({err}); fix the "
            f"install, or leave it out explicitly with recipes=[...]"
        ) from err


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return [value]
    return list(OmegaConf.to_container(value) if not isinstance(value, list) else value)


def recipe_overrides(profile: DictConfig, name: str, spec: RecipeReport) -> list[str]:
    """A recipe's own overrides under ``profile``: the profile's ``budgets.<name>`` list,
    then the recipe's ``report.<profile>`` list; the profile's ``default_recipe_overrides``
    where neither exists."""
    budget = (profile.get("budgets") or {}).get(name)
    own = spec.overrides(str(profile.name))
    if budget is None and own is None:
        return [str(o) for o in (profile.get("default_recipe_overrides") or [])]
    return [str(o) for o in (budget or [])] + [str(o) for o in (own or [])]


DEFAULT_SETTING = "default"
SETTING_KEY = "input_setting"  # the train config key a non-default setting's runs carry


def setting_of(cfg: DictConfig) -> str:
    """The input setting of the grid (``setting=``): ``default`` or a name such as ``long``
    whose overrides each recipe gives as its ``report.<setting>`` list."""
    return str(cfg.get("setting") or DEFAULT_SETTING)


def setting_dir(path: Any, setting: str) -> Path:
    """``path`` for the default setting, ``path/<setting>`` for any other, so the runs (and
    the report) of two settings never mix."""
    return Path(str(path)) if setting == DEFAULT_SETTING else Path(str(path)) / setting


def setting_overrides(name: str, spec: RecipeReport, setting: str) -> list[str]:
    """A recipe's overrides for a non-default input ``setting`` (its ``report.<setting>``
    list) and the marker ``++input_setting=<setting>`` its run folders carry (the report
    labels their budget with it); nothing for the default setting.

    Raises:
        ValueError: the recipe has no ``report.<setting>`` list.
    """
    if setting == DEFAULT_SETTING:
        return []
    own = spec.overrides(setting)
    if own is None:
        raise ValueError(
            f"recipe {name} has no `report.{setting}` list in conf/recipe/{name}.yaml, so "
            f"setting={setting} is not defined for it; leave it out with recipes=[...]"
        )
    return [*own, f"++{SETTING_KEY}={setting}"]


def plan(cfg: DictConfig, specs: dict[str, RecipeReport]) -> list[RunSpec]:
    """The grid: recipes × attentions × seeds, with the profile's and user's overrides; a
    non-default ``setting`` adds each recipe's ``report.<setting>`` list after its own and
    puts the runs under ``<runs_dir>/<setting>``."""
    profile = cfg.profile
    setting = setting_of(cfg)
    seeds = _as_list(cfg.get("seeds")) or _as_list(profile.get("seeds")) or [1]
    user_attentions = _as_list(cfg.get("attentions"))
    common = [str(o) for o in (profile.get("overrides") or [])]
    user = cfg.get("overrides") or []
    common += shlex.split(user) if isinstance(user, str) else [str(o) for o in user]
    runs_dir = setting_dir(cfg.runs_dir, setting)
    grid = []
    for name, spec in specs.items():
        own = recipe_overrides(profile, name, spec) + setting_overrides(name, spec, setting)
        types = (
            user_attentions
            or (spec.profile_attentions.get(setting) if setting != DEFAULT_SETTING else None)
            or spec.attentions_for(str(profile.name))
        )
        for attention in types:
            for seed in seeds:
                grid.append(
                    RunSpec(
                        recipe=name,
                        attention=str(attention),
                        seed=int(seed),
                        run_dir=runs_dir / name / str(attention) / f"seed{seed}",
                        overrides=[*own, *common],
                    )
                )
    return grid


def is_done(run_dir: Path) -> bool:
    """A finished run: its folder has metrics.json (written last, atomically, by train)."""
    return (Path(run_dir) / "metrics.json").is_file()


def _write_side(run_dir: Path, info: dict[str, Any]) -> None:
    import json

    write_text_atomic(run_dir / COMPARE_FILE, json.dumps(info, indent=2) + "\n")


@dataclass
class Launched:
    """How one subprocess ended: exit code, whether the timeout stopped it, wall seconds
    and its peak resident memory (MiB)."""

    returncode: int
    timed_out: bool
    wall_seconds: float
    peak_rss_mib: float


def launch(cmd: list[str], log_path: Path, timeout_s: float | None) -> Launched:
    """Run ``cmd`` in its own session, its output into ``log_path``; stopped (the whole
    process group) after ``timeout_s`` or when compare itself is interrupted. Peak memory is
    the ``wait4`` rusage of that child."""
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _RUNNING.add(proc.pid)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

        timer = threading.Timer(timeout_s, stop) if timeout_s else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            stop()
            proc.wait()
            raise
        finally:
            _RUNNING.discard(proc.pid)
            if timer:
                timer.cancel()
    return Launched(
        returncode=os.waitstatus_to_exitcode(status),
        timed_out=timed_out.is_set(),
        wall_seconds=time.perf_counter() - started,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux: KiB
    )


def execute(spec: RunSpec, python: str, timeout_s: float | None) -> dict[str, Any]:
    """Run one training subprocess; returns (and writes to compare.json) its status, wall
    time and peak resident memory (``wait4`` rusage of that child, MiB)."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = spec.command(python)
    done = launch(cmd, spec.run_dir / "stdout.log", timeout_s)
    ok = done.returncode == 0 and is_done(spec.run_dir)
    info: dict[str, Any] = {
        "status": "ok" if ok else ("timeout" if done.timed_out else "failed"),
        "returncode": done.returncode,
        "wall_seconds": round(done.wall_seconds, 2),
        "peak_rss_mib": round(done.peak_rss_mib, 1),
        "command": shlex.join(cmd),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not ok:
        tail = (spec.run_dir / "stdout.log").read_text(encoding="utf-8", errors="replace")
        info["error"] = tail.strip().splitlines()[-1][:300] if tail.strip() else ""
    _write_side(spec.run_dir, info)
    return info


# ----- the interpret step (interpret=true) ------------------------------------------------
INTERPRET_LOG = "interpret.log"


@dataclass
class InterpretStep:
    """``interpret=true``: after each finished run, ``python -m toolkit.interpret`` on its
    kept checkpoint (``examples`` test items, the run's threads); counts what it did."""

    examples: int = 200
    measured: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)

    def command(self, python: str, ckpt: Path, threads: int | None) -> list[str]:
        cmd = [python, "-m", "toolkit.interpret", f"ckpt={ckpt}", f"examples={self.examples}"]
        return cmd + ([f"threads={threads}"] if threads else [])


def _metrics(run_dir: Path) -> dict[str, Any]:
    try:
        return read_metrics(run_dir)
    except (OSError, ValueError):
        return {}


def needs_interpret(run_dir: Path) -> bool:
    """A finished run whose metrics.json has no ``interpretability`` entry yet."""
    return is_done(run_dir) and "interpretability" not in _metrics(run_dir)


def kept_checkpoint(run_dir: Path, metrics: dict[str, Any]) -> Path | None:
    """The checkpoint the run tested (its metrics.json ``checkpoint``: the best by the
    recipe's metric, else ``last.ckpt``), also when the folder moved since (the same file
    name under its ``checkpoints/``); None when neither exists."""
    recorded = metrics.get("checkpoint")
    if not recorded:
        return None
    here = Path(run_dir) / "checkpoints" / Path(recorded).name
    return next((p for p in (Path(recorded), here) if p.is_file()), None)


def run_threads(metrics: dict[str, Any]) -> int | None:
    """The torch threads the run trained with (its metrics.json ``throughput.threads``)."""
    threads = (metrics.get("throughput") or {}).get("threads")
    return int(threads) if isinstance(threads, (int, float)) and threads > 0 else None


def _side(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((Path(run_dir) / COMPARE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def interpret_run(
    run_dir: Path, python: str, step: InterpretStep, timeout_s: float | None
) -> dict[str, Any]:
    """Interpret one finished run into its own folder; the outcome is counted in ``step``
    and recorded under ``interpret`` in compare.json, the console in ``interpret.log``."""
    log_path = Path(run_dir) / INTERPRET_LOG
    metrics = _metrics(run_dir)
    ckpt = kept_checkpoint(run_dir, metrics)
    if ckpt is None:
        log_path.write_text("no kept checkpoint: metrics.json names none that exists\n",
                            encoding="utf-8")  # fmt: skip
        info: dict[str, Any] = {"status": "failed", "returncode": None, "wall_seconds": 0.0}
    else:
        cmd = step.command(python, ckpt, run_threads(metrics))
        done = launch(cmd, log_path, timeout_s)
        ok = done.returncode == 0 and not needs_interpret(run_dir)
        info = {"status": "ok" if ok else ("timeout" if done.timed_out else "failed"),
                "returncode": done.returncode, "wall_seconds": round(done.wall_seconds, 2),
                "command": shlex.join(cmd)}  # fmt: skip
    info["log"] = str(log_path)
    (step.measured if info["status"] == "ok" else step.failed).append(Path(run_dir))
    _write_side(run_dir, {**_side(run_dir), "interpret": info})
    return info


def interpret_line(info: dict[str, Any]) -> str:
    """The progress words of one interpret step."""
    if info["status"] == "ok":
        return f"interpreted in {info['wall_seconds']:.0f} s"
    exit_code = "no checkpoint" if info["returncode"] is None else f"exit {info['returncode']}"
    timed_out = ", timed out" if info["status"] == "timeout" else ""
    return f"interpret failed ({exit_code}{timed_out}): see {info['log']}"


def stale(spec: RunSpec, python: str) -> bool:
    """A finished run whose recorded command differs from the one the grid would run now."""
    recorded = shlex.split(_side(spec.run_dir).get("command", ""))[1:]
    return bool(recorded) and recorded != spec.command(python)[1:]


def run_grid(
    grid: list[RunSpec],
    python: str,
    timeout_s: float | None,
    force: bool = False,
    jobs: int = 1,
    interpret: InterpretStep | None = None,
) -> list[Row]:
    """Run what is not done yet, ``jobs`` runs at a time (each its own process; one after
    another with ``jobs=1``); returns a row per planned run, in grid order. With
    ``interpret``, every finished run without an ``interpretability`` entry (reused ones
    too) is interpreted after its training, in the same worker."""
    from concurrent.futures import ThreadPoolExecutor

    statuses: dict[int, str] = {}
    todo = []
    for i, spec in enumerate(grid, 1):
        tag = f"[compare] {i}/{len(grid)} {spec.recipe}/{spec.attention} seed {spec.seed}"
        if is_done(spec.run_dir) and not force:
            print(f"{tag}: reused {spec.run_dir}", flush=True)
            statuses[i] = "reused"
            if stale(spec, python):
                print(f"{tag}: note: it was trained with other overrides than the current "
                      "profile's (force=true re-runs)", flush=True)  # fmt: skip
            if interpret and needs_interpret(spec.run_dir):
                todo.append((i, tag, spec))
        else:
            todo.append((i, tag, spec))

    def one(item: tuple[int, str, RunSpec]) -> None:
        i, tag, spec = item
        if statuses.get(i) != "reused":
            train_one(i, tag, spec)
        if interpret and needs_interpret(spec.run_dir):
            print(f"{tag}: interpreting → {spec.run_dir / INTERPRET_LOG}", flush=True)
            info = interpret_run(spec.run_dir, python, interpret, timeout_s)
            print(f"{tag}: {interpret_line(info)}", flush=True)

    def train_one(i: int, tag: str, spec: RunSpec) -> None:
        print(f"{tag}: running → {spec.run_dir}", flush=True)
        info = execute(spec, python, timeout_s)
        statuses[i] = info["status"]
        print(
            f"{tag}: {info['status']} in {info['wall_seconds']:.0f} s, "
            f"peak RSS {info['peak_rss_mib']:.0f} MiB" + (
                f" — {info.get('error', '')} (log: {spec.run_dir / 'stdout.log'})"
                if info["status"] != "ok" else ""),
            flush=True,
        )  # fmt: skip

    if jobs <= 1:
        for item in todo:
            one(item)
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            list(pool.map(one, todo))  # re-raises a worker's exception here
        except BaseException:  # Ctrl-C / SIGTERM: stop every running training too
            for pid in list(_RUNNING):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    rows = []
    for i, spec in enumerate(grid, 1):
        row = load_run(
            spec.run_dir,
            expected={"recipe": spec.recipe, "attention": spec.attention, "seed": spec.seed},
        )
        if statuses.get(i) == "reused" and row.ok:
            row.status = "reused"
        rows.append(row)
    return rows


def collect_grid(grid: list[RunSpec]) -> list[Row]:
    """Rows for a planned grid without running anything (``run=false``)."""
    return [
        load_run(s.run_dir, expected={"recipe": s.recipe, "attention": s.attention,
                                      "seed": s.seed})
        for s in grid
    ]  # fmt: skip


def select_recipes(cfg: DictConfig) -> list[str]:
    names = _as_list(cfg.get("recipes"))
    known = recipe_names(CONF_DIR)
    if names is None:
        # the profile's `first` recipes lead (the longest runs, so parallel jobs end
        # together), the others follow in name order
        first = [str(n) for n in (_as_list(cfg.profile.get("first")) or []) if n in known]
        ordered = first + [n for n in known if n not in first]
        for n in ordered:
            require_importable(n)
        return ordered
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; valid choices: {', '.join(known)}")
    return [str(n) for n in names]


def check_attentions(grid: list[RunSpec]) -> None:
    from toolkit.attention import available

    names = available()
    bad = sorted({s.attention for s in grid} - set(names))
    if bad:
        raise ValueError(f"unknown attention type(s) {bad}; valid choices: {', '.join(names)}")


def jobs_of(cfg: DictConfig) -> int:
    """Runs at a time: ``jobs=``, else the profile's ``jobs``, else 1."""
    return int(cfg.get("jobs") or cfg.profile.get("jobs") or 1)


def interpret_step(cfg: DictConfig) -> InterpretStep | None:
    """``interpret=true`` (or the profile's ``interpret``): the step, else None."""
    if not cfg.get("interpret"):
        return None
    return InterpretStep(examples=int(cfg.get("interpret_examples") or 200))


def interpret_summary(step: InterpretStep) -> str:
    text = (f"[compare] interpret: {len(step.measured)} run(s) measured, "
            f"{len(step.failed)} interpret step(s) failed")  # fmt: skip
    if step.failed:
        text += f" (logs: {INTERPRET_LOG} in " + ", ".join(map(str, step.failed)) + ")"
    return text


def intro_text(cfg: DictConfig, grid: list[RunSpec], specs: dict[str, RecipeReport]) -> str:
    """The paragraph at the top of the report: what was run, on what, and how to run more."""
    from toolkit.training.precision import describe_cpu

    seeds = sorted({s.seed for s in grid})
    per_recipe = []
    for name in specs:
        types = list(dict.fromkeys(s.attention for s in grid if s.recipe == name))
        if types:
            per_recipe.append(f"{name} ({', '.join(types)})")
    description = str(cfg.profile.get("description") or "").strip()
    jobs = jobs_of(cfg)
    parallel = f" {jobs} runs at a time, so their times share the machine." if jobs > 1 else ""
    setting = setting_of(cfg)
    inputs = (
        f" Input setting `{setting}`: each recipe's `report.{setting}` overrides "
        "(conf/recipe/<name>.yaml) on top of the profile's; the budget column says so."
        if setting != DEFAULT_SETTING
        else ""
    )
    return (
        f"Profile `{cfg.profile.name}`: {len(grid)} training runs, "
        f"{'seed ' if len(seeds) == 1 else 'seeds '}{', '.join(map(str, seeds))}, over "
        f"{'; '.join(per_recipe)}. Each run trains its recipe's model with the attention type "
        "of its row, then scores it on the recipe's held-out test set; `budget` is the "
        "planned training budget, `trained` what the run did. Machine: "
        f"{describe_cpu()}.{parallel}{inputs} " + description
    ).strip()


def compare(cfg: DictConfig) -> Path:
    """Plan, run (unless ``run=false``) and report; returns the report's index.html."""
    significance = Significance.from_config(cfg.get("significance"))  # fails before any run
    specs = {name: recipe_report(name) for name in select_recipes(cfg)}
    grid = plan(cfg, specs)
    check_attentions(grid)
    setting = setting_of(cfg)
    out = setting_dir(cfg.out, setting)
    print(
        f"[compare] profile={cfg.profile.name} setting={setting}: {len(grid)} runs over "
        f"{', '.join(specs)} under {setting_dir(cfg.runs_dir, setting)}",
        flush=True,
    )
    python = str(cfg.get("python") or sys.executable)
    step = interpret_step(cfg) if cfg.get("run", True) else None  # run=false: collect only
    started = time.perf_counter()
    if cfg.get("run", True):
        timeout = cfg.profile.get("timeout_s")
        rows = run_grid(grid, python, float(timeout) if timeout else None, bool(cfg.force),
                        jobs_of(cfg), step)  # fmt: skip
    else:
        rows = collect_grid(grid)
    wall = time.perf_counter() - started
    command = "python -m toolkit.compare " + " ".join(sys.argv[1:])
    index = build_report(rows, out, specs, command=command,
                         intro=intro_text(cfg, grid, specs),
                         significance=significance)  # fmt: skip
    done = sum(r.ok for r in rows)
    print(f"[compare] {done}/{len(rows)} runs finished; grid wall time {wall:.0f} s")
    if step is not None:
        print(interpret_summary(step))
    print(Path(out, "results.md").read_text(encoding="utf-8"))
    print(f"[compare] report: {index.resolve()}")
    return index


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(config_path=CONF_DIR, config_name="compare", version_base="1.3")
def command(cfg: DictConfig) -> None:
    # SIGTERM like Ctrl-C: the running training (its own session) is stopped too, and the
    # next compare resumes from the finished runs.
    signal.signal(signal.SIGTERM, _interrupt)
    compare(cfg)


def main() -> None:
    """``python -m toolkit.compare key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "compare")
