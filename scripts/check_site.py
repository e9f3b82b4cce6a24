"""Open every page of the built tutorial in headless Chromium and check what a reader sees.

    python scripts/check_site.py --screenshots shots/          # build, serve, check, screenshot
    python scripts/check_site.py --site site/ --screenshots shots/   # check a site already built

The site is served on 127.0.0.1 (a free port) and each page is loaded as a reader would load
it, with no internet. A page fails when it has:

- an error in the browser console (a script that broke, a file that did not load);
- an image that did not load;
- raw TeX left visible (a formula MathJax did not typeset, or ``$$``/``\\frac`` in the text);
- a Markdown table left as raw pipes (a paragraph of ``| a | b |`` lines);
- a horizontal scrollbar on the page body (something wider than the page that does not scroll
  inside its own box).

When it builds the site itself, it also fails when an executed block's output reached the
build terminal or rendered nothing (see ``scripts/site_build.py``). A screenshot of each page
goes to the ``--screenshots`` folder. Needs Selenium
(``pip install 'nnott[site-check]'``) and Debian's ``chromium`` and ``chromium-driver``.
Exit code 0: every page passed; 1: a page failed or a tool is missing; 2: a wrong flag.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common.errors import UserError  # noqa: E402

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)

# Runs in the page once it has loaded and MathJax (if any) has finished; returns the problems found.
PAGE_CHECKS = r"""
const done = arguments[arguments.length - 1];
const wait = (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise : Promise.resolve();
wait.then(() => new Promise(r => setTimeout(r, 150))).then(() => {
  const problems = [];
  for (const img of document.images) {
    if (img.complete && img.naturalWidth === 0) problems.push("missing image: " + img.getAttribute("src"));
  }
  for (const el of document.querySelectorAll(".arithmatex")) {
    if (!el.querySelector("mjx-container")) problems.push("raw TeX: " + el.textContent.trim().slice(0, 60));
  }
  const article = document.querySelector("article") || document.body;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, code, mjx-container, .arithmatex, script, style")) continue;
    const t = node.textContent;
    if (/\$\$|\\\[|\\\(|\\(frac|sum|partial|mathbf|hat)\b/.test(t)) problems.push("raw TeX in text: " + t.trim().slice(0, 60));
  }
  for (const p of article.querySelectorAll("p")) {
    const lines = p.textContent.split("\n").filter(l => l.trim());
    if (lines.length >= 2 && lines.every(l => /^\s*\|.*\|\s*$/.test(l))) problems.push("table left as raw pipes: " + lines[0].slice(0, 60));
  }
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) {
    const wide = [...article.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > doc.clientWidth + 1)
      .map(e => e.tagName.toLowerCase() + (e.className && typeof e.className === "string" ? "." + e.className.split(" ")[0] : ""));
    problems.push(`horizontal scrollbar: page is ${doc.scrollWidth}px wide in a ${doc.clientWidth}px window (${wide.slice(0, 3).join(", ")})`);
  }
  done(problems);
});
"""


def find_tool(names, what):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise UserError(f"{what} not found: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site_dir):
    """Serve ``site_dir`` on 127.0.0.1 at a free port from a daemon thread; return (server, base URL)."""
    handler = functools.partial(QuietHandler, directory=str(site_dir))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def open_browser(width, height):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("Selenium is not installed: pip install 'nnott[site-check]'") from None
    options = webdriver.ChromeOptions()
    options.binary_location = find_tool(CHROMIUM, "Chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=find_tool(DRIVER, "ChromeDriver")), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(60)
    return driver


def pages_of(site_dir):
    """Every page of the site as a URL path ('', 'backend/', ...), home first."""
    pages = sorted(p.parent.relative_to(site_dir).as_posix() for p in site_dir.rglob("index.html"))
    return ["" if p == "." else p + "/" for p in pages]


def screenshot(driver, path, max_height=8000):
    """A full-page PNG (up to ``max_height`` CSS pixels tall)."""
    import base64

    height = min(driver.execute_script("return document.documentElement.scrollHeight"), max_height)
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(driver, url):
    driver.get_log("browser")  # drop what the previous page left
    driver.get(url)
    problems = driver.execute_async_script(PAGE_CHECKS)
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.append("console error: " + entry.get("message", "")[:200])
    return problems


def check_site(site_dir, screenshots=None, width=1280, height=900, log=print):
    """Check every page; return {page: [problems]} for the pages that failed."""
    site_dir = Path(site_dir)
    if not (site_dir / "index.html").is_file():
        raise UserError(f"{site_dir} holds no built site (no index.html): build it with mkdocs build, "
                        "or leave out --site to build one")
    if screenshots is not None:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
    server, base = serve(site_dir)
    driver = open_browser(width, height)
    failed = {}
    try:
        for page in pages_of(site_dir):
            problems = check_page(driver, base + page)
            if screenshots is not None:
                name = page.strip("/").replace("/", "__") or "index"
                screenshot(driver, Path(screenshots) / f"{name}.png")
            log(f"{'ok  ' if not problems else 'FAIL'} /{page}")
            for p in problems:
                log(f"       {p}")
            if problems:
                failed[page] = problems
    finally:
        driver.quit()
        server.shutdown()
    return failed


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=None,
                        help="a site already built by mkdocs (default: build the tutorial into a temporary folder)")
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for one PNG per page")
    parser.add_argument("--width", type=int, default=1280, help="browser window width in pixels (default 1280)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 320 <= args.width <= 4000:
        build_parser().error(f"--width {args.width} is outside 320..4000 pixels")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            from scripts.site_build import build_site

            build = build_site(Path(tmp) / "site")
            if build.returncode != 0:
                raise UserError("the tutorial does not build: run `mkdocs build --strict` to see why")
            site = build.site_dir
            print(f"built in {time.perf_counter() - t0:.0f} s: {build.summary()}")
            for line in build.leaks:
                print(f"FAIL build: printed to the terminal, not the page: {line}")
            for b in build.empty:
                print(f"FAIL build: {b['page']} block {b['block']} renders nothing ({b['first_line']})")
        failed = check_site(site, args.screenshots, width=args.width)
        if args.site is None and (build.leaks or build.empty):
            failed["(build)"] = build.leaks + build.empty
        n = len(pages_of(Path(site)))
    n_failed = len([page for page in failed if page != "(build)"])
    print(f"{n - n_failed}/{n} pages passed in {time.perf_counter() - t0:.0f} s"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
