"""Per-speaker summary of a room over the last N minutes: label distribution and mean valence."""

from __future__ import annotations

import time
from typing import Any

from emostream.bus.base import Bus
from emostream.schema import EMOTIONS
from emostream.server.rooms import decode_event, read_range

VALENCE: dict[str, float] = {
    "joy": 1.0,
    "surprise": 0.25,
    "neutral": 0.0,
    "sadness": -0.75,
    "fear": -0.75,
    "disgust": -0.75,
    "anger": -1.0,
}
"""Valence per MELD class in [-1, 1] (after the circumplex placement of the basic emotions; surprise is
mildly positive on average in MELD). An event's valence is the probability-weighted sum."""

MAX_EVENTS = 100_000


def valence(probabilities: dict[str, float]) -> float:
    return sum(VALENCE.get(k, 0.0) * p for k, p in probabilities.items())


async def summarize(bus: Bus, room: str, minutes: float) -> dict[str, Any]:
    """Events of the last ``minutes`` (by stream id time) per speaker."""
    since_ms = int((time.time() - minutes * 60) * 1000)
    entries = await read_range(bus, room, f"{max(0, since_ms - 1)}-{2**63 - 1}", MAX_EVENTS)
    speakers: dict[str, dict[str, Any]] = {}
    for entry in entries:
        event = decode_event(entry)
        if event is None:
            continue
        s = speakers.setdefault(event.speaker, {"events": 0, "labels": dict.fromkeys(EMOTIONS, 0), "_v": 0.0})
        s["events"] += 1
        s["labels"][event.label] += 1
        s["_v"] += valence(event.probabilities)
    out = {}
    for name, s in sorted(speakers.items()):
        n = s["events"]
        out[name] = {
            "events": n,
            "labels": {k: round(v / n, 4) for k, v in s["labels"].items()},
            "mean_valence": round(s["_v"] / n, 4),
        }
    return {
        "room": room,
        "minutes": minutes,
        "events": sum(s["events"] for s in out.values()),
        "speakers": out,
    }
