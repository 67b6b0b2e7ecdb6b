"""Fetch wheels with pip's own downloader (``pip download --no-deps``): its index settings, proxies,
certificates and HTTP cache apply, and nothing is installed.

Wheels land in a cache directory through a temporary directory and a rename, so a wheel found there is
always complete and an interrupted pull reuses it without asking the index again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from pathlib import Path

from emostream.errors import UserError
from emostream.store.progress import Reporter

_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cached_wheel(pin: str, cache: Path) -> Path | None:
    """A complete wheel for ``package==version`` already in ``cache``, if any."""
    name, _, version = pin.partition("==")
    if not cache.is_dir():
        return None
    for path in sorted(cache.glob("*.whl")):
        parts = path.name.split("-")
        if len(parts) >= 5 and canonical(parts[0]) == canonical(name) and parts[1] == version:
            return path
    return None


def ensure_wheel(pin: str, cache: Path, reporter: Reporter) -> Path:
    """Path of the wheel for ``pin`` in ``cache``, downloading it with pip when it is not there yet."""
    found = cached_wheel(pin, cache)
    if found is not None and zipfile.is_zipfile(found):
        return found
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        _pip_download(pin, tmp, reporter)
        wheels = list(tmp.glob("*.whl"))
        if len(wheels) != 1:
            raise UserError(f"pip download {pin} produced {len(wheels)} wheels in {tmp}, expected 1")
        target = cache / wheels[0].name
        os.replace(wheels[0], target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pip_download(pin: str, dest: Path, reporter: Reporter) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--progress-bar=raw",
        "-d",
        str(dest),
        pin,
    ]
    reporter.note(f"  pip download {pin}")
    task = reporter.task(f"  {pin}", None)
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            match = _PROGRESS.match(line)
            if match:
                task.update(int(match.group(1)), int(match.group(2)))
            elif line:
                tail.append(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        task.close()
    if code != 0:
        errors = [line for line in tail if line.startswith("ERROR")] or list(tail)[-1:] or ["no output"]
        raise UserError(
            f"pip could not download {pin}: {errors[-1]} (offline? point pip at an index or wheel folder "
            "with PIP_INDEX_URL / PIP_FIND_LINKS, or pull from a directory with --from DIR)"
        )
