"""A WHIP publisher on aiortc (RFC 9725 client side): the tests', the bench's and scripts' way in.

pub = WhipPublisher("http://127.0.0.1:8765/whip/demo", token, [audio_track, video_track])
await pub.start()      # POST offer -> 201 answer; media flows
...
await pub.stop()       # DELETE the session URL
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urljoin

import aiohttp


class WhipError(Exception):
    """The endpoint refused the offer (or the DELETE): ``status`` and its one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status, self.reason = status, reason


class WhipPublisher:
    """One WHIP session: send-only transceivers for ``tracks``, no trickle (full ICE offer)."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        tracks: list[Any],
        *,
        ice_servers: list[str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoint, self.token, self.tracks = endpoint, token, tracks
        self.ice_servers = ice_servers or []
        self._http = session
        self._own_http = session is None
        self.pc: Any = None
        self.location = ""
        self.etag = ""
        self.links: list[str] = []

    async def start(self) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        if self._http is None:
            self._http = aiohttp.ClientSession()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in self.ice_servers]))
        for track in self.tracks:
            self.pc.addTransceiver(track, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"}
        async with self._http.post(self.endpoint, data=self.pc.localDescription.sdp, headers=headers) as resp:
            body = await resp.text()
            if resp.status != 201:
                await self._close_pc()
                raise WhipError(resp.status, _reason(body))
            self.location = urljoin(self.endpoint, resp.headers["Location"])
            self.etag = resp.headers.get("ETag", "")
            self.links = resp.headers.getall("Link", [])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def stop(self) -> int:
        """DELETE the session (its status code), then close the peer connection."""
        status = 0
        try:
            if self.location and self._http is not None:
                headers = {"Authorization": f"Bearer {self.token}"}
                async with self._http.delete(self.location, headers=headers) as resp:
                    status = resp.status
        finally:
            await self._close_pc()
            if self._own_http and self._http is not None:
                await self._http.close()
                self._http = None
        return status

    async def _close_pc(self) -> None:
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()


def _reason(body: str) -> str:
    import json

    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(body)["error"])
    return body.strip()[:200]
