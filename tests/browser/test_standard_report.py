"""The committed `profile=standard` demonstration (results/compare/standard/, made by
benchmarks/standard_demo.sh) in headless Chromium: both report pages load from 127.0.0.1
without console errors, every image decodes, and the sentiment tables hold the 15 runs, the
three types' seed intervals and paired tests, and the learning curves."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser.test_report import chromium_path

pytestmark = pytest.mark.xdist_group("test_report")

STANDARD = Path(__file__).resolve().parents[2] / "results" / "compare" / "standard"


@pytest.mark.parametrize(("folder", "reference"),
                         [("report", "multihead"), ("report-vs-uniform", "uniform")])  # fmt: skip
def test_committed_standard_report_in_headless_chromium(folder, reference):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(STANDARD / folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    errors: list[str] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html",
                          wait_until="load")  # fmt: skip
                widths = page.eval_on_selector_all("img", "is => is.map(i => i.naturalWidth)")
                curves = page.eval_on_selector_all(
                    "img[alt='sentiment: validation curves']", "is => is.length"
                )
                runs = page.eval_on_selector_all("#runs-sentiment tbody tr", "rs => rs.length")
                sig = page.eval_on_selector_all(
                    "#significance-sentiment tbody tr",
                    "rs => rs.map(r => Array.from(r.cells).map(c => c.textContent))",
                )
                sentences = page.eval_on_selector_all("ul.significance li", "ls => ls.length")
            finally:
                browser.close()
    finally:
        httpd.shutdown()
    assert errors == []
    assert widths and all(w > 0 for w in widths), widths
    assert curves == 1 and runs == 15
    assert sorted(row[2] for row in sig) == ["additive", "multihead", "uniform"]
    by_type = {row[2]: row for row in sig}
    assert all(row[3] == "5" for row in sig)
    assert by_type[reference][6] == "reference"
    assert sentences == 2  # the two other types against the reference
