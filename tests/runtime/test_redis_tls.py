"""Redis URLs with a password and TLS (``rediss://``) against a real TLS redis-server, and one-line
errors for wrong credentials or an unreachable server."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from emostream.bus import open_bus
from emostream.bus.redis import BusUnavailable
from emostream.testing.redis_server import free_port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args, "-subj", "/CN=127.0.0.1"] if args[0] == "req" else ["openssl", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a password; yields (port, CA file)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates: apt-get install openssl")
    d = tmp_path_factory.mktemp("tls")
    _openssl(*"req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1".split(), cwd=d)
    _openssl(*"req -newkey rsa:2048 -nodes -keyout server.key -out server.csr".split(), cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1"
    _openssl(*sign.split(), "-extfile", "san.ext", cwd=d)
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            *f"--port 0 --tls-port {port} --bind 127.0.0.1 --appendonly no".split(),
            "--save",
            "",
            "--tls-cert-file",
            str(d / "server.pem"),
            "--tls-key-file",
            str(d / "server.key"),
            "--tls-ca-cert-file",
            str(d / "ca.pem"),
            *"--tls-auth-clients no --requirepass s3cret".split(),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(
        host="127.0.0.1", port=port, password="s3cret", ssl=True, ssl_ca_certs=str(d / "ca.pem")
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"TLS redis-server did not start: {out[-500:]}")
            time.sleep(0.05)
    client.close()
    yield port, d / "ca.pem"
    proc.terminate()
    proc.wait(10)


async def test_rediss_with_password_carries_messages(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    bus = open_bus(f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    try:
        await bus.ping()
        await bus.ensure_group("s", "g", "0")
        entry_id = await bus.publish("s", b"over tls")
        (d,) = await bus.read_group(["s"], "g", "c", 10, 100)
        assert (d.id, d.data) == (entry_id, b"over tls")
        ref = await bus.put_blob("k", b"blob", 5)
        assert await bus.get_blob(ref) == b"blob"
    finally:
        await bus.close()


async def test_wrong_password_is_one_line(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    bus = open_bus(f"rediss://:wrong@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    with pytest.raises(
        BusUnavailable, match=rf"Redis at 127.0.0.1:{port} refused the credentials .*fix the password"
    ):
        await bus.ping()
    await bus.close()


async def test_unreachable_is_one_line(unused_port: int) -> None:
    bus = open_bus(f"redis://:pw@127.0.0.1:{unused_port}/0")
    with pytest.raises(BusUnavailable) as err:
        await bus.ping()
    await bus.close()
    text = str(err.value)
    assert text.startswith(f"cannot reach Redis at 127.0.0.1:{unused_port}") and "\n" not in text
    assert "pw" not in text
