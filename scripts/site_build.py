"""Build the tutorial and report what its executed blocks did with their output.

``mkdocs build --strict`` runs every ``exec="on"`` block of the tutorial. It fails on an
exception, but not when a block's output goes to the build terminal instead of the page, nor
when a block that should show something renders nothing. ``build_site`` runs the build in a
subprocess, with ``site_hooks/capture_output.py`` recording each block, and returns:

- ``leaks``: lines the build wrote that are not MkDocs' own log lines (a block's output that
  reached the terminal, so the page lost it);
- ``empty``: executed blocks whose output is empty (every executed block of this tutorial is
  there to show something: a table, a figure, numbers).

    python scripts/site_build.py            # build into a temporary folder, print the report
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR)\s+-  ")


@dataclass
class SiteBuild:
    """What one build of the tutorial did."""

    site_dir: Path
    returncode: int
    stdout: str
    stderr: str
    blocks: list = field(default_factory=list)   # one dict per executed block: page, block, chars

    @property
    def leaks(self) -> list:
        lines = self.stdout.splitlines() + self.stderr.splitlines()
        return [line for line in lines if line.strip() and not MKDOCS_LOG_LINE.match(line)]

    @property
    def empty(self) -> list:
        return [b for b in self.blocks if b["chars"] == 0]

    def summary(self) -> str:
        pages = {b["page"] for b in self.blocks}
        return (f"{len(self.blocks)} executed blocks on {len(pages)} pages; "
                f"{len(self.empty)} render nothing; {len(self.leaks)} lines reached the terminal")


def build_site(site_dir, timeout=900) -> SiteBuild:
    """Run ``mkdocs build --strict -d site_dir`` from the repository root and collect the report."""
    site_dir = Path(site_dir)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "blocks.json"
        env = dict(os.environ, NNOTT_EXEC_REPORT=str(report), NO_MKDOCS_2_WARNING="1",
                   MPLBACKEND="Agg", NO_COLOR="1")
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        blocks = json.loads(report.read_text()) if report.is_file() else []
    return SiteBuild(site_dir, done.returncode, done.stdout, done.stderr, blocks)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the tutorial; report blocks whose output is lost.")
    parser.add_argument("--site-dir", type=Path, default=None, help="where to build (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        build = build_site(args.site_dir or Path(tmp) / "site")
        if build.returncode != 0:
            print(build.stderr.strip().splitlines()[-1] if build.stderr.strip() else "mkdocs build failed",
                  file=sys.stderr)
            print("error: the tutorial does not build (run `mkdocs build --strict` to see why)", file=sys.stderr)
            return 1
        print(build.summary())
        for line in build.leaks:
            print(f"  terminal: {line}")
        for b in build.empty:
            print(f"  empty: {b['page']} block {b['block']} ({b['first_line']})")
    return 1 if build.leaks or build.empty else 0


if __name__ == "__main__":
    sys.exit(main())
