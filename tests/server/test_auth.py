"""Token matrix on every endpoint of a running server (401 missing/expired/bad signature, 403 wrong
room/role), `emostream token create` agreeing with serve, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import msgspec
import pytest

from .helpers import SECRET, ServeProc, event, sse, start_serve, token

ROOM = "auth-room"
# endpoint -> (method, path, role it needs)
ENDPOINTS = {
    "catch-up": ("GET", f"/v1/rooms/{ROOM}/events", "subscribe"),
    "sse": ("SSE", f"/v1/rooms/{ROOM}/events", "subscribe"),
    "ws": ("WS", f"/v1/rooms/{ROOM}/events/ws", "subscribe"),
    "summary": ("GET", f"/v1/rooms/{ROOM}/summary", "subscribe"),
    "publish": ("POST", f"/v1/rooms/{ROOM}/events", "publish"),
    "rooms": ("GET", "/v1/rooms", "admin"),
}
WRONG_ROLE = {"subscribe": "publish", "publish": "subscribe", "admin": "subscribe"}


def cases(role: str) -> dict[str, tuple[str | None, int]]:
    return {
        "missing": (None, 401),
        "expired": (token(ROOM, role, ttl_s=-5), 401),
        "bad signature": (token(ROOM, role, secret="another-secret-0123456789abcdef-xyz"), 401),
        "wrong room": (token("other-room", role), 403),
        "wrong role": (token(ROOM, WRONG_ROLE[role]), 403),
        "right": (token("*" if role == "admin" else ROOM, role), 200),
    }


async def _status(s: aiohttp.ClientSession, url: str, method: str, path: str, tok: str | None) -> int:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    if method == "SSE":
        headers["Accept"] = "text/event-stream"
        method = "GET"
    if method == "WS":
        try:
            async with s.ws_connect(url + path, headers=headers) as ws:
                await ws.close()
                return 200
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
    body = msgspec.json.encode([event(ROOM, 0)]) if method == "POST" else None
    async with s.request(
        method, url + path, headers=headers, data=body, timeout=aiohttp.ClientTimeout(total=5)
    ) as r:
        if r.status != 200:
            assert "error" in await r.json()
        return r.status


async def test_token_matrix_on_every_endpoint(server: ServeProc) -> None:
    got: dict[tuple[str, str], int] = {}
    want: dict[tuple[str, str], int] = {}
    async with aiohttp.ClientSession() as s:
        for name, (method, path, role) in ENDPOINTS.items():
            for case, (tok, status) in cases(role).items():
                if name == "rooms" and case == "wrong room":
                    tok = token(ROOM, "admin")  # an admin token for one room may not list all rooms
                want[name, case] = status
                got[name, case] = await _status(s, server.url, method, path, tok)
    assert got == want


def test_token_cli_mints_what_serve_accepts(server: ServeProc) -> None:
    env = {**os.environ, "EMOSTREAM_API_SECRET": SECRET}
    cmd = [sys.executable, "-m", "emostream", "token", "create", "--room", ROOM, "--role", "subscribe"]
    tok = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
    import urllib.request

    req = urllib.request.Request(
        f"{server.url}/v1/rooms/{ROOM}/summary", headers={"Authorization": f"Bearer {tok}"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    no_secret = {k: v for k, v in env.items() if k != "EMOSTREAM_API_SECRET"}
    out = subprocess.run(cmd, env=no_secret, capture_output=True, text=True)
    assert out.returncode == 2 and "EMOSTREAM_API_SECRET" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("bus", ["memory"])
async def test_sigterm_drains_subscribers_with_shutdown(bus: str, tmp_path: object) -> None:
    proc = start_serve(None, f"{tmp_path}/serve.log")
    seen: list[str] = []

    async def follow() -> None:
        async for kind, _, _ in sse(proc.url, ROOM):
            seen.append(kind)
            if kind == "shutdown":
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    proc.proc.terminate()
    await asyncio.wait_for(task, 15)
    assert seen[0] == "ready" and seen[-1] == "shutdown"
    assert proc.proc.wait(15) == 0


@pytest.mark.parametrize("room", ["dead", "has%20space", "a%3Ab"])
async def test_a_reserved_or_malformed_room_id_is_a_400_on_every_room_endpoint(
    server: ServeProc, room: str
) -> None:
    """``events:dead`` is the events' dead-letter stream: a room called ``dead`` (even with an admin
    token, which passes every room check) would read other rooms' failed events and file into it."""
    admin = token("*", "admin")
    async with aiohttp.ClientSession() as s:
        for name, (method, path, _role) in ENDPOINTS.items():
            if name == "rooms":
                continue
            status = await _status(s, server.url, method, path.replace(ROOM, room), admin)
            assert status == 400, (name, room, status)


def test_tokens_are_not_minted_for_a_reserved_or_malformed_room() -> None:
    from emostream.server import auth

    for room in ("dead", "a b", "x" * 65, "events:x"):
        with pytest.raises(ValueError, match="room id"):
            auth.create(SECRET, room, "subscribe")
