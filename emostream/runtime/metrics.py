"""Prometheus metrics of the stage runtime, labelled by stage and stream, served on ``/metrics``."""

from __future__ import annotations

import ipaddress
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from emostream.errors import UserError

PROCESSED = Counter("emostream_processed", "Messages handled and acknowledged", ["stage", "stream"])
FAILED = Counter(
    "emostream_failed", "Handler failures (the message is retried, then dead-lettered)", ["stage", "stream"]
)
DEAD_LETTERED = Counter(
    "emostream_dead_lettered", "Messages moved to <stream>:dead", ["stage", "stream", "reason"]
)
HANDLE_SECONDS = Histogram(
    "emostream_handle_seconds",
    "Time from decode to outputs published",
    ["stage", "stream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge(
    "emostream_consumer_lag", "Stream entries not yet delivered to the stage's group", ["stage", "stream"]
)
PENDING = Gauge(
    "emostream_pending", "Delivered but un-acked entries of the stage's group", ["stage", "stream"]
)
INFLIGHT = Gauge("emostream_inflight", "Handlers running now in this process", ["stage"])
RECLAIMED = Counter(
    "emostream_reclaimed", "Stale messages taken over from other consumers", ["stage", "stream"]
)
ORPHANED = Counter(
    "emostream_orphaned",
    "Deliveries whose reply never reached this consumer (handed back for a claim)",
    ["stage", "stream"],
)
REFUSED = Counter(
    "emostream_publish_refused",
    "Publishes refused: the stream stayed full of un-acked entries, or the message/blob was too big",
    ["stream", "reason"],
)
SKIPPED = Counter(
    "emostream_skipped", "Entries a follower (no group) could not decode and skipped", ["stream"]
)

log = logging.getLogger("emostream.metrics")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    """``/metrics`` (Prometheus text), ``/healthz`` (``ok``), 404 for anything else."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Scrapes every few seconds would flood stderr; stay quiet."""


def serve_metrics(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer | None:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` from a daemon thread (port 0 = off). The
    endpoint has no auth, so binding beyond loopback is logged as a warning."""
    if not port:
        return None
    if not 0 < port < 65536:
        raise UserError(f"bad metrics port {port}: use 1-65535 (--metrics-port / stage.metrics_port)")
    if not is_loopback(host):
        log.warning(
            "metrics served beyond loopback without auth: keep the port off public networks",
            extra={"host": host, "port": port},
        )
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}): pick a free --metrics-port"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
