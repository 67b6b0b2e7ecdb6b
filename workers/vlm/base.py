"""The one VLM interface and the annotator prompt shared by the image-reading backends.

``Describer.describe(frames, crops) -> str``: ``frames`` is the KeyFrames message (key frames in time
order, with blendshapes and head pose), ``crops`` the masked face JPEGs of those frames in the same
order. Backends are chosen by ``vlm.backend``; the returned text is raw (the stage refines it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from emostream.errors import UserError
from emostream.schema import KeyFrames

if TYPE_CHECKING:
    from emostream.config import Settings

ANNOTATOR_PROMPT = (
    "You annotate video of a person speaking. The images are face crops taken in time order from one "
    "utterance; everything except the face has been blacked out. In two or three short sentences, "
    "describe only what can be seen, in the present progressive tense: what the eyes, eyebrows, lips "
    "and jaw are doing, how the head is held or moving, where the gaze is going, one bodily behaviour "
    "that can be seen (such as a nod, a head turn or a shrug), and at least one movement that changes "
    "between the first and the last image. Do not name or guess any emotion or "
    "mood (no words such as happy, sad, angry, afraid, surprised, disgusted or neutral), do not "
    "describe the background, and do not speculate about the person."
)
"""DDVLM-style annotator instruction (system message): concise, observable actions and facial states
only, present progressive, eyes/eyebrows/lips/jaw/head/gaze, one movement, no emotion words."""

USER_PROMPT = "Describe the face in these {n} frames, in time order."


class Describer(Protocol):
    name: ClassVar[str]

    async def describe(self, frames: KeyFrames, crops: Sequence[bytes]) -> str:
        """Raw description of the key frames (2-3 sentences expected; refined by the caller)."""
        ...

    async def close(self) -> None:
        """Release sessions and models."""
        ...


def create_describer(settings: Settings) -> Describer:
    """The backend named by ``vlm.backend``: ``landmarks``, ``openai`` or ``transformers``."""
    backend = settings.vlm.backend
    if backend == "landmarks":
        from emostream.workers.vlm.landmarks import LandmarksDescriber

        return LandmarksDescriber()
    if backend == "openai":
        from emostream.workers.vlm.openai_chat import OpenAIDescriber

        return OpenAIDescriber.from_settings(settings)
    if backend == "transformers":
        from emostream.workers.vlm.hf import TransformersDescriber

        return TransformersDescriber.from_settings(settings)
    raise UserError(f"unknown vlm.backend {backend!r}: use landmarks, openai or transformers")
