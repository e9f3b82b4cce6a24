"""Fetching files once: progress bar, atomic writes, checksum verification, one retry.

A cached file is trusted only after its MD5 matches the published checksum.  A file that
does not match (truncated, corrupt, or from a wrong mirror) is removed and fetched once more;
if it still does not match, :class:`ChecksumError` says so.  When no mirror can be reached,
:class:`DownloadUnavailable` is raised, which lets ``load_dataset`` decide whether to fall back.
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from common.errors import DataError

#: Seconds to wait for a server before giving up (connect and each read).  Offline machines
#: usually fail at once (no DNS); this bounds the case where packets are silently dropped.
TIMEOUT_S = float(os.environ.get("NNOTT_DOWNLOAD_TIMEOUT", "5"))
_BLOCK = 1 << 20


class DownloadUnavailable(DataError):
    """No mirror could be reached (offline, firewalled, or the server is down)."""


class ChecksumError(DataError):
    """A file was fetched twice and its checksum never matched."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity against the published MD5s, not security
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, progress: bool) -> str:
    """Stream ``url`` into a temporary file next to ``dest``, rename it into place, return its MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(_BLOCK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        os.replace(tmp, dest)  # atomic: dest is either the old state or the complete file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def ensure_file(dest: Path, urls: list[str], md5: str, *, progress: bool = True) -> Path:
    """Make sure ``dest`` exists with checksum ``md5``, downloading it from the first reachable url.

    Raises DownloadUnavailable when no url answers, ChecksumError when two fetches both mismatch.
    """
    dest = Path(dest)
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        print(f"[data] {dest} does not match its checksum; removing it and downloading again",
              flush=True)
        dest.unlink()
    failures = []
    for attempt in range(2):  # the first fetch and one retry after a checksum mismatch
        got = None
        for url in urls:
            try:
                got = _fetch(url, dest, progress)
                break
            except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                failures.append(f"{url}: {reason}")
        if got is None:
            more = f"; {len(failures) - 1} other mirror(s) failed too" if len(failures) > 1 else ""
            raise DownloadUnavailable(f"{failures[0]}{more}")
        if got == md5:
            return dest
        dest.unlink(missing_ok=True)
        if attempt == 0:
            print(f"[data] {dest.name} arrived with a wrong checksum; fetching it once more", flush=True)
    raise ChecksumError(
        f"{dest.name} failed its checksum twice (expected md5 {md5}, got {got}); the mirror may "
        "be serving a different file: set NNOTT_MIRROR to another mirror, or put the verified "
        f"file in {dest.parent}")
