"""The fusion stage without a trained head: late fusion of the face reading, the modes, the evidence."""

from __future__ import annotations

import numpy as np

from emostream import schema
from emostream.bus import open_bus
from emostream.late_fusion import driver_of
from emostream.schema import FaceReading, TextContext, VisualDescription
from emostream.workers.fusion import FusionStage
from tests.text.test_workers import events, running, settings_for, text_context

JOY_FACE = FaceReading(probs=[0.02, 0.01, 0.01, 0.02, 0.92, 0.01, 0.01], reliability=0.9, frames=12,
                       cues={"mouthSmileLeft": 0.82, "mouthSmileRight": 0.8})  # fmt: skip
UNCERTAIN = [1.0, 0.2, 0.0, 0.9, 0.3, 0.0, 0.1]  # logits: neutral ~0.3, sadness ~0.27
CONFIDENT = [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # neutral ~0.96


def described(
    utterance: int, face: FaceReading | None, found: bool = True, expired: bool = False
) -> VisualDescription:
    return VisualDescription(
        room="r", speaker="alice", utterance=utterance, text="The mouth corners are pulling outward.",
        face_found=found, face=face, confidence=0.9, trace={"vlm": schema.now()}, media_expired=expired,
    )  # fmt: skip


async def decide(mode: str, cases: list[tuple[list[float], VisualDescription | None]]) -> dict:
    settings = settings_for(deadline_ms=1_000, mode=mode)  # type: ignore[arg-type]
    bus = open_bus("memory://", settings.bus)
    fusion = FusionStage(settings, head=None, load_head=False)
    async with running(bus, settings, fusion):
        for i, (logits, visual) in enumerate(cases):
            if visual is not None:
                await bus.publish(VisualDescription.stream, schema.encode(visual))
            await bus.publish(TextContext.stream, schema.encode(text_context(i, logits)))
        got = await events(bus, len(cases))
    await bus.close()
    return got


async def test_late_fusion_uses_a_reliable_face_and_says_so() -> None:
    weak = FaceReading(probs=JOY_FACE.probs, reliability=0.3, frames=3)
    got = await decide(
        "fused",
        [(UNCERTAIN, described(0, JOY_FACE)), (CONFIDENT, described(1, JOY_FACE)),
         (UNCERTAIN, described(2, weak)), (UNCERTAIN, described(3, None, found=False)), (UNCERTAIN, None),
         (UNCERTAIN, described(5, None, found=False, expired=True))],
    )  # fmt: skip
    moved, held, weak_e, no_face, absent, expired = (got[i] for i in range(6))
    assert expired.visual_status == "expired" and expired.probabilities == expired.text_probs
    assert moved.visual_status == "used" and moved.fusion == "late" and moved.label == "joy"
    assert moved.modalities == ["text", "visual"] and driver_of(moved) == moved.driver == "face"
    assert moved.face_cues == ["mouthSmileLeft 0.82", "mouthSmileRight 0.80"] and moved.face_frames == 12
    assert moved.face_reliability == 0.9 and moved.face_probs["joy"] == 0.92
    assert max(moved.text_probs, key=moved.text_probs.get) == "neutral"  # type: ignore[arg-type]
    assert (
        held.label == "neutral" and held.visual_status == "used" and driver_of(held) == held.driver == "text"
    )
    assert held.probabilities["joy"] > held.text_probs["joy"]
    assert weak_e.visual_status == "unreliable" and weak_e.probabilities == weak_e.text_probs
    assert weak_e.fusion == "text" and weak_e.modalities == ["text"] and weak_e.face_probs["joy"] == 0.92
    assert no_face.visual_status == "no_face" and no_face.face_probs == {} and no_face.label == "neutral"
    assert absent.visual_status == "absent" and absent.probabilities == absent.text_probs
    assert absent.latency_ms["fusion"] - absent.latency_ms["context"] >= 900  # waited for the face


async def test_text_and_face_modes() -> None:
    text = (await decide("text", [(UNCERTAIN, described(0, JOY_FACE))]))[0]
    assert text.visual_status == "disabled" and text.label == "neutral" and text.fusion == "text"
    assert (
        text.probabilities == text.text_probs and driver_of(text) == "text"
    )  # evidence may still ride along
    face = await decide("face", [(CONFIDENT, described(0, JOY_FACE)), (CONFIDENT, None)])
    assert face[0].label == "joy" and face[0].fusion == "face" and face[0].modalities == ["visual"]
    assert np.isclose(face[0].probabilities["joy"], 0.92, atol=1e-6) and driver_of(face[0]) == "face"
    assert face[1].label == "neutral" and face[1].visual_status == "absent" and face[1].fusion == "text"
