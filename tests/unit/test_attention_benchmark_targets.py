"""benchmarks/attention_bench/targets.py: the attention benchmark's targets, read from
``targets.yaml`` and evaluated on a hand-built results dict (met, missed, not measured)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from attention_bench import targets  # noqa: E402

LENGTHS = [1024, 2048, 8192]


def _row(ms, mib):
    return {"ms_median": ms, "peak_mib": mib}


def _results() -> dict:
    r = {}
    for t in LENGTHS:
        for p, k in (("fwd", 1.0), ("fwd_bwd", 3.0)):
            r["sdpa", t, p] = _row(k * t / 100, k * t / 200)
            r["scaled_dot", t, p] = _row(k * t / 100, k * t / 200)  # = sdpa: met
            r["torch_mha", t, p] = _row(k * t / 100, k)
            r["multihead", t, p] = _row(k * t / 100, k)
            r["local", t, p] = _row(k * t / 1000, k * t / 150)
            r["linear", t, p] = _row(k, k * t / 64)  # memory ~ T: slope 1
            # sdpa_masked: measured up to 2048, skipped at 8192
            r["sdpa_masked", t, p] = _row(k * t / 50, k * t / 100) if t < 8192 else _row(None, None)
            r["naive", t, p] = _row(None, None)  # never measured
    r["multihead", 8192, "fwd"] = _row(1.2 * 8192 / 100, 1.0)  # 1.2x torch_mha: missed
    return r


def _by_id(results, lengths=LENGTHS) -> dict[str, targets.Outcome]:
    return {t.id: targets.evaluate(t, results, lengths) for t in targets.TARGETS}


def test_targets_met_missed_and_not_measured():
    out = _by_id(_results())
    assert out["1a"].status == "PASS"
    assert out["1b"].status == "MISS"
    assert "8192: 98.3/81.9 ms = 1.200x OVER" in out["1b"].lines[1]
    assert out["5"].status == "PASS"  # 10x faster, 1.33x the memory
    assert out["5"].lines[1] == (
        "- fwd: time 8.2 vs 81.9 ms = 10.0x faster ok; memory 54.6 vs 41.0 MiB = 1.33x ok"
    )
    assert out["6"].status == "PASS (partial: some cases not measured)"
    assert out["6"].lines[1].endswith("; 8192: n/a")
    assert out["2"].status == "N/A"  # naive not measured
    assert out["2"].lines[1] == "- fwd: n/a (a case was not measured)"
    # linear's time needs naive (n/a), its memory slope alone is measured
    assert out["3"].status == "PASS (partial: some cases not measured)"
    assert "time n/a; peak MiB by length {1024: 16.0, 2048: 32.0, 8192: 128.0}" in out["3"].lines[1]
    assert "slope 1.00 ok" in out["3"].lines[1]
    assert out["4"].status == "N/A"  # additive not run at all


def test_missing_lengths_and_the_largest_run():
    results = _results()
    out = _by_id(results, [1024, 8192])
    assert out["4"].lines[1:] == [
        "- fwd: n/a (2048 not run)",
        "- fwd_bwd: n/a (2048 not run)",
        "- **N/A**",
    ]
    short = _by_id(results, [256, 512])
    assert short["6"].lines == ["### 6. local vs sdpa_masked at every length >= 1024: n/a"]
    assert short["5"].lines[0].startswith("### 5. local vs fused dense sdpa at 512 (8192 not run")


def test_memory_bounds_and_the_markdown():
    results = _results()
    for t in LENGTHS:
        for p in ("fwd", "fwd_bwd"):
            results["additive", t, p] = _row(1.0, 10.0)
            results["scaled_dot_eager", t, p] = _row(1.0, 4.0)  # additive 2.5x: over
    out = _by_id(results)
    assert out["4"].status == "MISS" and "10.0 vs 4.0 MiB = 2.50x OVER" in out["4"].lines[1]
    md = targets.targets_md(results, LENGTHS)
    assert md.startswith("## Targets\n\n### 1a. scaled_dot vs sdpa (time <= 1.05x)\n")
    assert md.count("\n### ") == len(targets.TARGETS) and not md.endswith("\n")


def test_what_the_sweep_derives_from_the_data():
    assert targets.paired() == (
        ("scaled_dot", "sdpa"),
        ("multihead", "torch_mha"),
        ("local", "sdpa_masked"),
    )
    lengths = [512, 1024, 4096]  # 8192 not run: 4096 is the largest
    assert targets.needed("sdpa", 512, lengths) and targets.needed("torch_mha", 512, lengths)
    assert not targets.needed("local", 512, lengths) and targets.needed("local", 1024, lengths)
    assert targets.needed("naive", 4096, lengths) and not targets.needed("naive", 1024, lengths)
    assert not targets.needed("linear", 1024, lengths)  # its slope reads what ran
    assert not targets.needed("additive", 1024, lengths)  # at 2048 only


def test_a_malformed_target_is_refused(tmp_path):
    bad = tmp_path / "targets.yaml"
    bad.write_text(
        "- {id: x, title: t, type: local, reference: sdpa, lengths: every,\n"
        "   checks: [{metric: slope, max_ratio: 2, text: t, missed: M}]}\n"
    )
    with pytest.raises(ValueError, match="slope takes a range"):
        targets.load(bad)
