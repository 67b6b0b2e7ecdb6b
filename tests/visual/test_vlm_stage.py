"""The `vlm` stage and its backends: landmarks (default), OpenAI-compatible server, tiny Qwen2.5-VL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from emostream.bus.memory import MemoryBus
from emostream.config import Settings
from emostream.errors import UserError
from emostream.inference.encoder import SentenceEncoder
from emostream.runtime.stage import StageContext
from emostream.schema import FrameRef, KeyFrames, Utterance, VisualDescription
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.image import decode_jpeg
from emostream.workers.fec import FecStage
from emostream.workers.vlm.base import ANNOTATOR_PROMPT, create_describer
from emostream.workers.vlm.openai_chat import OpenAIDescriber
from emostream.workers.vlm.refine import emotion_words_in, split_sentences
from emostream.workers.vlm.stage import NO_FACE, VlmStage

from .conftest import jpeg

CANNED = (
    "The person looks happy. The lips are stretching into a wide smile while the jaw is dropping. "
    "The lips are stretching into a wide smile while the jaw is dropping. The head is tilting to the left."
)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[StageContext]:
    bus = MemoryBus()
    yield StageContext(bus=bus, settings=settings, stage="vlm", consumer="test")
    await bus.close()


@pytest.fixture
async def keyframes(settings: Settings, analyzer: FaceAnalyzer, ctx: StageContext, clip: list) -> KeyFrames:
    """Real KeyFrames (with masked crop blobs) of the clip's astronaut part, through the fec stage."""
    refs = []
    for i, (t, img) in enumerate([f for f in clip if f[0] < 3.0][::5]):
        refs.append(FrameRef(t=t, blob=await ctx.bus.put_blob(f"frame/{i}", jpeg(img), 60)))
    utt = Utterance(room="r", speaker="s", utterance=7, start=0.0, end=3.0, frames=refs, eos_at=5.0)
    (emit,) = await FecStage(settings, analyzer).process(utt, ctx)
    assert isinstance(emit.message, KeyFrames)
    return emit.message


def with_vlm(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, vlm=msgspec.structs.replace(settings.vlm, **changes))


async def one(stage: VlmStage, kf: KeyFrames, ctx: StageContext) -> VisualDescription:
    (emit,) = await stage.process(kf, ctx)
    assert emit.target == "descriptions" and isinstance(emit.message, VisualDescription)
    return emit.message


async def test_landmarks_stage_embeds_description(
    settings: Settings, encoder: SentenceEncoder, keyframes: KeyFrames, ctx: StageContext
) -> None:
    stage = VlmStage(settings, encoder=encoder)
    await stage.setup(ctx)
    out = await one(stage, keyframes, ctx)
    assert out.face_found and out.backend == "landmarks" and out.utterance == 7 and out.eos_at == 5.0
    assert "smile" in out.text and emotion_words_in(out.text) == []
    assert 2 <= len(split_sentences(out.text)) <= 3
    vec = np.asarray(out.embedding)
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-4
    assert np.allclose(vec, encoder.encode([out.text])[0], atol=1e-5)
    assert out.encoder == "all-MiniLM-L6-v2-onnx" and 0.9 < out.confidence <= 1.0
    assert set(out.trace) >= {"fec", "vlm"}

    def embedded(how: str) -> float:
        return REGISTRY.get_sample_value("emostream_vlm_embeddings_total", {"how": how}) or 0.0

    before = embedded("encoded"), embedded("remembered")
    again = await one(stage, msgspec.structs.replace(keyframes, utterance=8), ctx)
    assert again.text == out.text and again.embedding == out.embedding  # same text: same vector
    assert (embedded("encoded"), embedded("remembered")) == (before[0], before[1] + 1)  # encoder not run


async def test_no_face_publishes_without_embedding(
    settings: Settings, encoder: SentenceEncoder, ctx: StageContext
) -> None:
    stage = VlmStage(settings, encoder=encoder)
    empty = KeyFrames(room="r", speaker="s", utterance=3, start=0.0, end=1.0, frames_seen=3, face_found=False)
    out = await one(stage, empty, ctx)
    assert out.text == NO_FACE and out.embedding is None and out.face_found is False
    assert not out.media_expired  # frames were seen, just no face in them
    gone = msgspec.structs.replace(empty, utterance=4, frames_bad=3, frames_expired=3)
    assert (await one(stage, gone, ctx)).media_expired  # every frame's media was gone: said so


class FakeVlmServer:
    """A real aiohttp server on 127.0.0.1 speaking chat-completions; checks each request's format."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.fail_first = fail_first

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if len(self.requests) <= self.fail_first:
            return web.Response(status=503, text="warming up")
        if request.headers.get("Authorization") != "Bearer sk-test":
            self.problems.append("no bearer token")
        system, user = body["messages"]
        if system["role"] != "system" or system["content"] != ANNOTATOR_PROMPT:
            self.problems.append("system prompt")
        images = [p for p in user["content"] if p["type"] == "image_url"]
        texts = [p for p in user["content"] if p["type"] == "text"]
        if not texts or not images:
            self.problems.append("user content needs text and images")
        for part in images:
            url = part["image_url"]["url"]
            if not url.startswith("data:image/jpeg;base64,"):
                self.problems.append("image is not a JPEG data URL")
            elif decode_jpeg(base64.b64decode(url.split(",", 1)[1])) is None:
                self.problems.append("image does not decode")
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": CANNED}}]}
        return web.json_response(reply)


async def serve(fake: FakeVlmServer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_openai_backend_request_format_and_refinement(
    settings: Settings, encoder: SentenceEncoder, keyframes: KeyFrames, ctx: StageContext
) -> None:
    fake = FakeVlmServer(fail_first=1)  # one 503 first: retried
    runner, url = await serve(fake)
    try:
        cfg = with_vlm(settings, backend="openai", openai_url=url, openai_api_key="sk-test", retries=2)
        stage = VlmStage(cfg, describer=create_describer(cfg), encoder=encoder)
        assert isinstance(stage.describer, OpenAIDescriber)
        stage.describer.backoff_s = 0.01
        out = await one(stage, keyframes, ctx)
        await stage.close()
    finally:
        await runner.cleanup()
    assert fake.problems == [] and len(fake.requests) == 2
    images = [p for p in fake.requests[-1]["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == len(keyframes.frames)
    assert fake.requests[-1]["model"] == cfg.vlm.openai_model
    assert out.backend == "openai"
    assert split_sentences(out.text) == [
        "The lips are stretching into a wide smile while the jaw is dropping.",
        "The head is tilting to the left.",
    ]
    assert out.embedding is not None and len(out.embedding) == 384


async def test_openai_unreachable_falls_back_to_landmarks(
    settings: Settings, encoder: SentenceEncoder, keyframes: KeyFrames, ctx: StageContext, unused_port: int
) -> None:
    cfg = with_vlm(
        settings, backend="openai", openai_url=f"http://127.0.0.1:{unused_port}/v1", timeout_s=2, retries=1
    )
    stage = VlmStage(cfg, describer=create_describer(cfg), encoder=encoder)
    out = await one(stage, keyframes, ctx)
    await stage.close()
    assert out.backend == "landmarks<-openai" and stage.fallbacks == 1
    assert (
        REGISTRY.get_sample_value("emostream_vlm_descriptions_total", {"backend": "landmarks<-openai"}) or 0
    ) >= 1
    assert "smile" in out.text and out.embedding is not None


async def test_transformers_backend_tiny_qwen(
    settings: Settings, encoder: SentenceEncoder, keyframes: KeyFrames, ctx: StageContext, tiny_qwen: Path
) -> None:
    from emostream.workers.vlm.hf import TransformersDescriber

    cfg = with_vlm(settings, backend="transformers", transformers_model=str(tiny_qwen))
    describer = create_describer(cfg)
    assert isinstance(describer, TransformersDescriber) and describer.device == "cpu"
    describer.max_new_tokens = 12
    crops = [b for b in [await ctx.bus.get_blob(f.crop) for f in keyframes.frames] if b]
    raw = await describer.describe(keyframes, crops)
    assert isinstance(raw, str) and raw  # random weights: nonsense, but generated through the real path
    stage = VlmStage(cfg, describer=describer, encoder=encoder)
    out = await one(stage, keyframes, ctx)
    assert out.backend in {"transformers", "landmarks<-transformers"}
    assert out.text and emotion_words_in(out.text) == [] and out.embedding is not None


def test_backend_errors_are_one_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="transformers_model"):
        create_describer(with_vlm(settings, backend="transformers", transformers_model=""))
    with pytest.raises(UserError, match="unknown vlm.backend"):
        create_describer(with_vlm(settings, backend="llava"))
    from emostream.workers.face.expression import create_expression_model

    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    with pytest.raises(UserError, match="facial_expression_model_weights.h5") as info:
        create_expression_model("deepface", settings)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="unknown fec.backend"):
        create_expression_model("dlib", settings)


async def test_openai_timeouts_are_retried_then_fail(keyframes: KeyFrames) -> None:
    from emostream.workers.vlm.openai_chat import VlmError

    calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(1.0)
        await asyncio.sleep(1.0)
        return web.json_response({})

    async def refuse(request: web.Request) -> web.Response:
        calls.append(2.0)
        return web.Response(status=400, text="model does not accept images")

    app = web.Application()
    app.router.add_post("/slow/chat/completions", slow)
    app.router.add_post("/bad/chat/completions", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        slow_d = OpenAIDescriber(
            f"http://127.0.0.1:{port}/slow", "m", timeout_s=0.3, retries=1, backoff_s=0.01
        )
        with pytest.raises(VlmError, match="no answer after 2 attempts"):
            await slow_d.describe(keyframes, [b"\xff\xd8fake"])
        await slow_d.close()
        assert calls.count(1.0) == 2
        bad_d = OpenAIDescriber(f"http://127.0.0.1:{port}/bad", "m", retries=3)
        with pytest.raises(VlmError, match="HTTP 400 model does not accept images"):
            await bad_d.describe(keyframes, [b"\xff\xd8fake"])
        await bad_d.close()
        assert calls.count(2.0) == 1  # client errors are not retried
    finally:
        await runner.cleanup()
