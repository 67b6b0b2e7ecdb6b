"""Hashing and checking a model directory against its manifest entry.

A pulled model directory carries a small marker (``.emostream.json``) recording the file table it was
verified against, so ``load()`` can notice a stale or damaged model with a few ``stat`` calls instead
of re-hashing hundreds of megabytes on every start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from emostream.store.manifest import ModelEntry

MARKER = ".emostream.json"
_CHUNK = 1 << 20


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def hash_problems(entry: ModelEntry, root: Path, on_bytes: Callable[[int], None] | None = None) -> list[str]:
    """Re-hash every listed file: one phrase per missing, wrong-sized or corrupted file."""
    problems: list[str] = []
    for rel, spec in entry.files.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
            continue
        size = path.stat().st_size
        if size != spec.size:
            problems.append(f"{rel} has {size} bytes, expected {spec.size}")
            if on_bytes is not None:
                on_bytes(spec.size)
            continue
        actual = sha256_file(path, on_bytes)
        if actual != spec.sha256:
            problems.append(f"{rel} is corrupted (sha256 {actual[:12]}…, expected {spec.sha256[:12]}…)")
    return problems


def quick_problem(entry: ModelEntry, root: Path) -> str | None:
    """Cheap check for ``load()``: the marker matches the manifest and every file has its size."""
    marker = root / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "was not completely pulled"
    if recorded.get("files") != file_table(entry):
        return "was pulled for a different manifest version"
    for rel, spec in entry.files.items():
        try:
            size = (root / rel).stat().st_size
        except OSError:
            return f"is missing {rel}"
        if size != spec.size:
            return f"has a damaged {rel} ({size} bytes, expected {spec.size})"
    return None


def file_table(entry: ModelEntry) -> dict[str, list[object]]:
    return {rel: [spec.sha256, spec.size] for rel, spec in sorted(entry.files.items())}


def write_marker(entry: ModelEntry, root: Path, source: str) -> None:
    data = {"name": entry.name, "version": entry.version, "source": source, "files": file_table(entry)}
    (root / MARKER).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def listing(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and size of every file under ``root`` (for writing a manifest entry)."""
    out: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MARKER:
            out[path.relative_to(root).as_posix()] = (sha256_file(path), path.stat().st_size)
    return out
