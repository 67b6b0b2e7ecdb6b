"""The event API against a running `emostream serve` (memory bus and real Redis): same events in order
for SSE, WebSocket and the Python client, resume without gap or repeat, catch-up == SSE, lagged cut-off."""

from __future__ import annotations

import asyncio
import socket
import uuid

import aiohttp
import msgspec

from emostream.client import subscribe

from .helpers import ServeProc, decode_event, event, post_events, sse, subscribers, token, wait_subscribers

N = 500


def new_room() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


async def _sse_ids(url: str, room: str, n: int, out: list[tuple[str, bytes]]) -> None:
    async for kind, eid, data in sse(url, room):
        if kind == "emotion":
            out.append((eid, data))
            if len(out) == n:
                return


async def _ws_ids(url: str, room: str, n: int, out: list[tuple[str, bytes]]) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{url}/v1/rooms/{room}/events/ws", params={"token": token(room)}) as ws,
    ):
        async for msg in ws:
            item = msgspec.json.decode(msg.data)
            if item["type"] == "event":
                out.append((item["id"], msgspec.json.encode(item["event"])))
                if len(out) == n:
                    return


async def _client(url: str, room: str, n: int, out: list[str], stop_after: int | None = None) -> str | None:
    sub = subscribe(url, room, token(room))
    async for ev in sub:
        out.append(ev.id)
        if len(out) == (stop_after or n):
            return sub.last_id
    return None


async def test_three_transports_same_events_in_order_resume_and_catch_up(server: ServeProc) -> None:
    room = new_room()
    base = await subscribers(server.url)  # connections of earlier tests may still be closing
    events = [event(room, i, speaker=("ana", "bo")[i % 2]) for i in range(N)]
    want = [e.id for e in events]
    got_sse: list[tuple[str, bytes]] = []
    got_ws: list[tuple[str, bytes]] = []
    got_client: list[str] = []
    got_first: list[str] = []
    tasks = [
        asyncio.create_task(_sse_ids(server.url, room, N, got_sse)),
        asyncio.create_task(_ws_ids(server.url, room, N, got_ws)),
        asyncio.create_task(_client(server.url, room, N, got_client)),
    ]
    quitter = asyncio.create_task(_client(server.url, room, N, got_first, stop_after=200))
    await wait_subscribers(server.url, base + 4)
    await post_events(server.url, room, events)
    last = await asyncio.wait_for(quitter, 30)
    assert last is not None
    # the one that left after 200 comes back with its last id: the other 300, no gap, no repeat
    resumed: list[str] = []
    async for ev in subscribe(server.url, room, token(room), since=last):
        resumed.append(ev.id)
        if len(resumed) == N - 200:
            break
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert (len(got_sse), len(got_ws), len(got_client)) == (N, N, N)
    assert [decode_event(d)["id"] for _, d in got_sse] == want
    assert [decode_event(d)["id"] for _, d in got_ws] == want
    assert len(got_client) == N, (len(got_client), len(got_sse), len(got_first), len(resumed))
    assert got_client == want
    assert got_first + resumed == want
    assert [i for i, _ in got_ws] == [i for i, _ in got_sse]  # same stream ids on both transports

    # catch-up JSON, paged with since=, equals the SSE sequence (ids and payloads)
    pages: list[tuple[str, bytes]] = []
    since = "0-0"
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(
                f"{server.url}/v1/rooms/{room}/events",
                params={"since": since, "limit": "128", "token": token(room)},
            ) as r:
                assert r.status == 200
                body = msgspec.json.decode(await r.read())
            pages += [(item["id"], msgspec.json.encode(item["event"])) for item in body["events"]]
            since = body["last_id"]
            if not body["more"]:
                break
    assert [i for i, _ in pages] == [i for i, _ in got_sse]
    assert [decode_event(d) for _, d in pages] == [decode_event(d) for _, d in got_sse]


async def test_sse_resume_with_last_event_id_and_filters(server: ServeProc) -> None:
    room = new_room()
    events = [event(room, i, speaker=("ana", "bo")[i % 2]) for i in range(60)]
    await post_events(server.url, room, events)
    await asyncio.sleep(0.5)
    all_ids: list[str] = []
    async for kind, eid, _ in sse(server.url, room, since="0-0"):
        if kind == "emotion":
            all_ids.append(eid)
            if len(all_ids) == 60:
                break
    resumed: list[str] = []
    async for kind, eid, _ in sse(server.url, room, since=all_ids[29]):
        if kind == "emotion":
            resumed.append(eid)
            if len(resumed) == 30:
                break
    assert resumed == all_ids[30:]
    bo_joy: list[dict[str, object]] = []
    want = [e for e in events if e.speaker == "bo" and e.label in ("joy", "anger") and e.confidence >= 0.5]
    async for kind, _, data in sse(
        server.url, room, since="0-0", speaker="bo", labels="joy,anger", min_confidence="0.5"
    ):
        if kind == "emotion":
            bo_joy.append(decode_event(data))
            if len(bo_joy) == len(want):
                break
    assert [e["id"] for e in bo_joy] == [e.id for e in want]


async def test_slow_subscriber_is_cut_off_with_lagged_while_others_keep_pace(server: ServeProc) -> None:
    room = new_room()
    base = await subscribers(server.url)
    big = "word " * 400  # ~2 KB per event: the slow reader's socket fills long before 500 events
    events = [event(room, i, text=big) for i in range(N)]
    host, port = server.url.removeprefix("http://").split(":")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((host, int(port)))
    slow.sendall(
        f"GET /v1/rooms/{room}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token(room)}\r\n\r\n".encode()
    )
    fast: list[tuple[str, bytes]] = []
    fast_task = asyncio.create_task(_sse_ids(server.url, room, N, fast))
    await wait_subscribers(server.url, base + 2)
    await post_events(server.url, room, events)
    await asyncio.wait_for(fast_task, 60)
    fast_ids = [decode_event(d)["id"] for _, d in fast]
    assert fast_ids == [e.id for e in events]
    # now read what the slow one was sent: some events, then the final lagged notice, then EOF
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    raw = b""
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(slow, 65536), 30)
        if not chunk:
            break
        raw += chunk  # until the server disconnects it
    slow.close()
    assert b"event: lagged" in raw, raw[-300:]
    got = [line[4:].decode() for line in raw.split(b"\n") if line.startswith(b"id: ")]
    lagged = msgspec.json.decode(raw.split(b"event: lagged\ndata: ")[1].split(b"\n")[0])
    assert 0 < len(got) < N
    assert lagged["last_id"] == got[-1]
    # it resumes from there and gets the rest, no gap and no repeat
    rest: list[str] = []
    async for kind, eid, _ in sse(server.url, room, since=lagged["last_id"]):
        if kind == "emotion":
            rest.append(eid)
            if len(got) + len(rest) == N:
                break
    assert got + rest == [i for i, _ in fast]


async def test_events_cli_follows_a_room_as_json_lines(server: ServeProc) -> None:
    import os
    import sys

    room = new_room()
    events = [event(room, i) for i in range(20)]
    await post_events(server.url, room, events)
    cmd = [
        sys.executable,
        "-m",
        "emostream",
        "events",
        "--url",
        server.url,
        "--room",
        room,
        "--token",
        token(room),
        "--since",
        "0-0",
        "--count",
        "20",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert f"waiting for events in room {room}..." in err.decode()
    assert [msgspec.json.decode(line)["id"] for line in out.splitlines()] == [e.id for e in events]


async def test_summary_and_rooms_list(server: ServeProc) -> None:
    room = new_room()
    events = [event(room, i, speaker=("ana", "bo")[i % 2]) for i in range(14)]
    await post_events(server.url, room, events)
    async with aiohttp.ClientSession() as s:
        for _ in range(50):  # the fan-out files them within milliseconds; poll, do not sleep blindly
            async with s.get(f"{server.url}/v1/rooms/{room}/summary", params={"token": token(room)}) as r:
                body = await r.json()
            if body["events"] == 14:
                break
            await asyncio.sleep(0.1)
        assert body["speakers"]["ana"]["events"] == 7 and body["speakers"]["bo"]["events"] == 7
        # ana has utterances 0, 2, ..., 12: labels EMOTIONS[n % 7] -> each of the 7 classes once
        assert all(v == round(1 / 7, 4) for v in body["speakers"]["ana"]["labels"].values())
        assert -1 <= body["speakers"]["bo"]["mean_valence"] <= 1
        async with s.get(f"{server.url}/v1/rooms", params={"token": token("*", "admin")}) as r:
            rooms = {x["room"]: x for x in (await r.json())["rooms"]}
        assert rooms[room]["events"] == 14
        async with s.get(
            f"{server.url}/v1/rooms/{room}/summary", params={"token": token(room), "minutes": "x"}
        ) as r:
            assert r.status == 400 and "minutes" in (await r.json())["error"]
