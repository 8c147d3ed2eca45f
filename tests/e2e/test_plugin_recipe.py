"""A recipe is a plug-in: a package (module, data, hooks) plus its conf files, kept outside
the toolkit, gets train -> evaluate -> predict -> export -> validate with no toolkit change.

The throw-away recipe ``toy_plugin`` lives in ``tmp_path``: the package on ``sys.path``, its
``conf/recipe/toy.yaml``, ``conf/data/toy.yaml`` and ``conf/model/toy/linear.yaml`` on the
Hydra search path (``hydra.searchpath``) and in ``$ATTN_TOOLKIT_CONF_PATH`` (so a checkpoint
naming its classes may be loaded). The task: is the sum of three numbers positive?"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from toolkit.paths import CONF_DIR

PACKAGE = {
    "__init__.py": "",
    "data.py": """
        from pathlib import Path

        import lightning.pytorch as pl
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from toolkit.data.cache import DataError


        def read_rows(path):
            xs, ys = [], []
            lines = Path(path).read_text().splitlines()
            for i, line in enumerate(lines[1:], start=2):
                a, b, c, label = line.split("\\t")
                if label not in ("pos", "neg"):
                    raise DataError(path, i, "label", f"unknown label {label!r}")
                xs.append([float(a), float(b), float(c)])
                ys.append(int(label == "pos"))
            return torch.tensor(xs), torch.tensor(ys)


        class ToyData(pl.LightningDataModule):
            def __init__(self, train_file, test_file, batch_size=8, state=None):
                super().__init__()
                self.files = {"train": train_file, "test": test_file}
                self.batch_size = batch_size

            def setup(self, stage=None):
                self.sets = {k: TensorDataset(*read_rows(v)) for k, v in self.files.items()}

            def state(self):
                return {"labels": ["neg", "pos"]}

            def manifest(self):
                return {"files": {k: str(v) for k, v in self.files.items()}}

            def _loader(self, split, shuffle=False):
                if not hasattr(self, "sets"):
                    self.setup()
                return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle)

            def train_dataloader(self):
                return self._loader("train", shuffle=True)

            def val_dataloader(self):
                return self._loader("test")

            def test_dataloader(self):
                return self._loader("test")
    """,
    "module.py": """
        import torch
        from hydra.utils import instantiate

        from toolkit.training.module import RecipeModule


        class Linear(torch.nn.Module):
            def __init__(self, dim=3):
                super().__init__()
                self.proj = torch.nn.Linear(dim, 2)

            def forward(self, x):
                return self.proj(x)


        class ToyModule(RecipeModule):
            def __init__(self, cfg, data_state=None):
                super().__init__(cfg, data_state)
                self.model = instantiate(self.cfg.model)
                self._hits = []

            def training_step(self, batch, batch_idx):
                x, y = batch
                self.count_train(len(y))
                return torch.nn.functional.cross_entropy(self.model(x), y)

            def validation_step(self, batch, batch_idx):
                x, y = batch
                acc = (self.model(x).argmax(-1) == y).float().mean()
                self.log("val/accuracy", acc, batch_size=len(y))

            def on_test_epoch_start(self):
                super().on_test_epoch_start()
                self._hits = []

            def test_step(self, batch, batch_idx):
                x, y = batch
                self._hits += (self.model(x).argmax(-1) == y).tolist()

            def test_metrics(self):
                return {"metrics": {"accuracy": sum(self._hits) / max(len(self._hits), 1)}}
    """,
    "predict.py": """
        import numpy as np
        import torch

        INPUT_KIND = "text"
        LABELS = ("neg", "pos")


        def predict_arrays(module, inputs):
            out = []
            for text in inputs:
                x = torch.tensor([[float(v) for v in text.split()]])
                with torch.no_grad():
                    label = LABELS[int(module.model(x).argmax(-1))]
                att = np.full((1, 3), 1 / 3)
                out.append({"output": label, "attention": att, "rows": ["label"],
                            "columns": text.split()})
            return out


        def predict_records(module, inputs, out_dir=None, plot=False):
            return [{"label": p["output"]} for p in predict_arrays(module, inputs)]
    """,
    "export.py": """
        import torch

        from toolkit.commands.export import ExportGraph


        def export_graph(module):
            def example(n=2, length=7, seed=0):
                return (torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)),)

            return ExportGraph(module.model, "scorer", ["x"], ["logits"],
                               {"x": {0: "batch"}, "logits": {0: "batch"}}, example,
                               {"labels": ["neg", "pos"]})
    """,
    "validate.py": """
        from toolkit.data.validate import Report, check_table


        def validate_files(files, options, report: Report):
            for path in files.values():
                rows = check_table(path, ["a", "b", "c", "label"], report)
                for line, row in rows:
                    if row["label"] not in ("pos", "neg"):
                        report.add(path, line, "label", f"unknown label {row['label']!r}")
    """,
}

CONF = {
    "recipe/toy.yaml": """
        # @package _global_
        defaults:
          - /data: toy
          - override /model: linear
        recipe:
          name: toy
          module: toy_plugin.module.ToyModule
          monitor: val/accuracy
          monitor_mode: max
        trainer:
          max_epochs: 3
    """,
    "data/toy.yaml": """
        _target_: toy_plugin.data.ToyData
        train_file: ???
        test_file: ???
        batch_size: 8
    """,
    "model/toy/linear.yaml": """
        _target_: toy_plugin.module.Linear
        dim: 3
    """,
}


def _rows(n: int, seed: int) -> str:
    gen = torch.Generator().manual_seed(seed)
    lines = ["a\tb\tc\tlabel"]
    for x in torch.randn(n, 3, generator=gen).tolist():
        lines.append("\t".join(f"{v:.3f}" for v in x) + ("\tpos" if sum(x) > 0 else "\tneg"))
    return "\n".join(lines) + "\n"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    package = tmp_path / "src" / "toy_plugin"
    package.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text))
    conf = tmp_path / "conf"
    for name, text in CONF.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(textwrap.dedent(text))
    (tmp_path / "train.tsv").write_text(_rows(64, 0))
    (tmp_path / "test.tsv").write_text(_rows(24, 1))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("ATTN_TOOLKIT_CONF_PATH", str(conf))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("toy_plugin")]:
        del sys.modules[name]
    GlobalHydra.instance().clear()


def _compose(name: str, conf: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=[f"hydra.searchpath=[file://{conf}]", *overrides])


def test_a_plugin_recipe_trains_evaluates_predicts_exports_and_validates(plugin):
    from toolkit.commands.data import main as data_main
    from toolkit.commands.evaluate import evaluate
    from toolkit.commands.export import export, load_runner
    from toolkit.commands.predict import predict
    from toolkit.commands.train import train
    from toolkit.data.validate import validate_files
    from toolkit.training.checkpoints import load_module

    conf, tmp = plugin / "conf", plugin
    cfg = _compose(
        "train", conf, "recipe=toy", f"data.train_file={tmp / 'train.tsv'}",
        f"data.test_file={tmp / 'test.tsv'}", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", "~logger", "threads=1",
    )  # fmt: skip
    assert cfg.model._target_ == "toy_plugin.module.Linear"
    result = train(cfg, tmp / "run")
    assert result["recipe"] == "toy" and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    ckpt = Path(result["checkpoint"])  # the one the test scores came from
    assert ckpt.is_file()

    # evaluate: the checkpoint names the plug-in's classes, allowed through its conf folder
    ev = _compose("evaluate", conf, f"ckpt={ckpt}")
    scores = evaluate(ev, tmp / "eval")
    assert scores["metrics"]["accuracy"] == result["metrics"]["accuracy"]

    # predict through the recipe's predict.py hook
    (tmp / "in.txt").write_text("1 2 3\n-1 -2 -3\n")
    pr = _compose("predict", conf, f"ckpt={ckpt}", f"input={tmp / 'in.txt'}")
    rows = predict(pr, tmp / "pred")
    assert [r["source"] for r in rows] == [f"{tmp / 'in.txt'}:1", f"{tmp / 'in.txt'}:2"]
    assert all(r["label"] in ("neg", "pos") for r in rows)
    assert (tmp / "pred" / "predictions.jsonl").is_file()

    # export through export.py
    module = load_module(ckpt)
    info = export(module, "torchscript", tmp / "export", check_inputs=3)
    assert info["graph"] == "scorer.pt" and info["recipe"] == "toy"
    x = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.allclose(load_runner(tmp / "export" / "scorer.pt")(x), module.model(x))
    assert json.loads((tmp / "export" / "export.json").read_text())["labels"] == ["neg", "pos"]

    # validate through validate.py: by recipe name (its conf file) and from the CLI
    bad = tmp / "bad.tsv"
    bad.write_text("a\tb\tc\tlabel\n1\t2\t3\tmaybe\n1\t2\n")
    report = validate_files("toy", {"train": bad})
    assert sorted((p.line, str(p.field)) for p in report.problems) == [(2, "label"), (3, "None")]
    assert validate_files("toy", {"train": tmp / "train.tsv"}).ok
    assert data_main(["validate", "recipe=toy", f"path={bad}"]) == 1
    assert data_main(["validate", "recipe=toy_plugin", f"path={tmp / 'train.tsv'}"]) == 0

    # and training refuses the bad file before building anything, through the same hook
    cfg.data.train_file = str(bad)
    with pytest.raises(Exception, match="unknown label"):
        train(cfg, tmp / "bad_run")
    assert not (tmp / "bad_run").exists()
