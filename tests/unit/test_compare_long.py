"""``python -m toolkit.compare setting=long``: each recipe's ``report.long`` overrides are
added to its runs after its profile budget, the runs and the report go to their own
folders, every long run composes, and the report labels the runs' budget with the setting."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from toolkit import report
from toolkit.commands import compare
from toolkit.paths import CONF_DIR

RECIPES = ["asr", "captioning", "sentiment", "translation"]


def compare_cfg(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="compare", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def specs():
    return {name: report.recipe_report(name) for name in RECIPES}


@pytest.mark.parametrize("profile", ["quick", "standard"])
def test_long_setting_plans_each_recipes_long_overrides_into_its_own_folder(profile, specs):
    same = ("runs_dir=/tmp/r", "seeds=[1]", "attentions=[multihead]")
    cfg = compare_cfg(f"profile={profile}", "setting=long", *same)
    default = compare.plan(compare_cfg(f"profile={profile}", *same), specs)
    long = compare.plan(cfg, specs)
    assert compare.setting_of(cfg) == "long" and len(long) == len(default) > 0
    common = [str(o) for o in cfg.profile.overrides]
    for run, plain in zip(long, default, strict=True):
        spec = specs[run.recipe]
        own = compare.recipe_overrides(cfg.profile, run.recipe, spec)
        assert (run.recipe, run.attention, run.seed) == (plain.recipe, plain.attention, plain.seed)
        # the profile's budget and the recipe's list, then report.long, then the profile's
        # common overrides (the user's would come last)
        assert run.overrides == [*own, *spec.overrides("long"), "++input_setting=long", *common]
        assert plain.overrides == [*own, *common]
        assert run.run_dir == Path("/tmp/r/long") / run.recipe / run.attention / "seed1"
        assert plain.run_dir == Path("/tmp/r") / run.recipe / run.attention / "seed1"
    # what each recipe's long list sets
    by_recipe = {s.recipe: s.overrides for s in long}
    assert "data.join_min_tokens=1000" in by_recipe["sentiment"]
    assert "data.join_min_tokens=1000" in by_recipe["translation"]
    assert "model.encoder.image_size=256" in by_recipe["captioning"]
    assert "data.join_min_seconds=41.0" in by_recipe["asr"]
    # without attentions=[...]: each recipe's report.attentions_long
    types = compare.plan(compare_cfg(f"profile={profile}", "setting=long", "seeds=[1]"), specs)
    for name, spec in specs.items():
        assert [s.attention for s in types if s.recipe == name] == spec.profile_attentions["long"]
    assert {s.attention for s in types if s.recipe == "asr"} == {"multihead", "local", "linear"}


def test_long_setting_types_user_overrides_and_missing_list(specs, tmp_path):
    cfg = compare_cfg("setting=long", f"runs_dir={tmp_path}", "recipes=[asr]",
                      "attentions=[local]", 'overrides=["data.batch_size=2"]')  # fmt: skip
    (run,) = compare.plan(cfg, {"asr": specs["asr"]})
    assert run.attention == "local" and run.overrides[-1] == "data.batch_size=2"
    assert run.overrides.index("data.join_min_seconds=41.0") < len(run.overrides) - 1
    # a recipe's `attentions_long` picks its types in the long setting
    spec = report.RecipeReport("sentiment", ["accuracy"], "accuracy", attentions=["additive"],
                               profiles={"long": ["data.join_min_tokens=9"]},
                               profile_attentions={"long": ["linear", "local"]})  # fmt: skip
    plan = compare.plan(compare_cfg("setting=long", "seeds=[1]"), {"sentiment": spec})
    assert [s.attention for s in plan] == ["linear", "local"]
    plain = compare.plan(compare_cfg("seeds=[1]"), {"sentiment": spec})
    assert [s.attention for s in plain] == ["additive"]
    # a recipe without a report.long list: an error naming it, not a silent default run
    bare = report.RecipeReport("newrecipe", ["wer"], "wer")
    with pytest.raises(ValueError, match=r"newrecipe has no `report.long` list"):
        compare.plan(compare_cfg("setting=long"), {"newrecipe": bare})


@pytest.mark.parametrize("profile", ["quick", "standard", "full"])
def test_every_long_run_composes_with_a_budget_in_epochs_or_steps(profile, specs):
    cfg = compare_cfg(f"profile={profile}", "setting=long", "seeds=[1]")
    seen = set()
    for run in compare.plan(cfg, specs):
        if run.recipe in seen:
            continue
        seen.add(run.recipe)
        train = report.compose_train([f"recipe={run.recipe}", f"attention={run.attention}",
                                      *run.overrides])  # fmt: skip
        assert train.input_setting == "long"
        epochs, steps = train.trainer.max_epochs, train.trainer.get("max_steps", -1)
        assert (epochs is not None and epochs > 0) or steps > 0, (run.recipe, epochs, steps)
        assert not [o for o in run.overrides if "max_time" in o]
        if run.recipe in ("sentiment", "translation"):
            assert train.data.join_min_tokens == 1000 and train.data.max_len >= 4096
        elif run.recipe == "asr":
            assert train.data.join_min_seconds == 41.0
        else:
            assert train.model.encoder.image_size == 256
    assert seen == set(RECIPES)


def test_budget_label_names_the_long_setting(tmp_path):
    (tmp_path / "long").mkdir()
    (tmp_path / "plain").mkdir()
    trainer = {"max_epochs": 1, "max_steps": -1}
    OmegaConf.save({"trainer": trainer, "input_setting": "long"}, tmp_path / "long/config.yaml")
    OmegaConf.save({"trainer": trainer}, tmp_path / "plain/config.yaml")
    assert report.budget_of(tmp_path / "long") == "1 epoch, long inputs"
    assert report.budget_of(tmp_path / "plain") == "1 epoch"


def write_labelled(folder: Path, split: str, n: int, words: int = 60) -> str:
    path = folder / f"{split}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(f"w{(i * 7 + j) % 50}" for j in range(words))
            f.write(json.dumps({"text": text, "label": "pos" if i % 2 else "neg"}) + "\n")
    return str(path)


def test_compare_long_runs_a_tiny_grid_and_reports_memory(tmp_path):
    """The real command with setting=long on sentiment (synthetic 60-token sentences joined
    into 1,200-token documents): the run lands in runs/long, the report in out/long, with
    its peak memory, throughput and the setting in its budget."""
    files = {s: write_labelled(tmp_path, s, n) for s, n in
             (("train", 80), ("valid", 40), ("test", 40))}  # fmt: skip
    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    user = ["debug=fast", "threads=1", "model.embed_dim=32", "model.ffn_dim=64",
            "model.num_layers=1", "model.num_heads=2", "data.min_freq=1",
            *(f"data.{s}_file={p}" for s, p in files.items())]  # fmt: skip
    cmd = [
        sys.executable, "-m", "toolkit.compare", "setting=long", "recipes=[sentiment]",
        "attentions=[local]", f"overrides={json.dumps(user)}", f"out={tmp_path / 'report'}",
        f"runs_dir={tmp_path / 'runs'}",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "setting=long" in done.stdout and "1/1 sentiment/local seed 1: ok" in done.stdout
    run = tmp_path / "runs" / "long" / "sentiment" / "local" / "seed1"
    side = json.loads((run / "compare.json").read_text())
    assert side["status"] == "ok" and side["peak_rss_mib"] > 50
    assert "data.join_min_tokens=1000" in side["command"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["long_inputs"]["test"] == {"items": 2, "min": 1200, "median": 1200,
                                                      "max": 1200}  # fmt: skip
    with open(tmp_path / "report" / "long" / "results.csv", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["recipe"], row["attention"], row["status"]) == ("sentiment", "local", "ok")
    assert "long inputs" in row["budget"] and float(row["peak_rss_mib"]) > 50
    assert float(row["train_samples_per_s"]) > 0
    assert not (tmp_path / "report" / "results.csv").exists()
    page = (tmp_path / "report" / "long" / "index.html").read_text(encoding="utf-8")
    assert "Input setting <code>long</code>" in page and "long inputs" in page
