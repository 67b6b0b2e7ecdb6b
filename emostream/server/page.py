"""The room page ``GET /rooms/{room}``: plain HTML/JS (no build step) to join a call with camera and
microphone over WHIP, or watch, with a live per-speaker emotion timeline fed by the SSE event API.

The token travels in the page URL (``/rooms/demo?token=T``): a publish token (its subject is the
speaker) lets the visitor join, and ``&watch=S`` adds a subscribe token for the timeline (default: the
same token, which then needs the subscribe role too, e.g. an admin token).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from emostream.server.rooms import ROOM_PATTERN

STATIC = Path(__file__).resolve().parent / "static"


async def room_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "room.html", headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def add_room_page(app: web.Application) -> None:
    app.router.add_get(f"/rooms/{{room:{ROOM_PATTERN}}}", room_page)
    app.router.add_static("/static/", STATIC)
