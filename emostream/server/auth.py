"""Access tokens: HS256 JWTs (PyJWT) naming a room, a role and a participant, signed with ``api.secret``.

``emostream token create`` and ``emostream serve`` agree on a token when they share the secret
(``EMOSTREAM_API_SECRET``). Every ingest and subscription endpoint calls :func:`check`: a missing,
expired or badly signed token is 401, a valid one for another room or role is 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, get_args

import jwt

from emostream.server.rooms import room_error

Role = Literal["publish", "subscribe", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
ANY_ROOM = "*"
"""Room claim of a token valid for every room (admin tokens only)."""
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Claims:
    room: str
    role: Role
    name: str
    expires: float


class AuthError(Exception):
    """A request's token is refused: ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def create(secret: str, room: str, role: str, name: str = "", ttl_s: float = 3600.0) -> str:
    """A signed token for ``room`` and ``role``, valid for ``ttl_s`` seconds."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if room == ANY_ROOM and role != "admin":
        raise ValueError("only admin tokens may name every room ('*')")
    if not room:
        raise ValueError("a token needs a room (or '*' for an admin token)")
    if room != ANY_ROOM and (why := room_error(room)):
        raise ValueError(why)
    now = int(time.time())
    claims = {"room": room, "role": role, "sub": name, "iat": now, "exp": now + int(ttl_s)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Claims:
    """Decode and check signature and expiry; AuthError(401) with the reason otherwise."""
    try:
        data = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "room", "role"]})
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "token expired: mint a new one with `emostream token create`") from None
    except jwt.InvalidSignatureError:
        raise AuthError(401, "token signature does not match this server's api.secret") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, f"invalid token: {exc}") from None
    role = data.get("role")
    if role not in ROLES:
        raise AuthError(401, f"invalid token: unknown role {role!r}")
    return Claims(
        room=str(data["room"]), role=role, name=str(data.get("sub") or ""), expires=float(data["exp"])
    )


def check(secret: str, token: str | None, room: str | None, roles: tuple[str, ...]) -> Claims:
    """The claims of ``token`` if it may act on ``room`` (None: any room) in one of ``roles``."""
    if not token:
        raise AuthError(401, "missing token: send `Authorization: Bearer TOKEN` or ?token=TOKEN")
    claims = verify(secret, token)
    if claims.role != "admin" and claims.role not in roles:
        raise AuthError(403, f"a {claims.role} token may not do this (needs {' or '.join(roles)})")
    if claims.room != ANY_ROOM and (room is None or claims.room != room):
        where = f"room {room!r}" if room else "every room"
        raise AuthError(403, f"this token is for room {claims.room!r}, not {where}")
    return claims
