"""Where each received audio frame sits on the sender's timeline, from its pts (aiortc sets it from the
RTP timestamp). Audio lost before the ingest (packets the network or the jitter buffer dropped, frames
the call queue shed under overload, silence a DTX sender did not send) leaves a gap in the pts. The
speech path must hear that gap as time passing; if it does not, every later utterance is stamped
early by all that was lost. A 27 s machine stall in the soak left the clock 24 s behind that way.

:class:`AudioTimeline` splits a chunk of frames into runs with the seconds lost before each. The
participant ingest turns those seconds into silence and a clock step (``SpeechIngest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

GAPS = Counter("emostream_audio_gaps", "Gaps in a participant's audio pts (audio lost before the ingest)")
GAP_SECONDS = Counter(
    "emostream_audio_gap_seconds",
    "Seconds of participant audio lost before the ingest (kept as time passing)",
)
RESETS = Counter(
    "emostream_audio_timeline_resets",
    "Audio pts that went backwards or jumped too far ahead (the timeline restarts at that frame, no gap)",
)

TOLERANCE_S = 0.0025
"""Smaller differences between a frame's pts and the previous frame's end are rounding, not loss."""
MAX_GAP_S = 600.0
"""A jump further ahead than this is not loss (an RTP timestamp wrap, a sender restart): re-anchor."""


@dataclass
class TimelineStats:
    gaps: int = 0
    gap_s: float = 0.0
    resets: int = 0


class AudioTimeline:
    """One participant's audio pts tracker. Frames without a pts or time base (numpy chunks, files
    decoded without timestamps) carry no timeline information and pass through with no gap."""

    def __init__(self) -> None:
        self.stats = TimelineStats()
        self._next: float | None = None
        """Sender-timeline second at which the next frame should start (None: unknown)."""

    def split(self, frames: list[Any]) -> list[tuple[float, list[Any]]]:
        """``frames`` as consecutive runs, each with the seconds lost just before it (0.0 when none)."""
        runs: list[tuple[float, list[Any]]] = []
        for frame in frames:
            lost = self._lost_before(frame)
            if lost > 0.0 or not runs:
                runs.append((lost, [frame]))
            else:
                runs[-1][1].append(frame)
        return runs

    def _lost_before(self, frame: Any) -> float:
        pts, base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
        samples, rate = getattr(frame, "samples", 0), getattr(frame, "sample_rate", 0)
        if pts is None or not base or not rate:
            self._next = None
            return 0.0
        start = float(pts * base)
        expected, self._next = self._next, start + samples / rate
        if expected is None:
            return 0.0
        gap = start - expected
        if abs(gap) <= TOLERANCE_S:
            return 0.0
        if gap < 0.0 or gap > MAX_GAP_S:
            self.stats.resets += 1
            RESETS.inc()
            return 0.0
        self.stats.gaps += 1
        self.stats.gap_s += gap
        GAPS.inc()
        GAP_SECONDS.inc(gap)
        return gap
