"""WHIP tests: one private network (namespace + veth) per module, a WHIP server per test.

The server is an aiohttp app with the WHIP routes over the real participant ingest on an in-memory bus,
and optionally the in-process pipeline stages (``pipeline=True``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emostream.bench import netns


@pytest.fixture(scope="module")
def private_net() -> Iterator[netns.Network]:
    why = netns.available()
    if why:
        pytest.fail(f"WebRTC tests need a private network namespace (run as root with iproute2): {why}")
    with netns.private_network("emo-whip") as net:
        yield net
