"""A private network for WebRTC tests and benches: a network namespace with a veth pair, entered by
the calling thread, so ICE only ever sees the two test addresses (never this machine's LAN address;
aioice leaves 127.0.0.1 out of its candidates). Needs root (``ip netns add``).

    with private_network() as net:      # this thread (and threads it starts) now live inside
        ...                             # serve, aiortc peers, Chromium: candidates net.a / net.b only
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from emostream.errors import UserError

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Network:
    name: str
    a: str
    b: str


def available() -> str:
    """Empty if a private network can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    return ""


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise UserError(f"ip {' '.join(args)} failed: {res.stderr.strip()}")


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


@contextlib.contextmanager
def private_network(prefix: str = "emo") -> Iterator[Network]:
    """Create the namespace, enter it in this thread, and leave and delete it afterwards."""
    why = available()
    if why:
        raise UserError(f"a private test network {why}")
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    net = Network(name, "10.231.7.1", "10.231.7.2")
    _ip("netns", "add", name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "addr", "add", f"{net.a}/24", "dev", "v0")
        _ip("-n", name, "addr", "add", f"{net.b}/24", "dev", "v1")
        for dev in ("v0", "v1", "lo"):
            _ip("-n", name, "link", "set", dev, "up")
        _setns(f"/var/run/netns/{name}")
        try:
            yield net
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(home, CLONE_NEWNET)
    finally:
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
