"""The benchmark's targets as data (``targets.yaml``) and the one function that evaluates
them on a sweep's results (``evaluate``), rendered as the Markdown's ``## Targets``."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cases import PASSES

TARGETS_FILE = Path(__file__).with_name("targets.yaml")
METRICS = {"time": "ms_median", "memory": "peak_mib", "slope": "peak_mib"}
BOUNDS = ("max_ratio", "below", "min_factor", "range")


@dataclass(frozen=True)
class Check:
    """One bound on the type (against the reference) at each length of its target."""

    metric: str  # time | memory | slope
    kind: str  # max_ratio | below | min_factor | range
    bound: float | tuple[float, float]
    text: str
    missed: str
    text_na: str | None = None

    def holds(self, value: float, reference: float | None) -> bool:
        if self.kind == "max_ratio":
            return value <= self.bound * reference
        if self.kind == "below":
            return value < self.bound * reference
        if self.kind == "min_factor":
            return reference >= self.bound * value
        lo, hi = self.bound
        return lo <= value <= hi


@dataclass(frozen=True)
class Target:
    id: str
    title: str
    type: str
    reference: str
    lengths: str | int  # "every" | "largest" | ">= N" | N
    checks: tuple[Check, ...]
    passes: tuple[str, ...] = PASSES
    paired: bool = False
    layout: str = "per_pass"  # or per_length
    summary: str = ""
    title_if_no_lengths: str | None = None

    def select(self, lengths) -> list[int]:
        """The lengths (of those run) this target compares at."""
        if self.lengths == "every":
            return list(lengths)
        if self.lengths == "largest":
            return [largest(lengths)]
        if isinstance(self.lengths, int):
            return [self.lengths] if self.lengths in lengths else []
        return [t for t in lengths if t >= self.from_length]

    @property
    def from_length(self) -> int | None:
        if isinstance(self.lengths, str) and self.lengths.startswith(">="):
            return int(self.lengths[2:])
        return None


@dataclass
class Outcome:
    """One evaluated target: its Markdown lines and verdict."""

    target: Target
    status: str  # PASS, "PASS (partial: ...)", MISS or N/A
    lines: list[str] = field(default_factory=list)
    oks: list[bool | None] = field(default_factory=list)


def largest(lengths) -> int:
    return 8192 if 8192 in lengths else max(lengths)


def load(path: Path = TARGETS_FILE) -> list[Target]:
    """The targets of a YAML file (see the field list at the top of ``targets.yaml``)."""
    targets = []
    for row in yaml.safe_load(Path(path).read_text()):
        row = dict(row)
        checks = []
        for spec in row.pop("checks"):
            spec = dict(spec)
            (kind,) = [k for k in BOUNDS if k in spec]
            bound = spec.pop(kind)
            if spec["metric"] not in METRICS:
                raise ValueError(f"target {row['id']}: unknown metric {spec['metric']!r}")
            if (kind == "range") != (spec["metric"] == "slope"):
                raise ValueError(f"target {row['id']}: a slope takes a range, nothing else does")
            bound = tuple(bound) if kind == "range" else bound
            checks.append(Check(kind=kind, bound=bound, **spec))
        row["id"] = str(row["id"])
        row["passes"] = tuple(row.get("passes", PASSES))
        targets.append(Target(checks=tuple(checks), **row))
    return targets


TARGETS = load()


def paired(targets=TARGETS) -> tuple[tuple[str, str], ...]:
    """The (type, reference) pairs timed in turn in one process."""
    return tuple((t.type, t.reference) for t in targets if t.paired)


def needed(name: str, seq_len: int, lengths, targets=TARGETS) -> bool:
    """Whether a target compares ``name`` at ``seq_len`` (time or memory; a slope reads
    whatever lengths were measured)."""
    return any(
        name in (t.type, t.reference)
        and any(c.metric != "slope" for c in t.checks)
        and seq_len in t.select(lengths)
        for t in targets
    )


def get(results, name, seq_len, pass_, what):
    r = results.get((name, seq_len, pass_))
    return None if r is None else r.get(what)


def status(oks: list[bool | None]) -> str:
    measured = [ok for ok in oks if ok is not None]
    if not measured:
        return "N/A"
    if not all(measured):
        return "MISS"
    return "PASS" if len(measured) == len(oks) else "PASS (partial: some cases not measured)"


def loglog_slope(points: list[tuple[float, float]]) -> float | None:
    points = [(x, y) for x, y in points if x > 0 and y is not None and y > 0]
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def _parts(target: Target, results, seq_len, pass_, lengths) -> tuple[list[str] | None, list]:
    """The line parts and oks of the checks at one length, or ``(None, oks)`` when a value
    a check without ``text_na`` needs is missing."""
    parts, oks = [], []
    for check in target.checks:
        what = METRICS[check.metric]
        fields = {}
        if check.metric == "slope":
            pts = [(t, get(results, target.type, t, pass_, what)) for t in lengths]
            value, ref = loglog_slope(pts), None
            fields["points"] = ", ".join(
                f"{t}: {'n/a' if m is None else f'{m:.1f}'}" for t, m in pts
            )
            missing = value is None
        else:
            value = get(results, target.type, seq_len, pass_, what)
            ref = get(results, target.reference, seq_len, pass_, what)
            missing = value is None or ref is None
        if missing:
            if check.text_na is None:
                return None, [None] * len(target.checks)
            oks.append(None)
            parts.append(check.text_na.format(**fields))
            continue
        ok = check.holds(value, ref)
        oks.append(ok)
        if ref is not None:
            fields.update(ratio=value / max(ref, 1e-9), factor=ref / max(value, 1e-9))
        parts.append(
            check.text.format(
                value=value, reference=ref, verdict="ok" if ok else check.missed, **fields
            )
        )
    return parts, oks


def evaluate(target: Target, results: dict, lengths) -> Outcome:
    """One target on ``results`` (``{(type, seq_len, pass): {"ms_median", "peak_mib"}}``,
    None where a case was not measured) over the run's ``lengths``."""
    big = largest(lengths)
    words = {
        "big": big,
        "note": "" if big == 8192 else f" (8192 not run: using {big})",
        "from": target.from_length,
    }
    at = target.select(lengths)
    if not at and target.title_if_no_lengths is not None:
        title = target.title_if_no_lengths.format(**words)
        return Outcome(target, "N/A", [f"### {target.id}. {title}"])
    out = Outcome(target, "N/A", [f"### {target.id}. {target.title.format(**words)}"])
    for pass_ in target.passes:
        if target.layout == "per_length":
            parts = []
            for seq_len in at:
                found, oks = _parts(target, results, seq_len, pass_, lengths)
                out.oks += oks
                parts.append(f"{seq_len}: " + ("n/a" if found is None else "; ".join(found)))
            out.lines.append(f"- {pass_}: " + "; ".join(parts))
        elif not at:
            out.oks += [None] * len(target.checks)
            out.lines.append(f"- {pass_}: n/a ({target.lengths} not run)")
        else:
            found, oks = _parts(target, results, at[0], pass_, lengths)
            out.oks += oks
            text = "n/a (a case was not measured)" if found is None else "; ".join(found)
            out.lines.append(f"- {pass_}: {text}")
    out.status = status(out.oks)
    out.lines.append(f"- **{out.status}**" + (f" ({target.summary})" if target.summary else ""))
    return out


def targets_md(results: dict, lengths, targets=TARGETS) -> str:
    out = ["## Targets", ""]
    for target in targets:
        out += [*evaluate(target, results, lengths).lines, ""]
    return "\n".join(out[:-1])
