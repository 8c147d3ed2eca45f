"""The comparison report in a real browser: headless Chromium (Debian ``chromium``, driven by
playwright) loads ``index.html`` from a local HTTP server on 127.0.0.1 and checks that the
page is whole: no console errors, every image decoded, the tables hold the expected rows.
A screenshot is left in ``tests/artifacts/report.png`` (``REPORT_ARTIFACTS`` overrides).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from toolkit import report

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def write_run(folder: Path, recipe: str, attention: str, seed: int, metrics: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (folder / "attention").mkdir(parents=True)
    m = {
        "recipe": recipe, "attention": attention, "model": "M", "seed": seed, "metrics": metrics,
        "train_seconds": 5.0 + seed, "params": 1000 * (seed + 1),
        "throughput": {"train_samples_per_s": 50.0 + seed, "test_ms_per_sample": 1.0 + seed},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(m))
    (folder / "compare.json").write_text(json.dumps({"status": "ok", "peak_rss_mib": 500.0}))
    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=60)
    ax.imshow([[0.1, 0.9], [0.7, 0.3]])
    fig.savefig(folder / "attention" / "example_000.png")
    plt.close(fig)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """Two recipes × two attentions; one translation run missing."""
    root = tmp_path_factory.mktemp("runs")
    rows = []
    for i, att in enumerate(["additive", "multihead"]):
        for seed in (1, 2):
            d = root / "sentiment" / att / f"seed{seed}"
            acc = 0.7 + 0.05 * i + 0.01 * seed
            write_run(d, "sentiment", att, seed, {"accuracy": acc, "attention_entropy": 0.8})
            rows.append(report.load_run(d))
    d = root / "translation" / "multihead" / "seed1"
    write_run(d, "translation", "multihead", 1, {"bleu": 12.5, "chrf": 40.0,
                                                  "attention_monotonicity": 0.9})  # fmt: skip
    rows.append(report.load_run(d))
    rows.append(
        report.load_run(root / "translation" / "additive" / "seed1",
                        expected={"recipe": "translation", "attention": "additive", "seed": 1})
    )  # fmt: skip
    specs = {
        "sentiment": report.RecipeReport("sentiment", ["accuracy"], "accuracy"),
        "translation": report.RecipeReport("translation", ["bleu", "chrf"], "bleu"),
    }
    out = tmp_path_factory.mktemp("report")
    report.build_report(rows, out, specs)
    return out


@pytest.fixture(scope="module")
def server(report_dir):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(report_dir))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_report_in_headless_chromium(server):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    artifacts = Path(os.environ.get("REPORT_ARTIFACTS", REPO_ROOT / "tests" / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{server}/index.html", wait_until="load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            runs_s = page.eval_on_selector_all("#runs-sentiment tbody tr", "rs => rs.length")
            runs_t = page.eval_on_selector_all(
                "#runs-translation tbody tr", "rs => rs.map(r => r.className)"
            )
            summary = page.eval_on_selector_all(
                "#summary-sentiment tbody tr",
                "rs => rs.map(r => Array.from(r.cells).map(c => c.textContent))",
            )
            cross = page.eval_on_selector_all(
                "#cross-modal tbody tr",
                "rs => rs.map(r => Array.from(r.cells).map(c => c.textContent))",
            )
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    # the cross-modal figure, 5 plots (metric, latency, throughput, memory, params) and
    # 3 attention pictures; these runs have no CSV logs, so no learning curves
    assert len(widths) == 9 and all(w > 0 for w in widths), widths
    assert requests == [f"{server}/index.html"]  # nothing else fetched: self-contained
    assert runs_s == 4
    assert sorted(runs_t) == ["missing", "ok"]
    assert [row[:4] for row in summary] == [["M", "—", "additive", "2/2"],
                                            ["M", "—", "multihead", "2/2"]]  # fmt: skip
    assert summary[0][4] == "0.7150 ± 0.0071"
    # the cross-modal table: types × recipes, the reference first; no per-example files, so
    # no significance marks
    assert [row[:3] for row in cross] == [
        ["multihead (reference)", "0.7650 [0.7015, 0.8285]", "12.5 (1 seed)"],
        ["additive", "0.7150 [0.6515, 0.7785]", "—"],
    ]
    assert (artifacts / "report.png").stat().st_size > 10_000
