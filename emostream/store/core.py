"""The store on disk: ``<home>/models/<name>/`` per model, ``<home>/cache/`` for downloads.

``load()`` is what stages call: it never touches the network, and a missing, stale or damaged model
is one line naming the pull command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emostream.config import Settings
from emostream.errors import UserError
from emostream.store.files import hash_problems, quick_problem
from emostream.store.manifest import Manifest, ModelEntry, load_manifest
from emostream.store.progress import SILENT, Reporter

Status = Literal["present", "missing", "pending", "stale"]


@dataclass
class Store:
    home: Path
    manifest: Manifest

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """The store named by ``settings`` (``store.home``, ``store.manifest``): callers pass theirs, so
        ``--config`` is honoured by every model load."""
        return cls(home=settings.home, manifest=load_manifest(settings.store.manifest or None))

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def partial_dir(self) -> Path:
        """Staging for pulls in progress: same filesystem as the models, so placing is one rename."""
        return self.models_dir / ".partial"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def entry(self, name: str) -> ModelEntry:
        return self.manifest.get(name)

    def load(self, name: str) -> Path:
        entry = self.entry(name)
        root = self.model_dir(name)
        if not root.is_dir():
            hint = (
                " (its manifest entry is still pending: the model is not built yet)" if entry.pending else ""
            )
            raise UserError(
                f"model {name} is not in the store at {root}: run `emostream models pull {name}`{hint}"
            )
        problem = quick_problem(entry, root)
        if problem:
            raise UserError(f"model {name} at {root} {problem}: run `emostream models pull {name}`")
        return root

    def status(self, name: str) -> Status:
        entry = self.entry(name)
        root = self.model_dir(name)
        if entry.pending:
            return "pending"
        if not root.is_dir():
            return "missing"
        return "stale" if quick_problem(entry, root) else "present"

    def verify(self, name: str, reporter: Reporter = SILENT) -> list[str]:
        """Re-hash a present model; one phrase per bad file (empty when all is well)."""
        entry = self.entry(name)
        root = self.model_dir(name)
        if not root.is_dir():
            raise UserError(f"model {name} is not in the store at {root}: run `emostream models pull {name}`")
        task = reporter.task(f"verify {name}", entry.size)
        try:
            return hash_problems(entry, root, task.advance)
        finally:
            task.close()

    def dir_size(self, name: str) -> int:
        root = self.model_dir(name)
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


def load(name: str, settings: Settings) -> Path:
    """Local directory of model ``name`` (offline; UserError naming the pull command when missing)."""
    return Store.open(settings).load(name)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
