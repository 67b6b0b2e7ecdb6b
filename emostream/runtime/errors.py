"""Typed errors of the stage runtime: what happened decides what the runtime does, not an error string.

* :class:`Reject`: a handler says the message can never be handled (retrying cannot help): it is
  dead-lettered at once with the reason, without using up ``bus.max_deliveries``.
* :class:`BlobExpired`: the audio or frame blob a message refers to is gone (TTL): a Reject.
* :class:`GroupMissing`: the bus has no such stream or consumer group (the stream was deleted, e.g. by
  FLUSHALL): the runtime recreates its groups.
Any other exception from a handler is a failure: retried, then dead-lettered.
"""

from __future__ import annotations

from emostream.errors import UserError


class Reject(Exception):
    """This message cannot be handled, now or later: dead-letter it at once, with ``reason``."""

    kind = "rejected"
    """Label of the ``emostream_dead_lettered`` counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BlobExpired(Reject):
    """A blob ref in the message points at nothing (expired after ``bus.blob_ttl_s``, or never stored)."""

    kind = "blob_expired"


class GroupMissing(UserError):
    """A consumer group the call needs does not exist (its stream was deleted, or ensure_group never ran)."""
