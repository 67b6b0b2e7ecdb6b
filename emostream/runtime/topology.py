"""THE stage registry: every pipeline stage's name, where its factory lives, what it reads and writes.

``emostream worker NAME``, the in-process replay, the distributed topology test and the compose check
all read this table, so adding a stage is one line here (plus its module under ``emostream/workers/``).
Factories are imported lazily: the registry itself loads no model and no optional dependency.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emostream.errors import UserError

if TYPE_CHECKING:
    from emostream.bus.base import Bus
    from emostream.config import Settings
    from emostream.runtime.stage import Stage


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``module.create(settings)`` builds it; ``inputs``/``outputs`` are stream names."""

    name: str
    module: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    visual: bool = False
    """Part of the visual branch (not started by a text-only run)."""
    public: bool = True
    """Listed by ``emostream worker`` and run by the pipeline (the toy relay is not)."""

    def create(self, settings: Settings) -> Stage:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name != self.module:
                raise
            raise UserError(
                f"stage {self.name!r} is not installed ({self.module} is missing): reinstall emostream",
                exit_code=2,
            ) from None
        stage: Stage = module.create(settings)
        return stage


STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec("asr", "emostream.workers.asr", ("utterances", "partials"), ("transcripts",)),
        StageSpec("fec", "emostream.workers.fec", ("utterances", "partials"), ("keyframes",), visual=True),
        StageSpec("vlm", "emostream.workers.vlm", ("keyframes",), ("descriptions",), visual=True),
        StageSpec("context", "emostream.workers.context", ("transcripts", "rooms"), ("contexts",)),
        StageSpec("fusion", "emostream.workers.fusion", ("contexts", "descriptions"), ("events",)),
        StageSpec("toy", "emostream.testing.toy", ("toy.0",), ("toy.1",), public=False),
    )
}
"""In pipeline order. fusion reads ``descriptions`` by tailing it (no group), the others by group."""

TAILED: frozenset[tuple[str, str]] = frozenset({("fusion", "descriptions")})
"""(stage, stream) pairs read by tailing, without a consumer group."""

PIPELINE: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.public)
"""Every stage of a run with media, in order."""
TEXT_ONLY: tuple[str, ...] = tuple(n for n in PIPELINE if not STAGES[n].visual)
"""The stages of a text-only run (no media: the visual branch is not started)."""


def spec(name: str) -> StageSpec:
    """The registry entry for ``name``; one line naming the choices when there is none."""
    found = STAGES.get(name)
    if found is None:
        raise UserError(f"unknown stage {name!r}: choose one of {', '.join(PIPELINE)}", exit_code=2)
    return found


def build(settings: Settings, names: tuple[str, ...] = PIPELINE) -> list[Stage]:
    """The stages ``names``, each built by its factory from ``settings``."""
    return [spec(n).create(settings) for n in names]


def readers(stream: str, settings: Settings) -> list[str]:
    """The consumer groups (stage names) that read ``stream``: the visual stages only when the face
    takes part (``fusion.mode`` other than ``text``)."""
    visual = settings.fusion.mode != "text"
    return [
        s.name
        for s in STAGES.values()
        if s.public and stream in s.inputs and (s.name, stream) not in TAILED and (visual or not s.visual)
    ]


INGEST: tuple[str, ...] = ("rooms", "partials", "utterances")
"""What a participant's ingest writes (``serve``, ``analyze``, ``join``): RoomControl, PartialAudio,
Utterance."""


async def ensure_readers(
    bus: Bus, settings: Settings, streams: tuple[str, ...] = INGEST
) -> list[tuple[str, str]]:
    """Create, before the first publish, the groups of every stage that reads what a producer writes.

    A blob is kept for each group that exists when a message referring to it is published
    (``Bus.put_blob``); a worker that creates its group later would find the media of earlier
    messages gone. Created here, the work waits for a worker that is not running yet instead.
    Only on a shared bus: in-process stages create their own groups before they are ready, and a
    group nobody reads would hold the memory bus's media. Returns the (stream, group) pairs ensured."""
    done: list[tuple[str, str]] = []
    if bus.url.startswith("memory"):
        return done
    for stream in streams:
        for group in readers(stream, settings):
            await bus.ensure_group(stream, group, "0")
            done.append((stream, group))
    return done
