"""`openai` describer: any OpenAI-compatible chat-completions server with image input.

Works with vLLM, Ollama, llama.cpp server, LM Studio or a hosted API: one POST to
``{vlm.openai_url}/chat/completions`` with the annotator prompt as the system message and the key-frame
crops as ``data:image/jpeg;base64,...`` image parts. Each attempt is bounded by ``vlm.timeout_s``;
timeouts, connection errors, 429 and 5xx are retried ``vlm.retries`` times with exponential backoff;
other HTTP errors fail at once with the server's message.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from emostream.schema import KeyFrames
from emostream.workers.vlm.base import ANNOTATOR_PROMPT, USER_PROMPT

if TYPE_CHECKING:
    import aiohttp

    from emostream.config import Settings

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class VlmError(RuntimeError):
    """The VLM server gave no usable answer (after retries); the message says why in one line."""


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def build_request(model: str, crops: Sequence[bytes], max_tokens: int = 160) -> dict[str, Any]:
    """The chat-completions body: system = annotator prompt, user = text + one image part per crop."""
    content: list[dict[str, Any]] = [{"type": "text", "text": USER_PROMPT.format(n=len(crops))}]
    content += [{"type": "image_url", "image_url": {"url": data_url(c)}} for c in crops]
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": ANNOTATOR_PROMPT},
            {"role": "user", "content": content},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }


class OpenAIDescriber:
    name: ClassVar[str] = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str = "",
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.25,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIDescriber:
        v = settings.vlm
        return cls(v.openai_url, v.openai_model, v.openai_api_key, v.timeout_s, v.retries)

    async def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    async def describe(self, frames: KeyFrames, crops: Sequence[bytes]) -> str:
        if not crops:
            return ""
        import aiohttp

        body = build_request(self.model, crops)
        session = await self._client()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with session.post(self.endpoint, json=body) as resp:
                    if resp.status in RETRY_STATUS:
                        last = f"HTTP {resp.status}"
                        continue
                    if resp.status >= 400:
                        detail = (await resp.text())[:200].replace("\n", " ")
                        raise VlmError(
                            f"VLM server {self.endpoint} refused the request: HTTP {resp.status} {detail}"
                        )
                    payload = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}".strip(": ")
                continue
            return parse_reply(payload, self.endpoint)
        raise VlmError(
            f"VLM server {self.endpoint} gave no answer after {self.retries + 1} attempts ({last})"
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def parse_reply(payload: Any, endpoint: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise VlmError(f"VLM server {endpoint} sent no choices[0].message.content") from None
    if isinstance(content, list):  # some servers return content parts
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")
