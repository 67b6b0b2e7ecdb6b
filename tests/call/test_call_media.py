"""The benches' publishers' media: pre-encoded Opus and VP8 decode back to what live encoding sends."""

from __future__ import annotations

import av
import numpy as np

from emostream.bench.call_media import (
    GOP_S,
    RATE,
    FaceTrack,
    Program,
    SpeechTrack,
    load_prompt,
    opus_packets,
)


def _decode_opus(packets: list[bytes]) -> np.ndarray:
    dec = av.CodecContext.create("libopus", "r")
    dec.format, dec.layout, dec.sample_rate = "s16", "stereo", RATE  # type: ignore[attr-defined]
    pcm = [f.to_ndarray().reshape(-1)[::2] for b in packets for f in dec.decode(av.Packet(b))]
    return np.concatenate(pcm).astype(np.float64)


def test_opus_packets_are_the_program_in_20ms_packets() -> None:
    program = Program([load_prompt("conf-getpin")], pause_s=0.5, lead_s=0.2)
    assert program.audio.size % (RATE // 50) == 0  # whole frames: a looped program is whole packets
    packets = opus_packets(program.audio)
    assert len(packets) == program.audio.size // (RATE // 50)
    pcm = _decode_opus(packets)
    ref = program.audio.astype(np.float64)
    lag = int(np.argmax(np.correlate(pcm[:RATE], ref[:RATE], "full"))) - (RATE - 1)
    assert 0 <= lag < 960  # the codec's look-ahead, under one packet
    n = min(pcm.size - lag, ref.size)
    a, b = pcm[lag : lag + n], ref[:n]
    assert np.corrcoef(a, b)[0, 1] > 0.9  # the same speech, not silence or noise


async def test_encoded_tracks_send_packets_with_running_timestamps() -> None:
    program = Program([load_prompt("conf-unmuted")], pause_s=0.2, lead_s=0.0)
    speech = SpeechTrack(program, encoded=True)
    stamps = [(await speech.recv()).pts for _ in range(3)]
    assert stamps == [0, 960, 1920] and speech.started is not None
    face = FaceTrack(fps=15, encoded=True)
    first = await face.recv()
    assert isinstance(first, av.Packet) and first.pts == 0


def test_face_video_moves_and_decodes_with_key_frames() -> None:
    face = FaceTrack(fps=15, encoded=True)
    images = [face.image(i).tobytes() for i in range(face._loop)]
    assert len(set(images)) == face._loop  # no two frames of a period alike, like a real head
    assert np.array_equal(face.image(0), face.image(face._loop))  # period LOOP_S
    assert face._packets is not None
    dec = av.CodecContext.create("libvpx", "r")
    frames = [f for b in face._packets for f in dec.decode(av.Packet(b))]
    assert len(frames) == len(face._packets)
    gop = round(15 * GOP_S)
    keys = [i for i, b in enumerate(face._packets) if not b[0] & 1]  # VP8 header bit 0: 0 = key frame
    assert keys == list(range(0, len(face._packets), gop))
    got = frames[7].to_ndarray(format="rgb24").astype(np.float64)
    assert np.abs(got - face.image(7).astype(np.float64)).mean() < 12  # what live encoding would show
