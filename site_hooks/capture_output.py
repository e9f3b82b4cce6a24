"""MkDocs hook: everything an executed block prints lands on its page.

markdown-exec runs each ``exec="on"`` block with a ``print`` of its own that writes into the
block's output buffer. Library code called from the block does not use that ``print``: it
writes to ``sys.stdout`` (``model.summary()``, the Trainer's epoch log) or ``sys.stderr``
(warnings), which markdown-exec leaves pointing at the build terminal, so that text was lost.

This hook points ``sys.stdout`` and ``sys.stderr`` at the block's buffer while the block runs,
so both kinds of output land on the page, in the order they were written.

It also records every executed block (page, number on the page, characters of output). When
the environment variable ``NNOTT_EXEC_REPORT`` names a file, the record is written there as
JSON after the build; ``tests/test_site_outputs.py`` reads it to catch a block that renders
nothing.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

from mkdocs.exceptions import PluginError

_blocks: list[dict] = []
_page = {"path": None, "count": 0}


def _capturing(run):
    """Wrap markdown-exec's ``exec_python``-style function ``run(code, filename, globals)``."""
    @functools.wraps(run)
    def wrapper(code, filename, exec_globals, *args, **kwargs):
        page_print = exec_globals.get("print")
        buffer = getattr(page_print, "args", (None,))[0]  # print is partial(_buffer_print, buffer)
        if buffer is None:
            return run(code, filename, exec_globals, *args, **kwargs)
        start = buffer.tell()
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                return run(code, filename, exec_globals, *args, **kwargs)
        finally:
            _page["count"] += 1
            _blocks.append({"page": _page["path"], "block": _page["count"],
                            "chars": len(buffer.getvalue()) - start,
                            "first_line": code.strip().splitlines()[0] if code.strip() else ""})
    wrapper.nnott_capturing = True
    return wrapper


def on_startup(command, dirty):
    try:
        from markdown_exec._internal.formatters import python as formatter
        names = ("exec_python", "exec_python_interactive")
        originals = [getattr(formatter, name) for name in names]
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"site_hooks/capture_output.py does not know this markdown-exec version ({exc}); "
                          "install the version pyproject.toml's docs extra asks for") from exc
    for name, run in zip(names, originals):
        if not getattr(run, "nnott_capturing", False):
            setattr(formatter, name, _capturing(run))


def on_pre_build(config):
    _blocks.clear()


def on_page_markdown(markdown, page, config, files):
    _page["path"] = page.file.src_uri
    _page["count"] = 0
    return markdown


def on_post_build(config):
    report = os.environ.get("NNOTT_EXEC_REPORT")
    if report:
        Path(report).write_text(json.dumps(_blocks, indent=1))
