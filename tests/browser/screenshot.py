"""Screenshot of a report page in headless Chromium, served from 127.0.0.1 (README picture).

python tests/browser/screenshot.py report/index.html docs/report.png [--height 1600]
python tests/browser/screenshot.py PAGE OUT --element "#recipe-sentiment" --height 1400
"""

from __future__ import annotations

import argparse
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1600, help="0 = the full page")
    parser.add_argument(
        "--element", default="", help="CSS selector: the picture starts at this element's top"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")
    page_path = Path(args.page).resolve()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(page_path.parent))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height or 900})
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{page_path.name}")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            if args.element:
                top = page.locator(args.element).first.bounding_box()["y"]
                clip = {"x": 0, "y": top, "width": args.width, "height": args.height or 900}
                page.screenshot(path=args.out, full_page=True, clip=clip)
            else:
                page.screenshot(path=args.out, full_page=args.height == 0)
            browser.close()
    finally:
        httpd.shutdown()
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
