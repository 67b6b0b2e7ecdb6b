"""A running `emostream serve` per bus: the embedded memory bus and a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import ServeProc, start_serve


@pytest.fixture(scope="module", params=["memory", "redis"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProc]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    log = str(tmp_path_factory.mktemp("serve") / "serve.log")
    proc = start_serve(url, log, EMOSTREAM_API_BUFFER="300")
    yield proc
    assert proc.stop() == 0, open(log).read()[-2000:]
