"""MkDocs hook: the tutorial serves MathJax itself, so its formulas render with no internet.

MathJax comes from the npm package pinned in ``package.json`` (``npm ci`` puts it in
``node_modules/``). After each build this hook copies the parts a page loads (the TeX-to-HTML
bundle, its fonts and the extensions it loads on demand) into ``site/javascripts/mathjax/``;
``mkdocs.yml`` points ``extra_javascript`` there. No page asks a CDN for anything.

If ``node_modules/mathjax`` is missing and ``npm`` is on the PATH, the hook runs ``npm ci``
once; without npm it stops the build with a message saying what to install.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mkdocs.exceptions import PluginError

# What tex-chtml.js loads: itself, the CommonHTML fonts, TeX extensions loaded on demand
# (\boldsymbol, \cancel, ...), the context menu and its accessibility helpers.
PARTS = ("tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y")
TARGET = "javascripts/mathjax"


def _mathjax_dir(config) -> Path:
    root = Path(config.config_file_path).resolve().parent
    es5 = root / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise PluginError("MathJax is not installed and npm is not on the PATH: install Node.js and npm, "
                              "then run `npm ci` in the repository root")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root, capture_output=True, text=True)
        if done.returncode != 0 or not (es5 / "tex-chtml.js").is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PluginError(f"`npm ci` could not install MathJax ({last}); run it in the repository root and retry")
    return es5


_found: dict[str, Path] = {}


def on_config(config):
    _found["es5"] = _mathjax_dir(config)
    return config


def on_post_build(config):
    es5 = _found["es5"]
    target = Path(config["site_dir"]) / TARGET
    for part in PARTS:
        source, dest = es5 / part, target / part
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
