"""How much audio aiortc's receiver holds back before decoding: one packet, not four.

aiortc gives every audio receiver a jitter buffer that releases a packet only once ``prefetch`` = 4
newer ones have arrived: 80 ms of smoothing for playout. The analyzer plays nothing out; the VAD runs
on media time, so a packet is ready to decode as soon as the next one shows it complete. Every one of
those 80 ms sat in front of the end-of-speech decision. aiortc has no public setting for it, so the
receiver's buffer is replaced right after ``setRemoteDescription`` (before any packet arrives), with a
check that the private attribute still exists: if a new aiortc renames it, a warning says so and the
default stays.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("emostream.call")

_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CAPACITY = 16  # aiortc's audio capacity (packets); only the prefetch changes


def tune_audio_receivers(pc: Any, prefetch: int) -> int:
    """Set the audio receivers' jitter-buffer prefetch (packets held before decoding); returns how
    many receivers were tuned."""
    from aiortc.jitterbuffer import JitterBuffer

    tuned = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "audio" or receiver is None:
            continue
        if not hasattr(receiver, _ATTR):
            log.warning(
                "aiortc's receiver has no jitter buffer attribute %s: call.audio_jitter_packets not applied",
                _ATTR,
            )
            return tuned
        setattr(receiver, _ATTR, JitterBuffer(capacity=_CAPACITY, prefetch=prefetch))
        tuned += 1
    return tuned


def audio_prefetch(receiver: Any) -> int | None:
    """The prefetch of a receiver's jitter buffer (for tests and diagnostics); None when unknown."""
    buffer = getattr(receiver, _ATTR, None)
    value = getattr(buffer, "_prefetch", None)
    return value if isinstance(value, int) else None
