"""toolkit.compare / toolkit.report on hand-written run folders, the attention diagnostics on
hand-built matrices, the CTC alignment agreement, and the attention-images callback."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from toolkit import report
from toolkit.commands import compare
from toolkit.metrics.alignment import attention_ctc_agreement, ctc_token_spans
from toolkit.metrics.attention import attention_entropy, diagonality, monotonicity

torch.set_num_threads(1)

SPEC = report.RecipeReport(
    name="sentiment", metrics=["accuracy", "f1_macro"], primary="accuracy",
    attentions=["additive", "multihead"],
)  # fmt: skip


def write_run(folder: Path, attention: str, seed: int, acc: float, recipe: str = "sentiment"):
    folder.mkdir(parents=True, exist_ok=True)
    m = {
        "recipe": recipe, "attention": attention, "model": "RNNClassifier", "seed": seed,
        "metrics": {"accuracy": acc, "f1_macro": acc - 0.01, "attention_entropy": 0.9},
        "train_seconds": 10.0 + seed, "params": 1000,
        "throughput": {"train_samples_per_s": 100.0, "test_ms_per_sample": 2.0},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(m))


def grid_cfg(tmp_path: Path, **extra) -> object:
    cfg = {
        "profile": {"name": "quick", "seeds": [1, 2], "overrides": ["threads=1"],
                    "default_recipe_overrides": ["trainer.max_epochs=1"]},
        "runs_dir": str(tmp_path / "runs"), "attentions": None, "seeds": None, "overrides": [],
        **extra,
    }  # fmt: skip
    return OmegaConf.create(cfg)


@pytest.fixture
def grid(tmp_path):
    """sentiment × {additive, multihead} × seeds {1, 2}: three finished, one never ran."""
    g = compare.plan(grid_cfg(tmp_path), {"sentiment": SPEC})
    accs = {("additive", 1): 0.79, ("additive", 2): 0.81, ("multihead", 1): 0.75}
    for s in g:
        if (s.attention, s.seed) in accs:
            write_run(s.run_dir, s.attention, s.seed, accs[(s.attention, s.seed)])
    return g


def test_plan_orders_overrides_and_folders(tmp_path):
    spec = report.RecipeReport("sentiment", ["accuracy"], "accuracy", attentions=["dot", "linear"],
                               profiles={"quick": ["trainer.max_epochs=2"]})  # fmt: skip
    other = report.RecipeReport("newrecipe", ["wer"], "wer", higher_is_better=False)
    cfg = grid_cfg(tmp_path, overrides=["data.limit=9"])
    g = compare.plan(cfg, {"sentiment": spec, "newrecipe": other})
    assert [(s.recipe, s.attention, s.seed) for s in g] == [
        ("sentiment", "dot", 1), ("sentiment", "dot", 2), ("sentiment", "linear", 1),
        ("sentiment", "linear", 2), ("newrecipe", "additive", 1), ("newrecipe", "additive", 2),
        ("newrecipe", "multihead", 1), ("newrecipe", "multihead", 2),
    ]  # fmt: skip
    # recipe's own budget, then the profile's, then the user's (last wins in Hydra)
    assert g[0].overrides == ["trainer.max_epochs=2", "threads=1", "data.limit=9"]
    assert g[-1].overrides == ["trainer.max_epochs=1", "threads=1", "data.limit=9"]
    # a profile's per-recipe budget comes first, before the recipe's own list
    cfg.profile.budgets = {"sentiment": ["trainer.max_epochs=4"]}
    g = compare.plan(cfg, {"sentiment": spec, "newrecipe": other})
    assert g[0].overrides == ["trainer.max_epochs=4", "trainer.max_epochs=2", "threads=1",
                              "data.limit=9"]  # fmt: skip
    assert g[-1].overrides == ["trainer.max_epochs=1", "threads=1", "data.limit=9"]
    assert g[0].run_dir == tmp_path / "runs" / "sentiment" / "dot" / "seed1"
    cmd = g[0].command("py")
    assert cmd[:6] == ["py", "-m", "toolkit.train", "recipe=sentiment", "attention=dot", "seed=1"]
    assert cmd[-1] == f"hydra.run.dir={g[0].run_dir}"
    user = compare.plan(grid_cfg(tmp_path, attentions=["local"], seeds=[7]), {"sentiment": spec})
    assert [(s.attention, s.seed) for s in user] == [("local", 7)]


def test_collector_table_mean_std_and_missing(grid, tmp_path):
    rows = compare.collect_grid(grid)
    assert [r.status for r in rows] == ["ok", "ok", "ok", "missing"]
    missing = rows[-1]
    assert (missing.recipe, missing.attention, missing.seed) == ("sentiment", "multihead", 2)

    summary = report.summary_table(SPEC, rows)
    by_att = {r[2]: dict(zip(summary.header, r, strict=True)) for r in summary.rows}
    assert by_att["additive"]["runs"] == "2/2"
    assert by_att["additive"]["accuracy"] == "0.8000 ± 0.0141"  # stdev(0.79, 0.81), n-1
    assert by_att["additive"]["train s"] == "11.5 ± 0.7071"
    assert by_att["multihead"]["runs"] == "1/2"  # the missing seed is counted, not dropped
    assert by_att["multihead"]["accuracy"] == "0.7500"

    out = tmp_path / "report"
    index = report.build_report(rows, out, {"sentiment": SPEC})
    with open(out / "results.csv", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 4
    assert [(r["attention"], r["seed"], r["status"]) for r in table] == [
        ("additive", "1", "ok"), ("additive", "2", "ok"), ("multihead", "1", "ok"),
        ("multihead", "2", "missing"),
    ]  # fmt: skip
    assert table[0]["accuracy"] == "0.79" and table[3]["accuracy"] == ""
    # seed interval of the primary metric on every run of a group; these older-style runs
    # have no per-example files, and the report says so instead of failing
    assert table[0]["primary_mean"] == "0.8" and table[0]["primary_seeds"] == "2"
    assert float(table[0]["primary_ci95_low"]) == pytest.approx(0.8 - 0.127062, abs=1e-5)
    assert table[0]["p_value"] == "" and "no per-example file" in table[0]["significance_note"]
    assert table[2]["significance_note"] == "reference"
    md = (out / "results.md").read_text()
    assert "| RNNClassifier | — | additive | 2/2 | 0.8000 ± 0.0141 |" in md
    assert (
        "`additive` vs `multihead` on `accuracy`: no significance test — seed 1: no "
        "per-example file in" in md
    )
    assert re.search(r"\| multihead \| 2 \| missing \| — \|", md)
    page = index.read_text()
    assert page.count('<tr class="missing">') == 1
    assert "http://" not in page and "https://" not in page  # self-contained
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def write_per_example_run(folder: Path, attention: str, seed: int, correct: int, n: int = 100):
    """A run folder with metrics.json and per_example.jsonl.gz: right on the first
    ``correct`` of ``n`` sentences (all labelled pos)."""
    from toolkit.runs import write_per_example

    write_run(folder, attention, seed, correct / n)
    records = [{"id": i, "label": "pos", "predicted": "pos" if i < correct else "neg",
                "probability": 0.9} for i in range(n)]  # fmt: skip
    write_per_example(folder, {"recipe": "sentiment", "kind": "classification",
                               "labels": ["neg", "pos"]}, records)  # fmt: skip


def test_report_seed_interval_and_significance(tmp_path):
    """additive right on 90 / 88 of 100 test sentences (seeds 1 / 2), multihead on 60 / 62:
    the report gives each type's t-interval over seeds and says the +0.28 is significant;
    dot (an older run without per-example files) is named, not a failure."""
    runs = tmp_path / "runs"
    for attention, seed, correct in [("additive", 1, 90), ("additive", 2, 88),
                                     ("multihead", 1, 60), ("multihead", 2, 62)]:  # fmt: skip
        write_per_example_run(runs / attention / f"seed{seed}", attention, seed, correct)
    write_run(runs / "dot" / "seed1", "dot", 1, 0.7)
    write_run(runs / "dot" / "seed2", "dot", 2, 0.72)
    rows = report.collect(report.find_runs([runs]))
    index = report.build_report(rows, tmp_path / "out", {"sentiment": SPEC})
    md = (tmp_path / "out" / "results.md").read_text()
    # mean 0.89, s = 0.0141421, t(0.975, 1) = 12.7062: 0.89 ± 0.127062
    assert "| RNNClassifier | — | additive | 2 | 0.8900 | 0.7629 to 1.0171 | +0.2800 |" in md
    assert "| RNNClassifier | — | multihead | 2 | 0.6100 | 0.4829 to 0.7371 | reference |" in md
    assert "`additive` vs `multihead` on `accuracy`: difference +0.2800 (95 % interval +0." in md
    assert (
        "100 test examples, 1,000 resamples, 2 seeds paired, their differences averaged), "
        "p = 0.002: significant at the 0.05 level — `additive` is better than `multihead`." in md
    )
    assert (
        "`dot` vs `multihead` on `accuracy`: no significance test — seed 1: no per-example "
        f"file in {runs / 'dot' / 'seed1'} (an older run)" in md
    )
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as fh:
        table = {(r["attention"], r["seed"]): r for r in csv.DictReader(fh)}
    add = table[("additive", "1")]
    assert add["reference"] == "multihead" and add["significant"] == "True"
    assert float(add["diff_vs_reference"]) == pytest.approx(0.28)
    assert float(add["p_value"]) == pytest.approx(2 / 1001)
    assert float(add["diff_ci95_low"]) > 0.15 and float(add["diff_ci95_high"]) < 0.41
    assert float(add["primary_ci95_high"]) == pytest.approx(0.89 + 0.127062, abs=1e-5)
    assert table[("dot", "2")]["p_value"] == "" and table[("multihead", "1")]["p_value"] == ""
    page = index.read_text()
    assert "Seeds and significance" in page and "significant at the 0.05 level" in page

    # another reference type, and a stricter level: the same numbers, other sentences
    sig = report.Significance(reference="additive", alpha=0.001)
    md = report.write_markdown(rows, {"sentiment": SPEC}, tmp_path / "strict.md", sig=sig)
    assert "`multihead` vs `additive` on `accuracy`: difference -0.2800" in md
    assert "p = 0.002: not significant at the 0.001 level" in md
    sig = report.Significance(reference="uniform")
    md = report.write_markdown(rows, {"sentiment": SPEC}, tmp_path / "uniform.md", sig=sig)
    assert "no `uniform` run of the same model and budget in this report" in md


def test_failed_run_is_reported_with_its_error(tmp_path):
    spec = compare.RunSpec("sentiment", "dot", 1, tmp_path / "r", [])
    spec.run_dir.mkdir()
    (spec.run_dir / "compare.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    row = compare.collect_grid([spec])[0]
    assert (row.status, row.note, row.attention) == ("failed", "boom", "dot")


def test_resume_skips_finished_runs(grid, monkeypatch):
    ran = []

    def fake_execute(spec, python, timeout_s):
        ran.append(spec.run_dir)
        write_run(spec.run_dir, spec.attention, spec.seed, 0.7)
        return {"status": "ok", "wall_seconds": 1.0, "peak_rss_mib": 1.0}

    monkeypatch.setattr(compare, "execute", fake_execute)
    rows = compare.run_grid(grid, sys.executable, None)
    assert ran == [grid[-1].run_dir]  # only the one without metrics.json
    assert [r.status for r in rows] == ["reused", "reused", "reused", "ok"]
    ran.clear()
    compare.run_grid(grid, sys.executable, None)
    assert ran == []  # everything finished now: nothing re-runs
    compare.run_grid(grid, sys.executable, None, force=True)
    assert len(ran) == 4


def _fake_command(code: str):
    return lambda self, python: [sys.executable, "-c", code, str(self.run_dir)]


def test_execute_records_status_memory_and_timeout(tmp_path, monkeypatch):
    ok_code = (
        "import json,sys,pathlib; d=pathlib.Path(sys.argv[1]); b=bytearray(64<<20); "
        "(d/'metrics.json').write_text(json.dumps({'recipe':'x','attention':'dot'}))"
    )
    monkeypatch.setattr(compare.RunSpec, "command", _fake_command(ok_code))
    info = compare.execute(compare.RunSpec("x", "dot", 1, tmp_path / "a", []), "py", 30)
    assert info["status"] == "ok" and info["returncode"] == 0
    assert info["peak_rss_mib"] >= 64  # the child's own peak, from wait4
    assert json.loads((tmp_path / "a" / "compare.json").read_text())["status"] == "ok"

    monkeypatch.setattr(compare.RunSpec, "command", _fake_command("raise SystemExit('bad')"))
    info = compare.execute(compare.RunSpec("x", "dot", 1, tmp_path / "b", []), "py", 30)
    assert info["status"] == "failed" and info["error"] == "bad"

    monkeypatch.setattr(compare.RunSpec, "command", _fake_command("import time; time.sleep(30)"))
    info = compare.execute(compare.RunSpec("x", "dot", 1, tmp_path / "c", []), "py", 0.5)
    assert info["status"] == "timeout" and info["wall_seconds"] < 10
    assert compare.load_run(tmp_path / "c").status == "timeout"


def test_recipe_report_block_and_defaults():
    none = report.report_from_config(
        "asr", {"recipe": {"monitor": "val/wer", "monitor_mode": "min"}}
    )
    assert (none.primary, none.metrics, none.higher_is_better) == ("wer", ["wer"], False)
    assert none.attentions == ["additive", "multihead"] and none.overrides("quick") is None
    block = {"recipe": {"monitor": "val/bleu"},
             "report": {"metrics": ["chrf"], "primary": "bleu", "quick": ["a=1"]}}  # fmt: skip
    spec = report.report_from_config("translation", block)
    assert spec.metrics == ["bleu", "chrf"] and spec.overrides("quick") == ["a=1"]
    with pytest.raises(ValueError, match="unknown report keys"):
        report.report_from_config("x", {"report": {"primay": "bleu"}})
    # the real block, read by composing conf/train.yaml with recipe=sentiment
    real = report.recipe_report("sentiment")
    assert real.primary == "accuracy" and len(real.attentions) >= 2
    assert real.overrides("quick")
    assert report.recipe_report("not_a_recipe").metrics == []


# ----- diagnostics on hand-built matrices ---------------------------------------------------
def test_uniform_attention_has_maximal_entropy():
    n = 7
    ent, norm = attention_entropy(torch.full((3, n), 1 / n))
    assert torch.allclose(ent, torch.full((3,), math.log(n)))
    assert torch.allclose(norm, torch.ones(3))
    peaked = torch.zeros(3, n)
    peaked[:, 2] = 1
    assert torch.allclose(attention_entropy(peaked)[1], torch.zeros(3), atol=1e-6)


def test_diagonal_alignment_is_monotone_and_diagonal():
    eye = torch.eye(6)
    assert monotonicity(eye) == 1.0
    assert diagonality(eye) == pytest.approx(1.0)
    assert monotonicity(eye.flip(0)) == 0.0  # every peak moves backwards
    stretched = torch.zeros(3, 6)  # T_out = 3 over S = 6: two source tokens per step
    stretched[0, 0], stretched[1, 2], stretched[2, 4] = 1, 1, 1
    assert monotonicity(stretched) == 1.0 and diagonality(stretched) == pytest.approx(1.0)


def test_grounding_peak_in_and_out_of_box():
    from toolkit.metrics import grounding

    objects = [{"label": "cube", "box": (0, 0, 16, 16)}]
    att_in = np.zeros((2, 16))  # a 4x4 grid over a 32x32 image; cell (0, 0) is in the box
    att_in[1, 0] = 1.0
    att_out = np.zeros((2, 16))
    att_out[1, 15] = 1.0  # bottom-right cell: outside
    hit = grounding.pointing_game(["a", "cube"], att_in, objects, (32, 32), grid=(4, 4))
    miss = grounding.pointing_game(["a", "cube"], att_out, objects, (32, 32), grid=(4, 4))
    assert (hit.hits, hit.total, miss.hits, miss.total) == (1, 1, 0, 1)
    assert hit.chance == pytest.approx(0.25)


def ctc_case():
    """10 frames, blank 0: tokens 1, 2, 3 on frames [1, 3), [4, 6), [7, 9)."""
    lp = torch.full((10, 4), -10.0)
    for t, c in enumerate([0, 1, 1, 0, 2, 2, 0, 3, 3, 0]):
        lp[t, c] = 0.0
    return lp.log_softmax(-1)


def test_attention_ctc_agreement_in_frames():
    lp = ctc_case()
    assert ctc_token_spans(lp, [1, 2, 3]) == [(1, 3), (4, 6), (7, 9)]
    follows = torch.zeros(4, 10)  # 3 tokens + an EOS row (ignored)
    follows[0, 2] = follows[1, 4] = follows[2, 8] = follows[3, 9] = 1
    a = attention_ctc_agreement(follows, lp, [1, 2, 3])
    assert (a.in_span, a.mean_frames_outside, a.mean_abs_frame_error) == (1.0, 0.0, 0.5)
    off = torch.zeros(3, 10)
    off[0, 0] = off[1, 9] = off[2, 7] = 1  # before, after, inside its span
    b = attention_ctc_agreement(off, lp, [1, 2, 3])
    assert b.attention_frames == [0, 9, 7]
    assert b.in_span == pytest.approx(1 / 3)
    assert b.mean_frames_outside == pytest.approx((1 + 4 + 0) / 3)
    assert b.mean_abs_frame_error == pytest.approx((1.5 + 4.5 + 0.5) / 3)
    assert set(b.as_metrics()) == {"attention_ctc_frame_error", "attention_ctc_frames_outside",
                                   "attention_ctc_in_span"}  # fmt: skip
    with pytest.raises(ValueError, match="frame axes"):
        attention_ctc_agreement(torch.zeros(3, 8), lp, [1, 2, 3])


# ----- the attention-images callback ----------------------------------------------------------
class FakeWriter:
    def __init__(self):
        self.images = []

    def add_image(self, tag, img, global_step, dataformats):
        self.images.append((tag, img.shape, global_step, dataformats))


def fake_trainer(epoch=0, sanity=False):
    logger = SimpleNamespace(experiment=FakeWriter())
    return SimpleNamespace(sanity_checking=sanity, is_global_zero=True, current_epoch=epoch,
                           loggers=[logger], datamodule="dm", global_step=12)  # fmt: skip


def test_attention_images_callback_uses_hook():
    from toolkit.training.callbacks import AttentionImages

    class WithHook:
        def attention_images(self, datamodule, n):
            assert datamodule == "dm"
            return {f"ex{i}": np.zeros((5, 7, 3), np.uint8) for i in range(n)}

    cb = AttentionImages(num_examples=3, max_images=2, every_n_epochs=2)
    trainer = fake_trainer()
    cb.on_validation_epoch_end(trainer, WithHook())
    assert trainer.loggers[0].experiment.images == [
        ("attention/ex0", (5, 7, 3), 12, "HWC"), ("attention/ex1", (5, 7, 3), 12, "HWC"),
    ]  # fmt: skip
    for skipped in (fake_trainer(epoch=1), fake_trainer(sanity=True)):
        cb.on_validation_epoch_end(skipped, WithHook())
        assert skipped.loggers[0].experiment.images == []


def test_attention_images_callback_falls_back_to_export(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.training.callbacks import AttentionImages

    class ExportOnly:
        def export_attention(self, datamodule, out_dir, n):
            fig = plt.figure(figsize=(2, 1), dpi=50)
            fig.savefig(Path(out_dir) / "pooling.png")
            plt.close(fig)
            return {}

    trainer = fake_trainer()
    AttentionImages().on_validation_epoch_end(trainer, ExportOnly())
    ((tag, shape, _, _),) = trainer.loggers[0].experiment.images
    assert tag == "attention/pooling" and shape == (50, 100, 3)


def test_compare_cli_runs_reports_and_resumes(tmp_path):
    """The real command on a tiny sentiment grid: one run, the report, then a resume that
    re-runs nothing."""
    import os
    import subprocess

    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable, "-m", "toolkit.compare", "recipes=[sentiment]", "attentions=[dot]",
        'overrides=["debug=fast","data.limit=60","threads=1"]',
        f"out={tmp_path / 'report'}", f"runs_dir={tmp_path / 'runs'}",
    ]  # fmt: skip
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "1/1 sentiment/dot seed 1: ok" in first.stdout
    run = tmp_path / "runs" / "sentiment" / "dot" / "seed1"
    side = json.loads((run / "compare.json").read_text())
    assert side["status"] == "ok" and side["peak_rss_mib"] > 50
    with open(tmp_path / "report" / "results.csv", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["recipe"], row["attention"], row["status"]) == ("sentiment", "dot", "ok")
    assert 0.0 <= float(row["accuracy"]) <= 1.0 and float(row["peak_rss_mib"]) > 50
    assert (tmp_path / "report" / "index.html").stat().st_size > 10_000
    stamp = (run / "metrics.json").stat().st_mtime_ns
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "seed 1: reused" in again.stdout
    assert (run / "metrics.json").stat().st_mtime_ns == stamp


def test_stale_reused_run_is_flagged(tmp_path):
    spec = compare.RunSpec("sentiment", "dot", 1, tmp_path / "r", ["trainer.max_epochs=2"])
    spec.run_dir.mkdir()
    assert not compare.stale(spec, "py")  # not made by compare: nothing to compare with
    side = {"status": "ok", "command": " ".join(spec.command("/other/python"))}
    (spec.run_dir / "compare.json").write_text(json.dumps(side))
    assert not compare.stale(spec, "py")  # another interpreter is the same run
    spec.overrides = ["trainer.max_epochs=3"]
    assert compare.stale(spec, "py")


def test_same_seed_runs_are_not_averaged_and_evaluations_skipped(tmp_path):
    write_run(tmp_path / "cnn", "additive", 1234, 0.7)
    write_run(tmp_path / "effnet", "additive", 1234, 0.9)
    (tmp_path / "eval").mkdir()  # a toolkit.evaluate re-scoring: no train_seconds
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"recipe": "sentiment"}))
    found = report.find_runs([tmp_path])
    assert [p.name for p in found] == ["cnn", "effnet"]
    rows = report.disambiguate(report.collect(found))
    summary = report.summary_table(SPEC, rows)
    assert [(r[1], r[3], r[4]) for r in summary.rows] == [
        ("cnn", "1/1", "0.7000"), ("effnet", "1/1", "0.9000"),
    ]  # fmt: skip


def test_parallel_jobs_run_everything_once_in_grid_order(grid, monkeypatch):
    """jobs=2: every unfinished run executes once, two at a time, rows stay in grid order."""
    import threading
    import time as _time

    ran, active, peak = [], [0], [0]
    lock = threading.Lock()

    def fake_execute(spec, python, timeout_s):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        _time.sleep(0.2)
        write_run(spec.run_dir, spec.attention, spec.seed, 0.7)
        with lock:
            active[0] -= 1
            ran.append(spec.run_dir)
        return {"status": "ok", "wall_seconds": 0.2, "peak_rss_mib": 1.0}

    monkeypatch.setattr(compare, "execute", fake_execute)
    rows = compare.run_grid(grid, sys.executable, None, force=True, jobs=2)
    assert sorted(ran) == sorted(s.run_dir for s in grid) and peak[0] == 2
    assert [(r.attention, r.seed) for r in rows] == [(s.attention, s.seed) for s in grid]


@pytest.mark.parametrize("profile", ["quick", "standard", "full"])
def test_budgets_are_epochs_or_steps_never_minutes(profile):
    """Every recipe's default and each profile's budget is epochs or steps (a slower machine
    trains the same model); `trainer.max_time` may only be a guard, never a profile's budget."""
    prof = OmegaConf.load(Path(compare.CONF_DIR) / "profile" / f"{profile}.yaml")
    for name in report.recipe_names():
        spec = report.recipe_report(name)
        overrides = [*compare.recipe_overrides(prof, name, spec), *prof.overrides]
        assert not [o for o in overrides if "max_time" in o], (name, overrides)
        cfg = report.compose_train([f"recipe={name}", *overrides])
        epochs, steps = cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)
        assert (epochs is not None and epochs > 0) or steps > 0, (name, epochs, steps)


def test_a_recipe_that_does_not_import_is_an_error_not_a_silent_omission(monkeypatch):
    real = compare.import_object

    def broken(path):
        if path.startswith("recipes.captioning."):
            raise ImportError("No module named 'skimage'")
        return real(path)

    monkeypatch.setattr(compare, "import_object", broken)
    cfg = OmegaConf.create({"recipes": None, "profile": {"name": "quick"}})
    expected = r"recipe captioning: its module recipes\.captioning\.module\.\w+ does not import"
    with pytest.raises(compare.RecipeImportError, match=expected):
        compare.select_recipes(cfg)
    cfg.recipes = ["sentiment"]  # left out on purpose: fine
    assert compare.select_recipes(cfg) == ["sentiment"]


def test_uniform_attention_is_monotone_only_by_chance():
    """Tied peaks are drawn at random: the `uniform` block scores the chance level
    0.5 + 1 / (2 S), not 1.0 (argmax would put every peak at position 0)."""
    from toolkit.attention import build

    block = build("uniform", query_dim=8, key_dim=8)
    scores = []
    for seed in range(200):
        q, k = torch.randn(1, 12, 8), torch.randn(1, 10, 8)
        _, w = block(q, k, k, need_weights=True)  # (1, 12, 10), every row 1/10
        scores.append(monotonicity(w[0], seed=seed))
    assert float(np.mean(scores)) == pytest.approx(0.5 + 1 / 20, abs=0.03)
    peaked = torch.zeros(12, 10)
    peaked[:, 0] = 1.0  # a real (untied) peak that never moves still counts as monotone
    assert monotonicity(peaked) == 1.0
