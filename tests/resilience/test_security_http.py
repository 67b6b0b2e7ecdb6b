"""Every HTTP route of the real ``emostream serve`` app, enumerated from its router: each is either on
the public list below (with the reason it may be) or refuses no, expired, badly signed, wrong-room and
wrong-role tokens with 401/401/401/403/403 and a one-line JSON error. A route added without a decision
here fails the test. Also: the public routes leak no room, speaker or transcript; the static route does
not serve files outside its folder; servers bind 127.0.0.1 unless told otherwise.

tests/server/test_auth.py runs the token matrix over the six /v1 endpoints of a serve subprocess; this
derives the list from the router (WHIP and HEAD routes included) so it cannot go stale.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from emostream.config import load_settings
from emostream.server import auth
from emostream.testing.redis_server import free_port

from .conftest import Redis, emostream, wait_for
from .live_serve import SECRET, LiveServe, live_serve

ROOM = "sec-room"
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe: answers only {status: ok}",
    ("GET", "/readyz"): "readiness probe for load balancers: ready / starting / draining / bus unreachable",
    ("GET", "/metrics"): "Prometheus counters and gauges: no room, speaker or text in any label",
    ("GET", "/rooms/{room}"): "the room page (static HTML/JS): its token travels in the page URL and "
    "every API call the page makes is checked",
    ("GET", "/static"): "the room page's script and style sheet",
    ("OPTIONS", "/whip/{room}"): "CORS preflight: browsers send it without credentials (RFC 9725 4.1)",
    ("OPTIONS", "/whip/{room}/{session}"): "CORS preflight of a session URL",
}
"""Routes anyone who reaches the port may call; HEAD follows its GET."""
ROLE: dict[tuple[str, str], str] = {
    ("GET", "/v1/rooms"): "admin",
    ("GET", "/v1/rooms/{room}/events"): "subscribe",
    ("POST", "/v1/rooms/{room}/events"): "publish",
    ("GET", "/v1/rooms/{room}/events/ws"): "subscribe",
    ("GET", "/v1/rooms/{room}/summary"): "subscribe",
    ("POST", "/whip/{room}"): "publish",
    ("DELETE", "/whip/{room}/{session}"): "publish",
    ("PATCH", "/whip/{room}/{session}"): "publish",
}
"""Every other route and the role its token needs (an admin token may do everything)."""
OTHER = {"subscribe": "publish", "publish": "subscribe", "admin": "subscribe"}


@pytest.fixture(scope="module")
def app() -> Iterator[LiveServe]:
    with live_serve() as live:
        yield live


def routes(live: LiveServe) -> list[tuple[str, str]]:
    return sorted({(r.method, r.resource.canonical) for r in live.server.runner.app.router.routes()})  # type: ignore[union-attr]


def _decision(method: str, path: str) -> tuple[str, str]:
    key = ("GET" if method == "HEAD" else method, path)
    if key in PUBLIC:
        return "public", PUBLIC[key]
    if key in ROLE:
        return "token", ROLE[key]
    raise AssertionError(
        f"{method} {path} is a new route: add it to PUBLIC (with why) or ROLE here and in docs"
    )


def test_every_route_is_public_by_decision_or_needs_a_token(app: LiveServe) -> None:
    found = routes(app)
    assert len(found) >= 20, found
    decided = {route: _decision(*route) for route in found}
    assert {k for k, (kind, _) in decided.items() if kind == "public"} >= {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    }
    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for method, path in PUBLIC:  # each public route and its reason are stated for operators
        assert f"`{method} {path}`" in docs, f"docs/operations.md does not list public route {method} {path}"


def _cases(role: str) -> dict[str, tuple[str | None, tuple[int, str]]]:
    room = auth.ANY_ROOM if role == "admin" else ROOM
    return {
        "no token": (None, (401, "missing token")),
        "expired": (auth.create(SECRET, room, role, "x", ttl_s=-5), (401, "token expired")),
        "bad signature": (
            auth.create("another-secret-of-at-least-32-bytes!", room, role, "x"),
            (401, "signature"),
        ),
        "wrong room": (
            auth.create(SECRET, "other-room" if role != "admin" else ROOM, role, "x"),
            (403, "room"),
        ),
        "wrong role": (auth.create(SECRET, ROOM, OTHER[role], "x"), (403, "may not")),
        "not a JWT": ("x.y.z", (401, "invalid token")),
    }


async def _call(live: LiveServe, method: str, path: str, tok: str | None, where: str) -> tuple[int, str, str]:
    url = live.url + path.replace("{room}", ROOM).replace("{session}", "s3ss10n")
    headers = {"Authorization": f"Bearer {tok}"} if tok and where == "header" else {}
    params = {"token": tok} if tok and where == "query" else {}
    async with live.session.request(method, url, headers=headers, params=params) as r:
        return r.status, await r.text(), r.headers.get("WWW-Authenticate", "")


def test_every_token_route_refuses_bad_tokens(app: LiveServe) -> None:
    got: dict[tuple[str, str, str, str], int] = {}
    want: dict[tuple[str, str, str, str], int] = {}
    for method, path in routes(app):
        kind, role = _decision(method, path)
        if kind == "public":
            continue
        for case, (tok, (status, words)) in _cases(role).items():
            for where in ("header", "query"):
                code, text, challenge = app.run(_call(app, method, path, tok, where))
                got[method, path, case, where], want[method, path, case, where] = code, status
                if method != "HEAD" and code == status:
                    error = json.loads(text)["error"]
                    assert words in error and "\n" not in error, (method, path, case, error)
                if code == 401:
                    assert challenge.startswith("Bearer"), (method, path, case)
        # the right token gets past the check (404: no such WHIP session; 400: empty body / no upgrade)
        good = auth.create(SECRET, auth.ANY_ROOM if role == "admin" else ROOM, role, "tester")
        code, text, _ = app.run(_call(app, method, path, good, "header"))
        assert code not in (401, 403), (method, path, code, text)
    assert got == want
    assert not app.problems.take()


def test_public_routes_leak_no_room_speaker_or_text(app: LiveServe) -> None:
    from tests.server.helpers import event

    secret_words = ("sec-room", "zelda", "my bank pin is")
    body = msgspec.json.encode(
        [event(ROOM, n, speaker="zelda", text="my bank pin is 1234") for n in range(3)]
    )

    async def go() -> dict[str, str]:
        headers = {"Authorization": f"Bearer {app.token(ROOM, 'publish')}"}
        async with app.session.post(f"{app.url}/v1/rooms/{ROOM}/events", data=body, headers=headers) as r:
            assert r.status == 200
        await asyncio.sleep(0.5)  # filed into the room stream by the fan-out
        out = {}
        for path in ("/healthz", "/readyz", "/metrics", f"/rooms/{ROOM}", "/static/room.js"):
            async with app.session.get(app.url + path) as r:
                out[path] = await r.text() if r.status == 200 else f"status {r.status}"
        return out

    pages = app.run(go())
    assert pages["/healthz"] == '{"status": "ok"}' and "emostream_api_published" in pages["/metrics"]
    for path, text in pages.items():
        for word in secret_words:
            if path == f"/rooms/{ROOM}":
                continue  # the page is the same static file for every room; the room is in its URL
            assert word not in text, f"{path} shows {word!r}"
    assert "sec-room" not in pages[f"/rooms/{ROOM}"] and "zelda" not in pages[f"/rooms/{ROOM}"]


def test_static_route_serves_nothing_outside_its_folder(app: LiveServe) -> None:
    async def get(path: str) -> int:
        async with app.session.get(app.url + path) as r:
            return r.status

    for path in (
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e/serve.py",
        "/static/../../config.py",
    ):
        assert app.run(get(path)) in (403, 404), path


# ---------------------------------------------------------------------------------------- binding
def _listening(port: int) -> set[str]:
    """Addresses a local TCP socket listens on for ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # LISTEN
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    raw = bytes.fromhex(addr)
                    found.add(
                        socket.inet_ntop(
                            socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        )
                    )
    return found


def test_defaults_bind_loopback() -> None:
    s = load_settings(env={})
    assert s.api.host == "127.0.0.1" and s.stage.metrics_host == "127.0.0.1"


def _serve(port: int, *args: str, secret: str = SECRET) -> tuple[str, str]:
    env = {"EMOSTREAM_API_SECRET": secret, "EMOSTREAM_BUS_BLOCK_MS": "100"}
    proc = emostream("serve", "--port", str(port), "--stages", "none", *args, env=env)
    try:
        wait_for(lambda: proc.poll() is not None or bool(_listening(port)), 60, f"serve on port {port}")
        where = ",".join(sorted(_listening(port)))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    return where, err.decode()


def test_serve_binds_loopback_and_warns_on_an_open_redis(aof_redis: Redis) -> None:
    """Default bind: 127.0.0.1 only. On a Redis without a password serve warns loudly, as workers do
    (test_9_safe_defaults): it reads the same transcripts and events."""
    where, err = _serve(free_port(), "--redis", aof_redis.url)
    assert where == "127.0.0.1", (where, err[-800:])
    assert "REDIS ACCEPTS CLIENTS WITHOUT A PASSWORD" in err, err[-1500:]


def test_serve_binds_beyond_loopback_only_when_told_and_with_a_secret() -> None:
    where, err = _serve(free_port(), "--host", "0.0.0.0")
    assert where == "0.0.0.0", (where, err[-800:])
    proc = emostream(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--stages",
        "none",
        env={"EMOSTREAM_API_SECRET": ""},
    )
    _, raw = proc.communicate(timeout=60)
    text = raw.decode()
    assert proc.returncode != 0 and "needs a configured secret" in text and "Traceback" not in text, text[
        -800:
    ]


def test_worker_metrics_bind_loopback_by_default(aof_redis: Redis) -> None:
    port = free_port()
    proc = emostream("worker", "toy", "--redis", aof_redis.url, "--metrics-port", str(port))
    try:
        wait_for(lambda: proc.poll() is not None or bool(_listening(port)), 60, "worker metrics")
        assert _listening(port) == {"127.0.0.1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
