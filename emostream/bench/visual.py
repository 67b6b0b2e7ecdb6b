"""`emostream bench visual`: per-utterance latency of the visual path (FEC + landmarks VLM + embedding).

One 3.6 s utterance sampled at ``frames.fps`` (3 -> 11 frames, 640x480 JPEG blobs on the in-memory bus)
goes through the real ``fec`` stage (MediaPipe landmarks, FER, speaker track, key frames, masked crops)
and the real ``vlm`` stage (landmarks describer, refinement, ONNX sentence embedding). The clip is
Grace Hopper's portrait (shipped with matplotlib) tilting and zooming over time; ``--image`` uses
another picture. Reported: p50/p95 of the whole handle-to-handle time over ``--runs`` utterances after
two warm-up runs, frames analysed per second at the median, and the process CPU time per utterance
(``cpu_ms_p50``: what the path costs whatever else the machine is doing; FEC runs ``fec.threads``
landmarkers in parallel, so wall time on idle cores is lower). Target on a 2-core CPU: p95 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import cv2
import numpy as np

from emostream.errors import UserError
from emostream.progress import Steps

HELP = "Visual path latency per utterance: FEC + landmarks VLM + embedding (p50/p95 ms, frames/s)."
TARGET_P95_MS = 250.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--runs", type=int, default=20, help="measured utterances (20)")
    parser.add_argument("--seconds", type=float, default=3.6, help="utterance length (3.6 s)")
    parser.add_argument("--image", type=Path, help="face picture for the clip (default: Grace Hopper)")


def clip_jpegs(image: np.ndarray, seconds: float, fps: float, quality: int = 85) -> list[tuple[float, bytes]]:
    """``image`` (BGR) on a 640x480 canvas, rotating 0-12 degrees and zooming in over the utterance."""
    n = max(1, int(np.ceil(seconds * fps - 1e-9)))
    h, w = image.shape[:2]
    base = min(440 / h, 600 / w)
    out = []
    for i in range(n):
        t = (i + 0.5) / fps
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 12.0 * t / seconds, base * (1.0 + 0.1 * t / seconds))
        m[0, 2] += 320 - w / 2
        m[1, 2] += 240 - h / 2
        frame = cv2.warpAffine(image, m, (640, 480), borderValue=(90, 90, 90))
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append((t, buf.tobytes()))
    return out


def _default_image() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


async def measure(args: argparse.Namespace) -> dict[str, float | int | str]:
    from emostream.bus.memory import MemoryBus
    from emostream.config import load_settings
    from emostream.ingest import participant
    from emostream.runtime.stage import StageContext
    from emostream.schema import KeyFrames, VisualDescription
    from emostream.workers.fec import FecStage
    from emostream.workers.vlm.stage import VlmStage

    settings = load_settings()
    path = args.image or _default_image()
    image = cv2.imread(str(path))
    if image is None:
        raise UserError(f"cannot read image {path}: pass a JPEG/PNG with --image")
    frames = clip_jpegs(image, args.seconds, settings.frames.fps)
    bus = MemoryBus()
    ctx = StageContext(bus=bus, settings=settings, stage="bench", consumer="bench")
    fec, vlm = FecStage(settings), VlmStage(settings)
    await fec.setup(ctx)
    await vlm.setup(ctx)
    total, fec_ms, vlm_ms, cpu_ms = [], [], [], []
    key_frames, text = 0, ""
    try:
        with Steps("bench visual: utterances (2 warm-up)", args.runs + 2) as bar:
            for run in range(args.runs + 2):
                refs = await participant.store_frames(bus, f"bench/s/{run}", frames, 60)
                utt = participant.utterance("bench", "s", run, 0.0, args.seconds, frames=refs)
                t0, c0 = time.perf_counter(), time.process_time()
                (kf,) = await fec.handle(utt, ctx)
                t1 = time.perf_counter()
                (vd,) = await vlm.handle(kf.message, ctx)
                t2, c2 = time.perf_counter(), time.process_time()
                assert isinstance(kf.message, KeyFrames) and isinstance(vd.message, VisualDescription)
                if not kf.message.face_found:
                    raise UserError(f"no face found in {path}: pass a frontal face picture with --image")
                if run >= 2:
                    total.append((t2 - t0) * 1000)
                    fec_ms.append((t1 - t0) * 1000)
                    vlm_ms.append((t2 - t1) * 1000)
                    cpu_ms.append((c2 - c0) * 1000)
                key_frames, text = len(kf.message.frames), vd.message.text
                bar.advance()
    finally:
        await fec.close()
        await vlm.close()
        await bus.close()
    p50 = float(np.percentile(total, 50))
    return {
        "p50_ms": round(p50, 1),
        "p95_ms": round(float(np.percentile(total, 95)), 1),
        "frames_per_s": round(len(frames) / (p50 / 1000), 1),
        "fec_p50_ms": round(float(np.percentile(fec_ms, 50)), 1),
        "vlm_embed_p50_ms": round(float(np.percentile(vlm_ms, 50)), 1),
        "cpu_ms_p50": round(float(np.percentile(cpu_ms, 50)), 1),
        "frames": len(frames),
        "key_frames": key_frames,
        "runs": len(total),
        "target_p95_ms": TARGET_P95_MS,
        "description": text,
    }


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise UserError("--runs must be at least 1")
    result = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    print(
        f"visual path, {result['frames']} frames of a {args.seconds} s utterance: "
        f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms (target <= {TARGET_P95_MS:.0f}), "
        f"{result['frames_per_s']} frames/s; fec p50 {result['fec_p50_ms']} ms, "
        f"vlm+embedding p50 {result['vlm_embed_p50_ms']} ms; CPU {result['cpu_ms_p50']} ms per utterance\n"
        f"{result['description']}"
    )
    return 0
