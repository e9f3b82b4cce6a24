"""scripts/check_site.py: every page of the built tutorial in headless Chromium.

The full check builds the site (about 40 s) and opens its pages (about 2 s each); it runs
where Debian's chromium, chromium-driver and Selenium are installed, and skips otherwise.
The small tests check the checker itself on a two-page site it writes.
"""
import importlib.util
import shutil
import subprocess
import sys

import pytest

from scripts.site_build import ROOT

HAVE_BROWSER = (importlib.util.find_spec("selenium") is not None
                and (shutil.which("chromium") or shutil.which("chromium-browser")) is not None
                and shutil.which("chromedriver") is not None)
needs_browser = pytest.mark.skipif(not HAVE_BROWSER, reason="needs Selenium (pip install 'nnott[site-check]') "
                                   "and Debian's chromium + chromium-driver")


def _page(body):
    return f"<!doctype html><html><head><meta charset=utf-8><link rel=icon href='data:,'></head><body><article>{body}</article></body></html>"


@needs_browser
def test_checker_catches_each_problem(tmp_path):
    from scripts.check_site import check_site

    (tmp_path / "index.html").write_text(_page("<p>fine</p><img src='data:image/png;base64,"
                                               "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII='>"))
    bad = tmp_path / "bad"
    bad.mkdir()
    bad.joinpath("index.html").write_text(_page(
        "<img src='nowhere.png'>"
        "<p>\\[ \\frac{a}{b} \\]</p>"
        "<p>| a | b |\n|---|---|\n| 1 | 2 |</p>"
        "<div style='width:3000px'>wide</div>"))
    shots = tmp_path / "shots"
    failed = check_site(tmp_path, shots, log=lambda line: None)
    assert list(failed) == ["bad/"]
    kinds = " ".join(failed["bad/"])
    for problem in ("missing image", "raw TeX", "raw pipes", "horizontal scrollbar", "console error"):
        assert problem in kinds, (problem, failed["bad/"])
    assert sorted(p.name for p in shots.iterdir()) == ["bad.png", "index.png"]


def test_missing_site_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "scripts/check_site.py", "--site", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1


def test_wrong_width_is_a_usage_error():
    done = subprocess.run([sys.executable, "scripts/check_site.py", "--width", "10"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "--width" in done.stderr


@pytest.mark.slow
@needs_browser
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="the docs extra is not installed")
def test_every_tutorial_page_passes(tmp_path):
    done = subprocess.run([sys.executable, "scripts/check_site.py", "--screenshots", str(tmp_path / "shots")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert len(list((tmp_path / "shots").glob("*.png"))) >= 30
