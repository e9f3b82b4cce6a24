"""The tutorial builds, and every executed block's output lands on its page.

One strict build (about 40 s on two cores) checked three ways: nothing a block prints reaches
the build terminal (``model.summary()``, epoch logs and warnings included), no executed block
renders empty, and the pages load no script from the internet (MathJax is served by the site).
"""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from scripts.site_build import ROOT, build_site

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("markdown_exec") is None,
    reason="the docs extra is not installed (pip install 'nnott[docs]')")]  # builds the whole site: slow (CI runs it)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if not (ROOT / "node_modules" / "mathjax").is_dir() and shutil.which("npm") is None:
        pytest.skip("MathJax is not installed and npm is absent (run `npm ci` in the repository root)")
    result = build_site(tmp_path_factory.mktemp("site") / "site")
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_every_block_was_recorded(build):
    sources = list((ROOT / "tutorial").rglob("*.md"))
    promised = sum(len(re.findall(r'^\s*```\w+ [^\n]*exec="on"', p.read_text(), flags=re.M)) for p in sources)
    assert len(build.blocks) == promised


def test_no_output_reaches_the_terminal(build):
    assert build.leaks == [], "output printed to the build terminal instead of the page:\n" + "\n".join(build.leaks)


def test_no_executed_block_renders_empty(build):
    assert build.empty == [], [f"{b['page']} block {b['block']}: {b['first_line']}" for b in build.empty]


def test_library_output_is_on_the_pages(build):
    site = build.site_dir
    vgg = (site / "architectures" / "vgg16" / "index.html").read_text()
    assert "features.43" in vgg and "Total params:" in vgg    # the model.summary() table
    assert re.search(r"epoch 1/\d+ \| loss", (site / "vectorized" / "trainer" / "index.html").read_text())
    assert "--gpu requested but" in (site / "backend" / "index.html").read_text()


def test_pages_load_nothing_from_the_internet(build):
    site = build.site_dir
    assert (site / "javascripts" / "mathjax" / "tex-chtml.js").is_file()
    assert (site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for page in site.rglob("*.html"):
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert remote == [], f"{page.relative_to(site)} loads {remote}"
